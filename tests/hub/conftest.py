"""Fixtures of the hub tests: the intercepted Hub, and a pipeline and a parameter dataset as the scripts leave them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table

from ..components import conditional_pipeline, tiny_pipeline, tiny_target
from .fakes import DATA, PIPELINE_CARD, FakeHub, add_clutter


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    return FakeHub().install(monkeypatch)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def pipeline_dir(pipe, tmp_path_factory) -> Path:
    """A pipeline folder as scripts/train.py leaves it: components, card, recipe, metrics, checkpoints and logs."""
    folder = tmp_path_factory.mktemp("pipeline")
    pipe.save_pretrained(folder)
    (folder / "README.md").write_text(PIPELINE_CARD)
    (folder / "args.yaml").write_text(yaml.safe_dump({"name": "tiny", "data": DATA}))
    (folder / "metrics.json").write_text('{"train_seconds": 1.0}')
    add_clutter(folder)
    return folder


@pytest.fixture(scope="module")
def params_dir(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A parameter dataset folder as scripts/collect.py leaves it, and its vectors."""
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


def saved_with_recipe(pipe: PDiffPipeline, folder: Path, name: str) -> Path:
    """``pipe`` saved in ``folder`` as scripts/train.py leaves it, with a recipe ``name`` and the tiny data section."""
    pipe.save_pretrained(folder)
    (folder / "args.yaml").write_text(yaml.safe_dump({"name": name, "data": DATA}))
    return folder


# The tasks a tiny conditional pipeline records: one training task as a code, one held-out task as a 0/1 list.
TRAIN_TASK, HELD_OUT_TASK = "1000000001", "0110010010"


@pytest.fixture(scope="module")
def task_pipe() -> PDiffPipeline:
    """A tiny conditional pipeline of a task family: a 2-way network (its last norms and head generated), a denoiser
    conditioned on 10-bit codes with weights moved off their initial values, and what its conditions mean."""
    target = tiny_target(patterns=["layer4.*.bn*", "fc.*"], num_classes=2)
    return conditional_pipeline(
        target, 10, description="bit i = 1: class i is positive", num_classes=10,
        class_names=[f"digit {i}" for i in range(10)], train_conditions=[TRAIN_TASK],
        held_out_conditions=[[int(b) for b in HELD_OUT_TASK]], split_seed=0)


@pytest.fixture(scope="module")
def task_pipeline_dir(task_pipe, tmp_path_factory) -> Path:
    """The conditional pipeline saved as scripts/train.py leaves it, with its recipe's data section."""
    return saved_with_recipe(task_pipe, tmp_path_factory.mktemp("task-pipeline"), "tiny-tasks")


# What a tiny accuracy-prompted pipeline records (train.accuracy_prompt): its checkpoints' validation accuracies.
ACCURACY_INFO = {"description": "validation accuracy (%) of the checkpoint, standardized with accuracy_mean and "
                                "accuracy_std", "kind": "accuracy", "accuracy_mean": 40.0, "accuracy_std": 5.0,
                 "accuracy_min": 32.5, "accuracy_max": 47.5, "split": "validation"}


@pytest.fixture(scope="module")
def accuracy_pipe() -> PDiffPipeline:
    """A tiny accuracy-prompted pipeline: a denoiser conditioned on one value (the standardized validation accuracy)
    with weights moved off their initial values, and what its condition means."""
    return conditional_pipeline(None, 1, condition_mode="input", **ACCURACY_INFO)


@pytest.fixture(scope="module")
def accuracy_pipeline_dir(accuracy_pipe, tmp_path_factory) -> Path:
    """The accuracy-prompted pipeline saved as scripts/train.py leaves it, with its recipe's data section."""
    return saved_with_recipe(accuracy_pipe, tmp_path_factory.mktemp("accuracy-pipeline"), "tiny-prompted")
