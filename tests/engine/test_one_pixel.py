"""Frozen convolutions that only see 1x1 maps, run as 1x1 convolutions of their centre tap: same outputs, opt-in."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from pdiff_hub.engine.fitting import fit_generated_parameters
from pdiff_hub.engine.one_pixel import CentreTapConv, OnePixelPool, pixel_tap
from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import ATOL, images, layout_of, mlp, norm_names, perturbations


def _resnet(name: str = "resnet18") -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=2, in_chans=1).eval()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _splits(model: nn.Module, names: list[str], x: torch.Tensor) -> tuple[FrozenPrefixSplit, FrozenPrefixSplit]:
    default = FrozenPrefixSplit.from_model(model, names, example_input=x[:3])
    fast = FrozenPrefixSplit.from_model(model, names, example_input=x[:3], one_pixel_convs=True)
    return default, fast


def test_resnet18_layer4_conv2_becomes_its_centre_tap_and_predicts_the_same() -> None:
    model, x = _resnet(), images(24)
    names = norm_names(["layer4.1.bn1", "layer4.1.bn2", "fc"])
    before, conv2 = _state(model), model.layer4[1].conv2
    default, fast = _splits(model, names, x)
    assert default.one_pixel_convs == () and "one_pixel" not in default.suffix.code
    assert default.one_pixel_pools == () and fast.one_pixel_pools == ("global_pool.pool",)  # the identity on 1x1
    # conv1 feeds the generated bn1: it is in the prefix (its output is the frontier), not in the suffix
    assert fast.one_pixel_convs == ("layer4.1.conv2",)
    assert "layer4_1_conv1" in fast.frontier_names
    assert not any(n.startswith("layer4.1.conv") for n, _ in fast.suffix.named_parameters())
    tap = fast.suffix.get_submodule("one_pixel.layer4_1_conv2")
    assert isinstance(tap, CentreTapConv) and tap.tap == (1, 1) and not tap.weight.requires_grad
    assert torch.equal(tap.weight[:, :, 0, 0], conv2.weight[:, :, 1, 1])
    # the model is untouched: same module objects, same values; the generated tensors are the model's own
    assert model.layer4[1].conv2 is conv2 and conv2.kernel_size == (3, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(fast.suffix.get_parameter(n) is model.get_parameter(n) for n in names)

    frontier = fast.compute_prefix(x)
    with torch.no_grad():
        torch.testing.assert_close(fast.suffix(*frontier), default.suffix(*frontier), atol=ATOL, rtol=0)
    layout = layout_of(model, names)
    params = layout.unflatten(perturbations(model, layout, 3))
    for method in ("vmap", "loop"):
        ref = default.predict_many(frontier, params, method=method)
        got = fast.predict_many(frontier, params, method=method)
        assert (got == ref).float().mean() >= 0.9999
        assert fast.vmap_error is None


def test_fitting_through_the_centre_tap_gives_the_same_losses() -> None:
    model, x = _resnet(), images(32)
    y = torch.randint(2, (32,), generator=torch.Generator().manual_seed(3))
    names = norm_names(["layer4.1.bn1", "layer4.1.bn2", "fc"])
    assert model.layer4[1].conv2.weight.requires_grad  # a timm model as created: nothing frozen

    def fit(split: FrozenPrefixSplit):
        return fit_generated_parameters(split, split.compute_prefix(x), y, dict(model.named_parameters()),
                                        keep=[4, 9], lr=0.01, batch_size=8, generator=torch.Generator().manual_seed(0))

    default, fast = _splits(model, names, x)
    got = fit(fast)
    assert model.layer4[1].conv2.weight.grad is None  # no gradient is computed for the frozen convolution
    ref = fit(default)
    torch.testing.assert_close(torch.tensor(got.losses), torch.tensor(ref.losses), rtol=1e-4, atol=0)
    torch.testing.assert_close(got.vectors, ref.vectors, rtol=1e-4, atol=1e-5)
    assert not torch.equal(got.vectors[0], got.vectors[1])  # it did train


def test_maps_larger_than_one_pixel_are_left_alone() -> None:
    model, x = _resnet("test_resnet"), images(6)
    names = norm_names(["layer4.0.bn1", "layer4.0.bn2"])
    big = torch.nn.functional.interpolate(x, size=64)  # layer4's maps are 2x2
    split = FrozenPrefixSplit.from_model(model, names, example_input=big[:3], one_pixel_convs=True)
    assert split.is_split and split.one_pixel_convs == () and split.one_pixel_pools == ()
    small = FrozenPrefixSplit.from_model(model, names, example_input=x[:3], one_pixel_convs=True)
    assert small.one_pixel_convs == ("layer4.0.conv2",) and small.one_pixel_pools == ("global_pool.pool",)
    with torch.no_grad():  # a split built for 1x1 maps refuses larger ones instead of computing something else
        frontier = small.prefix(big[:2])
        try:
            small.suffix(*frontier)
        except ValueError as err:
            assert "layer4.0.conv2" in str(err) and "one_pixel_convs" in str(err)
        else:
            raise AssertionError("a 2x2 map went through the centre tap")
    pool = small.suffix.get_submodule("one_pixel.global_pool_pool")
    assert isinstance(pool, OnePixelPool) and torch.equal(pool(frontier[0][:, :, :1, :1]), frontier[0][:, :, :1, :1])
    with pytest.raises(ValueError, match="global_pool.pool was dropped for 1x1 maps"):
        pool(frontier[0])  # the pool of a 2x2 map is not the identity


class _Convs(nn.Module):
    """A frozen stem pooled to one pixel, a generated norm, then convolutions of every kind on the 1x1 map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.centre = nn.Conv2d(4, 6, 3, padding=1)  # 3x3, padding 1: tap (1, 1)
        self.same = nn.Conv2d(6, 6, (2, 4), padding="same", groups=2)  # even kernels: aten pads the extra right
        self.pointwise = nn.Conv2d(6, 6, 1)  # its own tap: a matrix product instead of a convolution kernel
        self.strided = nn.Conv2d(6, 6, (5, 3), stride=2, padding=(2, 1))  # one output pixel, tap (2, 1)
        self.circular = nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular")  # every tap sees the pixel
        self.dilated = nn.Conv2d(6, 6, 3, padding=2, dilation=2)  # not proven here: skipped
        self.generated = nn.Conv2d(6, 6, 3, padding=1)  # its weight is generated
        self.grow = nn.Conv2d(6, 6, 3, padding=2)  # 1x1 in, 3x3 out
        self.fc = nn.Linear(6 * 9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(nn.functional.adaptive_avg_pool2d(self.stem(x), 1))
        h = self.generated(self.dilated(self.circular(self.strided(self.pointwise(self.same(self.centre(h)))))))
        h = self.centre_again(h)
        return self.fc(self.grow(h).flatten(1))

    def centre_again(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.strided(h))  # a second call of a replaced module reuses its replacement


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_only_convolutions_proven_exact_are_replaced() -> None:
    torch.manual_seed(0)
    model, x = _Convs().eval(), images(8)
    names = norm_names(["bn"]) + ["generated.weight"]
    before = _state(model)
    default, fast = _splits(model, names, x)
    assert fast.one_pixel_convs == ("centre", "same", "pointwise", "strided")
    taps = [fast.suffix.get_submodule(f"one_pixel.{n}").tap for n in fast.one_pixel_convs]
    assert taps == [(1, 1), (0, 1), (0, 0), (2, 1)]
    assert pixel_tap(model.dilated) is None and pixel_tap(nn.Conv2d(1, 1, 1, padding=1)) is None
    assert pixel_tap(nn.Conv2d(1, 1, 1)) == (0, 0)
    assert pixel_tap(nn.Conv2d(1, 1, 3)) == (0, 0)  # padding 0: only shapes tell the output is not 1x1
    frontier = fast.compute_prefix(x)
    layout = layout_of(model, names)
    params = layout.unflatten(perturbations(model, layout, 2))
    for i in range(2):
        one = {k: v[i] for k, v in params.items()}
        torch.testing.assert_close(torch.func.functional_call(fast.suffix, one, frontier),
                                   torch.func.functional_call(model, one, (x,)), atol=ATOL, rtol=0)
    assert torch.equal(fast.predict_many(frontier, params, method="vmap"),
                       default.predict_many(frontier, params, method="vmap"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_deferred_check_and_fallback() -> None:
    model, x = _resnet(), images(4)
    split = FrozenPrefixSplit.from_model(model, norm_names(["layer4.1.bn2", "fc"]), one_pixel_convs=True)
    assert split.one_pixel_convs == ()  # map sizes are unknown until the first images
    split.compute_prefix(x)
    assert split.one_pixel_convs == ()  # only bn2 and fc are generated: conv2 is in the prefix
    split = FrozenPrefixSplit.from_model(model, norm_names(["layer4.1.bn1", "fc"]), one_pixel_convs=True)
    split.compute_prefix(x)
    assert split.one_pixel_convs == ("layer4.1.conv2",)
    net = mlp()
    whole = FrozenPrefixSplit.from_model(net, norm_names(["1", "3"]), example_input=x, one_pixel_convs=True)
    assert not whole.is_split and whole.one_pixel_convs == () and whole.suffix is net
