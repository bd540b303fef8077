"""Random subsets of image splits held as tensors, the same for every run with the same seed.

Training measures reconstruction accuracy and the evaluation measures every row on the same subsets, so both take
them from here.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import torch

__all__ = ["Split", "subsample_splits"]

Split = tuple[torch.Tensor, torch.Tensor]
"""One split as ``(images, labels)`` tensors."""


def subsample_splits(splits: Mapping[str, Split], sizes: Mapping[str, int], seed: int = 0) -> dict[str, Split]:
    """Each split named in ``sizes`` cut to a random subset of that many images (0, or more than it has: unchanged).

    The subset of a split depends only on ``seed``, the split's name and its length, so every row of an evaluation,
    and every rerun with the same seed, sees the same images (in their original order).

    Raises:
        ValueError: on a negative size.
    """
    result = dict(splits)
    for split, size in sizes.items():
        if size < 0:
            raise ValueError(f"the {split} subset size must be 0 (whole split) or positive, got {size}")
        if split not in splits or size == 0 or size >= len(splits[split][1]):
            continue
        images, labels = splits[split]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(split.encode()))
        keep = torch.randperm(len(labels), generator=generator)[:size].sort().values
        result[split] = (images[keep.to(images.device)], labels[keep.to(labels.device)])
    return result
