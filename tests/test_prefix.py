"""Tests of :mod:`pdiff_hub.engine.split`: the split must reproduce the full model exactly, and fall back cleanly."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import pytest
import timm
import torch
from torch import Tensor, nn

from pdiff_hub.engine.split import FrozenPrefixSplit

ATOL = 1e-5


def _timm(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, num_classes=10, in_chans=1, **kwargs)

    return build


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    )


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 64), nn.ReLU(), nn.Linear(64, 10))


def _norm_names(prefixes: list[str]) -> list[str]:
    return [f"{p}.{s}" for p in prefixes for s in ("weight", "bias")]


# (model factory, generated parameter names, expected frontier node names or None to skip that check)
SPLIT_CASES = {
    "test_resnet": (_timm("test_resnet"), _norm_names(["layer4.0.bn1", "layer4.0.bn2"])),
    "test_vit": (_timm("test_vit"), _norm_names(["blocks.5.norm2", "norm"])),
    "test_convnext": (_timm("test_convnext"), _norm_names(["stages.3.blocks.1.norm", "head.norm"])),
    "resnet18": (_timm("resnet18"), _norm_names(["layer4.1.bn1", "layer4.1.bn2"])),
    "convnet": (_convnet, _norm_names(["3", "7"])),
}


def _images(n: int = 12, seed: int = 1) -> Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def _perturbations(split: FrozenPrefixSplit, m: int, seed: int = 2) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = split.flatten_params()
    return base + 0.3 * torch.randn(m, base.numel(), generator=generator)


def _full_logits(model: nn.Module, params: Mapping[str, Tensor], images: Tensor) -> Tensor:
    """Logits of a copy of ``model`` with ``params`` loaded (the naive way)."""
    loaded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, value in params.items():
            loaded.get_parameter(name).copy_(value)
        return loaded(images)


@pytest.fixture(scope="module", params=list(SPLIT_CASES))
def case(request: pytest.FixtureRequest) -> tuple:
    """Model, split, images, frontier, perturbed parameter vectors and the full model's logits for each of them."""
    factory, names = SPLIT_CASES[request.param]
    model = factory()
    images = _images()
    split = FrozenPrefixSplit.from_model(model, names, example_input=images[:3])
    frontier = split.compute_prefix(images, batch_size=5)  # several prefix batches
    vectors = _perturbations(split, 3)
    full = torch.stack([_full_logits(model, split.unflatten_params(v), images) for v in vectors])
    return model, split, images, frontier, vectors, full


def test_split_matches_full_model(case: tuple) -> None:
    model, split, images, frontier, _, _ = case
    assert split.is_split, split.fallback_reason
    assert split.fallback_reason is None
    assert split.tracer in {"timm", "torch.fx"}
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 and t.shape[0] == len(images) for t in frontier)
    assert split.frontier_nbytes_per_sample == sum(t[0].numel() * 4 for t in frontier)
    with torch.no_grad():
        full = model(images)
        got = split.suffix_logits(frontier, batch_size=5)
    torch.testing.assert_close(got, full, atol=ATOL, rtol=0)
    # the suffix holds the generated parameters under their original names, and nothing of the prefix is generated
    suffix_params = dict(split.suffix.named_parameters())
    for name in split.param_names:
        assert suffix_params[name] is model.get_parameter(name)
    prefix_ids = {id(p) for p in split.prefix.parameters()}
    assert not prefix_ids & {id(model.get_parameter(n)) for n in split.param_names}
    # the suffix only costs the generated layers: most of the model's parameters stay in the prefix
    assert sum(p.numel() for p in split.prefix.parameters()) > 0


def test_replaced_params_match_loaded_model(case: tuple) -> None:
    model, split, images, frontier, vectors, full = case
    for vector, expected in zip(vectors, full):
        with torch.no_grad():
            got = split.suffix_logits(frontier, split.unflatten_params(vector), batch_size=7)
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # the model itself is unchanged by functional calls
    torch.testing.assert_close(split.flatten_params(), split.flatten_params(dict(model.named_parameters())))


@pytest.mark.parametrize("method", ["vmap", "loop", "auto"])
def test_predict_many_matches_per_model_evaluation(case: tuple, method: str) -> None:
    model, split, images, frontier, vectors, full = case
    labels = split.predict_many(frontier, vectors, method=method, batch_size=5, chunk_size=2)
    assert labels.shape == (3, len(images)) and labels.dtype == torch.int64
    assert torch.equal(labels, full.argmax(-1))
    assert split.vmap_error is None


def test_resnet_split_is_finer_than_modules() -> None:
    model = SPLIT_CASES["resnet18"][0]()
    split = FrozenPrefixSplit.from_model(model, _norm_names(["layer4.1.bn1", "layer4.1.bn2"]))
    # layer4.1.conv1 is frozen: its output (and the block's shortcut input) is cached, not recomputed
    assert "layer4_1_conv1" in split.frontier_names and len(split.frontier_names) == 2
    assert "layer4.1.conv1.weight" not in dict(split.suffix.named_parameters())
    assert "layer4.1.conv2.weight" in dict(split.suffix.named_parameters())


def test_param_set_formats_agree() -> None:
    model = _convnet()
    split = FrozenPrefixSplit.from_model(model, _norm_names(["3", "7"]))
    images = _images(6)
    frontier = split.compute_prefix(images)
    vectors = _perturbations(split, 3)
    as_dicts = [split.unflatten_params(v) for v in vectors]
    as_stacked = split.unflatten_params(vectors)
    expected = split.predict_many(frontier, vectors, method="loop")
    for sets in (as_dicts, as_stacked):
        assert torch.equal(split.predict_many(frontier, sets, method="vmap"), expected)
    assert torch.equal(split.predict_many(frontier, vectors[0]), expected[:1])
    torch.testing.assert_close(split.flatten_params(as_dicts[1]), vectors[1])


def test_lazy_validation_on_first_compute_prefix() -> None:
    model = _convnet()
    split = FrozenPrefixSplit.from_model(model, _norm_names(["7"]))
    assert split.is_split and not split.validated and split.frontier_nbytes_per_sample is None
    images = _images(1)  # a single image is enough (it is cycled to build the check batches)
    frontier = split.compute_prefix(images)
    assert split.validated and split.is_split
    with torch.no_grad():
        torch.testing.assert_close(split.suffix_logits(frontier), model(images), atol=ATOL, rtol=0)


def test_cannot_replace_prefix_parameter() -> None:
    model = _convnet()
    split = FrozenPrefixSplit.from_model(model, _norm_names(["7"]), example_input=_images(3))
    frontier = split.compute_prefix(_images(4))
    with pytest.raises(KeyError, match="0.weight"):
        split.suffix_logits(frontier, {"0.weight": torch.zeros(8, 1, 3, 3)})
    with pytest.raises(ValueError, match="not parameters"):
        FrozenPrefixSplit.from_model(model, ["nope.weight"])


def _check_fallback(split: FrozenPrefixSplit, model: nn.Module, images: Tensor, reason: str) -> None:
    assert not split.is_split
    assert split.fallback_reason is not None and reason in split.fallback_reason
    assert split.suffix is model
    frontier = split.compute_prefix(images)
    assert len(frontier) == 1 and torch.equal(frontier[0], images)
    vectors = _perturbations(split, 2)
    with torch.no_grad():
        torch.testing.assert_close(split.suffix_logits(frontier), model(images), atol=ATOL, rtol=0)
    for method in ("vmap", "loop"):
        labels = split.predict_many(frontier, vectors, method=method)
        expected = torch.stack([_full_logits(model, split.unflatten_params(v), images).argmax(-1) for v in vectors])
        assert torch.equal(labels, expected)


def test_mlp_generated_whole_falls_back() -> None:
    model = _mlp()
    split = FrozenPrefixSplit.from_model(model, [n for n, _ in model.named_parameters()])
    _check_fallback(split, model, _images(5), "nothing worth caching")


class _DataDependent(nn.Module):
    """Python control flow on tensor values: not traceable by torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        if h.mean() > 100:
            h = -h
        return self.fc(h.mean((2, 3)))


def test_untraceable_model_falls_back() -> None:
    torch.manual_seed(0)
    model = _DataDependent()
    split = FrozenPrefixSplit.from_model(model, ["fc.weight", "fc.bias"])
    assert split.tracer is None
    _check_fallback(split, model, _images(5), "tracing failed")


class _BatchStat(nn.Module):
    """The generated layer consumes a statistic over the batch: that frontier value has no batch dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).mean((2, 3))
        return self.fc(h) + self.fc(h.mean(0))


class _BatchCentered(_BatchStat):
    """The frontier is batch-first but mixes samples (centered over the batch): caching it per sample is wrong."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).mean((2, 3))
        return self.fc(h - h.mean(0))


class _ShapeConsumer(nn.Module):
    """The generated layer's output is scaled by a Python int read from a frozen activation's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

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
    images = _images(5)
    split = FrozenPrefixSplit.from_model(model, ["fc.weight", "fc.bias"], example_input=images[:3] if eager else None)
    assert split.tracer is not None
    if not eager:
        assert split.is_split  # structurally fine; the check runs on the first compute_prefix
        split.compute_prefix(images)
    _check_fallback(split, model, images, reason)


class _InplaceOnFrontier(nn.Module):
    """The generated layer's output is added in place into a cached activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        y = self.bn(h)
        h.add_(y)
        return self.fc(h.mean((2, 3)))


def test_suffix_mutating_the_frontier_does_not_corrupt_the_cache() -> None:
    torch.manual_seed(0)
    model = _InplaceOnFrontier()
    images = _images(6)
    split = FrozenPrefixSplit.from_model(model, ["bn.weight", "bn.bias"], example_input=images[:3])
    assert split.is_split, split.fallback_reason
    frontier = split.compute_prefix(images)
    cached = [t.clone() for t in frontier]
    vectors = _perturbations(split, 2)
    expected = torch.stack([_full_logits(model, split.unflatten_params(v), images).argmax(-1) for v in vectors])
    with torch.no_grad():
        first = split.suffix_logits(frontier)
        second = split.suffix_logits(frontier)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(first, model(images), atol=ATOL, rtol=0)
    assert torch.equal(split.predict_many(frontier, vectors, method="loop"), expected)
    # vmap cannot write a batched result into the unbatched cached tensor: it falls back to the loop, once
    with pytest.warns(UserWarning, match="vmap over the suffix failed"):
        assert torch.equal(split.predict_many(frontier, vectors, method="vmap"), expected)
    assert split.vmap_error is not None
    assert torch.equal(split.predict_many(frontier, vectors, method="vmap"), expected)
    assert all(torch.equal(a, b) for a, b in zip(cached, frontier))


class _WriteAfterRead(nn.Module):
    """A frozen in-place op rewrites an activation after the generated layer has read it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        y = self.bn(h).mean((2, 3))
        h.mul_(2.0)
        return self.fc(torch.cat([y, h.mean((2, 3))], 1))


def test_frozen_write_after_generated_read_keeps_order() -> None:
    torch.manual_seed(0)
    model = _WriteAfterRead()
    images = _images(6)
    split = FrozenPrefixSplit.from_model(model, ["bn.weight", "bn.bias"], example_input=images[:3])
    assert split.is_split, split.fallback_reason
    frontier = split.compute_prefix(images)
    params = split.unflatten_params(_perturbations(split, 1)[0])
    with torch.no_grad():
        torch.testing.assert_close(split.suffix_logits(frontier), model(images), atol=ATOL, rtol=0)
        got = split.suffix_logits(frontier, params)
    torch.testing.assert_close(got, _full_logits(model, params, images), atol=ATOL, rtol=0)


def test_suffix_trains_the_generated_parameters_only() -> None:
    model = _convnet()
    names = _norm_names(["7"])
    split = FrozenPrefixSplit.from_model(model, names, example_input=_images(3))
    images = _images(8)
    frontier = split.compute_prefix(images)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [model.get_parameter(n) for n in names]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    loss = nn.functional.cross_entropy(split.suffix(*frontier), torch.arange(8) % 10)
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(names)
    with torch.no_grad():  # the trained model and the split still agree
        torch.testing.assert_close(split.suffix_logits(frontier), model(images), atol=ATOL, rtol=0)
