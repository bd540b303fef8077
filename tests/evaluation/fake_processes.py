"""Several "processes" as threads of this one, with an all-gather and a broadcast that behave as accelerate's do.

Fast tests of sharded evaluation run every rank's code for real (each thread its own :class:`ProcessGroup`), without
starting processes; the collectives meet at a barrier, so a rank that skips one fails the test instead of hanging.
One rank computes at a time (a lock held outside the collectives), because torch.fx tracing and functional_call
are not thread-safe, while processes would share nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from pdiff_hub.evaluation.sharding import ProcessGroup

T = TypeVar("T")


class ThreadCollectives:
    """The collectives of ``num_processes`` threads; :meth:`group` is one thread's :class:`ProcessGroup`."""

    def __init__(self, num_processes: int, timeout: float = 60.0):
        self.num_processes = num_processes
        self.barrier = threading.Barrier(num_processes, timeout=timeout)
        self.slots: list = [None] * num_processes
        self.turn = threading.Lock()  # held by the rank that computes

    def group(self, rank: int) -> ProcessGroup:
        return ProcessGroup(self.num_processes, rank, partial(self._gather, rank), partial(self._broadcast, rank))

    def _exchange(self, rank: int, value: object) -> list:
        self.slots[rank] = value
        self.turn.release()
        try:
            self.barrier.wait()
            values = list(self.slots)
            self.barrier.wait()  # nobody writes the next exchange's slot before everyone has read this one
        finally:
            self.turn.acquire()
        return values

    def run(self, rank: int, work: Callable[[ProcessGroup], T]) -> T:
        with self.turn:
            return work(self.group(rank))

    def _gather(self, rank: int, objects: list) -> list:
        return [obj for objs in self._exchange(rank, list(objects)) for obj in objs]

    def _broadcast(self, rank: int, objects: list) -> list:
        objects[:] = self._exchange(rank, list(objects))[0]
        return objects


def run_on_ranks(num_processes: int, work: Callable[[ProcessGroup], T]) -> list[T]:
    """``work(group)`` on every rank at once; each rank's result, in rank order."""
    collectives = ThreadCollectives(num_processes)
    with ThreadPoolExecutor(num_processes) as pool:
        futures = [pool.submit(collectives.run, rank, work) for rank in range(num_processes)]
        return [future.result() for future in futures]
