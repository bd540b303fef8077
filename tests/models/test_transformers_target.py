"""A transformers image classifier as the target: built from a config, a class name or a folder, generated, saved."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification

from pdiff_hub import TargetModel

from ..components import TINY_VIT, assert_same_up_to_rounding, tiny_target, tiny_transformers_target

IMAGES = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def vit():
    return tiny_transformers_target()


def test_parameter_patterns_use_the_transformers_names(vit):
    assert vit.layout.names == ("vit.layernorm.weight", "vit.layernorm.bias", "classifier.weight", "classifier.bias")
    assert vit.layout.num_params == 16 + 16 + 16 * 10 + 10
    assert vit.classes_and_channels() == (10, 1) and vit.is_transformers
    assert vit(IMAGES).shape == (4, 10)  # called as model(images) -> logits, like a timm target


def test_a_config_type_and_an_architecture_name_build_the_same_network():
    by_class = tiny_transformers_target("ViTForImageClassification")
    by_type = tiny_transformers_target("vit")
    assert type(by_type.build_transformers_model(by_type.base_vector())) is ViTForImageClassification
    assert by_class.layout == by_type.layout
    assert all(torch.equal(a, b) for a, b in zip(by_class.model.state_dict().values(),
                                                 by_type.model.state_dict().values()))


def test_generated_transformers_models_are_of_their_own_class_with_the_vector_written(vit):
    vector = vit.base_vector() + 0.5
    model = vit.build_transformers_model(vector)
    assert type(model) is ViTForImageClassification and not model.training
    assert torch.equal(model(IMAGES).logits, vit.build_model(vector)(IMAGES))
    assert torch.equal(vit.layout.flatten(dict(model.named_parameters())), vector)
    frozen = "vit.embeddings.patch_embeddings.projection.weight"
    assert dict(model.named_parameters())[frozen] is dict(vit.model.named_parameters())[frozen]  # shared, not copied
    assert not torch.equal(vit.base_vector(), vector)  # the target itself is untouched
    with pytest.raises(ValueError, match="timm model"):
        tiny_target().build_transformers_model(tiny_target().base_vector())


def test_a_saved_target_rebuilds_from_its_recorded_config_without_the_folder_it_came_from(tmp_path):
    source = tmp_path / "source"
    torch.manual_seed(3)
    ViTForImageClassification(ViTConfig(**TINY_VIT)).save_pretrained(source)
    target = TargetModel(str(source), {}, ["classifier"], image_size=8, library="transformers")
    loaded = AutoModelForImageClassification.from_pretrained(source)
    head = torch.cat([loaded.classifier.weight.flatten(), loaded.classifier.bias]).detach()
    assert torch.equal(target.base_vector(), head)  # the folder's weights
    assert target.config.hf_config["model_type"] == "vit" and target.config.hf_config["hidden_size"] == 16
    target.save_pretrained(tmp_path / "target")
    shutil.rmtree(source)
    again = TargetModel.from_pretrained(tmp_path / "target")
    assert again.config.library == "transformers" and again.layout == target.layout
    assert_same_up_to_rounding(again(IMAGES), target(IMAGES))
    assert "hf_config" in json.loads((tmp_path / "target" / "config.json").read_text())


def test_a_timm_target_saved_without_a_library_loads_as_timm(tmp_path):
    target = tiny_target()
    target.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("library", "hf_config"):  # a target saved before these arguments existed
        config.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = TargetModel.from_pretrained(tmp_path)
    assert again.config.library == "timm" and not again.is_transformers
    assert torch.equal(again.base_vector(), target.base_vector())


def test_an_unknown_library_or_a_non_classifier_is_one_sentence():
    with pytest.raises(ValueError, match="Unknown target library 'keras'"):
        TargetModel("resnet18", {}, ["fc"], library="keras")
    with pytest.raises(ValueError, match="no image classifier for 'bert'"):
        TargetModel("bert", {"num_hidden_layers": 1}, ["*"], library="transformers")
