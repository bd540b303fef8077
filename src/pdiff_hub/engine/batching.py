"""Run the generated suffix for many parameter sets on the cached frontier, in batches that fit in memory.

Two ways: a loop (one :func:`torch.func.functional_call` per parameter set) or :func:`torch.func.vmap` over chunks of
stacked parameter sets. The chunk size keeps the frontier data of one vmap call under a memory budget; the suffix's
activations are a small multiple of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .frontier import frontier_batch

__all__ = ["DEFAULT_PREDICT_METHOD", "BatchedSuffix", "PredictMethod", "auto_method", "num_sets"]

PredictMethod = Literal["auto", "vmap", "loop"]

#: Method used for ``method="auto"``, by device type (others: ``"loop"``). Chosen with ``benchmarks/prefix_speed.py``
#: (resnet18, layer4.1.bn1/bn2, 32x32 images): on CPU (2 threads) the loop matched or beat vmap (22 ms vs 23-37 ms per
#: set, 2,000 images); on an H200 vmap over all sets per call was 3x faster (0.9 vs 2.7 ms per set, 2,000 images; 3.6
#: vs 12 ms, 10,000 images).
DEFAULT_PREDICT_METHOD: Mapping[str, Literal["vmap", "loop"]] = {"cpu": "loop", "cuda": "vmap"}


def auto_method(device: torch.device) -> Literal["vmap", "loop"]:
    """The method ``"auto"`` stands for on ``device``."""
    return DEFAULT_PREDICT_METHOD.get(device.type, "loop")


def _vmap_budget(device: torch.device) -> int:
    """Frontier bytes one vmap call may see: 1/64 of the free CUDA memory (2 GiB on an idle H200), else 512 MiB."""
    return torch.cuda.mem_get_info(device)[0] // 64 if device.type == "cuda" else 2**29


def num_sets(stacked: Mapping[str, Tensor]) -> int:
    """Number ``M`` of parameter sets in ``name -> (M, *shape)`` tensors.

    Raises:
        ValueError: If there are no tensors or they disagree on ``M``.
    """
    if not stacked:
        raise ValueError("no parameters in the parameter sets")
    m = {v.shape[0] for v in stacked.values()}
    if len(m) != 1:
        raise ValueError("stacked parameter sets disagree on M")
    return m.pop()


@dataclass(frozen=True)
class BatchedSuffix:
    """The suffix of a split, run in batches of cached frontier inputs.

    Attributes:
        suffix: ``*frontier`` -> logits; its tensors are replaced by name through
            :func:`torch.func.functional_call`.
        device: Where the suffix runs.
        clone_inputs: Whether the suffix writes into its inputs (then frontier batches are copies of the cache).
    """

    suffix: nn.Module
    device: torch.device
    clone_inputs: bool

    def _batch(self, frontier: tuple[Tensor, ...], start: int, batch_size: int) -> tuple[Tensor, ...]:
        return frontier_batch(frontier, start, start + batch_size, self.device, self.clone_inputs)

    def _logits(self, frontier: tuple[Tensor, ...], params: Mapping[str, Tensor], batch_size: int) -> Tensor:
        """``(N, num_classes)`` logits of one parameter set (tensors on :attr:`device`)."""
        outs = []
        for start in range(0, frontier[0].shape[0], batch_size):
            outs.append(functional_call(self.suffix, params, self._batch(frontier, start, batch_size)))
        return torch.cat(outs)

    def predict_loop(
        self, frontier: tuple[Tensor, ...], stacked: Mapping[str, Tensor], labels: Tensor, batch_size: int
    ) -> None:
        """Fill ``labels`` (M, N) with the predictions of each parameter set in turn."""
        for i in range(labels.shape[0]):
            params = {k: v[i].to(self.device) for k, v in stacked.items()}
            labels[i] = self._logits(frontier, params, batch_size).argmax(-1).cpu()

    def predict_vmap(
        self,
        frontier: tuple[Tensor, ...],
        stacked: Mapping[str, Tensor],
        labels: Tensor,
        batch_size: int,
        chunk_size: int | None,
    ) -> None:
        """Fill ``labels`` (M, N) with :func:`torch.func.vmap` over chunks of ``chunk_size`` parameter sets.

        Args:
            frontier: The cached frontier.
            stacked: ``name -> (M, *shape)`` parameter sets.
            labels: Output, int64 on CPU.
            batch_size: Inputs per call.
            chunk_size: Parameter sets per call. None: as many as keep ``chunk_size * min(N, batch_size)`` inputs'
                frontier data under the device's budget (1/64 of the free CUDA memory, else 512 MiB).
        """
        m, n = labels.shape
        if chunk_size is None:
            per_set = min(n, batch_size) * sum(t[0].numel() * t.element_size() for t in frontier)
            chunk_size = max(1, min(m, _vmap_budget(self.device) // max(1, per_set)))

        def predict(params: dict[str, Tensor], *xs: Tensor) -> Tensor:
            return functional_call(self.suffix, params, xs).argmax(-1)

        batched = vmap(predict, in_dims=(0,) + (None,) * len(frontier))
        for p0 in range(0, m, chunk_size):
            chunk = {k: v[p0 : p0 + chunk_size].to(self.device) for k, v in stacked.items()}
            for start in range(0, n, batch_size):
                xs = self._batch(frontier, start, batch_size)
                labels[p0 : p0 + chunk_size, start : start + batch_size] = batched(chunk, *xs).cpu()
