"""Generated transformers classifiers exported as plain transformers repos: files, cards, pushes, loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
import yaml
from diffusers import DDIMScheduler
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageClassification, ViTForImageClassification

from pdiff_hub import PDiffPipeline
from pdiff_hub.hub import GenerationRecord, export_timm_model
from pdiff_hub.hub.export_transformers import export_transformers_model

from ..components import tiny_pipeline, tiny_target, tiny_transformers_target
from .fakes import DATA, FakeHub, materialize, snapshot
from .test_export import run_generate

RECORD = GenerationRecord(pipeline="org/pipe", revision=None, seed=0, num_models=1, index=0, num_inference_steps=2,
                          scheduler="DDIMScheduler", dataset="digits", val_accuracy=12.5, test_accuracy=11.25,
                          val_size=200, test_size=360, rank=1)
IMAGES = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A tiny ViT pipeline saved as scripts/train.py leaves it; scripts/generate.py exports and pushes its best 2."""
    folder = tmp_path_factory.mktemp("vit-pipeline")
    pipe = tiny_pipeline(tiny_transformers_target())
    pipe.save_pretrained(folder)
    (folder / "args.yaml").write_text(yaml.safe_dump({"name": "tiny-vit", "data": {**DATA, "image_size": 8}}))
    out = tmp_path_factory.mktemp("vit-generated") / "export"
    with pytest.MonkeyPatch.context() as mp:
        hub = FakeHub().install(mp)
        run_generate(["--pipeline", str(folder), "--num_models", "3", "--num_inference_steps", "2", "--select", "2",
                      "--seed", "0", "--export_dir", str(out), "--push_to_hub", "--hub_model_id", "hub-test/vit"])
    loaded = PDiffPipeline.from_pretrained(folder)
    loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
    loaded.set_progress_bar_config(disable=True)
    vectors = loaded(num_models=3, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                     output_type="pt").parameters
    return SimpleNamespace(out=out, hub=hub, vectors=vectors, target=loaded.target,
                           summary=json.loads((out / "generation.json").read_text()))


def test_generate_exports_plain_transformers_repos_with_their_cards(generated):
    samples = generated.summary["samples"]
    assert [c.repo_id for c in generated.hub.commits] == [f"hub-test/vit-sample-{s['index']}" for s in samples]
    for commit, sample in zip(generated.hub.commits, samples):
        assert set(commit.files) == {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"}
        assert commit.files == snapshot(generated.out / sample["folder"])
        card = ModelCard(commit.files["README.md"].decode())
        assert card.data.library_name == "transformers"
        assert card.data.tags == ["image-classification", "transformers", "p-diff", "generated-weights"]
        assert card.data.eval_results[0].metric_value == round(sample["test_accuracy"], 2)
        assert f'from_pretrained("{commit.repo_id}")' in card.text and "ViTForImageClassification" in card.text
        config = json.loads(commit.files["config.json"])
        assert config["architectures"] == ["ViTForImageClassification"] and config["num_channels"] == 1
        assert config["id2label"] == {str(i): str(i) for i in range(10)}
        processor = json.loads(commit.files["preprocessor_config.json"])
        assert (processor["image_mean"], processor["size"]) == ([0.5], {"height": 8, "width": 8})
        model = AutoModelForImageClassification.from_pretrained(generated.out / sample["folder"]).eval()
        expected = generated.target.build_model(generated.vectors[sample["index"]])
        with torch.no_grad():
            torch.testing.assert_close(model(pixel_values=IMAGES).logits, expected(IMAGES), rtol=0, atol=1e-6)


def test_each_library_exports_only_its_own_targets(tmp_path):
    vit, timm_target = tiny_transformers_target(), tiny_target()
    with pytest.raises(ValueError, match="transformers classifier; export it with .*export_transformers_model"):
        export_timm_model(vit, vit.base_vector(), tmp_path / "a", card_values=RECORD, mean=0.5, std=0.5)
    with pytest.raises(ValueError, match="timm model; export it with .*export_timm_model"):
        export_transformers_model(timm_target, timm_target.base_vector(), tmp_path / "b", card_values=RECORD,
                                  mean=0.5, std=0.5)
    with pytest.raises(ValueError, match="2 label names for a model with 10 classes"):
        export_transformers_model(vit, vit.base_vector(), tmp_path / "c", card_values=RECORD, mean=0.5, std=0.5,
                                  label_names=["a", "b"])
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_an_exported_folder_holds_the_generated_vector(tmp_path):
    vit = tiny_transformers_target()
    vector = vit.base_vector() + 0.25
    folder = export_transformers_model(vit, vector, tmp_path / "vit", card_values=RECORD, mean=0.5, std=0.5)
    model = ViTForImageClassification.from_pretrained(folder)
    assert torch.equal(vit.layout.flatten(dict(model.named_parameters())), vector)
    assert "Every parameter" not in (folder / "README.md").read_text()


@pytest.mark.slow  # starts the loopback Hub's server process and a Python process without pdiff_hub
def test_a_generated_transformers_model_loads_from_the_hub_without_pdiff_hub(loopback_hub, generated, tmp_path):
    commit = generated.hub.commits[0]
    index = generated.summary["samples"][0]["index"]
    loopback_hub.add_repo(commit.repo_id, materialize(commit, tmp_path / "repo"))
    save_file({"images": IMAGES}, tmp_path / "images.safetensors")
    code = textwrap.dedent("""
        import sys
        sys.modules["pdiff_hub"] = None  # importing pdiff_hub now fails: transformers must do without it
        import torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForImageClassification
        repo, images, logits = sys.argv[1:]
        model = AutoModelForImageClassification.from_pretrained(repo).eval()
        with torch.no_grad():
            save_file({"logits": model(pixel_values=load_file(images)["images"]).logits}, logits)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-c", code, commit.repo_id, str(tmp_path / "images.safetensors"),
                           str(tmp_path / "logits.safetensors")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        expected = generated.target.build_model(generated.vectors[index])(IMAGES)
    torch.testing.assert_close(load_file(tmp_path / "logits.safetensors")["logits"], expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # starts the loopback Hub's server process
def test_a_transformers_target_is_built_from_a_hub_id_with_its_weights(loopback_hub, tmp_path):
    from transformers import ViTConfig

    from pdiff_hub import TargetModel

    from ..components import TINY_VIT

    torch.manual_seed(5)
    source = ViTForImageClassification(ViTConfig(**TINY_VIT))
    source.save_pretrained(tmp_path / "source")
    loopback_hub.add_repo("hub-test/tiny-vit-source", tmp_path / "source")
    target = TargetModel("hub-test/tiny-vit-source", {}, ["classifier"], image_size=8, library="transformers")
    with torch.no_grad():
        assert torch.equal(target(IMAGES), source.eval()(pixel_values=IMAGES).logits)  # the repo's weights
    assert target.config.hf_config["hidden_size"] == 16
