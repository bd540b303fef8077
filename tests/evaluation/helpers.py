"""A tiny, seeded evaluation chain: a parameter dataset around a tiny target, and hand-built results."""

from __future__ import annotations

import torch

from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.evaluation.result import (
    Checks,
    Distribution,
    EvaluationResult,
    PerModel,
    RowSimilarity,
    RowStatistics,
    Setup,
    Similarity,
    Verdict,
)
from pdiff_hub.models.target import TargetModel


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def plain_accuracy(target: TargetModel, vectors: torch.Tensor, images: torch.Tensor, labels: torch.Tensor):
    """Each vector's accuracy (percent) by a plain forward pass of a model built from it: no engine involved."""
    with torch.no_grad():
        return torch.tensor([100.0 * (target.build_model(v).eval()(images).argmax(1) == labels).double().mean().item()
                             for v in vectors], dtype=torch.float64)


def make_params(target: TargetModel, num: int = 12, seed: int = 0, test_split=None) -> ParameterDataset:
    """``num`` checkpoints scattered around the target's own parameters; with ``test_split``, their recorded test
    accuracy is the true one, by a plain forward pass."""
    base = target.base_vector()
    vectors = base + 0.2 * torch.randn(num, base.numel(), generator=seeded(seed))
    test = torch.zeros(num) if test_split is None else plain_accuracy(target, vectors, *test_split)
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 0.0, "test_accuracy": float(test[i])}
            for i in range(num)]
    return ParameterDataset(build_parameter_table(vectors, rows), target)


def statistics(mean: float, std: float = 1.0, n: int = 5, best: float | None = None) -> RowStatistics:
    best = mean if best is None else best
    return RowStatistics(best=best, mean=mean, median=mean, std=std, min=mean - std, max=mean + std, n=n)


def similarity(max_iou: float) -> RowSimilarity:
    spread = Distribution(mean=max_iou, median=max_iou, std=0.0, min=max_iou, max=max_iou)
    return RowSimilarity(max_iou=spread, nearest_l2=spread, mean_iou_within=0.5, mean_iou_to_originals=0.5)


def hand_built_result(verdict: dict[str, Verdict], *, collapsed: bool = False, gap: float | None = 0.0,
                      mismatch: bool = False) -> EvaluationResult:
    """A result of three rows (original, p-diff and those of ``verdict`` other than original), made by hand."""
    rows = ["original", "p-diff", *(row for row in verdict if row != "original")]
    table = {row: statistics(90.0 + i) for i, row in enumerate(rows)}
    return EvaluationResult(
        setup=Setup(model_name="test_resnet", param_names=["fc.weight", "fc.bias"], num_params=20, num_originals=5,
                    num_models=5, num_inference_steps=2, scheduler="ddim", seed=0, noise_amplitudes=[0.1],
                    average_size=3, split_sizes={"validation": 40, "test": 40},
                    full_split_sizes={"validation": 40, "test": 40}, best_selected_by="validation", rows=rows),
        table=table,
        val_table=table,
        similarity=Similarity(mean_iou_among_originals=0.5, mean_iou_among_generated=0.5, mean_iou_between=0.5,
                              rows={row: similarity(0.25 * (1 + i % 3)) for i, row in enumerate(rows)}),
        verdict=verdict,
        per_model={row: PerModel(test_accuracy=[table[row].mean] * 5, val_accuracy=[table[row].mean] * 5,
                                 max_iou=[0.5] * 5, nearest_l2=[1.0] * 5) for row in rows},
        latents={row: [[float(i), float(j)] for j in range(5)] for i, row in enumerate(rows)},
        checks=Checks(max_recorded_vs_recomputed_test_accuracy=gap, reconstruction_vs_mean_error=0.9 if collapsed
                      else 0.1, latent_std_across_originals=0.2, saturated_latent_fraction=0.0,
                      latent_nearest_original={"original": 1.0, "p-diff": 2.0}, recorded_accuracy_mismatch=mismatch,
                      autoencoder_collapsed=collapsed, latents_identical=False),
        timings={"total_s": 1.0},
    )
