"""Run frozen convolutions of a split's suffix that only ever see 1x1 maps as 1x1 convolutions.

In a ``resnet18`` on 32x32 images, ``layer4``'s maps are 1x1: a 3x3 convolution with padding 1 applied to them reads
the single pixel through its centre tap only, every other tap meets zero padding. Its output is exactly (up to
float rounding) a 1x1 convolution with the centre tap's weight, with 9x fewer multiply-adds. When the generated
parameters are ``layer4.1.bn1/bn2`` and ``fc``, the suffix holds such a convolution (``layer4.1.conv2``), and fitting
or evaluating thousands of parameter vectors through it spends most of its time there.

:func:`one_pixel_suffix` finds, by running the suffix once on an example frontier, each call of a frozen
:class:`torch.nn.Conv2d` whose input and output maps are 1x1 and whose padding puts the pixel under exactly one tap,
and rebuilds the suffix with a :class:`CentreTapConv` in its place. 1x1 convolutions on 1x1 maps (ConvNeXt's MLP at
32x32) are replaced too: they have no tap to drop, but a matrix product runs them about 3x faster than the CPU's
convolution kernel. The suffix's other modules stay shared with the model; the model itself is never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

__all__ = ["CentreTapConv", "OnePixelPool", "one_pixel_suffix", "pixel_tap"]


class CentreTapConv(nn.Module):
    """A 1x1 convolution holding one tap (a copy) of a frozen convolution that only ever sees 1x1 maps.

    Without groups it runs as a matrix product of the pixel's channels.

    Attributes:
        weight: ``(out, in / groups, 1, 1)``, the tap's weight (frozen).
        bias: The convolution's bias (frozen), or None.
        groups: The convolution's groups.
        source: Name of the replaced convolution in the model.
        tap: Kernel index ``(i, j)`` of the copied tap.
    """

    def __init__(self, conv: nn.Conv2d, source: str, tap: tuple[int, int]) -> None:
        """Copy tap ``tap`` of ``conv`` (named ``source`` in the model)."""
        super().__init__()
        i, j = tap
        # Copies, not views: a frozen weight does not change, and the 3x3 tensor is then not kept alive by the suffix.
        self.weight = nn.Parameter(conv.weight.detach()[:, :, i : i + 1, j : j + 1].clone(), requires_grad=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.groups, self.source, self.tap = conv.groups, source, tap

    def forward(self, x: Tensor) -> Tensor:
        """The convolution on a 1x1 map.

        Raises:
            ValueError: If the map is not 1x1 (the split was built for another input size).
        """
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"{self.source} was replaced by its centre tap for 1x1 maps but got a "
                             f"{tuple(x.shape[-2:])} map; build the split without one_pixel_convs for this input size")
        if self.groups > 1:
            return nn.functional.conv2d(x, self.weight, self.bias, groups=self.groups)
        # A matmul: on the CPU about 3x faster than the 1x1 convolution (mkldnn) for resnet18's 512 channels.
        out = nn.functional.linear(x.flatten(-3), self.weight.flatten(1), self.bias)
        return out.unflatten(-1, (out.shape[-1], 1, 1))

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"source={self.source!r}, tap={self.tap}, weight={tuple(self.weight.shape)}, bias={bias}"


class OnePixelPool(nn.Module):
    """A global pool of a 1x1 map: the identity (it only checks the map size).

    Attributes:
        source: Name of the replaced pool in the model.
    """

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, x: Tensor) -> Tensor:
        """``x`` itself.

        Raises:
            ValueError: If the map is not 1x1 (the split was built for another input size).
        """
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"{self.source} was dropped for 1x1 maps but got a {tuple(x.shape[-2:])} map; build the "
                             "split without one_pixel_convs for this input size")
        return x

    def extra_repr(self) -> str:
        return f"source={self.source!r}"


def pixel_tap(conv: nn.Conv2d) -> tuple[int, int] | None:
    """Kernel index of the only tap that meets the pixel of a 1x1 input map whose output map is 1x1, or None.

    With one output position, tap ``t`` of a dimension reads input index ``t * dilation - left_padding``: the pixel
    (index 0) is met by ``t = left_padding`` (dilation 1), every other tap meets zero padding; a 1x1 kernel without
    padding is its own tap ``(0, 0)``. Anything else (dilation, non-zero padding modes, taps outside the kernel)
    returns None.
    """
    if conv.padding_mode != "zeros" or conv.dilation != (1, 1):
        return None
    if conv.padding == "valid":
        left = (0, 0)
    elif conv.padding == "same":
        left = tuple((k - 1) // 2 for k in conv.kernel_size)  # as aten pads "same": the odd extra goes right
    else:
        left = tuple(conv.padding)
    if not all(0 <= t < k for t, k in zip(left, conv.kernel_size)):
        return None
    return left[0], left[1]


class _MapSizes(fx.Interpreter):
    """Runs a graph and records the input and output shapes of every ``call_module`` node with one tensor input."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module, garbage_collect_values=False)
        self.shapes: dict[fx.Node, tuple[torch.Size, torch.Size]] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.op == "call_module" and len(n.args) == 1 and not n.kwargs and isinstance(n.args[0], fx.Node):
            x = self.env[n.args[0]]
            if isinstance(x, Tensor) and isinstance(out, Tensor):
                self.shapes[n] = (x.shape, out.shape)
        return out


def _replaceable(module: nn.Module, generated: set[int]) -> bool:
    """A plain, hook-free ``nn.Conv2d`` none of whose parameters is generated (those are swapped in by name)."""
    return (
        type(module) is nn.Conv2d  # subclasses (timm's Conv2dSame, StdConv2d...) may compute something else
        and not (module._forward_hooks or module._forward_pre_hooks)
        and not any(id(p) in generated for p in module.parameters())
    )


def _identity_pool(module: nn.Module, node: fx.Node, x_shape: torch.Size, y_shape: torch.Size) -> bool:
    """A plain, hook-free adaptive pool from a 1x1 map to a 1x1 map, the only reader of its input (no aliasing)."""
    return (
        type(module) in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
        and not (module._forward_hooks or module._forward_pre_hooks)
        and len(x_shape) >= 3 and x_shape[-2:] == (1, 1) and y_shape == x_shape
        and len(node.args[0].users) == 1
    )


def one_pixel_suffix(
    suffix: fx.GraphModule, frontier: Sequence[Tensor], param_names: Sequence[str]
) -> tuple[fx.GraphModule, tuple[str, ...], tuple[str, ...]]:
    """The suffix with every frozen convolution that only sees 1x1 maps run as a 1x1 convolution.

    Global pools of 1x1 maps (timm's ``global_pool.pool``, an ``nn.AdaptiveAvgPool2d(1)``) are the identity: they
    become a :class:`OnePixelPool` (exactly the same values; about a tenth of resnet18's suffix time at 32x32 goes to
    the pool otherwise).

    Args:
        suffix: A split's suffix (``*frontier`` -> output), sharing modules with the model.
        frontier: An example frontier (a few inputs, on the suffix's device) to find the map sizes.
        param_names: The generated parameters (never replaced: they are swapped in by name).

    Returns:
        A new suffix (the given one when nothing is replaced; it is never modified), the model names of the
        replaced convolutions and those of the replaced pools, in graph order. The new suffix shares every other module
        with the model.
    """
    generated = {id(suffix.get_parameter(n)) for n in param_names}
    finder = _MapSizes(suffix)
    with torch.no_grad():
        finder.run(*frontier)
    holder, nodes, names = nn.Module(), set(), []
    pools: dict[fx.Node, str] = {}
    for node, (x_shape, y_shape) in finder.shapes.items():
        module = suffix.get_submodule(node.target)
        if _identity_pool(module, node, x_shape, y_shape):
            key = node.target.replace(".", "_")
            if key not in holder._modules:
                holder.add_module(key, OnePixelPool(node.target))
            if holder.get_submodule(key).source == node.target:
                pools[node] = node.target
            continue
        tap = pixel_tap(module) if _replaceable(module, generated) else None
        if tap is None or len(x_shape) < 3 or x_shape[-2:] != (1, 1) or y_shape[-2:] != (1, 1):
            continue
        key = node.target.replace(".", "_")
        if key in holder._modules and holder.get_submodule(key).source != node.target:
            continue  # "a.b_c" and "a_b.c" both map to "a_b_c": keep the first
        nodes.add(node)
        if key not in holder._modules:  # a module called twice on 1x1 maps is replaced once
            holder.add_module(key, CentreTapConv(module, node.target, tap))
            names.append(node.target)
    if not names and not pools:
        return suffix, (), ()
    slot = "one_pixel"
    while hasattr(suffix, slot):
        slot += "_"
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(suffix.graph, env))
    for node, copy in env.items():
        if node in nodes:
            copy.target = f"{slot}.{node.target.replace('.', '_')}"
        elif node in pools:
            copy.target = f"{slot}.{node.target.replace('.', '_')}"
    # Built from the suffix with the holder attached for the duration: fx copies only the targets the graph uses,
    # under fresh containers, so neither the model nor the given suffix keeps anything of the change.
    suffix.add_module(slot, holder)
    try:
        simplified = fx.GraphModule(suffix, graph, class_name=type(suffix).__name__)
    finally:
        delattr(suffix, slot)
    simplified.training = suffix.training  # .train() would recurse into the modules shared with the model
    return simplified, tuple(names), tuple(dict.fromkeys(pools.values()))
