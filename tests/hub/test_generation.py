"""Choosing generated models: selection by validation accuracy, the --select values, the repos of the samples."""

import copy

import pytest
import torch

from pdiff_hub.hub.generation import (
    MeasuredBatch,
    Sampling,
    generate_and_measure,
    parse_selection,
    sample_repo_ids,
    select_indices,
)

from ..components import tiny_pipeline
from ..evaluation.fake_processes import run_on_ranks


def test_select_indices_ranks_by_validation_with_ties_to_the_lower_index():
    val = torch.tensor([50.0, 70.0, 60.0, 70.0])
    assert select_indices(val, "best") == [1]
    assert select_indices(val, 3) == [1, 3, 2]
    assert select_indices(val, "all") == [0, 1, 2, 3]  # all: in the batch's order
    batch = MeasuredBatch(torch.zeros(4, 2), {"validation": val, "test": val}, {"validation": 9, "test": 9})
    assert batch.ranks() == {1: 1, 3: 2, 2: 3, 0: 4}


@pytest.mark.parametrize("value", ["0", "-1", "top", "1.5", ""])
def test_parse_selection_refuses_anything_but_best_all_or_a_count(value):
    with pytest.raises(ValueError, match=f"--select {value!r}"):
        parse_selection(value)


def test_parse_selection():
    assert (parse_selection("best"), parse_selection("all"), parse_selection("3")) == ("best", "all", 3)


def test_one_sample_goes_to_the_repo_itself_several_to_suffixed_repos():
    assert sample_repo_ids([4], "org/gen") == {4: "org/gen"}
    assert sample_repo_ids([4, 1], "org/gen") == {4: "org/gen-sample-4", 1: "org/gen-sample-1"}
    assert sample_repo_ids([4, 1], None) == {4: None, 1: None}


def test_generate_and_measure_on_two_processes_equals_one():
    """The main process samples, each measures its block, all get every accuracy: bit for bit one process's."""
    pipe = tiny_pipeline()
    generator = torch.Generator().manual_seed(1)
    splits = {name: (torch.randn(24, 1, 32, 32, generator=generator), torch.randint(0, 10, (24,), generator=generator))
              for name in ("validation", "test")}
    sampling = Sampling(num_models=5, num_inference_steps=2, seed=3)
    single = generate_and_measure(pipe, splits, sampling, progress=False)
    copies = [copy.deepcopy(pipe) for _ in range(2)]  # each rank its own, as each process has
    for batch in run_on_ranks(2, lambda group: generate_and_measure(copies[group.process_index], splits, sampling,
                                                                    progress=False, group=group)):
        assert torch.equal(batch.vectors, single.vectors) and batch.split_sizes == single.split_sizes
        assert all(torch.equal(batch.accuracy[name], single.accuracy[name]) for name in splits)
