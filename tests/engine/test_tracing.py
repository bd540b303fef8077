"""Tracing: timm models with defaulted forward arguments trace to one input; untraceable models fall back."""

from __future__ import annotations

import torch
from torch import Tensor

from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.engine.tracing import trace

from .nets import ConvHead, check_fallback, images, timm_model


class _DataDependent(ConvHead):
    """Python control flow on tensor values: not traceable by torch.fx."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        if h.mean() > 100:
            h = -h
        return self.fc(h.mean((2, 3)))


class _Defaulted(_DataDependent):
    """A defaulted flag: traced as a constant, guarded by fx."""

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        h = self.conv(x).mean((2, 3))
        return h if pre_logits else self.fc(h)


def test_untraceable_model_falls_back() -> None:
    torch.manual_seed(0)
    model = _DataDependent()
    split = FrozenPrefixSplit.from_model(model, ["fc.weight", "fc.bias"])
    assert split.tracer is None
    check_fallback(split, model, images(5), "tracing failed")


def test_defaulted_arguments_become_constants() -> None:
    for model in (_Defaulted(), timm_model("test_vit")()):
        graph, tracer = trace(model)
        assert tracer == "timm"
        assert [n.name for n in graph.nodes if n.op == "placeholder"] == ["x"]
    torch.manual_seed(0)
    model = _Defaulted().eval()
    split = FrozenPrefixSplit.from_model(model, ["fc.weight", "fc.bias"], example_input=images(3))
    assert split.is_split, split.fallback_reason
    x = images(4)
    with torch.no_grad():
        torch.testing.assert_close(split.suffix(*split.compute_prefix(x)), model(x))
