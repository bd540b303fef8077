"""Trace a classifier into a :mod:`torch.fx` graph with one input, the way timm's own feature extraction does.

timm marks modules and functions that ``torch.fx`` cannot trace (``get_notrace_modules`` /
``get_notrace_functions``); they become leaves. Defaulted ``forward`` arguments after the first are traced as
constants, and the guards fx inserts on them are removed, so that the graph has a single input: the images.

When neither traces the model, a last tracer keeps every module that holds no generated parameter as a leaf. This is
what traces 🤗 transformers classifiers: their embeddings check the input's channels or dtype in Python (control flow
``torch.fx`` cannot follow), but those checks sit in frozen modules, which the graph then calls whole. A model whose
generated parameters sit in a module with such a check (a ViT's final ``layernorm`` lives in ``ViTModel``, whose
``forward`` checks the dtype) still cannot be traced: it falls back to the whole-model path, exact and slower.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

__all__ = ["trace"]

# fx helpers that only check a concrete arg (besides torch._assert); their guards on defaulted inputs are dropped.
_ASSERT_FN_NAMES = frozenset({"_assert_is_none"})


class _LeafTracer(fx.Tracer):
    """``torch.fx`` tracer that treats timm's no-trace modules as leaves and autowraps timm's no-trace functions."""

    def __init__(self, leaf_types: Sequence[type], autowrap_functions: Sequence[Callable[..., Any]]) -> None:
        super().__init__(autowrap_functions=tuple(autowrap_functions))
        self._leaf_types = tuple(leaf_types)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """Leaf if the module is a registered timm no-trace module or a standard ``torch.nn`` leaf."""
        if self._leaf_types and isinstance(m, self._leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)


class _FrozenLeafTracer(fx.Tracer):
    """``torch.fx`` tracer that calls every module holding none of the generated parameters as a leaf."""

    def __init__(self, generated: Sequence[str]) -> None:
        super().__init__()
        self._generated = frozenset(generated)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name and not any(f"{module_qualified_name}.{name}" in self._generated
                                             for name, _ in m.named_parameters(remove_duplicate=False)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _tracers(generated: Sequence[str]) -> list[tuple[str, fx.Tracer]]:
    """Tracers to try, in order: timm-aware, plain ``torch.fx``, then frozen modules as leaves (given names)."""
    from timm.layers import get_notrace_functions, get_notrace_modules

    functions = [f for f in get_notrace_functions() if callable(f)]
    tracers: list[tuple[str, fx.Tracer]] = [("timm", _LeafTracer(get_notrace_modules(), functions)),
                                            ("torch.fx", fx.Tracer())]
    return tracers + ([("frozen-leaves", _FrozenLeafTracer(generated))] if generated else [])


def _concrete_args(model: nn.Module) -> dict[str, Any]:
    """Defaults of ``forward`` arguments after the first, traced as constants."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in signature.parameters.values() if p.kind in kinds]
    return {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}


def _is_guard(node: fx.Node) -> bool:
    return node.op == "call_function" and (
        node.target is torch._assert or getattr(node.target, "__name__", "") in _ASSERT_FN_NAMES
    )


def _drop_constant_placeholders(graph: fx.Graph) -> None:
    """Remove the placeholders of arguments traced as constants, with their guards, when nothing else uses them."""
    for node in [n for n in graph.nodes if n.op == "placeholder"][1:]:
        # fx guards a concrete arg with `_assert_is_none(arg)` or `torch._assert(arg == value)`: drop those guards
        for user in list(node.users):
            if user.op == "call_function" and user.target is operator.eq and all(_is_guard(u) for u in user.users):
                for guard in list(user.users):
                    graph.erase_node(guard)
                graph.erase_node(user)
            elif _is_guard(user):
                graph.erase_node(user)
        if node.users:
            return
        graph.erase_node(node)


def trace(model: nn.Module, generated: Sequence[str] = ()) -> tuple[fx.Graph, str]:
    """Trace ``model`` with the first tracer that succeeds.

    Args:
        model: Module to trace.
        generated: names of the generated parameters; given, a last tracer keeps the modules holding none of them
            as leaves.

    Returns:
        The graph and the name of the tracer that produced it (``"timm"``, ``"torch.fx"`` or
        ``"frozen-leaves"``). Placeholders of defaulted arguments are removed unless the graph still uses them.

    Raises:
        RuntimeError: If no tracer can trace the model (the message lists every tracer's error).
    """
    errors = []
    concrete = _concrete_args(model)
    for name, tracer in _tracers(generated):
        try:
            graph = tracer.trace(model, concrete_args=concrete or None)
        except Exception as err:  # noqa: BLE001 - any tracing failure means "try the next tracer"
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        _drop_constant_placeholders(graph)
        return graph, name
    raise RuntimeError("; ".join(errors))
