"""The collection's sharding plan: which process gets which seeds and checkpoints, the order they are gathered in,
and how a failure on one process reaches every process (fast, no processes started)."""

import random

import pytest

from pdiff_hub.core.cli import UsageError
from pdiff_hub.training import sharding
from pdiff_hub.training.sharding import (
    Shard,
    gather_or_raise,
    on_main_or_raise,
    order_pieces,
    plan_shards,
    split_evenly,
)


def test_split_evenly_gives_the_first_blocks_one_more_like_accelerate():
    assert split_evenly(5, 2) == [range(0, 3), range(3, 5)]
    assert split_evenly(6, 3) == [range(0, 2), range(2, 4), range(4, 6)]
    assert split_evenly(2, 4) == [range(0, 1), range(1, 2), range(2, 2), range(2, 2)]
    with pytest.raises(ValueError):
        split_evenly(3, 0)


def test_one_process_does_everything_in_order():
    assert plan_shards([6, 6], 1) == [[Shard(0, 0, 6), Shard(1, 0, 6)]]


def test_seeds_are_split_in_blocks_when_they_are_at_least_as_many_as_the_processes():
    assert plan_shards([6, 6], 2) == [[Shard(0, 0, 6)], [Shard(1, 0, 6)]]
    assert plan_shards([4, 4, 4], 2) == [[Shard(0, 0, 4), Shard(1, 0, 4)], [Shard(2, 0, 4)]]  # uneven


def test_a_seed_s_checkpoints_are_split_when_processes_outnumber_seeds():
    assert plan_shards([12], 2) == [[Shard(0, 0, 6)], [Shard(0, 6, 12)]]
    assert plan_shards([7], 2) == [[Shard(0, 0, 4)], [Shard(0, 4, 7)]]  # uneven
    # 3 processes, 2 seeds: seed 0 gets two processes, seed 1 one
    assert plan_shards([5, 5], 3) == [[Shard(0, 0, 3)], [Shard(0, 3, 5)], [Shard(1, 0, 5)]]
    # more processes than checkpoints: the last ones get nothing
    assert plan_shards([2], 4) == [[Shard(0, 0, 1)], [Shard(0, 1, 2)], [], []]


@pytest.mark.parametrize("num_processes", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("counts", [[2], [7], [3, 3], [5, 4], [2, 2, 2], [4, 4, 3, 3, 3]])
def test_every_plan_covers_each_checkpoint_once_and_the_main_process_leads_seed_0(counts, num_processes):
    plan = plan_shards(counts, num_processes)
    assert len(plan) == num_processes
    assert plan[0][0] == Shard(0, 0, plan[0][0].stop) and plan[0][0].lead
    pieces = [(shard, (shard.seed_index, list(shard.rows))) for shards in plan for shard in shards]
    random.Random(0).shuffle(pieces)  # whatever order they arrive in
    ordered = order_pieces(pieces, counts)
    rows = [(i, s) for _, (i, steps) in ordered for s in steps]
    assert rows == [(i, s) for i, count in enumerate(counts) for s in range(count)]
    # one lead per seed: the base accuracy is reported once
    assert sorted(shard.seed_index for shard, _ in pieces if shard.lead) == list(range(len(counts)))
    # no process holds more than one seed's worth beyond the others (blocks are as even as they can be)
    work = [sum(len(s.rows) for s in shards) for shards in plan]
    assert max(work) <= max(counts) * -(-len(counts) // num_processes)


def test_pieces_that_miss_or_repeat_a_checkpoint_are_refused():
    with pytest.raises(RuntimeError, match="exactly once"):
        order_pieces([(Shard(0, 0, 3), None)], [4])
    with pytest.raises(RuntimeError, match="exactly once"):
        order_pieces([(Shard(0, 0, 3), None), (Shard(0, 2, 4), None)], [4])


def test_gather_or_raise_returns_every_process_s_items_in_rank_order(monkeypatch):
    # what all_gather_object returns on rank 0 of 2: its own outcome first, then rank 1's
    monkeypatch.setattr(sharding, "gather_object", lambda mine: [*mine, (None, ["b1", "b2"])])
    assert gather_or_raise(lambda: ["a"]) == ["a", "b1", "b2"]


def test_a_failure_on_another_process_is_raised_here_with_its_sentence(monkeypatch):
    monkeypatch.setattr(sharding, "gather_object", lambda mine: [*mine, ("checkpoint collection diverged", [])])
    with pytest.raises(UsageError, match="^checkpoint collection diverged$"):
        gather_or_raise(lambda: ["fine here"])


def test_the_failing_process_raises_its_own_exception_and_the_lowest_rank_wins(monkeypatch):
    def fail():
        raise FloatingPointError("base training diverged")

    monkeypatch.setattr(sharding, "gather_object", lambda mine: [*mine, ("another sentence", [])])
    with pytest.raises(FloatingPointError, match="base training diverged"):
        gather_or_raise(fail)
    monkeypatch.setattr(sharding, "gather_object", lambda mine: [("rank 0 first", []), *mine])
    with pytest.raises(UsageError, match="rank 0 first"):
        gather_or_raise(fail)


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(sharding, "gather_object", lambda mine: pytest.fail("a bug must not be gathered"))
    with pytest.raises(KeyError):
        gather_or_raise(lambda: {}["missing"])


class FakeAccelerator:
    def __init__(self, index: int, num_processes: int = 2):
        self.is_main_process, self.num_processes = index == 0, num_processes


def test_only_the_main_process_checks_and_its_refusal_reaches_the_others(monkeypatch):
    sent = []

    def broadcast(objects):  # rank 0 (called first here) sends what it found; every rank receives that
        if not sent:
            sent.append(objects[0])
        return [sent[0]]

    monkeypatch.setattr(sharding, "broadcast_object_list", broadcast)
    checked = []

    def check():
        checked.append(True)
        raise UsageError("--output_dir out exists and is not empty; pass --overwrite to replace it")

    with pytest.raises(UsageError, match="pass --overwrite"):
        on_main_or_raise(FakeAccelerator(0), check)
    with pytest.raises(UsageError, match="pass --overwrite"):
        on_main_or_raise(FakeAccelerator(1), check)
    assert checked == [True]  # the other process did not look at the folder
