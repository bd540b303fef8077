"""Sharding the collection of a parameter dataset over the processes of ``accelerate launch``.

Every base-model seed is independent work: its base model, its checkpoints and their evaluation depend on the seed
alone. With at least as many seeds as processes, each process takes a contiguous block of seeds. With more processes
than seeds, each seed gets a contiguous group of processes, and each process of the group evaluates a contiguous
block of the seed's checkpoints (the evaluation is what costs; every process of the group trains the same base model,
so nothing waits on another). Either way the pieces put back in (seed, step) order are the rows of a 1-process run.

Failures must reach every process: a process that raises while the others wait in a collective would leave them
hanging (NCCL) or crashing with a transport error that hides the cause (gloo). :func:`gather_or_raise` gathers every
process's result or error, and every process raises the first error, so each exits with the same sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from ..core.cli import USER_ERRORS, UsageError, error_sentence

__all__ = ["Shard", "gather_or_raise", "on_main_or_raise", "order_pieces", "plan_shards", "split_evenly"]

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class Shard:
    """One process's piece of one seed: the seed's index in ``collect.seeds`` and the checkpoints ``start:stop``.

    The process trains the seed's base model and its subset for ``stop`` iterations, and keeps and evaluates the
    checkpoints ``start`` to ``stop - 1``.
    """

    seed_index: int
    start: int
    stop: int

    @property
    def rows(self) -> range:
        return range(self.start, self.stop)

    @property
    def lead(self) -> bool:
        """True for the piece that starts at the seed's first checkpoint: it reports the seed's base accuracy."""
        return self.start == 0


def split_evenly(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous blocks, the first ``n % parts`` one longer (some may be empty).

    The same cut as :meth:`accelerate.Accelerator.split_between_processes` makes of a list.
    """
    if parts < 1 or n < 0:
        raise ValueError(f"cannot split {n} items into {parts} parts")
    size, extra = divmod(n, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + size + (i < extra))
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def plan_shards(counts: Sequence[int], num_processes: int) -> list[list[Shard]]:
    """For each process, in rank order, the shards it collects; ``counts[i]`` is the checkpoints of seed ``i``.

    Process 0 always holds the first checkpoints of seed 0 (so the main process holds the first base model). A process
    may get nothing when there are more processes than checkpoints.
    """
    if not counts or min(counts) < 1:
        raise ValueError(f"every seed needs at least one checkpoint; got {list(counts)}")
    if num_processes <= len(counts):
        return [[Shard(i, 0, counts[i]) for i in block] for block in split_evenly(len(counts), num_processes)]
    plan: list[list[Shard]] = []
    for i, group in enumerate(split_evenly(num_processes, len(counts))):
        plan += [[Shard(i, r.start, r.stop)] if r else [] for r in split_evenly(counts[i], len(group))]
    return plan


def order_pieces(pieces: Sequence[tuple[Shard, T]], counts: Sequence[int]) -> list[tuple[Shard, T]]:
    """Gathered ``(shard, result)`` pieces in (seed, step) order, checked to cover every checkpoint exactly once.

    Raises:
        RuntimeError: if a checkpoint is missing or covered twice (a bug in the plan, never a user's mistake).
    """
    ordered = sorted(pieces, key=lambda piece: piece[0])
    expected = [(i, s) for i, count in enumerate(counts) for s in range(count)]
    covered = [(shard.seed_index, s) for shard, _ in ordered for s in shard.rows]
    if covered != expected:
        raise RuntimeError(f"the gathered pieces {[shard for shard, _ in ordered]} do not cover the checkpoints "
                           f"{list(counts)} exactly once")
    return ordered


def gather_or_raise(work: Callable[[], list[T]]) -> list[T]:
    """Run ``work`` on every process and gather the lists it returns, in rank order, on every process.

    A user's error (:data:`~pdiff_hub.core.cli.USER_ERRORS`) on any process is raised on every process: the process
    of the lowest rank that failed raises its own exception, the others a :class:`~pdiff_hub.core.cli.UsageError`
    with its sentence. Other exceptions are bugs and keep their traceback (the launcher then stops the others).
    """
    error: BaseException | None = None
    try:
        outcome: tuple[str | None, list[T]] = (None, work())
    except USER_ERRORS as err:
        error, outcome = err, (error_sentence(err), [])
    outcomes = gather_object([outcome])
    first = next((sentence for sentence, _ in outcomes if sentence is not None), None)
    if first is not None:
        if error is not None and error_sentence(error) == first:
            raise error
        raise UsageError(first)
    return [item for _, items in outcomes for item in items]


def on_main_or_raise(accelerator: Accelerator, check: Callable[[], Any]) -> None:
    """Run ``check`` on the main process only; a user's error it raises is raised on every process.

    For checks that only one process may make, such as that of the output folder the main process will write.
    """
    sentence = None
    if accelerator.is_main_process:
        try:
            check()
        except USER_ERRORS as err:
            sentence = error_sentence(err)
    sentence = broadcast_object_list([sentence])[0] if accelerator.num_processes > 1 else sentence
    if sentence is not None:
        raise UsageError(sentence)
