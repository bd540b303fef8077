"""Only the tokens a ViT's head reads go through its token-wise suffix: same logits, a frontier of one token."""

from __future__ import annotations

import timm
import torch
from torch import Tensor, nn

from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import ATOL, layout_of, norm_names, perturbations

LAST_MLP = norm_names(["blocks.1.norm2", "norm"])  # as the fashion-mnist-vit-tiny recipe


def _vit(name: str = "vit_tiny_patch16_224", **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, in_chans=1, img_size=16, patch_size=4, depth=2,
                             embed_dim=32, num_heads=2, **kwargs).eval()


def _images(n: int = 12) -> Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def _splits(model: nn.Module, names: list[str], x: Tensor) -> tuple[FrozenPrefixSplit, FrozenPrefixSplit]:
    exact = FrozenPrefixSplit.from_model(model, names, example_input=x[:3])
    reduced = FrozenPrefixSplit.from_model(model, names, example_input=x[:3], class_token=True)
    assert exact.is_split and reduced.is_split
    return exact, reduced


def _same_predictions(exact: FrozenPrefixSplit, reduced: FrozenPrefixSplit, model: nn.Module, x: Tensor) -> None:
    layout = layout_of(model, list(exact.param_names))
    params = layout.unflatten(perturbations(model, layout, 3))
    full, small = exact.compute_prefix(x), reduced.compute_prefix(x)
    with torch.no_grad():
        torch.testing.assert_close(reduced.suffix(*small), model(x), atol=ATOL, rtol=0)
    for method in ("vmap", "loop"):
        assert torch.equal(reduced.predict_many(small, params, method=method),
                           exact.predict_many(full, params, method=method))
    assert reduced.vmap_error is None


def test_class_token_only_reproduces_the_vit_with_a_one_token_frontier() -> None:
    model, x = _vit(), _images()
    exact, reduced = _splits(model, LAST_MLP, x)
    assert exact.kept_tokens is None and reduced.kept_tokens == (0, 1)
    assert [tuple(t.shape) for t in exact.compute_prefix(x)] == [(12, 17, 32)]  # 16 patches + the class token
    assert [tuple(t.shape) for t in reduced.compute_prefix(x)] == [(12, 1, 32)]
    assert all(reduced.suffix.get_parameter(n) is model.get_parameter(n) for n in LAST_MLP)
    _same_predictions(exact, reduced, model, x)


def test_layer_scale_and_prefix_tokens_keep_the_class_token_only() -> None:
    model, x = _vit(init_values=0.1, reg_tokens=2), _images()  # ls2 is a multiply by gamma; 3 prefix tokens
    exact, reduced = _splits(model, LAST_MLP, x)
    assert reduced.kept_tokens == (0, 1)
    _same_predictions(exact, reduced, model, x)


def test_distilled_deit_keeps_its_two_read_tokens() -> None:
    model, x = _vit("deit_tiny_distilled_patch16_224"), _images()
    exact, reduced = _splits(model, LAST_MLP, x)
    assert reduced.kept_tokens == (0, 2)
    _same_predictions(exact, reduced, model, x)


def test_heads_that_read_every_token_or_attention_after_the_frontier_are_refused() -> None:
    x = _images()
    averaging = _vit(global_pool="avg")  # the norm moves after the pool: fc_norm
    _, reduced = _splits(averaging, norm_names(["blocks.1.norm2", "fc_norm"]), x)
    assert reduced.kept_tokens is None and reduced.compute_prefix(x)[0].shape == (12, 17, 32)
    _, attention = _splits(_vit(), norm_names(["blocks.1.norm1", "norm"]), x)  # the suffix holds the last attention
    assert attention.kept_tokens is None and attention.compute_prefix(x)[0].shape == (12, 17, 32)


class _MixesTokens(nn.Module):
    """Token-wise layers, then one op that mixes tokens (subtracting their mean), then a class-token read."""

    def __init__(self, mix: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)
        self.mix = mix

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.embed(x))
        h = h - h.mean(1, keepdim=True) if self.mix else h * 2.0
        return self.head(torch.relu(h)[:, 0])


def test_an_op_across_tokens_keeps_every_token() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 5, 4)
    for mix, kept in ((True, None), (False, (0, 1))):
        model = _MixesTokens(mix).eval()
        _, reduced = _splits(model, norm_names(["norm"]), x)
        assert reduced.kept_tokens == kept
        with torch.no_grad():
            torch.testing.assert_close(reduced.suffix(*reduced.compute_prefix(x)), model(x), atol=ATOL, rtol=0)
