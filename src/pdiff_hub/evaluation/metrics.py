"""The measures of an evaluation: Table 1 statistics, wrong-prediction IoU, distance to the nearest original.

All accuracies are percentages. The similarity measures follow the paper (Wang et al. 2024: IoU of the sets of
samples two models get wrong) and the memorization critique (Zeng et al. 2025: distance to the training set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .result import Distribution, RowStatistics

__all__ = [
    "distribution",
    "max_iou",
    "mean_iou_between",
    "mean_pairwise_iou",
    "nearest_l2",
    "standard_error_of_difference",
    "summarize",
    "wrong_prediction_iou",
]


def summarize(
    acc_test: torch.Tensor | Sequence[float], acc_val: torch.Tensor | Sequence[float] | None = None
) -> RowStatistics:
    """The Table 1 statistics of a set of models' test accuracies (percent).

    Args:
        acc_test: test accuracy of each model.
        acc_val: validation accuracy of each model, in the same order. ``best`` is the test accuracy of the model
            with the highest validation accuracy (the first one among ties); without ``acc_val`` it falls back to
            the highest test accuracy, which flatters every row equally but is selection on the test set.

    Returns:
        ``best``, ``mean``, ``median``, ``std`` (population, ddof=0, so a single model has 0), ``min``, ``max`` and
        the number of models ``n``.
    """
    test = np.asarray(torch.as_tensor(acc_test, dtype=torch.float64).cpu()).reshape(-1)
    if test.size == 0:
        raise ValueError("summarize() needs at least one accuracy")
    if acc_val is None:
        chosen = int(test.argmax())
    else:
        val = np.asarray(torch.as_tensor(acc_val, dtype=torch.float64).cpu()).reshape(-1)
        if val.shape != test.shape:
            raise ValueError(f"{val.size} validation accuracies for {test.size} test accuracies")
        chosen = int(val.argmax())
    return RowStatistics(best=float(test[chosen]), **_statistics(test), n=int(test.size))


def distribution(values: torch.Tensor) -> Distribution:
    """Mean, median, population std, min and max of a tensor's values."""
    return Distribution(**_statistics(np.asarray(values.detach().double().cpu()).reshape(-1)))


def _statistics(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def standard_error_of_difference(a: RowStatistics, b: RowStatistics) -> float | None:
    """Standard error of the difference of two rows' mean accuracies; None if a row has a single model."""
    if a.n < 2 or b.n < 2:
        return None
    # The rows store the population std; the sample variance is std^2 * n / (n - 1).
    return math.sqrt(sum(r.std**2 * r.n / (r.n - 1) / r.n for r in (a, b)))


def wrong_prediction_iou(wrong_a: torch.Tensor, wrong_b: torch.Tensor) -> torch.Tensor:
    """IoU of wrong-prediction sets, |A and B| / |A or B|, for every pair of models (the paper's similarity).

    Computed with one matrix product: the intersections are ``A @ B.T`` and the unions ``|A| + |B| - |A and B|``.
    Two models that get nothing wrong behave identically on the split and have IoU 1.

    Args:
        wrong_a: boolean (M, N): which of N samples each of M models gets wrong.
        wrong_b: boolean (P, N), on the same samples.

    Returns:
        (M, P) float64 IoU matrix.
    """
    if wrong_a.ndim != 2 or wrong_b.ndim != 2 or wrong_a.shape[1] != wrong_b.shape[1]:
        raise ValueError(
            f"Expected (M, N) and (P, N) wrong-prediction masks, got {tuple(wrong_a.shape)} and {tuple(wrong_b.shape)}"
        )
    a, b = wrong_a.float(), wrong_b.to(device=wrong_a.device, dtype=torch.float32)
    # 0/1 products summed in float32 are exact integers for any N below 2**24.
    intersection = (a @ b.T).double()
    union = a.sum(1).double()[:, None] + b.sum(1).double()[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def mean_pairwise_iou(wrong: torch.Tensor) -> float:
    """Mean IoU over all pairs of distinct models of one set (the off-diagonal of its IoU matrix).

    Args:
        wrong: boolean (M, N) wrong-prediction masks, M >= 2.
    """
    m = wrong.shape[0]
    if m < 2:
        raise ValueError(f"Pairwise IoU needs at least 2 models, got {m}")
    iou = wrong_prediction_iou(wrong, wrong)
    return float((iou.sum() - iou.diagonal().sum()) / (m * (m - 1)))


def mean_iou_between(wrong_a: torch.Tensor, wrong_b: torch.Tensor) -> float:
    """Mean IoU over all pairs of one model of ``wrong_a`` and one of ``wrong_b``."""
    return float(wrong_prediction_iou(wrong_a, wrong_b).mean())


def max_iou(wrong: torch.Tensor, reference: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """Each model's highest IoU to any reference model (the paper's max-IoU: near 1 means a copy).

    Args:
        wrong: boolean (M, N) wrong-prediction masks.
        reference: boolean (P, N) masks of the reference models (the originals).
        exclude_self: ``wrong`` is ``reference`` itself: skip each model's IoU with itself.

    Returns:
        (M,) float64.
    """
    iou = wrong_prediction_iou(wrong, reference)
    if exclude_self:
        _check_self(iou, "max_iou")
        iou.fill_diagonal_(-1.0)
    return iou.max(dim=1).values


def nearest_l2(vectors: torch.Tensor, reference: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """L2 distance of each vector to its nearest reference vector (the critique's distance to the training set).

    Collected checkpoints are close to each other relative to their norm (BatchNorm weights near 1 that move by
    1e-3), so distances are taken in float64 after centring on the reference mean: in float32 the
    ``|x|^2 + |y|^2 - 2 x.y`` expansion of ``torch.cdist`` would cancel away the very differences measured.

    Args:
        vectors: (M, D).
        reference: (P, D).
        exclude_self: ``vectors`` is ``reference`` itself: skip each vector's zero distance to itself.

    Returns:
        (M,) float64.
    """
    if vectors.ndim != 2 or reference.ndim != 2 or vectors.shape[1] != reference.shape[1]:
        raise ValueError(f"Expected (M, D) and (P, D) vectors, got {tuple(vectors.shape)} and {tuple(reference.shape)}")
    ref = reference.double()
    center = ref.mean(dim=0)
    distances = torch.cdist(vectors.to(ref.device).double() - center, ref - center)
    if exclude_self:
        _check_self(distances, "nearest_l2")
        distances.fill_diagonal_(float("inf"))
    return distances.min(dim=1).values


def _check_self(matrix: torch.Tensor, what: str) -> None:
    if matrix.shape[0] != matrix.shape[1] or matrix.shape[1] < 2:
        raise ValueError(
            f"{what}(exclude_self=True) compares a set with itself: it needs the same >= 2 rows on "
            f"both sides, got {tuple(matrix.shape)}"
        )
