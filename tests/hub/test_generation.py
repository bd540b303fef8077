"""Choosing generated models: selection by validation accuracy, the --select values, the repos of the samples."""

import copy
from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler

from pdiff_hub.data.tasks import binary_labels, task_accuracy
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.hub.generation import (
    MeasuredBatch,
    Sampling,
    generate_and_measure,
    parse_selection,
    sample_repo_ids,
    select_indices,
    selection_splits,
)
from pdiff_hub.pipeline import PDiffPipeline

from ..components import tiny_pipeline
from ..evaluation.fake_processes import run_on_ranks
from .conftest import HELD_OUT_TASK
from .fakes import DATA


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


def test_models_for_a_task_are_sampled_for_its_code_and_measured_on_its_labels(task_pipe):
    generator = torch.Generator().manual_seed(2)
    labels = torch.arange(30) % 10
    splits = {name: (torch.randn(30, 1, 32, 32, generator=generator), binary_labels(labels, HELD_OUT_TASK))
              for name in ("validation", "test")}
    sampling = Sampling(num_models=3, num_inference_steps=2, scheduler="ddpm", seed=4, condition=HELD_OUT_TASK,
                        guidance_scale=1.5)
    batch = generate_and_measure(task_pipe, splits, sampling, progress=False)

    sampler = PDiffPipeline(task_pipe.target, task_pipe.autoencoder, task_pipe.denoiser,
                            DDPMScheduler.from_config(task_pipe.scheduler.config))
    sampler.set_progress_bar_config(disable=True)
    expected = sampler(num_models=3, num_inference_steps=2, generator=torch.Generator().manual_seed(4),
                       output_type="pt", condition=[[float(b) for b in HELD_OUT_TASK]], guidance_scale=1.5)
    assert torch.equal(batch.vectors, expected.parameters)
    unguided = generate_and_measure(task_pipe, splits, Sampling(3, 2, "ddpm", 4, condition=HELD_OUT_TASK),
                                    progress=False)
    assert not torch.equal(unguided.vectors, batch.vectors)  # the guidance scale reaches the sampler
    target = task_pipe.target
    for name, (images, _) in splits.items():  # the accuracy is the task's, as data.tasks measures it
        predictions = ParameterEvaluator(target.model, target.layout, images, labels).predictions(batch.vectors)
        assert torch.equal(batch.accuracy[name], task_accuracy(predictions, labels, [HELD_OUT_TASK] * 3))


def test_selection_splits_of_a_task_have_its_labels_and_refuse_a_mismatch(task_pipe, pipe):
    data = SimpleNamespace(**DATA)
    splits = selection_splits(data, task_pipe.target, task=HELD_OUT_TASK)
    whole = selection_splits(data, pipe.target)
    assert splits.label_names == whole.label_names == [str(i) for i in range(10)]
    for name, (images, labels) in splits.tensors.items():
        assert torch.equal(images, whole.tensors[name][0])
        assert torch.equal(labels, binary_labels(whole.tensors[name][1], HELD_OUT_TASK))
    with pytest.raises(ValueError, match="has 10 classes but task 0110 has 4; give the dataset"):
        selection_splits(data, task_pipe.target, task="0110")
    with pytest.raises(ValueError, match="models are 2-way classifiers, but .* has 10 classes; --condition needs"):
        selection_splits(data, pipe.target, task=HELD_OUT_TASK)
