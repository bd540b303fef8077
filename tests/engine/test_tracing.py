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


class _CheckedStem(torch.nn.Module):
    """A frozen stem that checks its input in Python, as transformers' embeddings check the channel count."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.conv.in_channels:
            raise ValueError("wrong channel count")
        return self.conv(x)


class _StemThenHead(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.fc = _CheckedStem(), torch.nn.Linear(4, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.stem(x).mean((2, 3)))


def test_a_frozen_module_with_python_checks_is_traced_as_a_leaf() -> None:
    torch.manual_seed(0)
    model = _StemThenHead().eval()
    graph, tracer = trace(model, ["fc.weight", "fc.bias"])
    assert tracer == "frozen-leaves"
    assert "stem" in {n.target for n in graph.nodes if n.op == "call_module"}
    split = FrozenPrefixSplit.from_model(model, ["fc.weight", "fc.bias"], images(5))
    assert split.is_split and split.tracer == "frozen-leaves"
    frontier = split.compute_prefix(images(5))
    params = {n: p[None].expand(2, *p.shape) for n, p in model.named_parameters() if n.startswith("fc.")}
    assert torch.equal(split.predict_many(frontier, params)[0], model(images(5)).argmax(-1))


def test_a_generated_parameter_inside_the_checking_module_still_falls_back() -> None:
    torch.manual_seed(0)
    model = _StemThenHead()
    split = FrozenPrefixSplit.from_model(model, ["stem.conv.weight", "fc.weight"])
    assert split.tracer is None
    check_fallback(split, model, images(5), "tracing failed")
