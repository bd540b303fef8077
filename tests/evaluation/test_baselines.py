"""The critique's baselines and the paper's weight average."""

import pytest
import torch

from pdiff_hub.evaluation.baselines import (
    baseline_rows,
    noise_added,
    per_coordinate_gaussian,
    random_averages,
    weight_average,
)
from pdiff_hub.recipes.config import EvaluateConfig

from .helpers import seeded


def test_noise_added_uses_every_original_once_with_absolute_noise():
    originals = torch.randn(6, 4000, generator=seeded(0))
    copies = noise_added(originals, 0.0, generator=seeded(1))
    assert copies.shape == originals.shape
    assert sorted(map(tuple, copies.tolist())) == sorted(map(tuple, originals.tolist()))
    noisy = noise_added(originals, 0.06, num=9, generator=seeded(1))
    assert noisy.shape == (9, 4000)
    nearest = torch.cdist(noisy, originals).argmin(1)
    residual = noisy - originals[nearest]
    assert residual.std().item() == pytest.approx(0.06, rel=0.02)
    assert len(set(nearest[:6].tolist())) == 6  # a full pass over the originals before any repeats
    torch.testing.assert_close(noise_added(originals, 0.06, num=9, generator=seeded(1)), noisy)
    with pytest.raises(ValueError, match="num"):
        noise_added(originals, 0.06, num=0)


def test_random_averages_average_distinct_originals():
    k = 20
    averages = random_averages(torch.eye(k) * 16, 16, num=50, generator=seeded(0))
    assert averages.shape == (50, k)
    # each row averages 16 distinct one-hot originals: 16 ones, 4 zeros
    assert torch.equal((averages > 0).sum(1), torch.full((50,), 16))
    torch.testing.assert_close(averages[averages > 0], torch.ones(50 * 16))
    originals = torch.randn(k, 5, generator=seeded(1))
    hull = random_averages(originals, 4, num=200, generator=seeded(2))
    assert (hull >= originals.min(0).values - 1e-6).all() and (hull <= originals.max(0).values + 1e-6).all()
    torch.testing.assert_close(hull.mean(0), originals.mean(0), atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="average_size"):
        random_averages(originals, 21, num=3)


def test_per_coordinate_gaussian_matches_each_coordinate():
    originals = torch.randn(40, 6, generator=seeded(0)) * torch.tensor([0.01, 0.1, 1, 2, 5, 0.5]) + torch.arange(6)
    samples = per_coordinate_gaussian(originals, num=20000, generator=seeded(1))
    assert samples.shape == (20000, 6)
    torch.testing.assert_close(samples.mean(0), originals.mean(0), rtol=0, atol=0.05 * originals.std(0).max().item())
    torch.testing.assert_close(samples.std(0), originals.std(0), rtol=0.03, atol=0)
    # coordinates are independent
    assert torch.corrcoef(samples.T).fill_diagonal_(0).abs().max() < 0.05
    with pytest.raises(ValueError, match="at least 2"):
        per_coordinate_gaussian(originals[:1])


def test_baseline_rows_name_size_and_the_ensemble_by_hand():
    originals = torch.tensor([[1.0, 2.0, 0.0], [3.0, 6.0, 0.0], [5.0, 1.0, 3.0]])
    config = EvaluateConfig(num_models=4, noise_amplitudes=[0.01, 0.5], average_size=2)
    rows = baseline_rows(originals, config, seeded(0))
    assert list(rows) == ["ensemble", "noise 0.01", "noise 0.5", "average of 2", "gaussian"]
    torch.testing.assert_close(rows["ensemble"], torch.tensor([[3.0, 3.0, 1.0]]))  # one model: the mean of all
    torch.testing.assert_close(weight_average(originals), rows["ensemble"])
    assert {name: len(v) for name, v in rows.items() if name != "ensemble"} == dict.fromkeys(list(rows)[1:], 4)
    # the pairwise averages of three checkpoints are among three known vectors
    pairs = [(originals[i] + originals[j]) / 2 for i, j in ((0, 1), (0, 2), (1, 2))]
    assert all(any(torch.allclose(a, p) for p in pairs) for a in rows["average of 2"])
    again = baseline_rows(originals, config, seeded(0))
    assert all(torch.equal(rows[name], again[name]) for name in rows)
