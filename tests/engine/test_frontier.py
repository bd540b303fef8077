"""The frozen-prefix cache: computed in batches, stored on CPU, never modified by the suffix."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import ATOL, ConvHead, convnet, full_labels, images, layout_of, norm_names, perturbations


def test_prefix_batch_size_does_not_change_the_cache() -> None:
    split = FrozenPrefixSplit.from_model(convnet(), norm_names(["7"]))
    x = images(11)
    whole = split.compute_prefix(x, batch_size=512)
    for batch_size in (1, 4):
        for a, b in zip(split.compute_prefix(x, batch_size=batch_size), whole):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


class _InplaceOnFrontier(ConvHead):
    """The generated layer's output is added in place into a cached activation."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        y = self.bn(h)
        h.add_(y)
        return self.fc(h.mean((2, 3)))


def test_suffix_writing_into_its_inputs_does_not_corrupt_the_cache() -> None:
    torch.manual_seed(0)
    model = _InplaceOnFrontier()
    names = ["bn.weight", "bn.bias"]
    layout = layout_of(model, names)
    x = images(6)
    split = FrozenPrefixSplit.from_model(model, names, example_input=x[:3])
    assert split.is_split, split.fallback_reason
    frontier = split.compute_prefix(x)
    cached = [t.clone() for t in frontier]
    vectors = perturbations(model, layout, 2)
    expected = full_labels(model, layout, vectors, x)
    for _ in range(2):
        assert torch.equal(split.predict_many(frontier, layout.unflatten(vectors), method="loop"), expected)
    # vmap cannot write a batched result into the unbatched cached tensor: it warns once and uses the loop
    with pytest.warns(UserWarning, match="vmap over the suffix failed"):
        assert torch.equal(split.predict_many(frontier, layout.unflatten(vectors), method="vmap"), expected)
    assert split.vmap_error is not None
    assert torch.equal(split.predict_many(frontier, layout.unflatten(vectors), method="vmap"), expected)
    assert all(torch.equal(a, b) for a, b in zip(cached, frontier))
