"""Many parameter sets at once: every batching (loop, vmap chunks, memory budget) gives the same labels."""

from __future__ import annotations

import pytest
import torch

from pdiff_hub.engine import batching
from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import convnet, full_labels, images, layout_of, norm_names, perturbations


@pytest.fixture(scope="module")
def setup() -> tuple:
    model = convnet()
    layout = layout_of(model, norm_names(["3", "7"]))
    x = images(10)
    split = FrozenPrefixSplit.from_model(model, layout.names)
    frontier = split.compute_prefix(x)
    vectors = perturbations(model, layout, 5)
    return split, frontier, layout, vectors, full_labels(model, layout, vectors, x)


@pytest.mark.parametrize(("method", "batch_size", "chunk_size"),
                         [("loop", 3, None), ("vmap", 3, 2), ("vmap", 10, 1), ("vmap", 4, 5), ("vmap", 4, None)])
def test_batching_gives_the_same_labels(setup: tuple, method: str, batch_size: int, chunk_size: int | None) -> None:
    split, frontier, layout, vectors, expected = setup
    labels = split.predict_many(frontier, layout.unflatten(vectors), method=method, batch_size=batch_size,
                                chunk_size=chunk_size)
    assert torch.equal(labels, expected)


def test_tight_memory_budget_gives_the_same_labels(setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    split, frontier, layout, vectors, expected = setup
    monkeypatch.setattr(batching, "_vmap_budget", lambda device: 1)  # one parameter set per vmap call
    assert torch.equal(split.predict_many(frontier, layout.unflatten(vectors), method="vmap"), expected)


def test_parameter_set_errors(setup: tuple) -> None:
    split, frontier, layout, vectors, _ = setup
    params = layout.unflatten(vectors)
    with pytest.raises(ValueError, match="disagree on M"):
        split.predict_many(frontier, {**params, "7.bias": params["7.bias"][:2]})
    with pytest.raises(ValueError, match="no parameters"):
        split.predict_many(frontier, {})
    with pytest.raises(ValueError, match="unknown method"):
        split.predict_many(frontier, params, method="scan")
    with pytest.raises(ValueError, match="same first"):
        split.predict_many((frontier[0], frontier[0][:3]), params)
