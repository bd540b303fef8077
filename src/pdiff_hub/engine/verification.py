"""Check on a few inputs that a prefix/suffix split computes what the full model computes.

A structurally valid cut can still be wrong: the frontier may not be per-sample (a statistic over the batch), may not
be a tensor (a Python int read from a shape), or the traced graph may differ from the eager forward. The split is
therefore run on example inputs and compared with the model, for the current and for perturbed generated parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_flatten

__all__ = ["eval_mode", "mutates_inputs", "split_error"]


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` (and their submodules) in eval mode, restoring every module's flag afterwards."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in reversed(flags):
            m.training = flag


def _close(a: Tensor, b: Tensor) -> bool:
    """Equal up to float noise (kernels that depend on the batch size, TF32): a wrong split differs by far more."""
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    return torch.allclose(a, b, rtol=1e-3, atol=1e-4 * scale)


def _perturbed(model: nn.Module, param_names: Sequence[str]) -> dict[str, Tensor]:
    """The generated parameters plus seeded noise of about a tenth of their magnitude."""
    generator = torch.Generator().manual_seed(0)
    perturbed = {}
    for name in param_names:
        p = model.get_parameter(name).detach()
        noise = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        perturbed[name] = p + 0.1 * (p.abs().mean() + 0.1) * noise
    return perturbed


def _frontier_error(prefix: nn.Module, frontier_names: Sequence[str], x3: Tensor) -> str | None:
    """Why the prefix's output on ``x3`` is not a per-sample, batch-first tuple of tensors, or None."""
    try:
        out3 = prefix(x3)
        out2 = prefix(x3[:2].clone())
    except Exception as err:  # noqa: BLE001
        return f"prefix failed on example input ({type(err).__name__}: {err})"
    if not isinstance(out3, tuple):
        return "prefix did not return a tuple"
    for name, a, b in zip(frontier_names, out3, out2):
        if not isinstance(a, Tensor) or not isinstance(b, Tensor):
            return f"frontier value {name!r} is not a tensor ({type(a).__name__})"
        if a.dim() == 0 or a.shape[0] != 3 or b.shape[0] != 2 or a.shape[1:] != b.shape[1:]:
            return f"frontier value {name!r} does not have the batch dimension first (shape {tuple(a.shape)})"
        if not _close(a[:2], b):
            return f"frontier value {name!r} is not computed per sample"
    return None


def _output_error(
    model: nn.Module, prefix: nn.Module, suffix: nn.Module, x3: Tensor, params: Mapping[str, Tensor] | None
) -> str | None:
    """Why ``suffix(*prefix(x3))`` differs from ``model(x3)`` with ``params`` swapped in, or None."""
    try:
        ref = functional_call(model, params, (x3,)) if params else model(x3)
        frontier = tuple(t.clone() for t in prefix(x3))
        got = functional_call(suffix, params, frontier) if params else suffix(*frontier)
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


def split_error(
    model: nn.Module,
    prefix: nn.Module,
    suffix: nn.Module,
    frontier_names: Sequence[str],
    param_names: Sequence[str],
    x3: Tensor,
) -> str | None:
    """Why the split is wrong on three example inputs, or None when it reproduces the model.

    Checks: the frontier is a tuple of tensors whose first dimension is the batch (run with 3 and 2 inputs, the
    first rows agree); the split reproduces the full model's outputs for the current generated parameters and for a
    seeded random perturbation of them.

    Args:
        model: The full model.
        prefix: Its frozen prefix.
        suffix: Its generated suffix.
        frontier_names: Names of the frontier values (for messages).
        param_names: Names of the generated parameters.
        x3: Three inputs on the model's device.

    Returns:
        The reason, or None.
    """
    perturbed = _perturbed(model, param_names)
    with torch.no_grad(), eval_mode(model, prefix, suffix):
        reason = _frontier_error(prefix, frontier_names, x3)
        for params in (None, perturbed):
            reason = reason or _output_error(model, prefix, suffix, x3, params)
    return reason


def mutates_inputs(prefix: nn.Module, suffix: nn.Module, x: Tensor) -> bool:
    """Whether ``suffix`` modifies its frontier inputs in place (then cached frontier chunks must be cloned)."""
    with torch.no_grad(), eval_mode(prefix, suffix):
        frontier = tuple(prefix(x))
        snapshot = [t.clone() for t in frontier]
        suffix(*frontier)
    return any(not torch.equal(a, b) for a, b in zip(snapshot, frontier))
