"""Pipelines on the Hub: ``PDiffPipeline.push_to_hub``, ``pdiff_hub.hub.push_pipeline_to_hub``, and loading back.

Uploads are intercepted (tests/hub/fakes.py) and checked file by file; round trips serve the committed files with
the loopback Hub (slow: it starts a server process).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from pdiff_hub import PDiffPipeline, TargetModel
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.hub import HubUploadError, pipeline_card, push_pipeline_to_hub
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict

from ..components import assert_same_up_to_rounding
from .fakes import PIPELINE_CARD, TOKEN, http_error, materialize, snapshot

COMPONENT_FILES = {
    "model_index.json", "pdiff_hub.json", "scheduler/scheduler_config.json",
    *(f"{c}/{f}" for c in ("target", "autoencoder", "denoiser") for f in ("config.json",
                                                                           "diffusion_pytorch_model.safetensors")),
}


def generate(pipe, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return pipe(num_models=4, num_inference_steps=2, generator=generator, output_type="pt")


# ------------------------------------------------------------------------------------------------------------------
# PDiffPipeline.push_to_hub: components, card and recipe in one commit
# ------------------------------------------------------------------------------------------------------------------


def test_push_to_hub_commits_components_card_and_recipe_only(pipeline_dir, fake_hub):
    before = snapshot(pipeline_dir)
    url = PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/pipeline", token=TOKEN)
    (commit,) = fake_hub.commits
    assert url == "https://hub.test/hub-test/pipeline/commit/1"
    assert fake_hub.repos == [{"repo_id": "hub-test/pipeline", "repo_type": "model", "private": False,
                               "exist_ok": True}]
    assert set(commit.files) == {"README.md", "args.yaml", *COMPONENT_FILES}  # no checkpoints, logs, pickles
    assert commit.files["README.md"] == (pipeline_dir / "README.md").read_bytes()  # the training card, not diffusers'
    assert commit.files["args.yaml"] == (pipeline_dir / "args.yaml").read_bytes()
    for path in (p for p in COMPONENT_FILES if p.endswith(".safetensors")):  # saved afresh: the same weights
        assert commit.files[path] == (pipeline_dir / path).read_bytes(), path
    assert commit.token == TOKEN
    assert snapshot(pipeline_dir) == before


def test_push_to_hub_without_folder_card_writes_one(pipe, fake_hub):
    pipe.push_to_hub("hub-test/fresh", revision="dev")
    card = ModelCard(fake_hub.commits[-1].files["README.md"].decode())
    assert card.data.library_name == "pdiff_hub" and "p-diff" in card.data.tags
    assert 'PDiffPipeline.from_pretrained("hub-test/fresh")' in card.text
    assert fake_hub.branches == [("hub-test/fresh", "dev")] and fake_hub.commits[-1].revision == "dev"
    pipe.push_to_hub("hub-test/fresh", model_card=PIPELINE_CARD)
    assert fake_hub.commits[-1].files["README.md"].decode() == PIPELINE_CARD
    assert "args.yaml" not in fake_hub.commits[-1].files


# ------------------------------------------------------------------------------------------------------------------
# push_pipeline_to_hub: the whole training folder, through the hub's checks
# ------------------------------------------------------------------------------------------------------------------


def test_push_pipeline_to_hub_takes_the_run_results_and_checks_the_token(pipeline_dir, fake_hub, tmp_path):
    pipe = PDiffPipeline.from_pretrained(pipeline_dir)
    push_pipeline_to_hub(pipe, "hub-test/full", token=TOKEN)
    (commit,) = fake_hub.commits
    assert set(commit.files) == {"README.md", "args.yaml", "metrics.json", *COMPONENT_FILES}
    assert commit.files["metrics.json"] == (pipeline_dir / "metrics.json").read_bytes()

    with pytest.raises(ValueError, match="README.md contains your Hugging Face token"):
        push_pipeline_to_hub(pipe, "hub-test/full", token=TOKEN, model_card=f"---\ntags: []\n---\n{TOKEN}\n")
    pipe.save_pretrained(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="pass model_card="):
        push_pipeline_to_hub(PDiffPipeline.from_pretrained(tmp_path / "bare"), "hub-test/full")
    assert len(fake_hub.commits) == 1 and len(fake_hub.repos) == 1  # the refused pushes never reached the Hub


def test_push_pipeline_to_hub_failure_says_why(pipeline_dir, fake_hub):
    fake_hub.error = http_error(401, "Invalid credentials")
    with pytest.raises(HubUploadError, match="the model repo 'hub-test/denied' failed: HTTP 401 .*hf auth login"):
        push_pipeline_to_hub(PDiffPipeline.from_pretrained(pipeline_dir), "hub-test/denied")


# ------------------------------------------------------------------------------------------------------------------
# Nothing in a pipeline folder runs unless the user says trust_remote_code=True
# ------------------------------------------------------------------------------------------------------------------


def _with_component(pipe, folder: Path, entry: list[str], files: dict[str, str]) -> Path:
    """Save ``pipe`` to ``folder`` with the denoiser's model_index.json entry replaced by ``entry``."""
    pipe.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["denoiser"] = entry
    (folder / "model_index.json").write_text(json.dumps(index))
    for path, text in files.items():
        (folder / path).write_text(text)
    return folder


def _marker_code(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nfrom pdiff_hub import LatentDenoiser\n"


def test_a_python_file_in_the_folder_is_refused_and_never_runs(pipe, tmp_path):
    marker = tmp_path / "code-ran"
    folder = _with_component(pipe, tmp_path / "pipeline", ["custom_denoiser", "LatentDenoiser"],
                             {"denoiser/custom_denoiser.py": _marker_code(marker)})
    with pytest.raises(ValueError, match="trust_remote_code"):
        PDiffPipeline.from_pretrained(folder)
    assert not marker.exists()
    PDiffPipeline.from_pretrained(folder, trust_remote_code=True)  # the user's explicit choice: now it runs
    assert marker.read_text() == "ran"


def test_a_class_outside_pdiff_hub_and_diffusers_is_refused_and_never_imported(pipe, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "elsewhere.py").write_text(_marker_code(marker))
    monkeypatch.syspath_prepend(tmp_path / "modules")  # importable: only the check stands between it and running
    folder = _with_component(pipe, tmp_path / "pipeline", ["elsewhere", "LatentDenoiser"], {})
    with pytest.raises(ValueError, match="trust_remote_code"):
        PDiffPipeline.from_pretrained(folder)
    assert not marker.exists()


@pytest.mark.slow  # starts the loopback Hub's server process
def test_custom_code_from_the_hub_runs_only_with_trust_remote_code(loopback_hub, pipe, fake_hub, tmp_path):
    """Without ``trust_remote_code=True`` the download is refused and its code never runs; with it, diffusers
    imports the file (the user's explicit choice) and the code runs."""
    marker = tmp_path / "code-ran"
    pipe.push_to_hub("hub-test/custom-code")
    commit = fake_hub.commits[-1]
    index = json.loads(commit.files["model_index.json"])
    index["denoiser"] = ["custom_denoiser", "LatentDenoiser"]
    commit.files["model_index.json"] = json.dumps(index).encode()
    commit.files["denoiser/custom_denoiser.py"] = _marker_code(marker).encode()
    loopback_hub.add_repo("hub-test/custom-code", materialize(commit, tmp_path / "repo"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        PDiffPipeline.from_pretrained("hub-test/custom-code", revision="main")
    assert not marker.exists()
    PDiffPipeline.from_pretrained("hub-test/custom-code", revision="main", trust_remote_code=True)
    assert marker.read_text() == "ran"


# ------------------------------------------------------------------------------------------------------------------
# Round trips through the loopback Hub
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # starts the loopback Hub's server process
def test_pipeline_round_trip_through_the_hub(loopback_hub, pipe, pipeline_dir, fake_hub, tmp_path):
    PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/pipeline")
    loopback_hub.add_repo("hub-test/pipeline", materialize(fake_hub.commits[-1], tmp_path))
    loaded = PDiffPipeline.from_pretrained("hub-test/pipeline", revision="main")
    loaded.set_progress_bar_config(disable=True)
    assert_same_up_to_rounding(generate(loaded, seed=3).parameters, generate(pipe, seed=3).parameters)
    assert (Path(loaded.name_or_path) / "args.yaml").is_file()  # generate.py finds the data recipe


@pytest.mark.slow  # starts the loopback Hub's server process
def test_conditional_pipeline_round_trip_through_the_hub(loopback_hub, task_pipe, task_pipeline_dir, fake_hub,
                                                         tmp_path):
    PDiffPipeline.from_pretrained(task_pipeline_dir).push_to_hub("hub-test/task-pipeline")
    loopback_hub.add_repo("hub-test/task-pipeline", materialize(fake_hub.commits[-1], tmp_path))
    loaded = PDiffPipeline.from_pretrained("hub-test/task-pipeline", revision="main")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.condition_info == task_pipe.condition_info
    codes = [[0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], [1.0] + [0.0] * 9]

    def sample(pipe):
        return pipe(num_models=2, num_inference_steps=2, condition=codes, guidance_scale=2.0, output_type="pt",
                    generator=torch.Generator().manual_seed(3)).parameters

    assert_same_up_to_rounding(sample(loaded), sample(task_pipe))


@pytest.mark.slow  # starts the loopback Hub's server process
def test_pipeline_repo_missing_a_component_is_named(loopback_hub, pipeline_dir, fake_hub, tmp_path):
    PDiffPipeline.from_pretrained(pipeline_dir).push_to_hub("hub-test/broken")
    commit = fake_hub.commits[-1]
    commit.files = {k: v for k, v in commit.files.items() if not k.startswith("denoiser/")}
    loopback_hub.add_repo("hub-test/broken", materialize(commit, tmp_path))
    with pytest.raises(FileNotFoundError, match="Component 'denoiser' is missing"):
        PDiffPipeline.from_pretrained("hub-test/broken", revision="main")


# ------------------------------------------------------------------------------------------------------------------
# pipeline_card: what an accuracy-prompted pipeline's card says about its prompt
# ------------------------------------------------------------------------------------------------------------------


def _card_inputs(accuracy_prompt: bool):
    values = load_recipe("digits-mlp").to_dict()
    values["train"]["accuracy_prompt"] = accuracy_prompt
    recipe = recipe_from_dict(values)
    target = TargetModel(recipe.target.model_name, recipe.target.model_kwargs, recipe.target.param_patterns,
                         image_size=recipe.data.image_size)
    vectors = target.base_vector() + 0.01 * torch.randn(4, target.layout.num_params)
    rows = [{"step": i, "seed": 0, "lr": 1e-3, "val_accuracy": a, "test_accuracy": a}
            for i, a in enumerate([88.5, 90.0, 91.5, 90.0])]
    return recipe, ParameterDataset(build_parameter_table(vectors, rows), target)


def _card(accuracy_prompt: bool) -> str:
    recipe, params = _card_inputs(accuracy_prompt)
    metrics = {"final_losses": {"autoencoder": 0.1, "diffusion": 0.2}, "train_seconds": 1.0}
    return pipeline_card(recipe, params, metrics, "python scripts/train.py", param_dataset="runs/params",
                         repo_id="org/acc")


def test_an_accuracy_prompted_pipeline_card_says_what_its_prompt_means():
    card = ModelCard(_card(accuracy_prompt=True))
    assert "accuracy-prompted" in card.data.tags
    text = " ".join(card.text.split())
    # mean 90, population std sqrt(1.125) = 1.061; the checkpoints' range 88.5 to 91.5
    assert ("Each of the 4 collected checkpoints was shown to it with its own validation accuracy (88.50% to 91.50%), "
            "standardized as `(accuracy - 90) / 1.061`") in text
    assert "out = pipe(num_models=10, accuracy=91.5)" in text
    assert "out = pipe(num_models=10, accuracy=[90.0, 91.5], guidance_scale=1.5)" in text
    assert "python scripts/generate.py --pipeline org/acc --accuracy 91.5 --export_dir OUT" in text
    assert "**Prompts outside 88.50% to 91.50% are extrapolation**" in text
    assert "Without `accuracy=` it samples unconditionally (the null condition)" in text
    assert "Condition: the checkpoint's standardized validation accuracy (`train.accuracy_prompt`), mode" in text
    assert "{{" not in text and "task" not in text


def test_an_unconditional_pipeline_card_says_nothing_of_prompts():
    card = ModelCard(_card(accuracy_prompt=False))
    assert "accuracy-prompted" not in card.data.tags
    assert "accuracy=" not in card.text and "Condition:" not in card.text and "Conditional" not in card.text


@pytest.mark.parametrize("autoencoder, saturated, says", [
    ({}, 0.995, "Latent values of the checkpoints saturated at +-1 (`tanh` bound, |z| > 0.99): 99.5%: the latents are "
                "+-1 codes"),
    ({"bound_latent": False, "latent_norm": "layer", "standardize_latents": True}, 0.0,
     "latent: normalized per model (zero mean, unit RMS), standardized per coordinate over the checkpoints for the "
     "denoiser;"),
    ({"bound_latent": False, "latent_kl": 0.01, "latent_noise": 0.0}, 0.0, "latent: variational (KL weight 0.01);"),
])
def test_the_card_says_which_latent_and_how_saturated(autoencoder, saturated, says):
    recipe, params = _card_inputs(False)
    values = recipe.to_dict()
    values["autoencoder"].update(autoencoder)
    metrics = {"final_losses": {"autoencoder": 0.1}, "train_seconds": 1.0, "saturated_latent_fraction": saturated}
    card = pipeline_card(recipe_from_dict(values), params, metrics, "train", param_dataset="p", repo_id="org/x")
    text = " ".join(card.split())
    assert says in text
    assert ("the latents are +-1 codes" in text) == (saturated > 0.5)


def test_a_lora_pipeline_card_says_its_models_are_adapters_of_a_transformers_network():
    recipe = load_recipe("digits-transformers-vit-lora")
    target = TargetModel(**recipe.target_kwargs())
    vectors = target.base_vector() + 0.01 * torch.randn(4, target.layout.num_params)
    rows = [{"step": i, "seed": 0, "lr": 1e-3, "val_accuracy": 80.0, "test_accuracy": 80.0} for i in range(4)]
    params = ParameterDataset(build_parameter_table(vectors, rows), target)
    metrics = {"final_losses": {"autoencoder": 0.1, "diffusion": 0.2}, "train_seconds": 1.0}
    text = " ".join(pipeline_card(recipe, params, metrics, "python scripts/train.py", param_dataset="runs/params",
                                  repo_id="org/lora").split())
    assert "(1354 values) of a transformers `ViTForImageClassification`" in text
    assert ("The generated parameters are a PEFT LoRA adapter's (rank 4 on q_proj, v_proj, with classifier trained "
            "whole)") in text
    assert "a transformers ViTForImageClassification, ready for images" in text
    assert "PEFT LoRA" not in " ".join(_card(accuracy_prompt=False).split())
