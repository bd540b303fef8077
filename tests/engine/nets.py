"""Tiny networks, inputs and the naive per-model evaluation that the engine must reproduce."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import timm
import torch
from torch import Tensor, nn

from pdiff_hub.core.layout import ParameterLayout
from pdiff_hub.engine.split import FrozenPrefixSplit

ATOL = 1e-5


def timm_model(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    """A seeded factory of a random-init timm model with 10 classes and one input channel."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, num_classes=10, in_chans=1, **kwargs)

    return build


def convnet() -> nn.Module:
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


class ConvHead(nn.Module):
    """A convolution, a batch norm and a linear head; each test writes the forward it needs."""

    def __init__(self, head_in: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(head_in, 10)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 64), nn.ReLU(), nn.Linear(64, 10))


def norm_names(modules: list[str]) -> list[str]:
    """Weight and bias names of ``modules``."""
    return [f"{m}.{s}" for m in modules for s in ("weight", "bias")]


def images(n: int = 12, seed: int = 1) -> Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def layout_of(model: nn.Module, names: list[str]) -> ParameterLayout:
    return ParameterLayout(tuple(names), tuple(tuple(model.get_parameter(n).shape) for n in names))


def perturbations(model: nn.Module, layout: ParameterLayout, m: int, seed: int = 2) -> Tensor:
    """``m`` parameter vectors: the model's own plus noise."""
    base = layout.flatten(dict(model.named_parameters()))
    return base + 0.3 * torch.randn(m, base.numel(), generator=torch.Generator().manual_seed(seed))


def full_logits(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Logits of a copy of ``model`` with ``params`` loaded (the naive way)."""
    loaded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, value in params.items():
            loaded.get_parameter(name).copy_(value)
        return loaded(x)


def full_labels(model: nn.Module, layout: ParameterLayout, vectors: Tensor, x: Tensor) -> Tensor:
    """(M, N) labels of one loaded copy of ``model`` per vector."""
    return torch.stack([full_logits(model, layout.unflatten(v), x).argmax(-1) for v in vectors])


def check_fallback(split: FrozenPrefixSplit, model: nn.Module, x: Tensor, reason: str) -> None:
    """The split fell back for ``reason`` and still predicts what the full model predicts."""
    assert not split.is_split
    assert split.fallback_reason is not None and reason in split.fallback_reason
    frontier = split.compute_prefix(x)
    assert len(frontier) == 1 and torch.equal(frontier[0], x)
    layout = layout_of(model, list(split.param_names))
    vectors = perturbations(model, layout, 2)
    with torch.no_grad():
        torch.testing.assert_close(split.suffix(*frontier), model(x), atol=ATOL, rtol=0)
    for method in ("vmap", "loop"):
        labels = split.predict_many(frontier, layout.unflatten(vectors), method=method)
        assert torch.equal(labels, full_labels(model, layout, vectors, x))
