"""The frozen-prefix cache: the frontier activations of every input, computed once and kept on CPU.

Memory: the frontier is stored as float32 on CPU, i.e. ``N * frontier_numel_per_sample * 4`` bytes for ``N`` inputs.
For resnet18 at 32x32 with generated ``layer4.1.bn1/bn2`` that is ``2 * 512 * 1 * 1`` floats = 4 KiB per image (8 MB
for 2,000 images); at 224x224 it is ``2 * 512 * 7 * 7`` floats = 196 KiB per image (1.9 GB for 10,000 images). The
cached tensors are moved to the model's device one batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .verification import eval_mode

__all__ = ["as_frontier", "cache_frontier", "frontier_batch"]


def cache_frontier(prefix: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
    """Run ``prefix`` on all images in batches (no grad, eval mode) and keep its outputs on CPU.

    Args:
        prefix: Input images -> tuple of batch-first frontier tensors.
        images: ``(N, ...)`` inputs.
        batch_size: Inputs per prefix call.
        device: Where the prefix runs.

    Returns:
        Tensors with first dimension ``N`` on CPU, floating ones as float32.
    """
    n = images.shape[0]
    out: list[Tensor] = []
    with torch.no_grad(), eval_mode(prefix):
        for start in range(0, n, batch_size):
            chunk = prefix(images[start : start + batch_size].to(device))
            if not out:  # allocate once, fill in place: no 2x peak memory from a final torch.cat
                out = [
                    torch.empty((n, *t.shape[1:]), dtype=torch.float32 if t.is_floating_point() else t.dtype)
                    for t in chunk
                ]
            for dst, src in zip(out, chunk):
                dst[start : start + src.shape[0]].copy_(src)
    return tuple(out)


def as_frontier(frontier: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    """A frontier argument as a non-empty tuple of tensors with the same first dimension.

    Raises:
        ValueError: If it is empty or its tensors disagree on the batch size.
    """
    out = (frontier,) if isinstance(frontier, Tensor) else tuple(frontier)
    if not out or any(t.shape[0] != out[0].shape[0] for t in out):
        raise ValueError("frontier must be non-empty tensors with the same first (batch) dimension")
    return out


def frontier_batch(
    frontier: tuple[Tensor, ...], start: int, stop: int, device: torch.device, clone: bool
) -> tuple[Tensor, ...]:
    """Inputs ``start:stop`` of the cached frontier on ``device``.

    Args:
        frontier: The cached frontier.
        start: First input.
        stop: End of the batch (exclusive).
        device: Where the suffix runs.
        clone: Copy the slices that would otherwise be views of the cache (when the suffix writes into its inputs).

    Returns:
        One slice per frontier tensor.
    """
    batch = []
    for t in frontier:
        c = t[start:stop]
        moved = c.to(device, non_blocking=True)
        batch.append(moved.clone() if clone and moved is c else moved)
    return tuple(batch)
