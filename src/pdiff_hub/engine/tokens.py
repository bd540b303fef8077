"""Carry only the tokens a transformer's head reads through a split's token-wise suffix.

In a timm ViT whose generated parameters are the last block's ``norm2`` and the final ``norm``, the suffix runs the
last block's MLP, the residual add and the final norm on every token (65 for a 32x32 image in 4x4 patches), yet the
head (``global_pool='token'``) reads ``x[:, 0]`` only. Every op between the frontier and that read works on each token
alone (linears, norms over the channels, activations, dropout, layer scale, residual adds), so token 0 of the logits'
input depends on token 0 of the frontier only: caching and running that one token gives the same logits with 65x less
memory and work.

:func:`token_suffix` checks this on the suffix's graph, op by op, with the shapes of an example run: the frontier
values with a token dimension (``(N, T, C)``) may only flow through token-wise ops until reads ``x[:, k]`` of constant
tokens. It then returns a prefix whose frontier keeps tokens ``lo..hi-1`` (the range read: ``[0, 1)`` for a class
token, ``[0, 2)`` for DeiT's class and distillation tokens) and a suffix reading token ``k - lo``. Anything else (a
head that averages or max-pools the tokens, attention after the frontier, a reshape, a shape read) leaves the split
as it is. The split adopts the result only if it still reproduces the model on example inputs.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TokenSplit", "token_suffix"]

# Modules (exact types: subclasses such as timm's LayerNorm2d normalize another dimension) that act on the last
# dimension of each token alone. Dropout is the identity in eval mode, the only mode splits run in.
_TOKENWISE_MODULES = (
    nn.Linear, nn.Identity, nn.Dropout, nn.GELU, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Softplus,
)
# Functions applied to their first argument token by token (other arguments: weights, flags).
_TOKENWISE_FUNCTIONS = frozenset({
    F.linear, torch._C._nn.linear, F.gelu, torch._C._nn.gelu, F.relu, torch.relu, F.silu, F.mish, torch.sigmoid,
    torch.tanh, F.hardswish, F.leaky_relu, F.elu, F.softplus, F.dropout,
})
_NORMS = frozenset({F.layer_norm, F.rms_norm})  # token-wise when they normalize the last dimension only
# Element-wise arithmetic: token-wise when every operand is a token tensor, a number or broadcasts along the tokens.
_ARITHMETIC = frozenset({operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
                         torch.div})
_ARITHMETIC_METHODS = frozenset({"add", "sub", "mul", "div", "add_", "sub_", "mul_", "div_"})
_UNARY_METHODS = frozenset({"contiguous", "clone"})


class TokenSplit(NamedTuple):
    """A prefix and a suffix that carry only the tokens read by the head."""

    prefix: fx.GraphModule
    """Input images -> the frontier, its token tensors cut to tokens ``lo..hi-1``."""
    suffix: fx.GraphModule
    """The suffix reading token ``k - lo`` where it read token ``k``."""
    tokens: tuple[int, int]
    """``(lo, hi)``: the range of tokens kept."""


class _Values(fx.Interpreter):
    """Runs a graph and keeps every node's value (the suffix of a few inputs: small)."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module, garbage_collect_values=False)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out
        return out


def _read_token(node: fx.Node, region: set[fx.Node]) -> int | None:
    """``k`` when ``node`` is ``x[:, k]`` of a token tensor ``x`` with a constant ``k >= 0``, else None."""
    if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2:
        return None
    source, index = node.args
    if source not in region or not isinstance(index, tuple) or len(index) != 2:
        return None
    whole, k = index
    if whole != slice(None) or type(k) is not int or k < 0:
        return None
    return k


def _broadcasts_along_tokens(value: Any) -> bool:
    """A number, or a tensor that is the same for every sample and token (shape ``(C,)``, ``(1, 1, C)``...)."""
    if isinstance(value, (int, float, bool)):
        return True
    return isinstance(value, Tensor) and value.dim() <= 3 and all(d == 1 for d in value.shape[:-1])


def _tokenwise(node: fx.Node, root: nn.Module, region: set[fx.Node], values: dict[fx.Node, Any]) -> bool:
    """Whether ``node`` computes each token of its token-tensor inputs from that token alone."""

    def operand_ok(arg: Any) -> bool:
        if isinstance(arg, fx.Node):
            return arg in region or _broadcasts_along_tokens(values.get(arg))
        return _broadcasts_along_tokens(arg)

    def only_first(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        rest = list(args[1:]) + list(kwargs.values())
        return bool(args) and args[0] in region and not any(isinstance(a, fx.Node) and a in region for a in rest)

    if node.op == "call_module":
        module = root.get_submodule(node.target)
        if type(module) is nn.LayerNorm:
            return len(module.normalized_shape) == 1 and only_first(node.args, node.kwargs)
        return type(module) in _TOKENWISE_MODULES and only_first(node.args, node.kwargs)
    if node.op == "call_function":
        if node.target in _TOKENWISE_FUNCTIONS:
            return only_first(node.args, node.kwargs)
        if node.target in _NORMS:
            shape = node.args[1] if len(node.args) > 1 else node.kwargs.get("normalized_shape")
            return isinstance(shape, (tuple, list)) and len(shape) == 1 and only_first(node.args, node.kwargs)
        if node.target in _ARITHMETIC:
            return all(operand_ok(a) for a in (*node.args, *node.kwargs.values()))
        return False
    if node.op == "call_method":
        if node.target in _ARITHMETIC_METHODS:
            return all(operand_ok(a) for a in (*node.args, *node.kwargs.values()))
        return node.target in _UNARY_METHODS and len(node.args) == 1 and not node.kwargs
    return False


def _token_reads(suffix: fx.GraphModule, values: dict[fx.Node, Any]) -> tuple[list[int], dict[fx.Node, int]] | None:
    """The suffix inputs with a token dimension and the token reads, or None if a token tensor goes elsewhere."""
    placeholders = [n for n in suffix.graph.nodes if n.op == "placeholder"]
    shapes = [values[p].shape if isinstance(values[p], Tensor) else None for p in placeholders]
    token_inputs = [i for i, s in enumerate(shapes) if s is not None and len(s) == 3]
    if not token_inputs:
        return None
    batch_tokens = shapes[token_inputs[0]][:2]
    if any(shapes[i][:2] != batch_tokens for i in token_inputs):
        return None
    region = {placeholders[i] for i in token_inputs}
    reads: dict[fx.Node, int] = {}
    for node in suffix.graph.nodes:
        if node.op == "placeholder" or not any(a in region for a in node.all_input_nodes):
            continue
        k = _read_token(node, region)
        if k is not None:
            reads[node] = k
            continue
        out = values.get(node)
        same_layout = isinstance(out, Tensor) and out.dim() == 3 and out.shape[:2] == batch_tokens
        if not same_layout or not _tokenwise(node, suffix, region, values):
            return None  # the output, a pooling over tokens, attention, a reshape...: every token may matter
        region.add(node)
    return (token_inputs, reads) if reads else None


def _copy(module: fx.GraphModule, graph: fx.Graph, name: str) -> fx.GraphModule:
    copy = fx.GraphModule(module, graph, class_name=name)
    copy.training = module.training  # .train() would recurse into the modules shared with the model
    return copy


def token_suffix(prefix: fx.GraphModule, suffix: fx.GraphModule, frontier: Sequence[Tensor]) -> TokenSplit | None:
    """The split carrying only the tokens the suffix reads, or None when it needs every token (or nothing is saved).

    Args:
        prefix: A split's prefix (images -> frontier tuple), sharing modules with the model.
        suffix: Its suffix (``*frontier`` -> output).
        frontier: The prefix's output on a few example inputs (to know the shapes).

    Returns:
        New prefix and suffix (neither given module is modified; both share every module with the model) and the
        range of tokens kept, or None.
    """
    interpreter = _Values(suffix)
    with torch.no_grad():
        interpreter.run(*frontier)
    found = _token_reads(suffix, interpreter.values)
    if found is None:
        return None
    token_inputs, reads = found
    lo, hi = min(reads.values()), max(reads.values()) + 1
    if hi - lo >= frontier[token_inputs[0]].shape[1]:
        return None

    prefix_graph = fx.Graph()
    output = prefix_graph.graph_copy(prefix.graph, {})
    outputs = list(output)
    for i in token_inputs:
        kept = prefix_graph.call_function(operator.getitem, (outputs[i], (slice(None), slice(lo, hi))))
        outputs[i] = prefix_graph.call_method("contiguous", (kept,))
    prefix_graph.output(tuple(outputs))

    suffix_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    suffix_graph.output(suffix_graph.graph_copy(suffix.graph, env))
    for node, k in reads.items():
        env[node].args = (env[node.args[0]], (slice(None), k - lo))
    return TokenSplit(_copy(prefix, prefix_graph, type(prefix).__name__),
                      _copy(suffix, suffix_graph, type(suffix).__name__), (lo, hi))
