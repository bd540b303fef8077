"""A pipeline of a transformers target returns transformers models, and survives a save and load."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTForImageClassification

from pdiff_hub import PDiffPipeline

from ..components import assert_same_up_to_rounding, tiny_pipeline, tiny_transformers_target


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(tiny_transformers_target())


def _generate(pipe, **kwargs):
    return pipe(num_models=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kwargs)


def test_the_default_output_is_the_targets_library(pipe):
    out = _generate(pipe)
    assert all(type(m) is ViTForImageClassification and not m.training for m in out.models)
    images = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for model, vector in zip(out.models, out.parameters):
        assert torch.equal(model(pixel_values=images).logits, pipe.target.build_model(vector)(images))
    assert torch.equal(_generate(pipe, output_type="transformers").parameters, out.parameters)


def test_a_transformers_pipeline_refuses_timm_output(pipe):
    with pytest.raises(ValueError, match="output_type must be 'transformers' .* got 'timm'"):
        _generate(pipe, output_type="timm")
    with pytest.raises(ValueError, match="output_type must be 'timm' .* got 'transformers'"):
        _generate(tiny_pipeline(), output_type="transformers")


def test_a_saved_transformers_pipeline_generates_the_same_models(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = PDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.target.config.library == "transformers"
    assert_same_up_to_rounding(_generate(loaded, output_type="pt").parameters,
                               _generate(pipe, output_type="pt").parameters)
    assert type(_generate(loaded).models[0]) is ViTForImageClassification
