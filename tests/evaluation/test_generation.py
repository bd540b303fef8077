"""Sampling with the chosen scheduler, from a pipeline that belongs to the parameter dataset's network."""

import pytest
import torch
from diffusers import DDPMScheduler

from pdiff_hub.evaluation.generation import check_same_target, generate_parameters

from ..components import tiny_target
from .helpers import seeded


def test_the_ddpm_sampler_is_the_pipelines_own_and_ddim_differs(chain):
    pipe, _ = chain
    assert isinstance(pipe.scheduler, DDPMScheduler)  # the tiny pipeline is trained with the paper's DDPM schedule
    ddpm = generate_parameters(pipe, 3, 4, "ddpm", seeded(0), progress=False)
    direct = pipe(num_models=3, num_inference_steps=4, generator=seeded(0), output_type="pt").parameters
    torch.testing.assert_close(ddpm, direct, rtol=0, atol=0)
    ddim = generate_parameters(pipe, 3, 4, "ddim", seeded(0), progress=False)
    assert ddim.shape == (3, pipe.target.layout.num_params)
    assert not torch.allclose(ddim, ddpm)
    assert isinstance(pipe.scheduler, DDPMScheduler)  # the pipeline itself is left as it was


def test_generate_parameters_errors(chain):
    pipe, _ = chain
    with pytest.raises(ValueError, match="scheduler"):
        generate_parameters(pipe, 2, 2, "euler", progress=False)
    with pytest.raises(ValueError, match="num_models"):
        generate_parameters(pipe, 0, 2, progress=False)


def other_layout():
    return tiny_target(patterns=["layer4.*.bn1"])


def other_model():
    return tiny_target("test_convnext", ["stages.3.*norm*"])


def other_frozen_weights():
    target = tiny_target()
    with torch.no_grad():
        target.model.get_parameter("conv1.0.weight").add_(1.0)
    return target


@pytest.mark.parametrize("make_target, match", [(other_layout, "layout"), (other_model, "test_convnext"),
                                                (other_frozen_weights, "frozen weights")])
def test_check_same_target_rejects_another_network(chain, make_target, match):
    pipe, _ = chain
    with pytest.raises(ValueError, match=match):
        check_same_target(pipe.target, make_target())


def test_check_same_target_accepts_the_same_network_rebuilt(chain):
    pipe, _ = chain
    check_same_target(pipe.target, tiny_target())
