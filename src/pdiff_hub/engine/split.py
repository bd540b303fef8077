"""Frozen-prefix caching: evaluate many generated parameter vectors at the cost of the layers they change.

p-diff generates a small subset of a network's parameters (for example ``layer4.1.bn1.weight/bias`` and
``layer4.1.bn2.weight/bias`` of a timm ``resnet18``); every other parameter is frozen and normalization layers are in
eval mode. The activations of the frozen part that feed the generated part are therefore the same for every generated
parameter vector. :class:`FrozenPrefixSplit` traces the model with :mod:`torch.fx`, cuts the graph at those activations
(the *frontier*) and yields two graph modules:

* ``prefix``: input images -> tuple of frontier tensors, run once per input by
  :meth:`FrozenPrefixSplit.compute_prefix`;
* ``suffix``: frontier tensors -> logits, containing every node that depends (transitively) on a generated parameter.
  Its parameters and buffers keep the names they have in the original model (they are the original's tensors), so
  generated tensors are passed by their original names through :func:`torch.func.functional_call`.

The cut is made on graph nodes, not module boundaries: for resnet's ``layer4.1`` with generated ``bn1``/``bn2``, the
output of the frozen ``layer4.1.conv1`` and the block's shortcut input are the frontier, so the suffix starts at
``bn1``.
Nodes that depend neither on the input nor on a generated parameter (constants, frozen ``pos_embed`` ...) are copied
into the suffix instead of being cached.

Memory: the frontier is stored as float32 on CPU, i.e. ``N * frontier_numel_per_sample * 4`` bytes for ``N`` inputs
(see :attr:`FrozenPrefixSplit.frontier_nbytes_per_sample`). For resnet18 at 32x32 with generated ``layer4.1.bn1/bn2``
that is ``2 * 512 * 1 * 1`` floats = 4 KiB per image (8 MB for 2,000 images); at 224x224 it is ``2 * 512 * 7 * 7``
floats = 196 KiB per image (1.9 GB for 10,000 images). The cached chunks are moved to the model's device batch by batch.

When the split is impossible or useless the class falls back to ``prefix`` = identity (returns the input images) and
``suffix`` = the whole model, with :attr:`FrozenPrefixSplit.is_split` False and the reason in
:attr:`FrozenPrefixSplit.fallback_reason`. Every split is checked on a few example inputs (at construction when
``example_input`` is given, otherwise on the first images passed to :meth:`FrozenPrefixSplit.compute_prefix`): the
frontier must be tensors with the batch dimension first, and the split must reproduce the full model's logits for the
current and for perturbed generated parameters; otherwise the fallback is used.
"""

from __future__ import annotations

import inspect
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten

__all__ = ["FrozenPrefixSplit", "ParamSets", "PredictMethod"]

ParamSets = Tensor | Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]]
"""Parameter sets accepted by :meth:`FrozenPrefixSplit.predict_many`.

* a ``(M, P)`` tensor of flat vectors laid out as :meth:`FrozenPrefixSplit.flatten_params` does (``param_names`` order,
  each tensor flattened), or a single ``(P,)`` vector;
* a mapping ``name -> (M, *shape)`` tensor of stacked parameter sets;
* a sequence of ``M`` mappings ``name -> tensor``.
"""

PredictMethod = Literal["auto", "vmap", "loop"]

# fx helpers that only check a concrete arg (besides torch._assert); their guards on defaulted inputs are dropped.
_ASSERT_FN_NAMES = frozenset({"_assert_is_none"})


class _IdentityPrefix(nn.Module):
    """Fallback prefix: returns the input images as the only frontier tensor."""

    def forward(self, x: Tensor) -> tuple[Tensor]:
        """Return ``(x,)``.

        Args:
            x: Input batch.

        Returns:
            A one-element tuple holding ``x``.
        """
        return (x,)


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


def _tracers() -> list[tuple[str, fx.Tracer]]:
    """Tracers to try, in order: timm-aware (when timm is installed), then plain ``torch.fx``."""
    tracers: list[tuple[str, fx.Tracer]] = []
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # pragma: no cover - timm is a dependency, but keep the module usable without it
        pass
    else:
        functions = [f for f in get_notrace_functions() if callable(f)]
        tracers.append(("timm", _LeafTracer(get_notrace_modules(), functions)))
    tracers.append(("torch.fx", fx.Tracer()))
    return tracers


def _concrete_args(model: nn.Module) -> dict[str, Any]:
    """Defaults of ``forward`` arguments after the first, traced as constants."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in signature.parameters.values() if p.kind in kinds]
    return {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}


def _trace(model: nn.Module) -> tuple[fx.Graph, str]:
    """Trace ``model`` with the first tracer that succeeds.

    Args:
        model: Module to trace.

    Returns:
        The graph and the name of the tracer that produced it.

    Raises:
        RuntimeError: If no tracer can trace the model (message lists every tracer's error).
    """
    errors = []
    concrete = _concrete_args(model)
    for name, tracer in _tracers():
        try:
            graph = tracer.trace(model, concrete_args=concrete or None)
        except Exception as err:  # noqa: BLE001 - any tracing failure means "try the next tracer"
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        return graph, name
    raise RuntimeError("; ".join(errors))


def _drop_extra_placeholders(graph: fx.Graph) -> fx.Node | None:
    """Remove placeholders of defaulted ``forward`` arguments and return the input placeholder.

    Args:
        graph: Traced graph, modified in place.

    Returns:
        The single remaining placeholder, or None when another placeholder is still used.
    """
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if not placeholders:
        return None

    def is_guard(node: fx.Node) -> bool:
        return node.op == "call_function" and (
            node.target is torch._assert or getattr(node.target, "__name__", "") in _ASSERT_FN_NAMES
        )

    for node in placeholders[1:]:
        # fx guards a concrete arg with `_assert_is_none(arg)` or `torch._assert(arg == value)`: drop those guards
        for user in list(node.users):
            if user.op == "call_function" and user.target is operator.eq and all(is_guard(u) for u in user.users):
                for guard in list(user.users):
                    graph.erase_node(guard)
                graph.erase_node(user)
            elif is_guard(user):
                graph.erase_node(user)
        if node.users:
            return None
        graph.erase_node(node)
    return placeholders[0]


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


def _mutated_arg(node: fx.Node, root: nn.Module) -> fx.Node | None:
    """The argument node whose tensor ``node`` modifies in place, or None.

    Detected: ``x.add_(y)``-style methods and functions, ``x += y``, ``x[i] = y``, modules with ``inplace=True`` and
    calls with ``inplace=True``. Writes through a view of another tensor are not detected.

    Args:
        node: Graph node.
        root: Traced module (to look up ``call_module`` targets).

    Returns:
        The mutated argument node, or None.
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


def _resolve_attr(root: nn.Module, target: str) -> Any:
    """``getattr`` along a dotted path."""
    obj: Any = root
    for atom in target.split("."):
        obj = getattr(obj, atom)
    return obj


def _close(a: Tensor, b: Tensor) -> bool:
    """Equal up to float noise (kernels that depend on the batch size, TF32): a wrong split differs by far more."""
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    return torch.allclose(a, b, rtol=1e-3, atol=1e-4 * scale)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` (and submodules) in eval mode, restoring every module's flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class FrozenPrefixSplit:
    """Splits a model into a frozen prefix (computed once per input) and a suffix that depends on generated parameters.

    Build it with :meth:`from_model`. Typical use::

        split = FrozenPrefixSplit.from_model(model, ["layer4.1.bn1.weight", "layer4.1.bn1.bias"])
        frontier = split.compute_prefix(images)            # once
        logits = split.suffix_logits(frontier, params)     # per generated parameter set
        labels = split.predict_many(frontier, flat_vectors)  # (M, N) for M parameter sets

    The prefix and suffix share modules and tensors with ``model`` (no copy): training ``suffix.parameters()`` (e.g.
    when collecting checkpoints on cached frontier batches) updates the model's own parameters, and the suffix sees
    the model's current values. :func:`torch.func.functional_call` swaps tensors on those shared modules for the
    duration of a call, so do not run the model concurrently from another thread.

    Attributes:
        model: The original model (switched to eval mode by :meth:`from_model`).
        param_names: Names of the generated parameters, in the order used by flat parameter vectors.
        param_shapes: Shape of each generated parameter.
        prefix: Input images -> tuple of frontier tensors (batch dimension first).
        suffix: ``*frontier`` -> logits; parameters and buffers named as in ``model``.
        is_split: False when the fallback (prefix = identity, suffix = whole model) is used.
        fallback_reason: Why the fallback is used (None when split).
        tracer: Name of the tracer that traced the model (``"timm"`` or ``"torch.fx"``), None if tracing failed.
        frontier_names: fx node names of the frontier values (``("input",)``-like in the fallback).
        validated: Whether the split was checked on example inputs yet.
        frontier_nbytes_per_sample: Bytes per input of the cached frontier (known after validation).
        vmap_error: Why :func:`torch.func.vmap` failed on the suffix, if it did (predictions then use the loop).
    """

    #: Method used by :meth:`predict_many` for ``method="auto"``, by the model's device type (others: ``"loop"``).
    #: Chosen with ``benchmarks/prefix_speed.py`` (resnet18, layer4.1.bn1/bn2, 32x32 images): on CPU (2 threads) the
    #: loop matched or beat vmap (22 ms vs 23-37 ms per set, 2,000 images); on an H200 vmap over all sets per call was
    #: 3x faster (0.9 vs 2.7 ms per set, 2,000 images; 3.6 vs 12 ms, 10,000 images).
    default_predict_method: Mapping[str, Literal["vmap", "loop"]] = {"cpu": "loop", "cuda": "vmap"}

    #: Frontier bytes one vmap call may see (sets the default chunk size of :meth:`predict_many`). None: 1/64 of the
    #: free memory of the model's CUDA device (about 2 GiB on an idle H200), 512 MiB elsewhere.
    vmap_frontier_bytes: int | None = None

    def __init__(
        self,
        model: nn.Module,
        param_names: Sequence[str],
        prefix: nn.Module,
        suffix: nn.Module,
        *,
        is_split: bool,
        fallback_reason: str | None = None,
        tracer: str | None = None,
        frontier_names: Sequence[str] = ("input",),
    ) -> None:
        """Store a split; use :meth:`from_model` instead of calling this directly.

        Args:
            model: The original model.
            param_names: Generated parameter names.
            prefix: Prefix module.
            suffix: Suffix module.
            is_split: Whether ``prefix``/``suffix`` are a real split.
            fallback_reason: Reason for the fallback when not split.
            tracer: Name of the tracer used.
            frontier_names: Names of the frontier values.
        """
        self.model = model
        self.param_names: tuple[str, ...] = tuple(param_names)
        self.param_shapes: dict[str, torch.Size] = {n: model.get_parameter(n).shape for n in self.param_names}
        self.prefix = prefix
        self.suffix = suffix
        self.is_split = is_split
        self.fallback_reason = fallback_reason
        self.tracer = tracer
        self.frontier_names: tuple[str, ...] = tuple(frontier_names)
        self.validated = False
        self.frontier_nbytes_per_sample: int | None = None
        self.vmap_error: str | None = None
        self._clone_frontier = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        param_names: Sequence[str],
        example_input: Tensor | None = None,
    ) -> FrozenPrefixSplit:
        """Trace ``model`` and split it at the frontier of the generated parameters.

        Args:
            model: Classifier mapping an input batch to logits. Switched to eval mode.
            param_names: Names (as in ``model.named_parameters()``) of the generated parameters.
            example_input: A few inputs used to validate the split now; without it validation runs on the first
                images given to :meth:`compute_prefix` (and may switch to the fallback then).

        Returns:
            The split (or the fallback, with ``fallback_reason`` set).

        Raises:
            ValueError: If ``param_names`` is empty, has duplicates or names something that is not a parameter.
        """
        names = list(param_names)
        if not names:
            raise ValueError("param_names is empty")
        if len(set(names)) != len(names):
            raise ValueError("param_names has duplicates")
        all_params = dict(model.named_parameters(remove_duplicate=False))
        missing = [n for n in names if n not in all_params]
        if missing:
            raise ValueError(f"not parameters of the model: {missing}")
        model.eval()

        split = cls._build(model, names)
        if example_input is not None:
            split.validate(example_input)
        return split

    @classmethod
    def fallback(
        cls, model: nn.Module, param_names: Sequence[str], reason: str, tracer: str | None = None
    ) -> FrozenPrefixSplit:
        """The no-split variant: prefix returns the images, suffix is the whole model.

        Args:
            model: The original model.
            param_names: Generated parameter names.
            reason: Why no split is used.
            tracer: Name of the tracer used, if any.

        Returns:
            A :class:`FrozenPrefixSplit` with ``is_split`` False.
        """
        return cls(model, param_names, _IdentityPrefix(), model, is_split=False, fallback_reason=reason, tracer=tracer)

    @classmethod
    def _build(cls, model: nn.Module, names: list[str]) -> FrozenPrefixSplit:
        """Trace and cut the graph (no validation)."""
        try:
            graph, tracer = _trace(model)
        except RuntimeError as err:
            return cls.fallback(model, names, f"tracing failed ({err})")

        placeholder = _drop_extra_placeholders(graph)
        if placeholder is None:
            return cls.fallback(model, names, "forward takes more than one (non-defaulted) input", tracer)

        generated = {id(model.get_parameter(n)) for n in names}

        def owns_generated(obj: Any) -> bool:
            if isinstance(obj, nn.Module):
                return any(id(p) in generated for _, p in obj.named_parameters(remove_duplicate=False))
            return isinstance(obj, Tensor) and id(obj) in generated

        nodes = list(graph.nodes)
        order = {n: i for i, n in enumerate(nodes)}
        # fx has no edge from an in-place op to later readers of the tensor it mutates: add it (`after_write`), and
        # remember earlier readers, which must run before the write (`before_write`).
        after_write: dict[fx.Node, list[fx.Node]] = {}
        before_write: dict[fx.Node, list[fx.Node]] = {}
        for node in nodes:
            base = _mutated_arg(node, model)
            if base is None:
                continue
            for user in base.users:
                if user is node:
                    continue
                if order[user] > order[node]:
                    after_write.setdefault(user, []).append(node)
                else:
                    before_write.setdefault(node, []).append(user)

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
            return cls.fallback(model, names, "the generated parameters are not used by the traced forward", tracer)

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
        for node in nodes:
            if node in in_prefix:
                env[node] = prefix_graph.node_copy(node, env.__getitem__)
        prefix_graph.output(tuple(env[n] for n in frontier))
        prefix = fx.GraphModule(model, prefix_graph, class_name="FrozenPrefix")

        if not any(True for _ in prefix.parameters()):
            reason = (
                "the frozen prefix holds no parameters (the generated parameters include the first parameterized "
                "layer): nothing worth caching"
            )
            return cls.fallback(model, names, reason, tracer)

        suffix_graph = fx.Graph()
        env = {n: suffix_graph.placeholder(n.name) for n in frontier}
        for node in nodes:
            if node in in_suffix:
                env[node] = suffix_graph.node_copy(node, env.__getitem__)
        suffix_graph.node_copy(output, env.__getitem__)
        suffix = fx.GraphModule(model, suffix_graph, class_name="GeneratedSuffix")

        for name in names:  # generated tensors must be reachable in the suffix under their original names
            try:
                found = suffix.get_parameter(name)
            except AttributeError:
                found = None
            if found is not model.get_parameter(name):
                return cls.fallback(model, names, f"{name} is not reachable by name in the suffix", tracer)

        return cls(
            model,
            names,
            prefix,
            suffix,
            is_split=True,
            tracer=tracer,
            frontier_names=[n.name for n in frontier],
        )

    def _to_fallback(self, reason: str) -> None:
        """Switch this instance to the fallback."""
        self.prefix = _IdentityPrefix()
        self.suffix = self.model
        self.is_split = False
        self.fallback_reason = reason
        self.frontier_names = ("input",)

    # ------------------------------------------------------------------ validation

    def validate(self, example_input: Tensor) -> bool:
        """Check the split on a few inputs and switch to the fallback if it is wrong.

        Checks: the frontier is a tuple of tensors whose first dimension is the batch (run with 3 and 2 inputs, the
        first rows agree); the split reproduces the full model's outputs for the current generated parameters and
        for a random perturbation of them; whether the suffix mutates its frontier inputs in place (then chunks are
        cloned before each suffix call).

        Args:
            example_input: At least one input (batch dimension first); 3 are used, cycling if fewer.

        Returns:
            ``is_split`` after validation.
        """
        if example_input.shape[0] == 0:
            raise ValueError("example_input is empty")
        index = torch.arange(3) % example_input.shape[0]
        x3 = example_input[index.to(example_input.device)].to(self._device(example_input.device))
        generator = torch.Generator().manual_seed(0)
        perturbed = {}
        for name in self.param_names:
            p = self.model.get_parameter(name).detach()
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
            perturbed[name] = p + 0.1 * (p.abs().mean() + 0.1) * noise

        reason = None
        with torch.no_grad(), _eval_mode(self.model), _eval_mode(self.prefix), _eval_mode(self.suffix):
            if self.is_split:
                reason = self._check_split(x3, perturbed)
            if reason is None:
                frontier = tuple(self.prefix(x3))
                snapshot = [t.clone() for t in frontier]
                self.suffix(*frontier)
                self._clone_frontier = any(not torch.equal(a, b) for a, b in zip(snapshot, frontier))
        if reason is not None:
            self._to_fallback(reason)
            with torch.no_grad(), _eval_mode(self.model):
                frontier = (x3,)
                snapshot = [x3.clone()]
                self.model(x3)
                self._clone_frontier = not torch.equal(snapshot[0], x3)
        self.frontier_nbytes_per_sample = sum(
            t[0].numel() * (4 if t.is_floating_point() else t.element_size()) for t in frontier
        )
        self.validated = True
        return self.is_split

    def _check_split(self, x3: Tensor, perturbed: Mapping[str, Tensor]) -> str | None:
        """Return why the split is wrong on ``x3``, or None."""
        try:
            out3 = self.prefix(x3)
            out2 = self.prefix(x3[:2].clone())
        except Exception as err:  # noqa: BLE001
            return f"prefix failed on example input ({type(err).__name__}: {err})"
        if not isinstance(out3, tuple):
            return "prefix did not return a tuple"
        for name, a, b in zip(self.frontier_names, out3, out2):
            if not isinstance(a, Tensor) or not isinstance(b, Tensor):
                return f"frontier value {name!r} is not a tensor ({type(a).__name__})"
            if a.dim() == 0 or a.shape[0] != 3 or b.shape[0] != 2 or a.shape[1:] != b.shape[1:]:
                return f"frontier value {name!r} does not have the batch dimension first (shape {tuple(a.shape)})"
            if not _close(a[:2], b):
                return f"frontier value {name!r} is not computed per sample"
        for params in (None, perturbed):
            try:
                ref = functional_call(self.model, params, (x3,)) if params else self.model(x3)
                frontier = tuple(t.clone() for t in out3)
                got = functional_call(self.suffix, params, frontier) if params else self.suffix(*frontier)
            except Exception as err:  # noqa: BLE001
                return f"suffix failed on example input ({type(err).__name__}: {err})"
            ref_leaves, ref_spec = tree_flatten(ref)
            got_leaves, got_spec = tree_flatten(got)
            if ref_spec != got_spec:
                return "split output structure differs from the model's"
            for r, g in zip(ref_leaves, got_leaves):
                if isinstance(r, Tensor):
                    same = isinstance(g, Tensor) and r.shape == g.shape and _close(r, g)
                else:
                    same = r == g
                if not same:
                    which = "perturbed" if params else "current"
                    return f"split output differs from the full model for the {which} generated parameters"
        return None

    # ------------------------------------------------------------------ evaluation

    def _device(self, default: torch.device | None = None) -> torch.device:
        """Device of the model's first parameter or buffer."""
        for t in self.model.parameters():
            return t.device
        for t in self.model.buffers():
            return t.device
        return default if default is not None else torch.device("cpu")

    def compute_prefix(self, images: Tensor, batch_size: int = 512) -> tuple[Tensor, ...]:
        """Run the frozen prefix once on all images (no grad, eval mode, in batches).

        The first call validates the split on the first images if that was not done yet (see :meth:`validate`).

        Args:
            images: ``(N, ...)`` inputs.
            batch_size: Inputs per prefix call.

        Returns:
            The frontier: tensors with first dimension ``N`` on CPU, floating ones as float32. In the fallback this is
            ``(images,)``.
        """
        if not self.validated:
            self.validate(images[: min(3, images.shape[0])])
        if not self.is_split:
            x = images.detach()
            return (x.to("cpu", torch.float32) if x.is_floating_point() else x.cpu(),)
        device = self._device(images.device)
        n = images.shape[0]
        out: list[Tensor] = []
        with torch.no_grad(), _eval_mode(self.prefix):
            for start in range(0, n, batch_size):
                chunk = self.prefix(images[start : start + batch_size].to(device))
                if not out:  # allocate once, fill in place: no 2x peak memory from a final torch.cat
                    out = [
                        torch.empty((n, *t.shape[1:]), dtype=torch.float32 if t.is_floating_point() else t.dtype)
                        for t in chunk
                    ]
                for dst, src in zip(out, chunk):
                    dst[start : start + src.shape[0]].copy_(src)
        return tuple(out)

    def _replaceable(self) -> set[str]:
        """Names that :meth:`suffix_logits` accepts in ``params``."""
        names = {n for n, _ in self.suffix.named_parameters(remove_duplicate=False)}
        return names | {n for n, _ in self.suffix.named_buffers(remove_duplicate=False)}

    def _check_params(self, names: Sequence[str]) -> None:
        """Raise KeyError for names the suffix does not hold."""
        unknown = sorted(set(names) - self._replaceable())
        if unknown:
            where = "frozen prefix or not in the model" if self.is_split else "model"
            raise KeyError(f"cannot replace {unknown}: not tensors of the suffix ({where})")

    def _frontier_chunk(self, frontier: tuple[Tensor, ...], start: int, stop: int, device: torch.device):
        """Slice one batch of the cached frontier onto ``device`` (cloned if the suffix mutates its inputs)."""
        chunk = []
        for t in frontier:
            c = t[start:stop]
            moved = c.to(device, non_blocking=True)
            chunk.append(moved.clone() if self._clone_frontier and moved is c else moved)
        return tuple(chunk)

    @staticmethod
    def _as_frontier(frontier: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Normalize a frontier argument to a non-empty tuple of tensors with the same first dimension."""
        out = (frontier,) if isinstance(frontier, Tensor) else tuple(frontier)
        if not out or any(t.shape[0] != out[0].shape[0] for t in out):
            raise ValueError("frontier must be non-empty tensors with the same first (batch) dimension")
        return out

    def suffix_logits(
        self,
        frontier: Tensor | Sequence[Tensor],
        params: Mapping[str, Tensor] | None = None,
        batch_size: int = 4096,
    ) -> Tensor:
        """Run the suffix on the cached frontier, with some original-named tensors replaced.

        Grad mode is the caller's: under ``torch.no_grad()`` for evaluation, with grad to train generated parameters
        (gradients flow into ``params`` or, without ``params``, into the model's own parameters).

        Args:
            frontier: Output of :meth:`compute_prefix`.
            params: Tensors (by their name in the original model) that replace the model's during this call, via
                :func:`torch.func.functional_call`. Only tensors of the suffix can be replaced.
            batch_size: Inputs per suffix call.

        Returns:
            ``(N, num_classes)`` logits on the model's device.

        Raises:
            KeyError: If ``params`` names a tensor of the frozen prefix (or one the model does not have).
        """
        frontier = self._as_frontier(frontier)
        device = self._device()
        if params:
            self._check_params(list(params))
            params = {k: v.to(device) for k, v in params.items()}
        return self._run_suffix(frontier, params, batch_size, device)

    def _run_suffix(
        self, frontier: tuple[Tensor, ...], params: Mapping[str, Tensor] | None, batch_size: int, device: torch.device
    ) -> Tensor:
        """Batched suffix call without argument checks."""
        outs = []
        for start in range(0, frontier[0].shape[0], batch_size):
            xs = self._frontier_chunk(frontier, start, start + batch_size, device)
            outs.append(functional_call(self.suffix, params, xs) if params else self.suffix(*xs))
        return torch.cat(outs)

    # ------------------------------------------------------------------ parameter vectors

    @property
    def num_params(self) -> int:
        """Length of a flat generated-parameter vector."""
        return sum(s.numel() for s in self.param_shapes.values())

    def flatten_params(self, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """Concatenate generated parameters (``param_names`` order, each flattened) into one vector.

        Args:
            params: Tensors by name; defaults to the model's current values.

        Returns:
            ``(P,)`` vector (detached when taken from the model).
        """
        if params is None:
            return torch.cat([self.model.get_parameter(n).detach().reshape(-1) for n in self.param_names])
        return torch.cat([params[n].reshape(-1) for n in self.param_names])

    def unflatten_params(self, vector: Tensor) -> dict[str, Tensor]:
        """Inverse of :meth:`flatten_params`; a leading batch dimension is kept.

        Args:
            vector: ``(P,)`` or ``(M, P)``.

        Returns:
            ``name -> tensor`` of shape ``shape`` or ``(M, *shape)`` (views of ``vector``).

        Raises:
            ValueError: If the last dimension is not :attr:`num_params`.
        """
        if vector.shape[-1] != self.num_params:
            raise ValueError(f"expected vectors of length {self.num_params}, got {tuple(vector.shape)}")
        lead = vector.shape[:-1]
        out = {}
        offset = 0
        for name in self.param_names:
            shape = self.param_shapes[name]
            out[name] = vector[..., offset : offset + shape.numel()].reshape(*lead, *shape)
            offset += shape.numel()
        return out

    def _stack(self, param_sets: ParamSets) -> tuple[dict[str, Tensor], int]:
        """Normalize ``param_sets`` to ``name -> (M, *shape)`` and M."""
        if isinstance(param_sets, Tensor):
            vectors = param_sets.unsqueeze(0) if param_sets.dim() == 1 else param_sets
            if vectors.dim() != 2:
                raise ValueError("a tensor of parameter sets must be (P,) or (M, P)")
            return self.unflatten_params(vectors), vectors.shape[0]
        if isinstance(param_sets, Mapping):
            stacked = dict(param_sets)
        else:
            sets = list(param_sets)
            if not sets:
                raise ValueError("no parameter sets")
            keys = set(sets[0])
            if any(set(s) != keys for s in sets):
                raise ValueError("all parameter sets must name the same tensors")
            stacked = {k: torch.stack([s[k] for s in sets]) for k in sets[0]}
        if not stacked:
            raise ValueError("no parameters in the parameter sets")
        m = {v.shape[0] for v in stacked.values()}
        if len(m) != 1:
            raise ValueError("stacked parameter sets disagree on M")
        return stacked, m.pop()

    def auto_method(self) -> Literal["vmap", "loop"]:
        """The method ``predict_many(method="auto")`` uses on the model's device."""
        return self.default_predict_method.get(self._device().type, "loop")

    def predict_many(
        self,
        frontier: Tensor | Sequence[Tensor],
        param_sets: ParamSets,
        method: PredictMethod = "auto",
        batch_size: int = 4096,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Predicted labels of ``M`` generated parameter sets on the cached frontier.

        ``"vmap"`` evaluates ``chunk_size`` parameter sets per call with :func:`torch.func.vmap` over the stacked
        sets; if vmap fails on this suffix it warns once, records :attr:`vmap_error` and uses the loop.
        ``"loop"`` runs :meth:`suffix_logits` once per set. ``"auto"`` is :attr:`default_predict_method` for the model's
        device type.

        Args:
            frontier: Output of :meth:`compute_prefix`.
            param_sets: See :data:`ParamSets`.
            method: ``"auto"``, ``"vmap"`` or ``"loop"``.
            batch_size: Inputs per call (vmap: (set, input) pairs per call are ``chunk_size * batch_size``).
            chunk_size: Parameter sets per vmap call. Default: as many as keep the frontier data of one call,
                ``chunk_size * min(N, batch_size) * bytes_per_sample``, under :attr:`vmap_frontier_bytes` (the
                suffix's activations are a small multiple of that).

        Returns:
            ``(M, N)`` int64 labels on CPU.
        """
        frontier = self._as_frontier(frontier)
        stacked, m = self._stack(param_sets)
        self._check_params(list(stacked))
        if method == "auto":
            method = self.auto_method()
        if method not in ("vmap", "loop"):
            raise ValueError(f"unknown method {method!r}")
        n = frontier[0].shape[0]
        labels = torch.empty((m, n), dtype=torch.int64)
        with torch.no_grad():
            if method == "vmap" and self.vmap_error is None:
                try:
                    self._predict_vmap(frontier, stacked, labels, batch_size, chunk_size)
                    return labels
                except Exception as err:  # noqa: BLE001 - any vmap failure means "use the loop"
                    self.vmap_error = f"{type(err).__name__}: {err}"
                    warnings.warn(f"vmap over the suffix failed, using a loop: {self.vmap_error}", stacklevel=2)
            device = self._device()
            for i in range(m):
                params = {k: v[i].to(device) for k, v in stacked.items()}
                labels[i] = self._run_suffix(frontier, params, batch_size, device).argmax(-1).cpu()
        return labels

    def _predict_vmap(
        self,
        frontier: tuple[Tensor, ...],
        stacked: Mapping[str, Tensor],
        labels: Tensor,
        batch_size: int,
        chunk_size: int | None,
    ) -> None:
        """Fill ``labels`` with vmap over parameter-set chunks."""
        device = self._device()
        m, n = labels.shape
        if chunk_size is None:
            per_set = min(n, batch_size) * sum(t[0].numel() * t.element_size() for t in frontier)
            budget = self.vmap_frontier_bytes
            if budget is None:
                budget = torch.cuda.mem_get_info(device)[0] // 64 if device.type == "cuda" else 2**29
            chunk_size = max(1, min(m, budget // max(1, per_set)))

        def predict(params: dict[str, Tensor], *xs: Tensor) -> Tensor:
            return functional_call(self.suffix, params, xs).argmax(-1)

        batched = vmap(predict, in_dims=(0,) + (None,) * len(frontier))
        for p0 in range(0, m, chunk_size):
            chunk = {k: v[p0 : p0 + chunk_size].to(device) for k, v in stacked.items()}
            for start in range(0, n, batch_size):
                xs = self._frontier_chunk(frontier, start, start + batch_size, device)
                labels[p0 : p0 + chunk_size, start : start + batch_size] = batched(chunk, *xs).cpu()
