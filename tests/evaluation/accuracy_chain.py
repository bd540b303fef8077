"""A tiny accuracy-prompted pipeline (trained with train.accuracy_prompt, as far as its record goes) and the
checkpoints it belongs to, for the evaluation tests of accuracy prompts."""

from __future__ import annotations

import torch

from pdiff_hub import PDiffPipeline, TargetModel
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table

from ..components import conditional_pipeline
from .helpers import plain_accuracy, seeded

VAL_ACCURACY = [40.0, 42.5, 45.0, 47.5, 50.0, 52.5, 55.0, 57.5, 60.0, 62.5, 65.0, 70.0]
"""The recorded validation accuracies: median 53.75, 90th percentile 64.75, maximum 70."""


def accuracy_params(target: TargetModel, accuracy=VAL_ACCURACY, test_split=None) -> ParameterDataset:
    """Checkpoints scattered around the target's own parameters, recorded with ``accuracy`` as validation accuracy;
    with ``test_split``, their recorded test accuracy is the true one."""
    base = target.base_vector()
    vectors = base + 0.2 * torch.randn(len(accuracy), base.numel(), generator=seeded(0))
    test = torch.zeros(len(accuracy)) if test_split is None else plain_accuracy(target, vectors, *test_split)
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": a, "test_accuracy": float(test[i])}
            for i, a in enumerate(accuracy)]
    return ParameterDataset(build_parameter_table(vectors, rows), target)


def accuracy_info(params: ParameterDataset) -> dict:
    """The condition_info train.accuracy_prompt records (see pdiff_hub.training.conditions)."""
    accuracy = params.column("val_accuracy").double()
    return {"description": "validation accuracy (%) of the checkpoint, standardized with accuracy_mean and "
                           "accuracy_std", "kind": "accuracy", "accuracy_mean": accuracy.mean().item(),
            "accuracy_std": accuracy.std(correction=0).item(), "accuracy_min": accuracy.min().item(),
            "accuracy_max": accuracy.max().item(), "split": "validation"}


def accuracy_pipeline(target: TargetModel, params: ParameterDataset) -> PDiffPipeline:
    """The tiny pipeline with a 1-value condition, its denoiser's weights moved off their initial values as training
    would, so that the condition changes what it generates."""
    pipe = conditional_pipeline(target, 1, scale=0.3, condition_mode="input", **accuracy_info(params))
    pipe.autoencoder.fit_normalization(params.vectors)
    return pipe
