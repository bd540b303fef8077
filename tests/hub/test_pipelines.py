"""The Hub: what each push would commit (HfApi intercepted) and round trips through the loopback Hub (olah).

Uploads cannot reach a server here, so :class:`FakeHub` replaces ``HfApi.create_repo``/``create_branch``/
``create_commit`` and records every commit's files; the round-trip tests then serve exactly those files with the
loopback Hub and load them back with the real clients (huggingface_hub, datasets, timm).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import timm
import torch
import yaml
from diffusers import DDIMScheduler, DiffusionPipeline
from huggingface_hub import HfApi, ModelCard, RepoCard
from huggingface_hub.errors import Response as HubResponse
from huggingface_hub.utils import hf_raise_for_status
from safetensors.torch import load_file, save_file

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.images import dataset_to_tensors, load_image_dataset
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.hub.upload import (
    GenerationRecord,
    HubUploadError,
    export_timm_model,
    push_folder_to_hub,
    push_parameter_dataset,
)

from .components import tiny_pipeline, tiny_target

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_NeverUploadThisTestToken0123456789"
PIPELINE_FILES = {
    "README.md", "args.yaml", "model_index.json", "scheduler/scheduler_config.json",
    *(f"{c}/{f}" for c in ("target", "autoencoder", "denoiser")
      for f in ("config.json", "diffusion_pytorch_model.safetensors")),
}
PIPELINE_CARD = "---\nlibrary_name: pdiff_hub\ntags:\n- p-diff\n---\n\n# Tiny p-diff pipeline\n\nWritten by train.py.\n"
DATA = {"dataset": "digits", "image_size": 32, "val_size": 200, "split_seed": 0}


@dataclass
class Commit:
    repo_id: str
    repo_type: str
    revision: str | None
    message: str
    token: str | None
    files: dict[str, bytes]


class FakeHub:
    """Stands in for the Hub's write API: records repos, branches and the files of each commit."""

    def __init__(self) -> None:
        self.repos: list[dict] = []
        self.branches: list[tuple[str, str]] = []
        self.commits: list[Commit] = []
        self.error: Exception | None = None
        self.fail_on = "create_commit"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        hub = self

        def create_repo(api, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
            hub._maybe_fail("create_repo")
            hub.repos.append({"repo_id": repo_id, "repo_type": repo_type, "private": private, "exist_ok": exist_ok})
            return SimpleNamespace(repo_id=repo_id)

        def create_branch(api, repo_id, *, branch, repo_type=None, exist_ok=False, **kwargs):
            assert exist_ok
            hub.branches.append((repo_id, branch))

        def create_commit(api, repo_id, operations, *, commit_message, repo_type=None, revision=None, **kwargs):
            files = {}
            for op in operations:
                with op.as_file() as f:
                    files[op.path_in_repo] = f.read()
            hub._maybe_fail("create_commit")
            hub.commits.append(Commit(repo_id, repo_type, revision, commit_message, api.token, files))
            return SimpleNamespace(commit_url=f"https://hub.test/{repo_id}/commit/{len(hub.commits)}", pr_url=None)

        def upload_folder(*args, **kwargs):
            raise AssertionError("pushes must go through one create_commit")

        for name, fn in [("create_repo", create_repo), ("create_branch", create_branch),
                         ("create_commit", create_commit), ("upload_folder", upload_folder)]:
            monkeypatch.setattr(HfApi, name, fn)
        return self

    def _maybe_fail(self, step: str) -> None:
        if self.error is not None and step == self.fail_on:
            raise self.error


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    return FakeHub().install(monkeypatch)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def materialize(commit: Commit, folder: Path) -> Path:
    for path, data in commit.files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def add_clutter(folder: Path) -> None:
    """What a run leaves beside its results and must never be uploaded."""
    (folder / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_0" / "optimizer.bin").write_bytes(b"pickle")
    (folder / "logs").mkdir()
    (folder / "logs" / "events.out.tfevents.1.host").write_bytes(b"tb")
    (folder / ".run.tmp-abc").mkdir()
    (folder / ".run.tmp-abc" / "half.safetensors").write_bytes(b"partial")
    (folder / "stray.pt").write_bytes(b"pickle")


def generate(pipe, n=4, steps=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return pipe(num_models=n, num_inference_steps=steps, generator=generator, output_type="pt")


def http_error(status: int, message: str) -> Exception:
    httpx = sys.modules[HubResponse.__module__.split(".")[0]]
    response = HubResponse(status, request=httpx.Request("POST", "https://hub.test/api/commit"),
                           headers={"X-Error-Message": message})
    try:
        hf_raise_for_status(response)
    except Exception as err:
        return err
    raise AssertionError("no error raised")


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def pipeline_dir(pipe, tmp_path_factory) -> Path:
    """A pipeline folder as scripts/train.py leaves it: components, card, recipe, checkpoints and logs."""
    folder = tmp_path_factory.mktemp("pipeline")
    pipe.save_pretrained(folder)
    (folder / "README.md").write_text(PIPELINE_CARD)
    (folder / "args.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": DATA}))
    add_clutter(folder)
    return folder


@pytest.fixture(scope="module")
def params_dir(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    target = tiny_target()
    base = target.base_vector()
    vectors = base + 0.01 * torch.randn(4, base.numel(), generator=torch.Generator().manual_seed(0))
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 50.0 + i, "test_accuracy": 40.0 + i} for i in range(4)]
    folder = tmp_path_factory.mktemp("params")
    ParameterDataset(build_parameter_table(vectors, rows), target).save(folder)
    (folder / "README.md").write_text("---\nlibrary_name: pdiff_hub\ntags:\n- p-diff\n---\n\n# Tiny parameters\n")
    (folder / "args.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": DATA}))
    add_clutter(folder)
    return folder, vectors


def run_generate(argv: list[str]) -> list[str]:
    spec = importlib.util.spec_from_file_location("generate_script", ROOT / "scripts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.parse_args(argv))


@pytest.fixture(scope="module")
def generated(pipeline_dir, tmp_path_factory):
    """scripts/generate.py: 4 models, the top 2 exported and pushed (to the fake Hub)."""
    out = tmp_path_factory.mktemp("generated") / "export"
    with pytest.MonkeyPatch.context() as mp:
        hub = FakeHub().install(mp)
        urls = run_generate(["--pipeline", str(pipeline_dir), "--num_models", "4", "--num_inference_steps", "2",
                             "--select", "2", "--seed", "0", "--export_dir", str(out), "--push_to_hub",
                             "--hub_model_id", "hub-test/generated"])
    loaded = PDiffPipeline.from_pretrained(pipeline_dir)
    loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
    loaded.set_progress_bar_config(disable=True)
    vectors = generate(loaded).parameters
    return SimpleNamespace(out=out, hub=hub, urls=urls, vectors=vectors, target=loaded.target,
                           summary=json.loads((out / "generation.json").read_text()))


# ------------------------------------------------------------------------------------------------------------------
# (a) pipelines
# ------------------------------------------------------------------------------------------------------------------


def test_pipeline_push_commits_components_card_and_recipe_only(pipeline_dir, fake_hub):
    before = snapshot(pipeline_dir)
    url = PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/pipeline", token=TOKEN)
    (commit,) = fake_hub.commits
    assert url == "https://hub.test/hub-test/pipeline/commit/1"
    assert fake_hub.repos == [{"repo_id": "hub-test/pipeline", "repo_type": "model", "private": False,
                               "exist_ok": True}]
    assert set(commit.files) == PIPELINE_FILES  # no checkpoints, logs, temporary folders or pickles
    assert commit.files["README.md"] == (pipeline_dir / "README.md").read_bytes()  # the training card, not diffusers'
    assert commit.files["args.yaml"] == (pipeline_dir / "args.yaml").read_bytes()
    assert commit.token == TOKEN and not any(TOKEN.encode() in data for data in commit.files.values())
    assert snapshot(pipeline_dir) == before


def test_pipeline_push_without_folder_card_writes_one(pipe, fake_hub):
    pipe.push_to_hub("hub-test/fresh", revision="dev")
    card = ModelCard(fake_hub.commits[-1].files["README.md"].decode())
    assert card.data.library_name == "pdiff_hub" and "p-diff" in card.data.tags
    assert 'PDiffPipeline.from_pretrained("hub-test/fresh")' in card.text
    assert fake_hub.branches == [("hub-test/fresh", "dev")] and fake_hub.commits[-1].revision == "dev"
    pipe.push_to_hub("hub-test/fresh", model_card=PIPELINE_CARD)
    assert fake_hub.commits[-1].files["README.md"].decode() == PIPELINE_CARD
    assert "args.yaml" not in fake_hub.commits[-1].files


def test_pipeline_round_trip_through_the_hub(loopback_hub, pipe, pipeline_dir, fake_hub, tmp_path):
    PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/pipeline")
    loopback_hub.add_repo("hub-test/pipeline", materialize(fake_hub.commits[-1], tmp_path))
    loaded = PDiffPipeline.from_pretrained("hub-test/pipeline", revision="main")
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(generate(loaded, seed=3).parameters, generate(pipe, seed=3).parameters)
    assert (Path(loaded.name_or_path) / "args.yaml").is_file()  # generate.py finds the data recipe


def test_pipeline_repo_missing_a_component_is_named(loopback_hub, pipeline_dir, fake_hub, tmp_path):
    PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/broken")
    commit = fake_hub.commits[-1]
    commit.files = {k: v for k, v in commit.files.items() if not k.startswith("denoiser/")}
    loopback_hub.add_repo("hub-test/broken", materialize(commit, tmp_path))
    with pytest.raises(FileNotFoundError, match="Component 'denoiser' is missing"):
        PDiffPipeline.from_pretrained("hub-test/broken", revision="main")


# ------------------------------------------------------------------------------------------------------------------
# Nothing from the Hub runs unless the user says trust_remote_code=True
# ------------------------------------------------------------------------------------------------------------------


def test_from_pretrained_never_trusts_remote_code(pipeline_dir, monkeypatch):
    seen = []
    original = DiffusionPipeline.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        seen.append(kwargs)
        return original(cls, path, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(spy))
    PDiffPipeline.from_pretrained(pipeline_dir)
    assert seen and not any(kwargs.get("trust_remote_code") for kwargs in seen)
    sources = "\n".join(p.read_text() for p in (ROOT / "src" / "pdiff_hub").rglob("*.py"))
    assert not re.search(r"trust_remote_code\s*=\s*True\s*[,)]", sources)  # as a keyword argument


def test_custom_code_component_runs_only_with_trust_remote_code(loopback_hub, pipeline_dir, fake_hub, tmp_path):
    """A repo whose model_index.json points a component at a ``.py`` file in the repo.

    Without ``trust_remote_code=True`` diffusers refuses to load it (ValueError naming the file) and the code never
    runs; with it, diffusers imports the file (the user's explicit choice) and the code runs.
    """
    PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/custom-code")
    commit = fake_hub.commits[-1]
    marker = tmp_path / "code-ran"
    index = json.loads(commit.files["model_index.json"])
    index["denoiser"] = ["custom_denoiser", "LatentDenoiser"]
    commit.files["model_index.json"] = json.dumps(index).encode()
    commit.files["denoiser/custom_denoiser.py"] = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                                                   "from pdiff_hub import LatentDenoiser\n").encode()
    loopback_hub.add_repo("hub-test/custom-code", materialize(commit, tmp_path / "repo"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        PDiffPipeline.from_pretrained("hub-test/custom-code", revision="main")
    assert not marker.exists()
    PDiffPipeline.from_pretrained("hub-test/custom-code", revision="main", trust_remote_code=True)
    assert marker.read_text() == "ran"


# ------------------------------------------------------------------------------------------------------------------
# (b) parameter datasets
# ------------------------------------------------------------------------------------------------------------------


def test_parameter_dataset_push_and_round_trip(loopback_hub, params_dir, fake_hub, tmp_path):
    folder, vectors = params_dir
    before = snapshot(folder)
    push_parameter_dataset(folder, "hub-test/params", token=TOKEN)
    (commit,) = fake_hub.commits
    assert commit.repo_type == "dataset" and fake_hub.repos[0]["repo_type"] == "dataset"
    assert set(commit.files) == {"README.md", "args.yaml", "target/config.json",
                                 "target/diffusion_pytorch_model.safetensors", "dataset/data-00000-of-00001.arrow",
                                 "dataset/dataset_info.json", "dataset/state.json"}
    card = RepoCard(commit.files["README.md"].decode())
    assert card.data.configs == [{"config_name": "default",
                                  "data_files": [{"split": "train", "path": "dataset/data-*.arrow"}]}]
    assert card.data.library_name == "pdiff_hub" and "# Tiny parameters" in card.text
    assert not any(TOKEN.encode() in data for data in commit.files.values())
    assert snapshot(folder) == before  # the card was changed in the commit only

    loopback_hub.add_repo("hub-test/params", materialize(commit, tmp_path), repo_type="dataset")
    loaded = ParameterDataset.load("hub-test/params", revision="main")
    assert torch.equal(loaded.vectors, vectors.float())
    table = datasets.load_dataset("hub-test/params", revision="main")["train"]
    assert torch.equal(torch.from_numpy(table.with_format("numpy")[:]["parameters"]), vectors.float())


def test_parameter_dataset_push_needs_a_card(params_dir, fake_hub, tmp_path):
    folder, _ = params_dir
    params = ParameterDataset.load(folder)
    with pytest.raises(FileNotFoundError, match="pass card="):
        push_parameter_dataset(params, "hub-test/params")
    push_parameter_dataset(params, "hub-test/params", card="---\ntags:\n- p-diff\n---\n\n# Card\n")
    assert "README.md" in fake_hub.commits[-1].files
    push_parameter_dataset(params, "hub-test/params", card="no header")  # a card without metadata gets one
    assert RepoCard(fake_hub.commits[-1].files["README.md"].decode()).data.configs
    with pytest.raises(FileNotFoundError, match="no README.md"):
        push_folder_to_hub(folder / "target", "hub-test/no-card")
    assert len(fake_hub.repos) == 2  # the refused push never reached the Hub


# ------------------------------------------------------------------------------------------------------------------
# (c) generated models, scripts/generate.py
# ------------------------------------------------------------------------------------------------------------------


def test_generate_selects_by_validation_and_records_everything(generated):
    summary, val = generated.summary, torch.tensor(generated.summary["val_accuracy"])
    chosen = torch.sort(val, descending=True, stable=True).indices[:2].tolist()
    assert sorted(p.name for p in generated.out.iterdir()) == sorted(["generation.json",
                                                                      *(f"sample-{i}" for i in chosen)])
    assert not [p for p in generated.out.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    assert [s["index"] for s in summary["samples"]] == chosen and [s["rank"] for s in summary["samples"]] == [1, 2]
    assert (summary["seed"], summary["num_inference_steps"], summary["scheduler"]) == (0, 2, "DDIMScheduler")
    assert len(summary["test_accuracy"]) == 4 and summary["data"] == DATA

    # the recorded test accuracy is that of the exported files, run as a plain timm model
    test = load_image_dataset("digits", val_size=200, seed=0)["test"]
    images, labels = dataset_to_tensors(test, image_size=32, in_chans=1)
    for sample in summary["samples"]:
        model = timm.create_model(f"local-dir:{generated.out / sample['folder']}", pretrained=True).eval()
        with torch.no_grad():
            accuracy = 100.0 * (model(images).argmax(1) == labels).float().mean().item()
        assert accuracy == pytest.approx(sample["test_accuracy"], abs=1e-4)


def test_generate_pushes_one_repo_per_sample(generated):
    samples = generated.summary["samples"]
    assert [c.repo_id for c in generated.hub.commits] == [f"hub-test/generated-sample-{s['index']}" for s in samples]
    commits = generated.hub.commits
    assert generated.urls == [f"https://hub.test/{c.repo_id}/commit/{n + 1}" for n, c in enumerate(commits)]
    for commit, sample in zip(generated.hub.commits, samples):
        assert set(commit.files) == {"README.md", "config.json", "model.safetensors"}
        assert commit.files == snapshot(generated.out / sample["folder"])
        card = ModelCard(commit.files["README.md"].decode())
        assert card.data.library_name == "timm"
        assert card.data.tags == ["image-classification", "timm", "p-diff", "generated-weights"]
        (result,) = card.data.eval_results
        assert (result.metric_type, result.dataset_split) == ("accuracy", "test")
        assert result.metric_value == round(sample["test_accuracy"], 2)
        assert f'"hf-hub:{commit.repo_id}"' in card.text and f"seed {sample['seed']}" in card.text
        config = json.loads(commit.files["config.json"])
        assert config["architecture"] == "test_resnet" and config["model_args"]["in_chans"] == 1
        assert config["pretrained_cfg"]["input_size"] == [1, 32, 32] and config["pretrained_cfg"]["mean"] == [0.5]
        assert config["label_names"] == [str(i) for i in range(10)]


def test_generated_model_loads_with_plain_timm_from_the_hub(loopback_hub, generated, tmp_path):
    commit = generated.hub.commits[0]
    index = generated.summary["samples"][0]["index"]
    loopback_hub.add_repo(commit.repo_id, materialize(commit, tmp_path / "repo"))
    images = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    save_file({"images": images}, tmp_path / "images.safetensors")
    code = textwrap.dedent("""
        import json, sys
        sys.modules["pdiff_hub"] = None  # importing pdiff_hub now fails: timm must do without it
        import timm, torch
        from safetensors.torch import load_file, save_file
        repo, images, logits = sys.argv[1:]
        model = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()
        with torch.no_grad():
            save_file({"logits": model(load_file(images)["images"])}, logits)
        print(json.dumps(timm.data.resolve_data_config({}, model=model)))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-c", code, commit.repo_id, str(tmp_path / "images.safetensors"),
                           str(tmp_path / "logits.safetensors")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data_config = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data_config["input_size"] == [1, 32, 32] and data_config["mean"] == [0.5] and data_config["std"] == [0.5]
    # A fresh copy: the frozen tensors build_model shares with the loaded target sit at other memory alignments,
    # which makes the CPU kernels round differently (differences of ~1e-8); timm's own model owns fresh tensors.
    model = copy.deepcopy(generated.target.build_model(generated.vectors[index]))
    with torch.no_grad():
        expected = model(images)
    assert torch.equal(load_file(tmp_path / "logits.safetensors")["logits"], expected)


def test_export_of_a_pdiff_network_says_how_to_load_it(tmp_path):
    target = tiny_target("pdiff_mlp", ["*"], img_size=32, hidden=8)
    record = GenerationRecord(pipeline="org/pipe", revision=None, seed=0, num_models=1, index=0,
                              num_inference_steps=2, scheduler="DDIMScheduler", dataset="digits", val_accuracy=10.0,
                              test_accuracy=9.5, val_size=200, test_size=360, rank=1)
    folder = export_timm_model(target, target.base_vector(), tmp_path / "mlp", card_values=record)
    card = ModelCard((folder / "README.md").read_text())
    assert "import pdiff_hub" in card.text and "local-dir" not in card.text
    assert 'path_of_this_folder + "/model.safetensors"' in card.text
    assert card.data.datasets is None  # digits has no Hub repo
    with pytest.raises(FileExistsError):
        export_timm_model(target, target.base_vector(), folder, card_values=record)


def test_generate_without_recipe_needs_the_dataset(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipeline")
    with pytest.raises(SystemExit, match="pass --dataset"):
        run_generate(["--pipeline", str(tmp_path / "pipeline"), "--num_models", "1", "--export_dir",
                      str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------------------
# (e) failures
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step, error, reason", [
    ("create_commit", lambda: http_error(403, 'You don\'t have the rights to create a model under "hub-test"'),
     "HTTP 403 .*rights.*write access"),
    ("create_repo", lambda: sys.modules[HubResponse.__module__.split(".")[0]].ConnectError("Connection refused"),
     "the Hub at .* could not be reached"),
])
def test_failed_upload_says_why_and_leaves_the_folder(params_dir, fake_hub, step, error, reason):
    folder, _ = params_dir
    before = snapshot(folder)
    fake_hub.fail_on, fake_hub.error = step, error()
    with pytest.raises(HubUploadError, match=f"the dataset repo 'hub-test/fail' failed: {reason}") as info:
        push_parameter_dataset(folder, "hub-test/fail", token=TOKEN)
    assert str(folder) in str(info.value) and "unchanged" in str(info.value) and TOKEN not in str(info.value)
    assert snapshot(folder) == before and not fake_hub.commits


def test_token_in_a_file_is_never_uploaded(params_dir, fake_hub, tmp_path):
    folder = tmp_path / "leaky"
    folder.mkdir()
    (folder / "README.md").write_text("---\ntags:\n- p-diff\n---\n")
    (folder / "args.yaml").write_text(f"hub_token: {TOKEN}\n")
    with pytest.raises(ValueError, match="args.yaml contains your Hugging Face token") as info:
        push_folder_to_hub(folder, "hub-test/leaky", "model", token=TOKEN)
    assert TOKEN not in str(info.value) and not fake_hub.repos
