"""PDiffPipeline's accuracy prompts: pipe(accuracy=...) as the standardized conditions of an accuracy-conditioned
pipeline, its refusals and its extrapolation warning. The pipeline is the tiny one with a 1-value condition, its
weights moved off their initial values as training would; its condition_info is written by hand."""

import warnings

import pytest
import torch

from pdiff_hub import LatentDenoiser, PDiffPipeline
from pdiff_hub.pipeline.pipeline_pdiff import accuracy_conditions

from ..components import assert_same_up_to_rounding, tiny_pipeline

INFO = {"description": "validation accuracy (%) of the checkpoint, standardized with accuracy_mean and accuracy_std",
        "kind": "accuracy", "accuracy_mean": 90.0, "accuracy_std": 0.5, "accuracy_min": 89.0, "accuracy_max": 91.25,
        "split": "validation"}


def conditional_pipeline(condition_dim=1, **info) -> PDiffPipeline:
    pipe = tiny_pipeline()
    torch.manual_seed(0)
    denoiser = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16,
                              condition_dim=condition_dim, condition_mode="input")
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pipe = PDiffPipeline(pipe.target, pipe.autoencoder, denoiser, pipe.scheduler)
    pipe.register_condition_info(**info)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def accuracy_pipe():
    return conditional_pipeline(**INFO)


def generate(pipe, n=2, **kwargs):
    return pipe(num_models=n, num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0),
                **kwargs)


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_accuracy_prompts_are_the_standardized_conditions(accuracy_pipe, guidance_scale):
    prompted = generate(accuracy_pipe, accuracy=[90.75, 89.5], guidance_scale=guidance_scale)
    assert prompted.parameters.shape == (4, accuracy_pipe.target.layout.num_params)
    assert prompted.conditions.tolist() == [[1.5], [1.5], [-1.0], [-1.0]]  # condition-major, standardized
    same = generate(accuracy_pipe, condition=[[(90.75 - 90) / 0.5], [(89.5 - 90) / 0.5]], guidance_scale=guidance_scale)
    assert torch.equal(prompted.parameters, same.parameters)
    other = generate(accuracy_pipe, accuracy=[89.0, 89.5], guidance_scale=guidance_scale)
    assert not torch.allclose(prompted.parameters[:2], other.parameters[:2])


def test_one_accuracy_is_one_prompt(accuracy_pipe):
    one = generate(accuracy_pipe, n=3, accuracy=90.25)
    assert one.parameters.shape[0] == 3 and torch.equal(one.parameters, generate(accuracy_pipe, n=3,
                                                                                 accuracy=[90.25]).parameters)
    assert torch.equal(accuracy_conditions(INFO, torch.tensor([91.0])), torch.tensor([[2.0]]))


def test_an_accuracy_prompt_is_refused_where_it_means_nothing(accuracy_pipe):
    with pytest.raises(ValueError, match="Give either accuracy= or condition=, not both"):
        generate(accuracy_pipe, accuracy=90.0, condition=[[0.0]])
    for bad in (float("nan"), [90.0, float("inf")]):
        with pytest.raises(ValueError, match="accuracy must be finite numbers"):
            generate(accuracy_pipe, accuracy=bad)
    for bad in ([[90.0], [91.0]], [], "ninety"):
        with pytest.raises(ValueError, match="accuracy must be a number or a"):
            generate(accuracy_pipe, accuracy=bad)
    with pytest.raises(ValueError, match="accuracy= needs a pipeline trained with train.accuracy_prompt; this one is "
                                         "not conditioned on accuracy"):
        generate(tiny_pipeline(), accuracy=90.0)
    tasks = conditional_pipeline(condition_dim=10, description="bit i = 1: class i is a positive class")
    with pytest.raises(ValueError, match="this one is conditioned on 'bit i = 1: class i is a positive class'; give "
                                         "its conditions with condition="):
        generate(tasks, accuracy=90.0)


def test_a_prompt_far_outside_the_checkpoints_accuracies_warns(accuracy_pipe):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate(accuracy_pipe, accuracy=[88.0, 92.25])  # 2 std (1 point) outside [89, 91.25]: no warning
    with pytest.warns(UserWarning, match=r"accuracy \[95.0\] lies more than 2 standard deviations \(0.5 points\) "
                                         r"outside the checkpoints' validation accuracies \[89, 91.25\]") as record:
        generate(accuracy_pipe, accuracy=[90.0, 95.0])
    assert record[0].filename == __file__  # the warning points at the call


def test_the_accuracy_condition_info_round_trips(accuracy_pipe, tmp_path):
    accuracy_pipe.save_pretrained(tmp_path / "pipe")
    loaded = PDiffPipeline.from_pretrained(tmp_path / "pipe")
    assert loaded.condition_info == INFO
    loaded.set_progress_bar_config(disable=True)
    assert_same_up_to_rounding(generate(loaded, accuracy=91.0).parameters,
                               generate(accuracy_pipe, accuracy=91.0).parameters)
