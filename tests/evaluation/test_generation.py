"""Sampling with the chosen scheduler, from a pipeline that belongs to the parameter dataset, its network and recipe."""

import pytest
import torch
from diffusers import DDPMScheduler

from pdiff_hub import PDiffPipeline
from pdiff_hub.evaluation.generation import (
    check_recipe_target,
    check_same_param_dataset,
    check_same_target,
    generate_parameters,
)
from pdiff_hub.recipes.config import recipe_from_dict

from ..components import tiny_target
from .helpers import make_params, seeded


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


def test_check_same_param_dataset_follows_the_recorded_fingerprint(chain):
    pipe, params = chain
    sibling = PDiffPipeline(pipe.target, pipe.autoencoder, pipe.denoiser, pipe.scheduler)
    check_same_param_dataset(sibling, params)  # nothing recorded: nothing to compare
    sibling.register_provenance(param_dataset_fingerprint=params.fingerprint)
    check_same_param_dataset(sibling, params)
    other = make_params(pipe.target, seed=1)
    with pytest.raises(ValueError, match=f"fingerprint {params.fingerprint[:12]}.*--allow_other_param_dataset"):
        check_same_param_dataset(sibling, other)
    check_same_param_dataset(sibling, other, allow_other=True)


@pytest.mark.parametrize("override, match", [
    ({"target": {"model_name": "test_convnext"}}, "target.model_name is 'test_convnext'"),
    ({"target": {"model_kwargs": {"num_classes": 10, "in_chans": 3}}}, "target.model_kwargs"),
    ({"data": {"image_size": 28}}, "data.image_size is 28"),
    ({"target": {"param_patterns": ["fc.*"]}}, "param_patterns"),
    ({"target": {"library": "transformers"}}, "target.library is 'transformers' but the pipeline's network has 'timm'"),
    ({"lora": {"rank": 2, "target_modules": ["fc"]}}, "lora adapter is .*'r': 2.* but the pipeline's network has None"),
])
def test_check_recipe_target_names_the_key_that_differs(chain, override, match):
    pipe, _ = chain
    values = {"target": {"model_name": "test_resnet", "model_kwargs": {"num_classes": 10, "in_chans": 1},
                         "param_patterns": ["layer4.*.bn*"]}, "data": {"image_size": 32}}
    check_recipe_target(recipe_from_dict(values), pipe.target)
    for section, keys in override.items():
        values[section] = {**values.get(section, {}), **keys}
    with pytest.raises(ValueError, match=match):
        check_recipe_target(recipe_from_dict(values), pipe.target)


def test_check_recipe_target_accepts_other_patterns_for_the_same_layout(chain):
    pipe, _ = chain
    same = {"target": {"model_name": "test_resnet", "model_kwargs": {"num_classes": 10, "in_chans": 1},
                       "param_patterns": ["layer4.0.bn1.*", "layer4.0.bn2.*"]}, "data": {"image_size": 32}}
    check_recipe_target(recipe_from_dict(same), pipe.target)
