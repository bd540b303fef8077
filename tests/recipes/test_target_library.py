"""The target section's library: timm by default, transformers by name, and what each refuses."""

from __future__ import annotations

import pytest

from pdiff_hub.core.cli import UsageError
from pdiff_hub.recipes.config import Recipe, load_recipe, recipe_from_dict
from pdiff_hub.training.collect_run import build_target

from ..components import TINY_VIT


def test_a_recipe_without_a_library_is_a_timm_recipe():
    recipe = load_recipe("mnist-resnet18")
    assert recipe.target.library == "timm"
    assert recipe.target.image_kwargs() == {"num_classes": 10, "in_chans": 1}
    assert build_target(recipe).config.library == "timm"


def test_a_transformers_recipe_reads_classes_and_channels_from_the_config_values():
    recipe = recipe_from_dict({"target": {"library": "transformers", "model_name": "vit", "model_kwargs": TINY_VIT,
                                          "param_patterns": ["classifier"]}, "data": {"image_size": 8}})
    assert recipe.target.image_kwargs() == {"num_classes": 10, "in_chans": 1}
    target = build_target(recipe)
    assert target.is_transformers and target.layout.names == ("classifier.weight", "classifier.bias")


@pytest.mark.parametrize("target, match", [
    ({"library": "keras"}, r"target\.library in recipe must be one of timm, transformers; got 'keras'"),
    ({"library": "transformers", "model_kwargs": {"num_labels": 0}}, r"target\.model_kwargs in recipe"),
])
def test_bad_target_values_are_refused_when_read(target, match):
    with pytest.raises(UsageError, match=match):
        recipe_from_dict({"target": target})


def test_a_task_family_of_a_transformers_target_is_refused():
    with pytest.raises(UsageError, match="tasks.num_train_tasks must be 0 when target.library is not timm"):
        recipe_from_dict({"target": {"library": "transformers", "model_name": "vit", "model_kwargs": TINY_VIT},
                          "tasks": {"num_train_tasks": 4}})


@pytest.mark.parametrize("target, match", [
    ({"model_name": "vitt", "model_kwargs": {}}, "transformers cannot build target.model_name 'vitt'"),
    ({"model_name": "BertForSequenceClassification", "model_kwargs": {"num_hidden_layers": 1}, "param_patterns": ["*"]},
     "transformers cannot build target.model_name 'BertForSequenceClassification' .*no image classifier"),
    ({"model_name": "vit", "model_kwargs": TINY_VIT, "param_patterns": ["head"]},
     r"target.param_patterns \['head'\] do not fit 'vit': Parameter pattern 'head' matches no parameter"),
])
def test_a_transformers_target_that_cannot_be_built_is_one_sentence(target, match):
    recipe = Recipe()
    recipe.target.library = "transformers"
    for key, value in target.items():
        setattr(recipe.target, key, value)
    with pytest.raises(UsageError, match=match) as err:
        build_target(recipe)
    assert "\n" not in str(err.value)
