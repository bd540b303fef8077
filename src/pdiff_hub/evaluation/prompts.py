"""Accuracy-prompted pipelines in the evaluation: the prompts, the models generated for them and their verdicts.

A pipeline trained with ``train.accuracy_prompt`` generates models for a validation accuracy it is prompted with (the
G.pt idea). The evaluation prompts it with ``evaluate.accuracy_prompts`` (by default the checkpoints' recorded
validation accuracy at its median, 90th percentile and maximum) and asks of each prompt's models: do they reach the
accuracy asked for (calibration), how do they compare with the originals, their weight average, the average of
random checkpoints and the per-coordinate Gaussian, and do they meet the goal no published method has reached:
a mean test accuracy beyond the average of ``average_size`` checkpoints at a lower max-IoU to the originals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..data.parameters import ParameterDataset
from ..pipeline import PDiffPipeline
from ..pipeline.pipeline_pdiff import accuracy_conditions, is_accuracy_info
from ..recipes.config import EvaluateConfig
from .generation import generate_parameters
from .result import ENSEMBLE, GAUSSIAN, ORIGINAL, PromptResult, RowStatistics, Similarity, Verdict
from .verdicts import compare_rows

__all__ = ["automatic_prompts", "goal_met", "is_accuracy_prompted", "prompt_results", "prompt_row",
           "prompted_rows", "resolve_prompts"]

AUTOMATIC_PERCENTILES = (50, 90, 100)
"""The percentiles of the checkpoints' validation accuracy prompted when ``evaluate.accuracy_prompts`` is empty."""


def is_accuracy_prompted(pipe: PDiffPipeline) -> bool:
    """Whether the pipeline was trained with ``train.accuracy_prompt`` (its conditions are validation accuracies)."""
    return is_accuracy_info(pipe.condition_info)


def prompt_row(accuracy: float) -> str:
    """The row of the models prompted with ``accuracy`` percent: ``p-diff @ 90.20``."""
    return f"p-diff @ {accuracy:.2f}"


def automatic_prompts(val_accuracy: torch.Tensor | Sequence[float]) -> list[float]:
    """The checkpoints' validation accuracy at its median, 90th percentile and maximum, rounded to 2 decimals, in
    that order, each once."""
    values = np.asarray(val_accuracy, dtype=np.float64)
    prompts = [round(float(np.percentile(values, q)), 2) for q in AUTOMATIC_PERCENTILES]
    return list(dict.fromkeys(prompts))


def resolve_prompts(pipe: PDiffPipeline, params: ParameterDataset, config: EvaluateConfig) -> list[float]:
    """The accuracies an accuracy-prompted pipeline is evaluated at: ``config.accuracy_prompts``, or when empty
    :func:`automatic_prompts` of the checkpoints' recorded validation accuracies (the scale the conditions were
    trained on); ``[]`` for any other pipeline.

    Raises:
        ValueError: for prompts whose rows would share a name, or automatic prompts without recorded accuracies.
    """
    if not is_accuracy_prompted(pipe):
        return []
    if config.accuracy_prompts:
        prompts = [float(a) for a in config.accuracy_prompts]
        names = [prompt_row(a) for a in prompts]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluate.accuracy_prompts {prompts} name the same row twice ({names}); give prompts "
                             "that differ in the first 2 decimals")
        return prompts
    accuracy = params.column("val_accuracy").double()
    if not torch.isfinite(accuracy).all():
        raise ValueError(f"{params.source or 'The parameter dataset'} records no validation accuracy for some "
                         "checkpoints, so there are no automatic prompts; set evaluate.accuracy_prompts")
    return automatic_prompts(accuracy)


def prompted_rows(
    pipe: PDiffPipeline,
    prompts: Sequence[float],
    config: EvaluateConfig,
    progress: bool = True,
    guidance_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``config.num_models`` models per prompt, all generated in one call, from a generator seeded with
    ``config.seed`` (the stream p-diff's row is drawn from, so the first prompt's models start from p-diff's noise).

    Returns:
        :func:`prompt_row` -> (num_models, D) float32, in the order of ``prompts``; ``{}`` without prompts.
    """
    if not prompts:
        return {}
    conditions = accuracy_conditions(pipe.condition_info, list(prompts))
    generated = generate_parameters(pipe, config.num_models, config.num_inference_steps, config.scheduler,
                                    torch.Generator().manual_seed(config.seed), progress, condition=conditions,
                                    guidance_scale=guidance_scale)
    blocks = generated.split(config.num_models)  # condition-major: one block per prompt
    return {prompt_row(a): block for a, block in zip(prompts, blocks)}


def goal_met(versus_average: Verdict) -> bool:
    """The goal: a mean test accuracy beyond the average of checkpoints' (by more than two standard errors of the
    difference) at a lower mean max-IoU to the originals; ``versus_average`` is the prompted models' verdict
    against the average row."""
    return versus_average.mean_beats and versus_average.more_novel


def prompt_results(
    prompts: Sequence[float],
    condition_info: Mapping,
    table: Mapping[str, RowStatistics],
    val_table: Mapping[str, RowStatistics] | None,
    similarity: Similarity,
    average_row: str,
) -> dict[str, PromptResult]:
    """Each prompt's calibration, its verdicts against the originals and the baselines, and the goal.

    Args:
        prompts: the prompted validation accuracies (%), whose rows are in ``table``.
        condition_info: the pipeline's, which standardizes a prompt.
        table: every row's test-accuracy statistics.
        val_table: every row's validation-accuracy statistics, or None without a validation split.
        similarity: every row's similarity to the originals.
        average_row: the average-of-checkpoints baseline's row (``average of 16``).
    """
    references = [row for row in (ORIGINAL, ENSEMBLE, average_row, GAUSSIAN) if row in table]
    mean, std = condition_info["accuracy_mean"], condition_info["accuracy_std"]
    results = {}
    for accuracy in prompts:
        row = prompt_row(accuracy)
        test, val = table[row], val_table[row] if val_table else None
        versus = {ref: compare_rows(test, table[ref], similarity.rows[row], similarity.rows[ref])
                  for ref in references}
        results[row] = PromptResult(
            prompted=float(accuracy),
            condition=(accuracy - mean) / std,
            val_mean=None if val is None else val.mean,
            val_se=None if val is None else standard_error(val),
            val_minus_prompted=None if val is None else val.mean - accuracy,
            test_mean=test.mean,
            test_se=standard_error(test),
            best=test.best,
            mean_max_iou=similarity.rows[row].max_iou.mean,
            versus=versus,
            goal_met=average_row in versus and goal_met(versus[average_row]),
        )
    return results


def standard_error(stats: RowStatistics) -> float | None:
    """The standard error of a row's mean (sample standard deviation over sqrt(n)); None for a single model."""
    if stats.n < 2:
        return None
    return stats.std * math.sqrt(stats.n / (stats.n - 1)) / math.sqrt(stats.n)
