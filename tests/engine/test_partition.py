"""Where the graph is cut: at the frontier of the generated parameters, keeping in-place writes in order."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call

from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import ATOL, ConvHead, check_fallback, full_logits, images, layout_of, norm_names, perturbations, timm_model


def test_resnet_cut_is_finer_than_modules() -> None:
    model = timm_model("resnet18")()
    split = FrozenPrefixSplit.from_model(model, norm_names(["layer4.1.bn1", "layer4.1.bn2"]))
    # layer4.1.conv1 is frozen: its output (and the block's shortcut input) is cached, not recomputed
    assert "layer4_1_conv1" in split.frontier_names and len(split.frontier_names) == 2
    suffix_params = dict(split.suffix.named_parameters())
    assert "layer4.1.conv1.weight" not in suffix_params
    assert "layer4.1.conv2.weight" in suffix_params


class _WriteAfterRead(ConvHead):
    """A frozen in-place op rewrites an activation after the generated layer has read it."""

    def __init__(self) -> None:
        super().__init__(head_in=8)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        y = self.bn(h).mean((2, 3))
        h.mul_(2.0)
        return self.fc(torch.cat([y, h.mean((2, 3))], 1))


def test_frozen_write_after_generated_read_keeps_order() -> None:
    torch.manual_seed(0)
    model = _WriteAfterRead()
    x = images(6)
    split = FrozenPrefixSplit.from_model(model, ["bn.weight", "bn.bias"], example_input=x[:3])
    assert split.is_split, split.fallback_reason
    frontier = split.compute_prefix(x)
    layout = layout_of(model, ["bn.weight", "bn.bias"])
    params = layout.unflatten(perturbations(model, layout, 1)[0])
    with torch.no_grad():  # the suffix writes into its inputs (h.mul_): give it copies of the cache
        torch.testing.assert_close(split.suffix(*(t.clone() for t in frontier)), model(x), atol=ATOL, rtol=0)
        got = functional_call(split.suffix, params, tuple(t.clone() for t in frontier))
    torch.testing.assert_close(got, full_logits(model, params, x), atol=ATOL, rtol=0)


class _Unused(ConvHead):
    """``bn`` is never read."""

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


class _TwoInputs(_Unused):
    """``forward`` needs a second tensor."""

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean((2, 3))) * scale


def test_unused_generated_parameters_fall_back() -> None:
    torch.manual_seed(0)
    model = _Unused()
    split = FrozenPrefixSplit.from_model(model, ["bn.weight"])
    check_fallback(split, model, images(4), "not used by the traced forward")


def test_second_input_falls_back() -> None:
    torch.manual_seed(0)
    split = FrozenPrefixSplit.from_model(_TwoInputs(), ["fc.weight"])
    assert not split.is_split and "more than one" in split.fallback_reason
