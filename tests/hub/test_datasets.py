"""Parameter datasets on the Hub: the commit, the card's ``configs`` entry, and loading back."""

from __future__ import annotations

import dataclasses

import datasets
import pytest
import torch
from huggingface_hub import RepoCard

from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.hub import push_parameter_dataset
from pdiff_hub.hub.datasets import parameter_dataset_card
from pdiff_hub.recipes.config import load_recipe

from .fakes import TOKEN, materialize, snapshot

ARROW_CONFIG = [{"config_name": "default", "data_files": [{"split": "train", "path": "dataset/data-*.arrow"}]}]


def test_push_commits_the_dataset_and_points_the_card_at_its_arrow_files(params_dir, fake_hub):
    folder, _ = params_dir
    before = snapshot(folder)
    push_parameter_dataset(folder, "hub-test/params", token=TOKEN)
    (commit,) = fake_hub.commits
    assert commit.repo_type == "dataset" and fake_hub.repos[0]["repo_type"] == "dataset"
    assert set(commit.files) == {"README.md", "args.yaml", "target/config.json",
                                 "target/diffusion_pytorch_model.safetensors", "dataset/data-00000-of-00001.arrow",
                                 "dataset/dataset_info.json", "dataset/state.json"}
    card = RepoCard(commit.files["README.md"].decode())
    assert card.data.configs == ARROW_CONFIG
    assert card.data.library_name == "pdiff_hub" and "# Tiny parameters" in card.text
    assert snapshot(folder) == before  # the card was changed in the commit only


def test_a_dataset_object_needs_a_card(params_dir, fake_hub, tmp_path):
    folder, _ = params_dir
    params = ParameterDataset.load(folder)
    with pytest.raises(FileNotFoundError, match="pass card="):
        push_parameter_dataset(params, "hub-test/params")
    push_parameter_dataset(params, "hub-test/params", card="no header")  # a card without metadata gets one
    assert RepoCard(fake_hub.commits[-1].files["README.md"].decode()).data.configs == ARROW_CONFIG
    with pytest.raises(FileNotFoundError):
        push_parameter_dataset(tmp_path, "hub-test/empty", card="# Card")  # not a parameter dataset
    assert len(fake_hub.repos) == 1  # the refused pushes never reached the Hub


@pytest.mark.slow  # starts the loopback Hub's server process
def test_round_trip_through_the_hub(loopback_hub, params_dir, fake_hub, tmp_path):
    folder, vectors = params_dir
    push_parameter_dataset(folder, "hub-test/params-round-trip")
    loopback_hub.add_repo("hub-test/params-round-trip", materialize(fake_hub.commits[-1], tmp_path),
                          repo_type="dataset")
    loaded = ParameterDataset.load("hub-test/params-round-trip", revision="main")
    assert torch.equal(loaded.vectors, vectors.float())
    table = datasets.load_dataset("hub-test/params-round-trip", revision="main")["train"]
    assert torch.equal(torch.from_numpy(table.with_format("numpy")[:]["parameters"]), vectors.float())


def test_the_card_says_when_checkpoints_were_scored_on_subsets(params_dir):
    params = ParameterDataset.load(params_dir[0])
    recipe = load_recipe("digits-mlp")
    metrics = {"base_test_accuracy": [90.0], "validation": {"min": 1.0, "mean": 1.0, "median": 1.0, "max": 1.0,
                                                            "std": 0.0}}
    metrics["test"] = metrics["validation"]

    def card(r, **extra):
        return parameter_dataset_card(r, params, {**metrics, **extra}, "cmd", collect_seconds=1.0, machine="m",
                                      repo_hint="x")

    assert "subsets" not in card(recipe)
    cut = dataclasses.replace(recipe, evaluate=dataclasses.replace(recipe.evaluate, val_images=1000, test_images=2000))
    text = " ".join(card(cut, scored_images={"validation": 1000, "test": 2000}).split())
    assert "measured on 1,000 validation and 2,000 test images, seeded random subsets (seed 0;" in text


def test_the_card_of_adapter_checkpoints_says_how_the_base_and_the_adapter_were_trained(params_dir):
    params = ParameterDataset.load(params_dir[0])
    metrics = {"base_test_accuracy": [49.0], "validation": {"min": 1.0, "mean": 1.0, "median": 1.0, "max": 1.0,
                                                            "std": 0.0}}
    metrics["test"] = metrics["validation"]

    def card(name):
        text = parameter_dataset_card(load_recipe(name), params, metrics, "cmd", collect_seconds=1.0, machine="m",
                                      repo_hint="x")
        return " ".join(text.split())

    assert ("LoRA adapter (PEFT): the base network above was trained on classes [0, 1, 2, 3, 4] of digits with the "
            "adapter disabled; the generated parameters are the adapter's (rank 4, alpha 8.0, on q_proj, v_proj; "
            "classifier trained whole), trained on digits for 200 steps") in card("digits-transformers-vit-lora")
    assert "trained on mnist with the adapter disabled" in card("fashion-mnist-resnet18-lora")
    assert "🤗 transformers `ViTForImageClassification` with config values" in card("digits-transformers-vit-lora")
    assert "LoRA" not in card("digits-mlp")
