"""Fitting the generated parameters alone on cached features: collection's loop, as a function."""

from __future__ import annotations

import pytest
import torch

from pdiff_hub.core.layout import ParameterLayout
from pdiff_hub.engine.fitting import drawn_rows, fit_generated_parameters
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.training.collection import collect_checkpoints

from .nets import images, mlp


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return images(n), torch.randint(10, (n,), generator=torch.Generator().manual_seed(2))


def _fit(model, layout, x, y, keep, lr=0.05, seed=0):
    split = FrozenPrefixSplit.from_model(model, layout.names)
    features = split.compute_prefix(x)
    return fit_generated_parameters(split, features, y, dict(model.named_parameters()), keep=keep, lr=lr,
                                    weight_decay=0.01, batch_size=16, generator=torch.Generator().manual_seed(seed))


# What collection's own loop produced for this setting before it became fit_generated_parameters (commit e82b5b5^:
# collect_checkpoints(model, layout, train, train, train, num_checkpoints=6, lr=0.05, weight_decay=0.01,
# batch_size=16, seed=7)): its losses, the last checkpoint's first six values and every checkpoint's sum.
RECORDED_LOSSES = [2.393684, 1.972654, 2.287865, 1.852208, 2.133214, 1.889094]
RECORDED_LAST = [0.11921733617782593, 0.00298125809058547, 0.0850449949502945, -0.12729664146900177,
                 0.12813740968704224, 0.0927165299654007]
RECORDED_SUMS = [-12.75456714630127, -22.850608825683594, -30.23296356201172, -35.35498809814453, -38.861270904541016,
                 -41.664913177490234]


def test_collection_gives_the_checkpoints_its_own_loop_gave():
    model = mlp().eval()
    layout = ParameterLayout.from_model(model, ["3"])
    train = _data()
    collected = collect_checkpoints(model, layout, train, train, train, num_checkpoints=6, lr=0.05, weight_decay=0.01,
                                    batch_size=16, seed=7, progress=False)
    assert collected.prefix_cached  # the loop ran on cached features, as the fit does
    assert collected.losses == pytest.approx(RECORDED_LOSSES, abs=1e-5)
    assert collected.vectors[5, :6].tolist() == pytest.approx(RECORDED_LAST, abs=1e-6)
    assert collected.vectors.sum(dim=1).tolist() == pytest.approx(RECORDED_SUMS, abs=1e-4)
    assert not torch.equal(collected.vectors, _fit(model, layout, *train, keep=range(6), seed=8).vectors)


def test_kept_steps_are_those_of_the_whole_run_and_init_is_untouched():
    model = mlp().eval()
    layout = ParameterLayout.from_model(model, ["3"])
    before = layout.flatten(dict(model.named_parameters()))
    every = _fit(model, layout, *_data(), keep=range(6))
    some = _fit(model, layout, *_data(), keep=[2, 5])
    assert some.vectors.shape == (2, layout.num_params)
    assert torch.equal(some.vectors, every.vectors[[2, 5]])
    assert len(some.losses) == 6 and some.losses == every.losses
    assert torch.equal(layout.flatten(dict(model.named_parameters())), before)
    assert not torch.equal(every.vectors[0], before)  # it did train


def test_fitting_lowers_the_loss():
    model = mlp().eval()
    fit = _fit(model, ParameterLayout.from_model(model, ["3"]), *_data(32), keep=range(60), lr=0.02)
    assert sum(fit.losses[-5:]) < 0.5 * sum(fit.losses[:5])


@pytest.mark.parametrize("keep", [[], [3, 3], [-1, 2], [4, 2]])
def test_keep_must_be_increasing_steps(keep):
    model = mlp().eval()
    with pytest.raises(ValueError, match="keep must be increasing steps"):
        _fit(model, ParameterLayout.from_model(model, ["3"]), *_data(), keep=keep)


def test_divergence_names_the_learning_rate_key():
    model = mlp().eval()
    layout = ParameterLayout.from_model(model, ["3"])
    split = FrozenPrefixSplit.from_model(model, layout.names)
    x, y = _data()
    init = {n: torch.full_like(p, float("nan")) for n, p in model.named_parameters()}
    with pytest.raises(FloatingPointError, match="diverged .* with tasks.lr 0.05; lower tasks.lr"):
        fit_generated_parameters(split, split.compute_prefix(x), y, init, keep=[0], lr=0.05, lr_key="tasks.lr")
    with pytest.raises(ValueError, match="feature rows but 63 labels"):
        fit_generated_parameters(split, split.compute_prefix(x), y[:-1], init, keep=[0], lr=0.05)


def test_features_of_the_drawn_rows_only_give_the_same_fit():
    model = mlp().eval()
    layout = ParameterLayout.from_model(model, ["3"])
    x, y = _data(200)
    generator = torch.Generator().manual_seed(3)
    drawn = drawn_rows(len(y), 4, 16, generator)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(3).get_state())  # left unchanged
    assert 16 < len(drawn) < 64 and torch.equal(drawn, drawn.unique())  # 4 batches of 16 drawn with replacement
    split = FrozenPrefixSplit.from_model(model, layout.names)
    init = dict(model.named_parameters())
    whole = fit_generated_parameters(split, split.compute_prefix(x), y, init, keep=range(4), lr=0.05, batch_size=16,
                                     generator=torch.Generator().manual_seed(3))
    part = fit_generated_parameters(split, split.compute_prefix(x[drawn]), y, init, keep=range(4), lr=0.05,
                                    batch_size=16, generator=torch.Generator().manual_seed(3), rows=drawn)
    assert torch.equal(part.vectors, whole.vectors) and part.losses == whole.losses
    with pytest.raises(ValueError, match="not among the given rows"):  # a fifth step draws rows it was not given
        fit_generated_parameters(split, split.compute_prefix(x[drawn]), y, init, keep=range(40), lr=0.05,
                                 batch_size=16, generator=torch.Generator().manual_seed(3), rows=drawn)
    with pytest.raises(ValueError, match="rows"):
        fit_generated_parameters(split, split.compute_prefix(x), y, init, keep=range(4), lr=0.05, batch_size=16,
                                 rows=drawn)
