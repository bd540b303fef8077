"""A task family's collection run: refusals before any data, the 2-way network built on the backbone, the dataset."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pdiff_hub.core.cli import UsageError
from pdiff_hub.data.images import load_recipe_data
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.data.tasks import binary_labels
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training.task_collect_run import (
    check_task_plan,
    collect_task_family,
    draw_tasks,
    head_names,
    task_network,
    task_networks,
    train_backbone,
)


def _recipe(**changes):
    """digits-mlp-tasks, shrunk to seconds; ``changes`` as {"section.key": value}."""
    values = load_recipe("digits-mlp-tasks").to_dict()
    changes = {"collect.base_epochs": 3, "tasks.num_train_tasks": 6, "tasks.num_heldout_tasks": 2,
               "tasks.burn_in_steps": 20, "tasks.checkpoints_per_task": 3, "tasks.checkpoint_every": 5, **changes}
    for key, value in changes.items():
        section, name = key.split(".")
        values[section][name] = value
    return recipe_from_dict(values)


@pytest.mark.parametrize(("change", "message"), [
    ({"tasks.num_train_tasks": 1020, "tasks.num_heldout_tasks": 10}, "cannot be drawn from 10 classes"),
    ({"tasks.backbone_classes": [3, 12]}, "at least 2 classes below 10"),
    ({"tasks.backbone_classes": [3]}, "at least 2 classes below 10"),
    ({"collect.seeds": [0, 1]}, "one frozen backbone"),
    ({"target.param_patterns": ["1"]}, "must include the classifier head"),
])
def test_a_plan_that_cannot_work_is_refused_before_any_data(change, message):
    with pytest.raises(UsageError, match=message):
        check_task_plan(_recipe(**change))


def test_several_processes_are_refused():
    with pytest.raises(UsageError, match="one process"):
        check_task_plan(_recipe(), num_processes=2)


def test_the_network_is_the_backbone_with_a_seeded_two_way_head():
    recipe = _recipe()
    backbone, _ = task_networks(recipe)
    network = task_network(recipe, backbone)
    assert head_names(backbone.model, network.model) == ["3.weight", "3.bias"]
    assert network.model[3].out_features == 2
    assert torch.equal(network.model[1].weight, backbone.model[1].weight)
    again = task_network(recipe, backbone)  # the head is drawn from tasks.seed, not from the global generator
    assert torch.equal(again.base_vector(), network.base_vector())
    other = task_network(dataclasses.replace(recipe, tasks=dataclasses.replace(recipe.tasks, seed=1)), backbone)
    assert not torch.equal(other.base_vector(), network.base_vector())


def test_tasks_are_drawn_and_split_by_the_recipe_seed():
    split = draw_tasks(_recipe())
    assert len(split.train) == 6 and len(split.heldout) == 2 and not set(split.train) & set(split.heldout)
    assert draw_tasks(_recipe()) == split
    assert draw_tasks(_recipe(**{"tasks.seed": 1})) != split


def test_a_collected_family_scores_each_row_on_its_own_task(tmp_path):
    recipe = _recipe(**{"tasks.backbone_classes": [0, 1, 2, 3, 4]})
    splits, names = load_recipe_data(recipe.data, recipe.target.model_kwargs)
    collected = collect_task_family(recipe, splits, names, progress=False)
    params = collected.params
    assert len(params.dataset) == 6 * 3 and params.dataset["step"][:3] == [20, 25, 30]
    assert params.task_split == draw_tasks(recipe)
    assert params.task_info["backbone_classes"] == [0, 1, 2, 3, 4] and params.task_info["class_names"][9] == "9"
    assert params.task_info["backbone_training_images"] == int((splits["train"][1] < 5).sum())
    # A row's recorded accuracy is its vector's accuracy on its own task's labels.
    row = 7
    images, labels = splits["test"]
    model = params.target.build_model(params.vectors[row])
    predicted = model(images).argmax(-1)
    expected = 100.0 * (predicted == binary_labels(labels, params.tasks[row])).float().mean().item()
    assert params.dataset["test_accuracy"][row] == pytest.approx(expected, abs=1e-4)
    params.save(tmp_path)
    assert ParameterDataset.load(tmp_path).task_split == params.task_split
    assert collected.metrics["num_heldout_tasks"] == 2 and collected.metrics["fit_seconds_per_task"]["max"] > 0


def test_a_trained_backbone_can_come_from_a_folder(tmp_path):
    recipe = _recipe()
    backbone, _ = task_networks(recipe)
    with torch.no_grad():
        backbone.model[1].weight.add_(1.0)  # unlike any freshly drawn network
    backbone.save_pretrained(tmp_path / "params" / "target")
    loaded = _recipe(**{"tasks.backbone": str(tmp_path / "params")})
    check_task_plan(loaded)
    splits, _ = load_recipe_data(recipe.data, recipe.target.model_kwargs)
    network = task_network(loaded, train_backbone(loaded, splits, progress=False)[0])
    assert torch.equal(network.model[1].weight, backbone.model[1].weight)
    with pytest.raises(UsageError, match="no readable trained network"):
        check_task_plan(_recipe(**{"tasks.backbone": str(tmp_path / "nothing")}))
    other = _recipe(**{"target.model_kwargs": {"num_classes": 10, "in_chans": 1, "img_size": 8, "hidden": 16},
                       "tasks.backbone": str(tmp_path / "params")})
    with pytest.raises(UsageError, match="but the recipe's target is"):
        check_task_plan(other)
