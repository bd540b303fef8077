"""A split that would be wrong on real inputs is detected on example inputs and replaced by the full model."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import ConvHead, check_fallback, images


class _BatchStat(ConvHead):
    """The generated layer consumes a statistic over the batch: that frontier value has no batch dimension."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).mean((2, 3))
        return self.fc(h) + self.fc(h.mean(0))


class _BatchCentered(_BatchStat):
    """The frontier is batch-first but mixes samples (centered over the batch): caching it per sample is wrong."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).mean((2, 3))
        return self.fc(h - h.mean(0))


class _ShapeConsumer(_BatchStat):
    """The generated layer's output is scaled by a Python int read from a frozen activation's shape."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        return self.fc(h.mean((2, 3))) / h.shape[-1]


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (_BatchStat, "batch dimension first"),
        (_BatchCentered, "not computed per sample"),
        (_ShapeConsumer, "is not a tensor"),
    ],
)
@pytest.mark.parametrize("eager", [True, False])
def test_invalid_frontier_falls_back(cls: type[nn.Module], reason: str, eager: bool) -> None:
    torch.manual_seed(0)
    model = cls()
    x = images(5)
    split = FrozenPrefixSplit.from_model(model, ["fc.weight", "fc.bias"], example_input=x[:3] if eager else None)
    assert split.tracer is not None
    if not eager:
        assert split.is_split  # structurally fine; the check runs on the first compute_prefix
        split.compute_prefix(x)
    check_fallback(split, model, x, reason)
