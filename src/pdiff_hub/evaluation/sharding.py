"""The models to evaluate, shared out over the processes of ``accelerate launch`` and gathered back in order.

Evaluating many parameter vectors is embarrassingly parallel: each process measures a contiguous block of the rows
(process 0 the first block) and every process receives all the results, concatenated in row order, so that what
follows (accuracies, similarity, the report) is computed from exactly the tensors a single process would have.
The vectors themselves are made once, on the main process, and broadcast: every process then evaluates the same
numbers, whatever its device's kernels would have sampled.

On the CPU each vector is evaluated on its own (:meth:`~pdiff_hub.engine.split.FrozenPrefixSplit.predict_many`'s
loop), so the predictions do not depend on which vectors share a block: the gathered predictions equal a single
process's bit for bit. On CUDA, vmap batches the vectors of a block together; a batched matmul may round differently
for another batch, so a prediction whose two best logits tie within rounding could differ.

Example:
    ```py
    >>> group = ProcessGroup.from_accelerate(device)   # after every check: this is where the processes meet
    >>> vectors = group.on_main(lambda: generate_parameters(pipe, 100, 50))
    >>> wrong = group.map_rows(evaluator.wrong, vectors)  # (100, N), in the rows' order, on every process
    ```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch

__all__ = ["ProcessGroup", "default_device", "shard_bounds"]

T = TypeVar("T")


def default_device() -> torch.device:
    """``cuda`` when torch sees a GPU, unless ``ACCELERATE_USE_CPU`` (``accelerate launch --cpu``) asks for the CPU."""
    from accelerate.utils import parse_flag_from_env

    if torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU"):
        return torch.device("cuda")
    return torch.device("cpu")


def shard_bounds(num_rows: int, num_processes: int) -> list[tuple[int, int]]:
    """Each process's contiguous block ``(start, stop)`` of ``num_rows`` rows, in process order.

    The first ``num_rows % num_processes`` processes take one row more (as
    :meth:`accelerate.PartialState.split_between_processes` splits a list); with fewer rows than processes the last
    ones get empty blocks.

    Raises:
        ValueError: for a negative row count or fewer than one process.
    """
    if num_rows < 0 or num_processes < 1:
        raise ValueError(f"cannot shard {num_rows} rows over {num_processes} processes")
    base, extra = divmod(num_rows, num_processes)
    bounds, start = [], 0
    for index in range(num_processes):
        stop = start + base + (index < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _single_gather(pieces: list) -> list:
    return pieces


def _single_broadcast(objects: list) -> list:
    return objects


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among ``num_processes`` and the two collectives sharded evaluation needs.

    The default is one process, for which every method is the plain computation (no copy, no gather).

    Attributes:
        num_processes: how many processes share the work.
        process_index: this process's index (0 is the main process, which writes the outputs).
        gather: all-gather of a list: every process's list concatenated in process order, on every process
            (:func:`accelerate.utils.gather_object`).
        broadcast: the main process's list, in place, on every process (:func:`accelerate.utils.broadcast_object_list`).
    """

    num_processes: int = 1
    process_index: int = 0
    gather: Callable[[list], list] = field(default=_single_gather, repr=False)
    broadcast: Callable[[list], list] = field(default=_single_broadcast, repr=False)

    @classmethod
    def from_accelerate(cls, device: torch.device) -> ProcessGroup:
        """The processes ``accelerate launch`` started (one when run without it), evaluating on ``device``.

        Creating the state is where the processes first meet (``torch.distributed``'s rendezvous): call this only
        after every check of the user's input, so that a refusal never leaves another process waiting. On a CPU
        ``device`` the processes talk through gloo.
        """
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list, gather_object

        state = PartialState(cpu=device.type == "cpu")
        if state.num_processes == 1:
            return cls()
        return cls(state.num_processes, state.process_index, gather_object, broadcast_object_list)

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def device(self, device: torch.device) -> torch.device:
        """``device``, or this process's own GPU when several processes share an unnumbered ``cuda``."""
        if self.num_processes > 1 and device.type == "cuda" and device.index is None:
            from accelerate import PartialState

            return PartialState().device
        return device

    def bounds(self, num_rows: int) -> tuple[int, int]:
        """This process's block ``(start, stop)`` of ``num_rows`` rows."""
        return shard_bounds(num_rows, self.num_processes)[self.process_index]

    def on_main(self, make: Callable[[], T]) -> T:
        """``make()`` run on the main process only, its result sent to every process (one process: just ``make()``).

        The other processes wait for it; an exception in ``make`` ends the main process, and ``accelerate launch``
        (torchrun) then stops the others.
        """
        if self.num_processes == 1:
            return make()
        return self.broadcast([make() if self.is_main_process else None])[0]

    def map_rows(self, fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """``fn`` of every row, each process computing its block, gathered in row order on every process.

        ``fn`` maps ``(m, ...)`` rows to ``(m, ...)`` results and must not depend on which rows share a call for the
        result to equal ``fn(rows)``. With several processes the result is on the CPU; a process whose block is
        empty does not call ``fn``.

        Raises:
            ValueError: when the gathered results do not have one row per row.
        """
        if self.num_processes == 1:
            return fn(rows)
        start, stop = self.bounds(len(rows))
        pieces = self.gather([fn(rows[start:stop]).cpu()] if stop > start else [])
        if not pieces:  # no rows at all: keep fn's shape and dtype
            return fn(rows).cpu()
        gathered = torch.cat(pieces)
        if len(gathered) != len(rows):
            raise ValueError(f"gathered {len(gathered)} results for {len(rows)} rows")
        return gathered
