"""Frozen-prefix caching: evaluate many generated parameter vectors at the cost of the layers they change.

p-diff generates a small subset of a network's parameters (for example ``layer4.1.bn1/bn2`` of a timm ``resnet18``);
every other parameter is frozen and normalization layers are in eval mode. The activations of the frozen part that
feed the generated part are therefore the same for every generated parameter vector. :class:`FrozenPrefixSplit` puts
the pieces together:

* :mod:`.tracing` traces the model with :mod:`torch.fx`;
* :mod:`.partition` cuts the graph at those activations (the *frontier*) into a ``prefix`` (images -> frontier) and a
  ``suffix`` (frontier -> logits, holding every generated parameter under its name in the model);
* :mod:`.verification` checks on a few inputs that the split reproduces the model;
* :mod:`.frontier` caches the frontier of every input once;
* :mod:`.batching` runs the suffix for many parameter sets;
* :mod:`.one_pixel` and :mod:`.tokens` simplify the suffix where it computes values nothing reads (padding taps of
  convolutions on 1x1 maps, tokens a transformer's head ignores): the same outputs up to float rounding, opt-in
  (:meth:`FrozenPrefixSplit.simplified`).

When the split is impossible, useless or wrong, ``prefix`` returns the images and ``suffix`` is the whole model
(``is_split`` False, the reason in ``fallback_reason``): the results are the same, only slower.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .batching import BatchedSuffix, PredictMethod, auto_method, num_sets
from .frontier import as_frontier, cache_frontier
from .one_pixel import one_pixel_suffix
from .partition import IdentityPrefix, NoSplit, Partition, partition
from .tokens import token_suffix
from .tracing import trace
from .verification import eval_mode, mutates_inputs, split_error

__all__ = ["FrozenPrefixSplit"]


def _device(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """Device of the model's first parameter or buffer."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return default if default is not None else torch.device("cpu")


def _cut(model: nn.Module, names: Sequence[str]) -> tuple[Partition | None, str | None, str | None]:
    """Trace and partition ``model``: the partition (None when impossible), the tracer's name and the reason."""
    try:
        graph, tracer = trace(model, names)
    except RuntimeError as err:
        return None, None, f"tracing failed ({err})"
    try:
        return partition(model, graph, names), tracer, None
    except NoSplit as err:
        return None, tracer, str(err)


class FrozenPrefixSplit:
    """A model split into a frozen prefix, computed once per input, and a suffix that depends on generated parameters.

    Build it with :meth:`from_model`. Typical use::

        split = FrozenPrefixSplit.from_model(model, layout.names)
        frontier = split.compute_prefix(images)                           # once
        labels = split.predict_many(frontier, layout.unflatten(vectors))  # (M, N) for M parameter vectors

    The prefix and suffix share modules and tensors with ``model`` (no copy): training the generated parameters
    through ``functional_call(split.suffix, params, frontier)`` or ``suffix.parameters()`` works on cached frontier
    batches, and the suffix sees the model's current values. :func:`torch.func.functional_call` swaps tensors on those
    shared modules for the duration of a call, so do not run the model concurrently from another thread.

    Attributes:
        model: The original model (switched to eval mode by :meth:`from_model`).
        param_names: Names of the generated parameters.
        prefix: Input images -> tuple of frontier tensors (batch dimension first).
        suffix: ``*frontier`` -> logits; parameters and buffers named as in ``model``.
        is_split: False when the fallback (prefix = identity, suffix = whole model) is used.
        fallback_reason: Why the fallback is used (None when split).
        tracer: Name of the tracer that traced the model (``"timm"``, ``"torch.fx"`` or ``"frozen-leaves"``), None
            if tracing failed.
        frontier_names: fx node names of the frontier values (``("input",)`` in the fallback).
        vmap_error: Why :func:`torch.func.vmap` failed on the suffix, if it did (predictions then use the loop).
        one_pixel_convs: Names of the suffix's convolutions run as 1x1 convolutions (``one_pixel_convs=True``).
        one_pixel_pools: Names of the suffix's global pools of 1x1 maps, run as the identity (``one_pixel_convs=True``).
        kept_tokens: ``(lo, hi)``: the frontier keeps only tokens ``lo..hi-1``, the ones the head reads
            (``class_token=True``), or None.
    """

    def __init__(
        self,
        model: nn.Module,
        param_names: Sequence[str],
        halves: Partition | None,
        tracer: str | None,
        reason: str | None,
    ) -> None:
        """Store a split, or the fallback when ``halves`` is None; use :meth:`from_model` instead."""
        self.model = model
        self.param_names: tuple[str, ...] = tuple(param_names)
        self.tracer = tracer
        self.vmap_error: str | None = None
        self._validated = False
        self._clone_frontier = False
        self._one_pixel = False
        self._class_token = False
        self._simplified: FrozenPrefixSplit | None = None
        self.one_pixel_convs: tuple[str, ...] = ()
        self.one_pixel_pools: tuple[str, ...] = ()
        self.kept_tokens: tuple[int, int] | None = None
        self._halves = halves  # the exact cut, before any fallback or simplification
        if halves is None:
            self._fall_back(reason)
        else:
            self.prefix, self.suffix, self.frontier_names = halves
            self.is_split, self.fallback_reason = True, None

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        param_names: Sequence[str],
        example_input: Tensor | None = None,
        *,
        one_pixel_convs: bool = False,
        class_token: bool = False,
    ) -> FrozenPrefixSplit:
        """Trace ``model`` and split it at the frontier of the generated parameters.

        Args:
            model: Classifier mapping an input batch to logits. Switched to eval mode.
            param_names: Names (as in ``model.named_parameters()``) of the generated parameters.
            example_input: A few inputs to check the split on now; without it the check runs on the first images
                given to :meth:`compute_prefix` (and may switch to the fallback then).
            one_pixel_convs: Run the suffix's frozen convolutions that only see 1x1 maps (in those example inputs)
                as 1x1 convolutions of their centre tap (:mod:`.one_pixel`): the same outputs up to float rounding,
                up to 9x fewer multiply-adds. The replaced names are in :attr:`one_pixel_convs`; the suffix then
                accepts only inputs of that size.
            class_token: When every op between the frontier and the head's reads of single tokens (``x[:, 0]``,
                timm's ``global_pool='token'``) works on each token alone, cache and run only those tokens
                (:mod:`.tokens`): the same outputs up to float rounding; 65x less work for a ViT's last MLP on 64
                patches. The kept range is in :attr:`kept_tokens`; :attr:`prefix` then returns the reduced frontier.

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
        halves, tracer, reason = _cut(model, names)
        split = cls(model, names, halves, tracer, reason)
        split._one_pixel, split._class_token = one_pixel_convs, class_token
        if example_input is not None:
            split._validate(example_input)
        return split

    def _fall_back(self, reason: str | None) -> None:
        self.prefix: nn.Module = IdentityPrefix()
        self.suffix: nn.Module = self.model
        self.frontier_names: tuple[str, ...] = ("input",)
        self.is_split, self.fallback_reason = False, reason

    def _validate(self, example_input: Tensor) -> None:
        """Check the split on (up to) three inputs, falling back if it is wrong, and whether the suffix mutates them.

        Raises:
            ValueError: If ``example_input`` is empty.
        """
        if example_input.shape[0] == 0:
            raise ValueError("example_input is empty")
        index = torch.arange(3) % example_input.shape[0]  # cycle when fewer than three
        x3 = example_input[index.to(example_input.device)].to(_device(self.model, example_input.device))
        if self.is_split:
            reason = split_error(self.model, self.prefix, self.suffix, self.frontier_names, self.param_names, x3)
            if reason is not None:
                self._fall_back(reason)
        if self.is_split and self._class_token:
            self._simplify_tokens(x3)
        if self.is_split and self._one_pixel:
            self._simplify_one_pixel_convs(x3)
        self._clone_frontier = mutates_inputs(self.prefix, self.suffix, x3)
        self._validated = True

    def _simplify_one_pixel_convs(self, x3: Tensor) -> None:
        """Adopt the suffix with one-pixel convolutions replaced if it still reproduces the model on ``x3``."""
        with torch.no_grad(), eval_mode(self.prefix):
            frontier = self.prefix(x3)
        suffix, replaced, pools = one_pixel_suffix(self.suffix, frontier, self.param_names)
        if not replaced and not pools:
            return
        reason = split_error(self.model, self.prefix, suffix, self.frontier_names, self.param_names, x3)
        if reason is not None:  # not expected: the replacement is exact up to rounding
            warnings.warn(f"one_pixel_convs not used ({reason})", stacklevel=3)
            return
        self.suffix, self.one_pixel_convs, self.one_pixel_pools = suffix, replaced, pools

    def _simplify_tokens(self, x3: Tensor) -> None:
        """Adopt the prefix and suffix carrying only the tokens the head reads if they still reproduce the model."""
        with torch.no_grad(), eval_mode(self.prefix):
            frontier = self.prefix(x3)
        reduced = token_suffix(self.prefix, self.suffix, frontier)
        if reduced is None:
            return
        reason = split_error(self.model, reduced.prefix, reduced.suffix, self.frontier_names, self.param_names, x3)
        if reason is not None:  # not expected: the graph check admits token-wise ops only
            warnings.warn(f"class_token not used ({reason})", stacklevel=3)
            return
        self.prefix, self.suffix, self.kept_tokens = reduced.prefix, reduced.suffix, reduced.tokens

    def simplified(self) -> FrozenPrefixSplit:
        """This split with both simplifications asked for (``one_pixel_convs`` and ``class_token``).

        A new split on the same trace (this one is unchanged: training through its suffix stays exact), made once and
        reused; ``self`` when it already asks for both. It is checked on the first inputs it sees, like a split made
        without ``example_input``.
        """
        if self._one_pixel and self._class_token:
            return self
        if self._simplified is None:
            halves = self._halves if self.is_split or not self._validated else None  # a known fallback stays one
            simple = type(self)(self.model, self.param_names, halves, self.tracer, self.fallback_reason)
            simple._one_pixel = simple._class_token = True
            self._simplified = simple
        return self._simplified

    def compute_prefix(self, images: Tensor, batch_size: int = 512) -> tuple[Tensor, ...]:
        """Run the frozen prefix once on all images (no grad, eval mode, in batches).

        The first call checks the split on the first images if :meth:`from_model` had no ``example_input``.

        Args:
            images: ``(N, ...)`` inputs.
            batch_size: Inputs per prefix call.

        Returns:
            The frontier: tensors with first dimension ``N`` on CPU, floating ones as float32. In the fallback this is
            ``(images,)``.
        """
        if not self._validated:
            self._validate(images[: min(3, images.shape[0])])
        if not self.is_split:
            x = images.detach()
            return (x.to("cpu", torch.float32) if x.is_floating_point() else x.cpu(),)
        return cache_frontier(self.prefix, images, batch_size, _device(self.model, images.device))

    def predict_many(
        self,
        frontier: Tensor | Sequence[Tensor],
        params: Mapping[str, Tensor],
        method: PredictMethod = "auto",
        batch_size: int = 4096,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Predicted labels of ``M`` generated parameter sets on the cached frontier.

        ``"vmap"`` evaluates ``chunk_size`` parameter sets per call with :func:`torch.func.vmap`; if vmap fails on
        this suffix it warns once, records :attr:`vmap_error` and uses the loop from then on. ``"loop"`` runs the
        suffix once per set. ``"auto"`` picks by the model's device (vmap on CUDA, the loop elsewhere).

        Args:
            frontier: Output of :meth:`compute_prefix`.
            params: ``name -> (M, *shape)`` generated tensors, as :meth:`ParameterLayout.unflatten` returns them for
                ``(M, D)`` vectors.
            method: ``"auto"``, ``"vmap"`` or ``"loop"``.
            batch_size: Inputs per call (vmap: (set, input) pairs per call are ``chunk_size * batch_size``).
            chunk_size: Parameter sets per vmap call; by default as many as fit a memory budget.

        Returns:
            ``(M, N)`` int64 labels on CPU.

        Raises:
            KeyError: If ``params`` names a tensor of the frozen prefix (or one the model does not have).
            ValueError: If ``params`` is empty or its tensors disagree on ``M``, or ``method`` is unknown.
        """
        frontier = as_frontier(frontier)
        m = num_sets(params)
        replaceable = {n for n, _ in self.suffix.named_parameters(remove_duplicate=False)}
        replaceable |= {n for n, _ in self.suffix.named_buffers(remove_duplicate=False)}
        unknown = sorted(set(params) - replaceable)
        if unknown:
            where = "frozen prefix or not in the model" if self.is_split else "model"
            raise KeyError(f"cannot replace {unknown}: not tensors of the suffix ({where})")
        device = _device(self.model)
        if method == "auto":
            method = auto_method(device)
        if method not in ("vmap", "loop"):
            raise ValueError(f"unknown method {method!r}")
        labels = torch.empty((m, frontier[0].shape[0]), dtype=torch.int64)
        runner = BatchedSuffix(self.suffix, device, self._clone_frontier)
        with torch.no_grad():
            if method == "vmap" and self.vmap_error is None:
                try:
                    runner.predict_vmap(frontier, params, labels, batch_size, chunk_size)
                    return labels
                except Exception as err:  # noqa: BLE001 - any vmap failure means "use the loop"
                    self.vmap_error = f"{type(err).__name__}: {err}"
                    warnings.warn(f"vmap over the suffix failed, using a loop: {self.vmap_error}", stacklevel=2)
            runner.predict_loop(frontier, params, labels, batch_size)
        return labels
