"""The condition of each checkpoint that a conditional denoiser is trained with, and what the pipeline records of it.

Two kinds: a task family's code (one value per class, from the parameter dataset) and, with
``train.accuracy_prompt``, the checkpoint's validation accuracy standardized over the collected checkpoints
(``(val_accuracy - mean) / std``, one value), the G.pt idea: prompted with an accuracy, the pipeline generates models
of about that accuracy. Any other recipe trains an unconditional denoiser.
"""

from __future__ import annotations

import torch

from ..core.cli import UsageError
from ..data.parameters import ParameterDataset
from ..pipeline.pipeline_pdiff import accuracy_conditions as prompt_conditions
from ..recipes.config import Recipe

__all__ = ["accuracy_condition_info", "accuracy_conditions", "condition_info", "task_condition_info",
           "training_conditions"]

ACCURACY_DESCRIPTION = "validation accuracy (%) of the checkpoint, standardized with accuracy_mean and accuracy_std"


def training_conditions(recipe: Recipe, params: ParameterDataset) -> torch.Tensor | None:
    """Each checkpoint's condition, (K, condition_dim) float32 on the CPU, or None for an unconditional run."""
    if recipe.train.accuracy_prompt:
        return accuracy_conditions(params)
    return params.conditions if params.is_task_family else None


def condition_info(recipe: Recipe, params: ParameterDataset) -> dict | None:
    """What the conditions of :func:`training_conditions` mean, as the pipeline records it; None without them."""
    if recipe.train.accuracy_prompt:
        return accuracy_condition_info(params)
    return task_condition_info(params) if params.is_task_family else None


def accuracy_conditions(params: ParameterDataset) -> torch.Tensor:
    """Each checkpoint's validation accuracy, standardized over the checkpoints: a (K, 1) float32 tensor.

    Raises:
        UsageError: for a task family, non-finite accuracies, or checkpoints that all have the same accuracy.
    """
    # The pipeline's own standardization of prompts, so that training and prompting cannot disagree.
    return prompt_conditions(accuracy_condition_info(params), _validation_accuracy(params).tolist())


def accuracy_condition_info(params: ParameterDataset) -> dict:
    """The pipeline's ``condition_info`` for accuracy prompts: the mean and (population) standard deviation that
    standardize an accuracy in percent, and the range of the checkpoints' accuracies."""
    accuracy = _validation_accuracy(params)
    return {"description": ACCURACY_DESCRIPTION, "kind": "accuracy", "accuracy_mean": accuracy.mean().item(),
            "accuracy_std": accuracy.std(correction=0).item(), "accuracy_min": accuracy.min().item(),
            "accuracy_max": accuracy.max().item(), "split": "validation"}


def task_condition_info(params: ParameterDataset) -> dict:
    """What a task family's conditions mean, as the pipeline records it (``condition_info``)."""
    info, split = params.task_info, params.task_split
    described = {"description": "bit i = 1: class i is a positive class of the binary task",
                 "num_classes": info["num_classes"]}
    if info.get("class_names"):
        described["class_names"] = list(info["class_names"])
    return {**described, "train_conditions": split.train, "held_out_conditions": split.heldout,
            "split_seed": info["seed"]}


def _validation_accuracy(params: ParameterDataset) -> torch.Tensor:
    """The checkpoints' validation accuracies in percent (float64), checked to be usable as prompts."""
    if params.is_task_family:
        raise UsageError("train.accuracy_prompt cannot condition a task family's checkpoints (they are conditioned "
                         "on their task); set train.accuracy_prompt to false or use a parameter dataset of one task")
    accuracy = params.column("val_accuracy").double()
    if not torch.isfinite(accuracy).all():
        raise UsageError("train.accuracy_prompt needs every checkpoint's validation accuracy, but some are not finite; "
                         "collect the checkpoints with data.val_size > 0 or set train.accuracy_prompt to false")
    if accuracy.std(correction=0) == 0:
        raise UsageError(f"train.accuracy_prompt needs checkpoints of different validation accuracies, but all "
                         f"{len(accuracy)} have {accuracy[0].item():g}%; set train.accuracy_prompt to false")
    return accuracy
