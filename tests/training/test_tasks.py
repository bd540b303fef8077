"""Collection for a task family: every task's part from the same start, on shared cached features."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from pdiff_hub.core.cli import UsageError
from pdiff_hub.core.layout import ParameterLayout
from pdiff_hub.data.tasks import binary_labels, task_accuracy
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.fitting import fit_generated_parameters
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.recipes.config import Recipe, bundled_recipes, load_recipe, recipe_from_dict
from pdiff_hub.recipes.sections import TasksConfig
from pdiff_hub.training.tasks import collect_task_checkpoints, kept_steps, task_seed, with_binary_head

CODES = ["0110010010", "1000000001", "0111111111"]


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=10, in_chans=1).eval()


def _data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class lights up its own band of rows, so that even a random backbone's features tell them apart."""
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(10, (n,), generator=g)
    images = torch.randn(n, 1, 32, 32, generator=g)
    for i, label in enumerate(labels.tolist()):
        images[i, :, 3 * label : 3 * label + 3] += 3.0
    return images, labels


def _collect(codes, keep=range(3), patterns=("layer4.0.bn2", "fc"), seed=0):
    model = with_binary_head(_backbone(), seed=0)
    layout = ParameterLayout.from_model(model, list(patterns))
    split = FrozenPrefixSplit.from_model(model, layout.names)
    images, labels = _data()
    features = split.compute_prefix(images)
    result = collect_task_checkpoints(split, features, labels, codes, keep=keep, lr=0.01, batch_size=8, seed=seed,
                                      progress=False)
    return result, model, layout, split, features, labels


def test_with_binary_head_is_a_seeded_two_way_copy_that_leaves_the_rng_alone():
    backbone = _backbone()
    state = torch.random.get_rng_state()
    binary = with_binary_head(backbone, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert binary(torch.randn(2, 1, 32, 32)).shape == (2, 2) and backbone.fc.out_features == 10
    assert torch.equal(binary.fc.weight, with_binary_head(backbone, seed=3).fc.weight)
    assert not torch.equal(binary.fc.weight, with_binary_head(backbone, seed=4).fc.weight)
    assert torch.equal(binary.layer4[0].bn2.weight, backbone.layer4[0].bn2.weight)
    with pytest.raises(TypeError, match="has no reset_classifier"):
        with_binary_head(nn.Sequential(nn.Linear(2, 2)))


def test_kept_steps_and_task_seeds():
    assert list(kept_steps(3, every=10, burn_in=5)) == [5, 15, 25]
    assert list(kept_steps(4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="num_checkpoints >= 1"):
        kept_steps(0)
    seeds = {task_seed(s, c) for s in range(3) for c in CODES}
    assert len(seeds) == 9


def test_rows_carry_task_condition_and_step():
    result, model, layout, split, *_ = _collect(CODES, keep=kept_steps(2, every=3, burn_in=1))
    assert result.prefix_cached
    assert result.vectors.shape == (6, layout.num_params) and result.vectors.dtype == torch.float32
    assert result.tasks == [CODES[0]] * 2 + [CODES[1]] * 2 + [CODES[2]] * 2
    assert result.steps == [1, 4] * 3
    assert result.conditions.shape == (6, 10)
    assert result.conditions[0].tolist() == [float(b) for b in CODES[0]]
    assert set(result.losses) == set(result.seconds) == set(CODES) and len(result.losses[CODES[0]]) == 5
    assert all(s > 0 for s in result.seconds.values())
    assert not torch.equal(result.vectors[0], result.vectors[2])  # tasks differ


def test_every_task_starts_from_the_same_values_and_does_not_depend_on_the_others():
    result, model, layout, split, features, labels = _collect(CODES)
    alone, *_ = _collect(CODES[1:2])
    assert torch.equal(alone.vectors, result.vectors[3:6])
    code = CODES[2]
    direct = fit_generated_parameters(split, features, binary_labels(labels, code), dict(model.named_parameters()),
                                      keep=range(3), lr=0.01, batch_size=8,
                                      generator=torch.Generator().manual_seed(task_seed(0, code)))
    assert torch.equal(direct.vectors, result.vectors[6:9])
    # The backbone is not modified by collection.
    assert torch.equal(layout.flatten(dict(model.named_parameters())),
                       layout.flatten(dict(with_binary_head(_backbone(), seed=0).named_parameters())))


def test_tasks_are_learned_on_cached_features():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 32), nn.ReLU(), nn.Linear(32, 2)).eval()
    layout = ParameterLayout.from_model(model, ["3"])
    split = FrozenPrefixSplit.from_model(model, layout.names)
    images, labels = _data()
    result = collect_task_checkpoints(split, split.compute_prefix(images), labels, CODES, keep=[0, 149], lr=0.02,
                                      batch_size=16, progress=False)
    predictions = ParameterEvaluator(model, layout, images, labels, split=split).predictions(result.vectors)
    accuracy = task_accuracy(predictions, labels, result.tasks).reshape(len(CODES), 2)
    assert (accuracy[:, 1] >= 95).all() and (accuracy[:, 1] > accuracy[:, 0]).all(), accuracy


@pytest.mark.parametrize(("codes", "message"), [([], "Need distinct task codes"),
                                                (["0110", "0110"], "Need distinct task codes"),
                                                (["0110", "011"], "has 3 characters")])
def test_bad_codes_are_refused(codes, message):
    with pytest.raises(ValueError, match=message):
        _collect(codes)


def test_the_tasks_section_is_off_by_default_and_checked():
    assert Recipe().tasks.num_train_tasks == 0  # not a task recipe
    for name in bundled_recipes():  # only the task recipes have a tasks section, and only they are task families
        assert (load_recipe(name).tasks != TasksConfig()) == load_recipe(name).is_task_family == ("tasks" in name), name
    recipe = recipe_from_dict({"tasks": {"num_train_tasks": 300, "num_heldout_tasks": 30, "lr": "1e-2",
                                         "backbone_classes": [0, 1, 2, 3, 4]}})
    tasks = recipe.tasks
    assert (tasks.num_train_tasks, tasks.lr, tasks.backbone_classes) == (300, 0.01, [0, 1, 2, 3, 4])
    with pytest.raises(UsageError, match="tasks.num_heldout_tasks must be 0 when tasks.num_train_tasks is 0"):
        recipe_from_dict({"tasks": {"num_heldout_tasks": 30}})
    with pytest.raises(UsageError, match="tasks.checkpoint_every in recipe must be an integer >= 1"):
        recipe_from_dict({"tasks": {"checkpoint_every": 0}})
    with pytest.raises(UsageError, match="tasks.backbone_classes in recipe must be a list of distinct integers"):
        recipe_from_dict({"tasks": {"backbone_classes": [1, 1]}})
