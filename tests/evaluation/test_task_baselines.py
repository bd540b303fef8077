"""Non-generative answers for held-out tasks, on synthetic checkpoints whose right answer is known."""

from __future__ import annotations

import pytest
import torch

from pdiff_hub.core.layout import ParameterLayout
from pdiff_hub.data.tasks import sample_task_codes, split_tasks, task_conditions
from pdiff_hub.evaluation.task_baselines import (
    RidgeTaskMap,
    coordinates_of,
    gaussian_of_checkpoints,
    group_by_task,
    nearest_task_average,
    nearest_task_checkpoints,
)

D, C = 12, 4  # values per vector, checkpoints per task


def _linear_family(num_tasks: int = 40, num_classes: int = 6, seed: int = 0):
    """Checkpoints spread around an exact linear function of the code (the spread averages to 0 within a task)."""
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(num_classes, D, generator=g), torch.randn(D, generator=g)
    split = split_tasks(sample_task_codes(num_tasks, num_classes, seed=seed), 8, seed=seed)
    spread = torch.randn(len(split.train), C, D, generator=g)
    spread -= spread.mean(dim=1, keepdim=True)
    vectors = (task_conditions(split.train) @ weight + bias)[:, None] + 0.1 * spread
    tasks = [c for c in split.train for _ in range(C)]
    return vectors.reshape(-1, D), tasks, split, weight, bias


def test_ridge_recovers_an_exact_linear_map_on_heldout_codes():
    vectors, tasks, split, weight, bias = _linear_family()
    ridge = RidgeTaskMap().fit(vectors, tasks)
    predicted = ridge(split.heldout)
    assert predicted.shape == (len(split.heldout), 1, D) and predicted.dtype == torch.float32
    torch.testing.assert_close(predicted[:, 0], task_conditions(split.heldout) @ weight + bias, atol=1e-3, rtol=0)
    assert ridge.alpha == min(ridge.regression.alphas)  # noiseless means: the least penalty is best
    k_fold = RidgeTaskMap(cv=4).fit(vectors, tasks)(split.heldout)
    torch.testing.assert_close(k_fold, predicted, atol=1e-3, rtol=0)


def test_ridge_over_some_coordinates_takes_the_rest_from_the_base():
    vectors, tasks, split, weight, bias = _linear_family()
    coordinates, base = torch.tensor([1, 5, 6]), torch.full((D,), -7.0)
    predicted = RidgeTaskMap(coordinates=coordinates, base=base).fit(vectors, tasks)(split.heldout)[:, 0]
    expected = base.expand(len(split.heldout), D).clone()
    expected[:, coordinates] = (task_conditions(split.heldout) @ weight + bias)[:, coordinates]
    torch.testing.assert_close(predicted, expected, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="needs the base vector"):
        RidgeTaskMap(coordinates=coordinates)
    with pytest.raises(ValueError, match="base has shape"):
        RidgeTaskMap(coordinates=coordinates, base=torch.zeros(3)).fit(vectors, tasks)


def test_nearest_task_returns_its_rows_and_the_average_of_the_nearest():
    tasks = [c for c in ["110000", "001100", "000011"] for _ in range(C)]
    vectors = torch.arange(len(tasks) * D, dtype=torch.float32).reshape(len(tasks), D)
    nearest = nearest_task_checkpoints(vectors, tasks, ["001110", "110001"])
    assert nearest.shape == (2, C, D)
    assert torch.equal(nearest[0], vectors[C : 2 * C]) and torch.equal(nearest[1], vectors[:C])
    # "001110" is 1 from "001100", 3 from "000011" and 5 from "110000": its 2 nearest are the last two tasks.
    average = nearest_task_average(vectors, tasks, ["001110"], k=2)
    assert average.shape == (1, 1, D)
    torch.testing.assert_close(average[0, 0], vectors[C:].mean(dim=0))


def test_gaussian_ignores_the_code_and_is_seeded():
    vectors, tasks, split, *_ = _linear_family()
    draws = gaussian_of_checkpoints(vectors, split.heldout, num=500, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (len(split.heldout), 500, D)
    again = gaussian_of_checkpoints(vectors, split.heldout, num=500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    torch.testing.assert_close(draws.mean(dim=(0, 1)), vectors.mean(dim=0), atol=0.15, rtol=0)


def test_grouping_needs_one_code_per_row_and_equal_counts():
    vectors = torch.zeros(3, D)
    codes, grouped = group_by_task(torch.arange(4.0)[:, None], ["01", "10", "01", "10"])
    assert codes == ["01", "10"] and grouped[:, :, 0].tolist() == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="one task code per row"):
        group_by_task(vectors, ["01", "10"])
    with pytest.raises(ValueError, match="as many checkpoints as the others"):
        group_by_task(vectors, ["01", "10", "10"])


def test_coordinates_of_a_layout():
    layout = ParameterLayout(("norm.weight", "fc.weight", "fc.bias"), ((3,), (2, 4), (2,)))
    assert coordinates_of(layout, ["fc.weight", "fc.bias"]).tolist() == list(range(3, 13))
    assert coordinates_of(layout, ["norm.weight", "fc.bias"]).tolist() == [0, 1, 2, 11, 12]
    with pytest.raises(ValueError, match="Not generated parameters"):
        coordinates_of(layout, ["head.weight"])
