"""Cut a traced graph at the frontier of the generated parameters into a frozen prefix and a generated suffix.

Every node that depends (transitively) on a generated parameter goes to the suffix; nodes that depend on the input
only go to the prefix. The *frontier* is the set of prefix values that the suffix (or the output) reads. The cut is
made on graph nodes, not module boundaries: for resnet's ``layer4.1`` with generated ``bn1``/``bn2``, the output of the
frozen ``layer4.1.conv1`` and the block's shortcut input are the frontier, so the suffix starts at ``bn1``. Nodes that
depend neither on the input nor on a generated parameter (constants, a frozen ``pos_embed`` ...) are copied into the
suffix instead of being cached.

Both halves are :class:`torch.fx.GraphModule` built on the original model: they share its modules and tensors, and
their parameters keep their names in the model, so generated tensors are passed by those names through
:func:`torch.func.functional_call`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch.fx as fx
from torch import Tensor, nn

__all__ = ["IdentityPrefix", "NoSplit", "Partition", "partition"]

_INPLACE_OPERATORS = frozenset(
    {
        operator.iadd,
        operator.isub,
        operator.imul,
        operator.itruediv,
        operator.ifloordiv,
        operator.imod,
        operator.ipow,
        operator.imatmul,
        operator.iand,
        operator.ior,
        operator.ixor,
        operator.ilshift,
        operator.irshift,
        operator.setitem,
    }
)


class NoSplit(Exception):
    """The model cannot be usefully split; the message says why."""


class IdentityPrefix(nn.Module):
    """Prefix of the unsplit model: the input images are the only frontier tensor."""

    def forward(self, x: Tensor) -> tuple[Tensor]:
        """Return ``(x,)``."""
        return (x,)


class Partition(NamedTuple):
    """The two halves of a split model."""

    prefix: fx.GraphModule
    """Input images -> tuple of frontier tensors."""
    suffix: fx.GraphModule
    """``*frontier`` -> the model's output; holds every generated parameter under its name in the model."""
    frontier_names: tuple[str, ...]
    """fx node names of the frontier values, in the prefix's output order."""


def _mutated_arg(node: fx.Node, root: nn.Module) -> fx.Node | None:
    """The argument node whose tensor ``node`` modifies in place, or None.

    Detected: ``x.add_(y)``-style methods and functions, ``x += y``, ``x[i] = y``, modules with ``inplace=True`` and
    calls with ``inplace=True``. Writes through a view of another tensor are not detected.
    """
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if node.op == "call_method":
        inplace = name.endswith("_") and not name.startswith("_")
    elif node.op == "call_function":
        inplace = (
            node.target in _INPLACE_OPERATORS
            or (name.endswith("_") and not name.startswith("_"))
            or node.kwargs.get("inplace") is True
        )
    elif node.op == "call_module":
        inplace = getattr(root.get_submodule(node.target), "inplace", False) is True
    else:
        inplace = False
    return node.args[0] if inplace else None


def _write_edges(nodes: list[fx.Node], root: nn.Module) -> tuple[dict[fx.Node, list], dict[fx.Node, list]]:
    """Ordering edges fx does not record for in-place ops.

    Returns:
        ``after_write``: reader -> in-place writes of its tensor that run before it (the reader depends on them);
        ``before_write``: in-place write -> earlier readers of its tensor (they must run before the write).
    """
    order = {n: i for i, n in enumerate(nodes)}
    after_write: dict[fx.Node, list[fx.Node]] = {}
    before_write: dict[fx.Node, list[fx.Node]] = {}
    for node in nodes:
        base = _mutated_arg(node, root)
        if base is None:
            continue
        for user in base.users:
            if user is node:
                continue
            if order[user] > order[node]:
                after_write.setdefault(user, []).append(node)
            else:
                before_write.setdefault(node, []).append(user)
    return after_write, before_write


def _resolve_attr(root: nn.Module, target: str) -> Any:
    """``getattr`` along a dotted path."""
    obj: Any = root
    for atom in target.split("."):
        obj = getattr(obj, atom)
    return obj


def _copy_graph(nodes: list[fx.Node], keep: set[fx.Node], env: dict[fx.Node, fx.Node], graph: fx.Graph) -> None:
    """Copy the ``keep`` nodes, in order, into ``graph`` (``env`` maps original nodes to copies and is filled)."""
    for node in nodes:
        if node in keep:
            env[node] = graph.node_copy(node, env.__getitem__)


def partition(model: nn.Module, graph: fx.Graph, param_names: Sequence[str]) -> Partition:
    """Cut ``graph`` (traced from ``model``, one input) at the frontier of the generated parameters.

    Args:
        model: The traced model.
        graph: Its graph, with a single placeholder.
        param_names: Names of the generated parameters.

    Returns:
        The prefix, the suffix and the frontier's node names.

    Raises:
        NoSplit: If the graph has more than one input, does not use the generated parameters, leaves no parameter to
            the prefix, or the suffix does not reach a generated parameter by its name.
    """
    if sum(n.op == "placeholder" for n in graph.nodes) != 1:
        raise NoSplit("forward takes more than one (non-defaulted) input")
    generated = {id(model.get_parameter(n)) for n in param_names}

    def owns_generated(obj: Any) -> bool:
        if isinstance(obj, nn.Module):
            return any(id(p) in generated for _, p in obj.named_parameters(remove_duplicate=False))
        return isinstance(obj, Tensor) and id(obj) in generated

    nodes = list(graph.nodes)
    after_write, before_write = _write_edges(nodes, model)
    param_dep: set[fx.Node] = set()  # depends (transitively) on a generated parameter -> suffix
    input_dep: set[fx.Node] = set()  # depends on the input only -> prefix
    for node in nodes:
        if node.op == "output":
            continue
        inputs = node.all_input_nodes + after_write.get(node, [])
        if node.op == "placeholder":
            input_dep.add(node)
        elif (node.op == "call_module" and owns_generated(model.get_submodule(node.target))) or (
            node.op == "get_attr" and owns_generated(_resolve_attr(model, node.target))
        ):
            param_dep.add(node)
        elif any(i in param_dep for i in inputs) or any(r in param_dep for r in before_write.get(node, [])):
            param_dep.add(node)  # a frozen in-place write after a suffix read of its tensor goes to the suffix
        elif any(i in input_dep for i in inputs):
            input_dep.add(node)
    if not param_dep:
        raise NoSplit("the generated parameters are not used by the traced forward")

    output = next(n for n in nodes if n.op == "output")
    frontier = [n for n in nodes if n in input_dep and any(u in param_dep or u is output for u in n.users)]

    # Constant nodes (neither input- nor parameter-dependent) go wherever they are used; unused ones (asserts,
    # other statements) stay in the prefix. Users follow their arguments, so one reverse pass suffices.
    in_prefix = set(input_dep)
    in_suffix = set(param_dep)
    for node in reversed(nodes):
        if node.op == "output" or node in input_dep or node in param_dep:
            continue
        if not node.users or any(u in in_prefix for u in node.users):
            in_prefix.add(node)
        if any(u in in_suffix or u is output for u in node.users):
            in_suffix.add(node)

    prefix_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    _copy_graph(nodes, in_prefix, env, prefix_graph)
    prefix_graph.output(tuple(env[n] for n in frontier))
    prefix = fx.GraphModule(model, prefix_graph, class_name="FrozenPrefix")
    if not any(True for _ in prefix.parameters()):
        raise NoSplit(
            "the frozen prefix holds no parameters (the generated parameters include the first parameterized "
            "layer): nothing worth caching"
        )

    suffix_graph = fx.Graph()
    env = {n: suffix_graph.placeholder(n.name) for n in frontier}
    _copy_graph(nodes, in_suffix, env, suffix_graph)
    suffix_graph.node_copy(output, env.__getitem__)
    suffix = fx.GraphModule(model, suffix_graph, class_name="GeneratedSuffix")
    for name in param_names:  # generated tensors must be reachable in the suffix under their original names
        try:
            found = suffix.get_parameter(name)
        except AttributeError:
            found = None
        if found is not model.get_parameter(name):
            raise NoSplit(f"{name} is not reachable by name in the suffix")
    return Partition(prefix, suffix, tuple(n.name for n in frontier))
