"""Sharded evaluation: each process's block of the rows, the results gathered in row order, the vectors from the main
process; and run_evaluation on several (thread) processes equal to one."""

import copy

import pytest
import torch

from pdiff_hub.evaluation.run import run_evaluation
from pdiff_hub.evaluation.sharding import ProcessGroup, shard_bounds

from .conftest import CONFIG
from .fake_processes import run_on_ranks


@pytest.mark.parametrize("num_rows", [0, 1, 2, 5, 7, 69])
@pytest.mark.parametrize("num_processes", [1, 2, 3, 4])
def test_shard_bounds_cover_the_rows_in_order_in_blocks_one_row_apart(num_rows, num_processes):
    bounds = shard_bounds(num_rows, num_processes)
    assert len(bounds) == num_processes and bounds[0][0] == 0 and bounds[-1][1] == num_rows
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(bounds, bounds[1:]))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)  # the first ones take the extra


def test_shard_bounds_refuse_no_process_or_negative_rows():
    with pytest.raises(ValueError, match="over 0 processes"):
        shard_bounds(3, 0)
    with pytest.raises(ValueError, match="cannot shard -1 rows"):
        shard_bounds(-1, 2)


@pytest.mark.parametrize("num_rows", [0, 2, 7])
def test_map_rows_gathers_every_block_in_row_order_on_every_process(num_rows):
    rows = torch.arange(num_rows * 3, dtype=torch.float32).reshape(num_rows, 3)
    seen = {}

    def work(group: ProcessGroup):
        def fn(block):
            seen[group.process_index] = block.clone()
            return block.sum(1, keepdim=True) * 10
        return group.map_rows(fn, rows)

    results = run_on_ranks(3, work)
    for result in results:
        assert torch.equal(result, rows.sum(1, keepdim=True) * 10)
    if num_rows:
        # Each process saw its own block only; with 2 rows over 3 processes the last one has none and is not called.
        for rank, (start, stop) in enumerate(shard_bounds(num_rows, 3)):
            assert torch.equal(seen[rank], rows[start:stop]) if stop > start else rank not in seen


def test_on_main_makes_once_and_every_process_receives_it():
    made = []

    def work(group):
        return group.on_main(lambda: made.append(group.process_index) or torch.tensor([1.5, 2.5]))

    results = run_on_ranks(2, work)
    assert made == [0] and all(torch.equal(r, torch.tensor([1.5, 2.5])) for r in results)


def test_one_process_is_the_plain_computation():
    group = ProcessGroup()
    rows = torch.randn(4, 2)
    assert group.is_main_process and group.bounds(4) == (0, 4)
    assert group.map_rows(lambda block: block, rows) is rows  # no copy, no gather
    assert group.on_main(lambda: "made") == "made"
    assert group.device(torch.device("cpu")) == torch.device("cpu")


def _without_timings(result) -> dict:
    values = result.to_dict()
    values.pop("timings")
    return values


@pytest.mark.parametrize("num_processes", [2, 3])
def test_run_evaluation_on_several_processes_equals_one(chain, splits, result, num_processes):
    """Every rank returns the single-process result, the predictions bit for bit (the loop on the CPU)."""
    copies = [copy.deepcopy(chain) for _ in range(num_processes)]  # each rank its own, as each process has

    def work(group):
        pipe, params = copies[group.process_index]
        return run_evaluation(pipe, params, splits, CONFIG, progress=False, group=group)

    results = run_on_ranks(num_processes, work)
    expected = _without_timings(result)
    for sharded in results:
        assert _without_timings(sharded) == expected
