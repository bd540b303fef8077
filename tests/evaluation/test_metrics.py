"""Table 1 statistics, wrong-prediction IoU, nearest L2 and the standard error, against hand-computed cases."""

import math

import pytest
import torch

from pdiff_hub.evaluation.metrics import (
    distribution,
    max_iou,
    mean_iou_between,
    mean_pairwise_iou,
    nearest_l2,
    standard_error_of_difference,
    summarize,
    wrong_prediction_iou,
)
from pdiff_hub.evaluation.result import Distribution, RowStatistics

from .helpers import seeded, statistics

A = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
B = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)


def test_wrong_prediction_iou_on_hand_made_sets():
    # A0 = {0, 1}; B0 = {0, 2}: 1 shared of 3; B2 = A0: 1; two models that get nothing wrong: 1; else 0.
    expected = torch.tensor([[1 / 3, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(wrong_prediction_iou(A, B), expected)
    # B's distinct pairs: (0, 1) 0, (0, 2) 1/3, (1, 2) 0
    assert mean_pairwise_iou(B) == pytest.approx((0 + 1 / 3 + 0) / 3)
    assert mean_iou_between(A, B) == pytest.approx((1 / 3 + 0 + 1 + 0 + 1 + 0) / 6)
    torch.testing.assert_close(max_iou(A, B), torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(max_iou(B, B, exclude_self=True), torch.tensor([1 / 3, 0, 1 / 3], dtype=torch.float64))


def test_wrong_prediction_iou_matches_set_arithmetic():
    a = torch.rand(7, 300, generator=seeded(1)) < 0.2
    b = torch.rand(5, 300, generator=seeded(2)) < 0.3
    iou = wrong_prediction_iou(a, b)
    for i in range(7):
        for j in range(5):
            x, y = set(a[i].nonzero().flatten().tolist()), set(b[j].nonzero().flatten().tolist())
            assert iou[i, j].item() == pytest.approx(len(x & y) / len(x | y))


def test_similarity_shape_errors():
    with pytest.raises(ValueError, match="wrong-prediction"):
        wrong_prediction_iou(A, B[:, :3])
    with pytest.raises(ValueError, match="exclude_self"):
        max_iou(A, B, exclude_self=True)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_iou(A[:1])
    with pytest.raises(ValueError, match="vectors"):
        nearest_l2(torch.zeros(2, 3), torch.zeros(2, 4))


def test_nearest_l2_on_a_constructed_matrix():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    torch.testing.assert_close(nearest_l2(points, points), torch.zeros(3, dtype=torch.float64))
    # (0,0)-(0,1) = 1; (3,4)-(0,1) = sqrt(9 + 9); (0,1)-(0,0) = 1
    torch.testing.assert_close(nearest_l2(points, points, exclude_self=True),
                               torch.tensor([1.0, math.sqrt(18), 1.0], dtype=torch.float64))
    torch.testing.assert_close(nearest_l2(torch.tensor([[0.0, 2.0], [6.0, 8.0]]), points),
                               torch.tensor([1.0, 5.0], dtype=torch.float64))


def test_nearest_l2_resolves_tiny_differences_between_large_vectors():
    # Checkpoints of BatchNorm weights near 1 that differ by 1e-4: float32 cdist would return noise here.
    base = 1.0 + torch.rand(2048, generator=seeded(0))
    offsets = 1e-4 * torch.randn(30, 2048, generator=seeded(1))
    vectors = base + offsets
    expected = torch.cdist(offsets.double(), offsets.double()).fill_diagonal_(float("inf")).min(1).values
    torch.testing.assert_close(nearest_l2(vectors, vectors, exclude_self=True), expected, rtol=1e-3, atol=0)


def test_summarize_picks_best_by_validation():
    stats = summarize([90.0, 91.0, 92.0, 89.0], acc_val=[80.0, 85.0, 70.0, 85.0])
    # highest validation (the first of the tie), not the highest test (92); population std of (+-0.5, +-1.5)
    assert stats == RowStatistics(best=91.0, mean=90.5, median=90.5, std=pytest.approx(math.sqrt(1.25)),
                                  min=89.0, max=92.0, n=4)
    assert summarize(torch.tensor([90.0, 92.0, 91.0])).best == 92.0  # no validation: the highest test accuracy
    assert summarize([93.0]).std == 0.0
    with pytest.raises(ValueError, match="validation"):
        summarize([1.0, 2.0], acc_val=[1.0])
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_distribution_of_a_tensor():
    assert distribution(torch.tensor([4.0, 1.0, 2.0, 1.0])) == Distribution(
        mean=2.0, median=1.5, std=pytest.approx(math.sqrt(1.5)), min=1.0, max=4.0)


def test_standard_error_of_difference_by_hand():
    # Population std 3 over 2 models -> sample variance 3^2 * 2 / 1 = 18, so the mean's variance is 9; likewise 16.
    assert standard_error_of_difference(statistics(90.0, std=3.0, n=2), statistics(80.0, std=4.0, n=2)) == 5.0
    # 5 models of population std 2: sample variance 4 * 5 / 4 = 5, mean's variance 1, for each row.
    assert standard_error_of_difference(statistics(90.0, std=2.0, n=5), statistics(80.0, std=2.0, n=5)) == (
        pytest.approx(math.sqrt(2)))
    assert standard_error_of_difference(statistics(90.0, n=5), statistics(80.0, std=0.0, n=1)) is None
