"""Generated LoRA adapters exported as PEFT adapter folders beside their base network: files, cards, pushes, loading."""

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
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageClassification

from pdiff_hub import PDiffPipeline
from pdiff_hub.hub.export_adapter import export_base_network, export_lora_adapter

from ..components import tiny_lora_target, tiny_pipeline, tiny_transformers_target
from .fakes import DATA, FakeHub, materialize, snapshot
from .test_export import run_generate
from .test_export_transformers import IMAGES, RECORD


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A tiny LoRA pipeline saved as scripts/train.py leaves it; scripts/generate.py exports and pushes its best 2."""
    folder = tmp_path_factory.mktemp("lora-pipeline")
    pipe = tiny_pipeline(tiny_lora_target())
    pipe.save_pretrained(folder)
    (folder / "args.yaml").write_text(yaml.safe_dump({"name": "tiny-lora", "data": {**DATA, "image_size": 8}}))
    out = tmp_path_factory.mktemp("lora-generated") / "export"
    with pytest.MonkeyPatch.context() as mp:
        hub = FakeHub().install(mp)
        urls = run_generate(["--pipeline", str(folder), "--num_models", "3", "--num_inference_steps", "2",
                             "--select", "2", "--seed", "0", "--export_dir", str(out), "--push_to_hub",
                             "--hub_model_id", "hub-test/lora"])
    loaded = PDiffPipeline.from_pretrained(folder)
    loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
    loaded.set_progress_bar_config(disable=True)
    vectors = loaded(num_models=3, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                     output_type="pt").parameters
    return SimpleNamespace(out=out, hub=hub, urls=urls, vectors=vectors, target=loaded.target,
                           summary=json.loads((out / "generation.json").read_text()))


def test_generate_pushes_the_base_then_one_adapter_repo_per_sample(generated):
    samples = generated.summary["samples"]
    base, *adapters = generated.hub.commits
    assert base.repo_id == "hub-test/lora-base" and set(base.files) == {"README.md", "config.json", "model.safetensors"}
    assert [c.repo_id for c in adapters] == [f"hub-test/lora-sample-{s['index']}" for s in samples]
    assert len(generated.urls) == 3
    for commit, sample in zip(adapters, samples):
        assert set(commit.files) == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
        assert commit.files == snapshot(generated.out / sample["folder"])
        config = json.loads(commit.files["adapter_config.json"])
        assert config["base_model_name_or_path"] == "hub-test/lora-base" and config["r"] == 2
        card = ModelCard(commit.files["README.md"].decode())
        assert card.data.library_name == "peft" and "lora" in card.data.tags
        assert card.data.eval_results[0].metric_value == round(sample["test_accuracy"], 2)
        assert "hub-test/lora-base" in card.text and "q_proj, v_proj" in card.text


def test_an_exported_adapter_loads_onto_the_exported_base_with_peft(generated):
    base = AutoModelForImageClassification.from_pretrained(generated.out / "base")
    sample = generated.summary["samples"][0]
    model = PeftModel.from_pretrained(base, generated.out / sample["folder"]).eval()
    expected = generated.target.build_model(generated.vectors[sample["index"]])
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=IMAGES).logits, expected(IMAGES), rtol=0, atol=1e-6)


def test_only_adapter_targets_export_adapters(tmp_path):
    vit = tiny_transformers_target()
    with pytest.raises(ValueError, match="has no LoRA adapter"):
        export_lora_adapter(vit, vit.base_vector(), tmp_path / "a", card_values=RECORD, base_reference="../base",
                            mean=0.5, std=0.5)
    with pytest.raises(ValueError, match="has no LoRA adapter"):
        export_base_network(vit, tmp_path / "b", pipeline="org/pipe")
    assert not any(tmp_path.iterdir())


def test_a_timm_base_and_its_adapter_load_without_pdiff_hub_helpers(tmp_path):
    import timm

    from pdiff_hub import TargetModel

    torch.manual_seed(0)
    target = TargetModel("test_resnet", {"num_classes": 10, "in_chans": 1}, ["*"], image_size=32,
                         adapter={"r": 2, "target_modules": ["fc"]})
    vector = target.base_vector() + 0.3
    export_base_network(target, tmp_path / "base", pipeline="org/pipe")
    export_lora_adapter(target, vector, tmp_path / "adapter", card_values=RECORD, base_reference="../base", mean=0.5,
                        std=0.5)
    base = timm.create_model(f"local-dir:{tmp_path / 'base'}", pretrained=True)
    model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    images = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(images), target.build_model(vector)(images))
    assert 'local-dir:../base' in (tmp_path / "adapter" / "README.md").read_text()


@pytest.mark.slow  # starts the loopback Hub's server process and a Python process without pdiff_hub
def test_a_generated_adapter_loads_from_the_hub_without_pdiff_hub(loopback_hub, generated, tmp_path):
    base, adapter = generated.hub.commits[0], generated.hub.commits[1]
    index = generated.summary["samples"][0]["index"]
    for commit in (base, adapter):
        loopback_hub.add_repo(commit.repo_id, materialize(commit, tmp_path / commit.repo_id.split("/")[1]))
    save_file({"images": IMAGES}, tmp_path / "images.safetensors")
    code = textwrap.dedent("""
        import sys
        sys.modules["pdiff_hub"] = None  # importing pdiff_hub now fails: transformers and peft must do without it
        import torch
        from peft import PeftConfig, PeftModel
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForImageClassification
        repo, images, logits = sys.argv[1:]
        base = AutoModelForImageClassification.from_pretrained(PeftConfig.from_pretrained(repo).base_model_name_or_path)
        model = PeftModel.from_pretrained(base, repo).eval()
        with torch.no_grad():
            save_file({"logits": model(pixel_values=load_file(images)["images"]).logits}, logits)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-c", code, adapter.repo_id, str(tmp_path / "images.safetensors"),
                           str(tmp_path / "logits.safetensors")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        expected = generated.target.build_model(generated.vectors[index])(IMAGES)
    torch.testing.assert_close(load_file(tmp_path / "logits.safetensors")["logits"], expected, rtol=0, atol=1e-6)
