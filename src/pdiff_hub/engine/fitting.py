"""Train the generated parameters alone on cached frozen-prefix features, keeping their values at chosen steps.

This is the loop of p-diff's collection (SPEC.md, the authors' v2 protocol): everything but the generated
parameters is frozen, so the activations that feed them are computed once
(:meth:`~pdiff_hub.engine.split.FrozenPrefixSplit.compute_prefix`) and each iteration runs only the split's suffix,
with AdamW at a constant learning rate on random batches drawn from a ``torch.Generator``. Collecting the
checkpoints of one model and fitting one head per task of a family are both this loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from .split import FrozenPrefixSplit

__all__ = ["Fit", "drawn_rows", "fit_generated_parameters", "kept_steps"]


class Fit(NamedTuple):
    """Flat parameter vectors (len(keep), D) float32 on the CPU, one per kept step, and the loss of every step run."""

    vectors: Tensor
    losses: list[float]


def fit_generated_parameters(
    split: FrozenPrefixSplit,
    features: Sequence[Tensor],
    labels: Tensor,
    init: Mapping[str, Tensor],
    *,
    keep: Sequence[int],
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
    lr_key: str = "lr",
    progress: bool = False,
    desc: str = "fitting generated parameters",
    rows: Tensor | None = None,
) -> Fit:
    """Train the generated parameters from ``init`` through ``split.suffix`` and keep their values after chosen steps.

    Step ``s`` (0-based) draws ``batch_size`` indices with ``torch.randint(len(labels), (batch_size,),
    generator=generator)``, runs ``functional_call(split.suffix, params, features[idx])``, and takes one AdamW step
    on the cross-entropy; the loop runs ``max(keep) + 1`` steps. The same arguments and generator state give the same
    vectors bit for bit.

    Args:
        split: the model split at its generated parameters (``split.param_names`` fixes the order of the vectors).
        features: the frontier of the training inputs, as ``split.compute_prefix`` returns it.
        labels: (N,) class indices of the training inputs (for a binary task, its 0/1 labels).
        init: starting values by name, at least every name of ``split.param_names``; copied, never modified.
        keep: the steps after which to keep the values, increasing (``range(K)`` keeps every step of ``K``).
        lr: AdamW's constant learning rate.
        weight_decay: AdamW's decoupled weight decay.
        batch_size: inputs per step, drawn with replacement.
        generator: draws the batches (default: a fresh one seeded with 0).
        lr_key: the name of the learning rate the caller's user sets (a recipe key), for the divergence message.
        progress: show a progress bar.
        desc: the progress bar's label.
        rows: when given, ``features`` hold only these rows of the training inputs (increasing indices into
            ``labels``, e.g. :func:`drawn_rows`: those the steps draw); the batches are drawn as without it.

    Returns:
        The kept vectors and the loss of every step.

    Raises:
        ValueError: if ``keep`` is empty or not increasing from >= 0, or ``features`` and ``labels`` disagree in length.
        FloatingPointError: on a NaN or infinite loss.
    """
    keep = list(keep)
    if not keep or keep[0] < 0 or any(b <= a for a, b in zip(keep, keep[1:])):
        raise ValueError(f"keep must be increasing steps >= 0; got {keep}")
    position = None
    if rows is not None:
        position = torch.full((len(labels),), -1, dtype=torch.long)
        position[rows] = torch.arange(len(rows))
    if any(len(f) != (len(labels) if rows is None else len(rows)) for f in features):
        raise ValueError(f"{[len(f) for f in features]} feature rows but {len(labels)} labels"
                         + ("" if rows is None else f" and {len(rows)} rows"))
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    params = {n: init[n].detach().clone().requires_grad_(True) for n in split.param_names}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay)
    kept, vectors, losses = set(keep), [], []
    for step in tqdm(range(keep[-1] + 1), desc=desc, disable=not progress):
        idx = _draw(len(labels), batch_size, generator)
        at = idx if position is None else position[idx]
        if position is not None and bool((at < 0).any()):
            raise ValueError(f"step {step} draws training inputs that are not among the given rows")
        logits = functional_call(split.suffix, params, tuple(f[at] for f in features))
        loss = nn.functional.cross_entropy(logits, labels[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc} diverged (loss {loss.item()} at step {step}) with {lr_key} {lr:g}; "
                                     f"lower {lr_key} and run again")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step in kept:
            # The same expression as ParameterLayout.flatten, so a caller's layout reads these rows unchanged.
            vectors.append(torch.cat([params[n].detach().reshape(-1).float().cpu() for n in split.param_names]))
    return Fit(torch.stack(vectors), losses)


def drawn_rows(num_inputs: int, steps: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """The training inputs (increasing, each once) that :func:`fit_generated_parameters` draws in ``steps`` steps
    from a generator in ``generator``'s state (which is left unchanged): the only rows whose features it needs."""
    g = torch.Generator().set_state(generator.get_state())
    return torch.unique(torch.cat([_draw(num_inputs, batch_size, g) for _ in range(steps)]))


def _draw(num_inputs: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """One step's batch: ``batch_size`` indices drawn with replacement (the rule :func:`drawn_rows` replays)."""
    return torch.randint(num_inputs, (batch_size,), generator=generator)


def kept_steps(num_checkpoints: int, every: int = 1, burn_in: int = 0) -> range:
    """The 0-based steps whose values are kept: ``burn_in``, then every ``every`` steps, ``num_checkpoints`` in all."""
    if num_checkpoints < 1 or every < 1 or burn_in < 0:
        raise ValueError(f"Need num_checkpoints >= 1, every >= 1 and burn_in >= 0; got {num_checkpoints}, {every}, "
                         f"{burn_in}")
    return range(burn_in, burn_in + (num_checkpoints - 1) * every + 1, every)
