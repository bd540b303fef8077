"""Generated models exported for timm, through ``scripts/generate.py``: selection, files, cards, pushes, loading."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from diffusers import DDIMScheduler
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.images import dataset_to_tensors, load_image_dataset
from pdiff_hub.hub import GenerationRecord, export_timm_model

from ..components import tiny_target
from .fakes import DATA, FakeHub, materialize, snapshot

ROOT = Path(__file__).resolve().parents[2]


def run_generate(argv: list[str]) -> list[str]:
    spec = importlib.util.spec_from_file_location("generate_script", ROOT / "scripts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.parse_args(argv))


@pytest.fixture(scope="module")
def generated(pipeline_dir, tmp_path_factory):
    """scripts/generate.py: 4 models, the top 2 exported and pushed (to the intercepted Hub)."""
    out = tmp_path_factory.mktemp("generated") / "export"
    with pytest.MonkeyPatch.context() as mp:
        hub = FakeHub().install(mp)
        urls = run_generate(["--pipeline", str(pipeline_dir), "--num_models", "4", "--num_inference_steps", "2",
                             "--select", "2", "--seed", "0", "--export_dir", str(out), "--push_to_hub",
                             "--hub_model_id", "hub-test/generated"])
    loaded = PDiffPipeline.from_pretrained(pipeline_dir)
    loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
    loaded.set_progress_bar_config(disable=True)
    vectors = loaded(num_models=4, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                     output_type="pt").parameters
    return SimpleNamespace(out=out, hub=hub, urls=urls, vectors=vectors, target=loaded.target,
                           summary=json.loads((out / "generation.json").read_text()))


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


def test_export_of_a_pdiff_network_says_how_to_load_it(tmp_path):
    target = tiny_target("pdiff_mlp", ["*"], img_size=32, hidden=8)
    record = GenerationRecord(pipeline="org/pipe", revision=None, seed=0, num_models=1, index=0,
                              num_inference_steps=2, scheduler="DDIMScheduler", dataset="digits", val_accuracy=10.0,
                              test_accuracy=9.5, val_size=200, test_size=360, rank=1)
    folder = export_timm_model(target, target.base_vector(), tmp_path / "mlp", card_values=record, mean=0.25, std=2.0)
    card = ModelCard((folder / "README.md").read_text())
    assert "import pdiff_hub" in card.text and "local-dir" not in card.text
    assert 'path_of_this_folder + "/model.safetensors"' in card.text
    assert card.data.datasets is None  # digits has no Hub repo
    pretrained_cfg = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    assert (pretrained_cfg["mean"], pretrained_cfg["std"]) == ([0.25], [2.0])  # the normalization it was measured with
    with pytest.raises(FileExistsError):
        export_timm_model(target, target.base_vector(), folder, card_values=record, mean=0.5, std=0.5)


@pytest.mark.slow  # starts the loopback Hub's server process and a Python process without pdiff_hub
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


def load_generate():
    spec = importlib.util.spec_from_file_location("generate_script", ROOT / "scripts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task_generated(task_pipeline_dir, tmp_path_factory):
    """scripts/generate.py for a task the pipeline held out: 3 models, the top 2 exported."""
    out = tmp_path_factory.mktemp("task-generated") / "export"
    run_generate(["--pipeline", str(task_pipeline_dir), "--condition", "0,1,1,0,0,1,0,0,1,0", "--num_models", "3",
                  "--num_inference_steps", "2", "--guidance_scale", "1.5", "--select", "2", "--seed", "1",
                  "--export_dir", str(out)])
    loaded = PDiffPipeline.from_pretrained(task_pipeline_dir)
    loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
    loaded.set_progress_bar_config(disable=True)
    vectors = loaded(num_models=3, num_inference_steps=2, generator=torch.Generator().manual_seed(1), output_type="pt",
                     condition=[[0, 1, 1, 0, 0, 1, 0, 0, 1, 0]], guidance_scale=1.5).parameters
    return SimpleNamespace(out=out, vectors=vectors, target=loaded.target,
                           summary=json.loads((out / "generation.json").read_text()))


def test_generate_for_a_task_exports_two_way_timm_models_of_that_task(task_generated):
    summary = task_generated.summary
    task = {"code": "0110010010", "positive": ["digit 1", "digit 2", "digit 5", "digit 8"], "status": "held-out",
            "guidance_scale": 1.5, "label_names": ["not digit 1, digit 2, digit 5 or digit 8",
                                                   "digit 1, digit 2, digit 5 or digit 8"]}
    assert summary["condition"] == task and all(s["task"] == task for s in summary["samples"])
    chosen = torch.sort(torch.tensor(summary["val_accuracy"]), descending=True, stable=True).indices[:2].tolist()
    assert [s["index"] for s in summary["samples"]] == chosen

    test = load_image_dataset("digits", val_size=200, seed=0)["test"]
    images, labels = dataset_to_tensors(test, image_size=32, in_chans=1)
    positive = torch.tensor([1, 2, 5, 8])
    task_labels = torch.isin(labels, positive).long()
    for sample in summary["samples"]:
        folder = task_generated.out / sample["folder"]
        config = json.loads((folder / "config.json").read_text())
        assert config["num_classes"] == 2 and config["model_args"]["num_classes"] == 2
        assert config["label_names"] == task["label_names"]
        # plain timm rebuilds the generated network: the same logits, and the recorded accuracy on the task
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        expected = copy.deepcopy(task_generated.target.build_model(task_generated.vectors[sample["index"]])).eval()
        with torch.no_grad():
            logits = model(images)
            assert torch.equal(logits, expected(images))
        accuracy = 100.0 * (logits.argmax(1) == task_labels).float().mean().item()
        assert accuracy == pytest.approx(sample["test_accuracy"], abs=1e-4)

        card = ModelCard((folder / "README.md").read_text())
        assert "task-conditioned" in card.data.tags
        (result,) = card.data.eval_results
        assert (result.dataset_config, result.metric_value) == ("0110010010", round(sample["test_accuracy"], 2))
        text = " ".join(card.text.split())
        assert "# test_resnet generated by p-diff for task 0110010010" in text
        assert ("## Accuracy on task `0110010010` of `digits` Measured on the task's labels: 1 for an image of "
                "digit 1, digit 2, digit 5, digit 8, else 0.") in text
        assert "does the image show one of the classes digit 1, digit 2, digit 5, digit 8?" in text
        assert "This task was held out: no checkpoint of it was ever shown to the pipeline" in text
        assert f"| test | 360 | {sample['test_accuracy']:.2f} |" in text
        assert f"| validation (used to select this model) | 200 | {sample['val_accuracy']:.2f} |" in text
        assert "guidance scale 1.5" in text and "seed 1" in text
        assert "condition=[[0, 1, 1, 0, 0, 1, 0, 0, 1, 0]], guidance_scale=1.5," in text
        assert 'timm.create_model("local-dir:" + path_of_this_folder' in text  # a stock timm model: no pdiff_hub


@pytest.mark.parametrize(("argv", "match"), [
    (["--condition", "0,1,2"], "--condition '0,1,2' is not a task code"),
    (["--condition", "0110", "--condition", "1001"], "--condition is given 2 times; give one task per run"),
    (["--condition", "0110", "--guidance_scale", "nan"], "--guidance_scale nan is not allowed: give a finite number"),
    (["--guidance_scale", "2"], "--guidance_scale needs --condition or --accuracy"),
    (["--accuracy", "90", "--condition", "0110"], "^--accuracy and --condition cannot be combined: --accuracy prompts"),
    (["--accuracy", "90", "--accuracy", "91"], "^--accuracy is given 2 times; give one prompt per run$"),
    (["--accuracy", "190"], "^--accuracy 190.0 is not allowed: give a validation accuracy in percent, from 0 to 100$"),
    (["--accuracy", "nan"], "^--accuracy nan is not allowed"),
])
def test_generate_refuses_a_bad_condition_or_guidance_scale(argv, match):
    with pytest.raises(ValueError, match=match):
        load_generate().parse_args(["--pipeline", "p", "--export_dir", "out", *argv])


@pytest.mark.parametrize(("which", "argv", "match"), [
    ("pipeline_dir", ["--condition", "0110010010"], "--condition needs a conditional pipeline, but --pipeline .* is "
                                                    "unconditional"),
    ("task_pipeline_dir", [], "is a conditional pipeline: give the task to generate models for with --condition"),
    ("task_pipeline_dir", ["--condition", "0110"], "--condition 0110: task code '0110' has 4 characters"),
    ("pipeline_dir", ["--accuracy", "45"], "^--accuracy needs a pipeline trained with train.accuracy_prompt, but "
                                           "--pipeline .* is unconditional: leave --accuracy out$"),
    ("task_pipeline_dir", ["--accuracy", "45"], "^--accuracy needs a pipeline trained with train.accuracy_prompt, "
                                                "but --pipeline .* is conditioned on tasks: give the task with "
                                                "--condition$"),
    ("accuracy_pipeline_dir", ["--condition", "0110010010"], "^--condition names a task, but --pipeline .* is prompted "
                                                             "with a validation accuracy .*: give --accuracy instead"),
])
def test_generate_refuses_a_condition_that_does_not_fit_the_pipeline_before_any_work(request, which, argv, match,
                                                                                   tmp_path):
    with pytest.raises(ValueError, match=match):
        run_generate(["--pipeline", str(request.getfixturevalue(which)), "--export_dir", str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a Python process without pdiff_hub
def test_a_task_model_loads_with_plain_timm_without_pdiff_hub(task_generated, tmp_path):
    sample = task_generated.summary["samples"][0]
    code = textwrap.dedent("""
        import json, sys
        sys.modules["pdiff_hub"] = None  # importing pdiff_hub now fails: timm must do without it
        import timm
        model = timm.create_model("local-dir:" + sys.argv[1], pretrained=True)
        print(json.dumps([model.num_classes, model.pretrained_cfg["label_names"]]))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(task_generated.out / sample["folder"])], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2, sample["task"]["label_names"]]


# ------------------------------------------------------------------------------------------------------------------
# An accuracy-prompted pipeline: --accuracy, and without it the null condition
# ------------------------------------------------------------------------------------------------------------------


def _sample(folder, seed, n, **kwargs) -> torch.Tensor:
    loaded = PDiffPipeline.from_pretrained(folder)
    loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
    loaded.set_progress_bar_config(disable=True)
    return loaded(num_models=n, num_inference_steps=2, generator=torch.Generator().manual_seed(seed), output_type="pt",
                  **kwargs).parameters


def _exported_vector(target, folder: Path) -> torch.Tensor:
    saved = load_file(folder / "model.safetensors")
    return torch.cat([saved[name].reshape(-1) for name in target.layout.names])


def test_generate_for_an_accuracy_prompt_records_it_beside_the_measured_accuracy(accuracy_pipeline_dir, tmp_path,
                                                                                capsys):
    out = tmp_path / "export"
    run_generate(["--pipeline", str(accuracy_pipeline_dir), "--accuracy", "45", "--guidance_scale", "1.5",
                  "--num_models", "3", "--num_inference_steps", "2", "--select", "2", "--seed", "1",
                  "--export_dir", str(out)])
    assert "prompted for 45% validation accuracy (condition 1.000), guidance scale 1.5:" in capsys.readouterr().out
    summary = json.loads((out / "generation.json").read_text())
    val = torch.tensor(summary["val_accuracy"])
    prompt = {"accuracy": 45.0, "condition": 1.0, "guidance_scale": 1.5, "checkpoint_accuracy": [32.5, 47.5],
              "extrapolated": False}
    assert summary["accuracy_prompt"] == {**prompt, "mean_val_accuracy": pytest.approx(val.mean().item())}
    assert "condition" not in summary and all(s["prompt"] == prompt and "task" not in s for s in summary["samples"])
    chosen = torch.sort(val, descending=True, stable=True).indices[:2].tolist()
    assert [s["index"] for s in summary["samples"]] == chosen

    # the exported networks are the ones pipe(accuracy=45, guidance_scale=1.5) makes from the same seed
    vectors = _sample(accuracy_pipeline_dir, 1, 3, accuracy=45.0, guidance_scale=1.5)
    assert not torch.equal(vectors, _sample(accuracy_pipeline_dir, 1, 3, accuracy=35.0, guidance_scale=1.5))
    target = PDiffPipeline.from_pretrained(accuracy_pipeline_dir).target
    for sample in summary["samples"]:
        folder = out / sample["folder"]
        assert torch.equal(_exported_vector(target, folder), vectors[sample["index"]])
        card = ModelCard((folder / "README.md").read_text())
        assert "accuracy-prompted" in card.data.tags and "task-conditioned" not in card.data.tags
        text = " ".join(card.text.split())
        assert text.startswith("# test_resnet generated by p-diff for 45% accuracy (sample-")
        assert ("**The prompt.** The pipeline was asked for a model of 45.0% validation accuracy: the condition 1, "
                "that accuracy standardized") in text
        assert "the checkpoints it was trained on (32.50% to 47.50%), with classifier-free guidance scale 1.5" in text
        assert (f"Prompted 45.0%, measured {sample['val_accuracy']:.2f}% on the validation split "
                f"({sample['val_accuracy'] - 45:+.2f} points).") in text
        assert "extrapolated" not in text
        assert "- Prompt: 45.0% validation accuracy (condition 1), guidance scale 1.5." in text
        assert "accuracy=45.0, guidance_scale=1.5, generator=torch.Generator().manual_seed(1))" in text


def test_an_accuracy_prompt_outside_the_checkpoints_is_called_extrapolation(accuracy_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "export"
    with pytest.warns(UserWarning, match="lies more than 2 standard deviations"):  # the pipeline's own warning, once
        run_generate(["--pipeline", str(accuracy_pipeline_dir), "--accuracy", "60", "--num_models", "2",
                      "--num_inference_steps", "2", "--export_dir", str(out)])
    assert "outside the checkpoints' 32.50-47.50%: extrapolation" in capsys.readouterr().out
    summary = json.loads((out / "generation.json").read_text())
    assert summary["accuracy_prompt"]["extrapolated"] is True
    text = " ".join((out / summary["samples"][0]["folder"] / "README.md").read_text().split())
    assert "The prompt lies outside the checkpoints' accuracies: no checkpoint showed the denoiser such a model" in text


def test_an_accuracy_pipeline_without_a_prompt_samples_unconditionally(accuracy_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "export"
    run_generate(["--pipeline", str(accuracy_pipeline_dir), "--num_models", "2", "--num_inference_steps", "2",
                  "--select", "all", "--export_dir", str(out)])
    assert "no --accuracy: sampled unconditionally (the null condition)" in capsys.readouterr().out
    summary = json.loads((out / "generation.json").read_text())
    assert "accuracy_prompt" not in summary and all("prompt" not in s for s in summary["samples"])
    vectors = _sample(accuracy_pipeline_dir, 0, 2)
    target = PDiffPipeline.from_pretrained(accuracy_pipeline_dir).target
    for sample in summary["samples"]:
        assert torch.equal(_exported_vector(target, out / sample["folder"]), vectors[sample["index"]])
        assert "The prompt" not in (out / sample["folder"] / "README.md").read_text()
