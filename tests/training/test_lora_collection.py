"""Collecting LoRA adapters: the base trains alone on its classes, the adapter starts from it after a burn-in."""

from __future__ import annotations

import pytest
import torch

from pdiff_hub.core.cli import UsageError
from pdiff_hub.recipes.config import recipe_from_dict
from pdiff_hub.training import collect_run
from pdiff_hub.training.collection import collect_checkpoints

from ..components import TINY_LORA, TINY_VIT, tiny_lora_target

IMAGES = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(64) % 10


def _recipe(**lora):
    return recipe_from_dict({
        "data": {"image_size": 8, "dataset": "digits", "val_size": 200},
        "target": {"library": "transformers", "model_name": "vit", "model_kwargs": TINY_VIT, "param_patterns": ["*"]},
        "lora": {"rank": TINY_LORA["r"], "alpha": TINY_LORA["lora_alpha"], "target_modules": ["q_proj", "v_proj"],
                 "modules_to_save": ["classifier"], **lora},
        "collect": {"base_epochs": 2, "base_batch_size": 8, "num_checkpoints": 4, "batch_size": 8},
    })


def test_the_recipe_gives_the_target_its_adapter():
    target = collect_run.build_target(_recipe())
    assert target.has_adapter and target.layout == tiny_lora_target().layout


def test_the_base_trains_on_its_classes_alone_with_the_adapter_off(monkeypatch):
    seen = {}

    def fake_train(model, train, **kwargs):
        seen["labels"] = train[1].clone()
        seen["adapter_off"] = model.base_model.disable_adapters  # PEFT's flag inside disable_adapter()
        with torch.no_grad():
            model.get_base_model().classifier.original_module.weight.add_(1.0)  # "training" moves the head

    monkeypatch.setattr(collect_run, "train_base_model", fake_train)
    recipe = _recipe(base_classes=[0, 1, 2, 3, 4])
    target = collect_run.build_target(recipe)
    collect_run.train_base(recipe, target, (IMAGES, LABELS), seed=0, device="cpu", progress=False)
    assert seen["labels"].unique().tolist() == [0, 1, 2, 3, 4] and seen["adapter_off"]
    head = target.model.get_base_model().classifier
    assert torch.equal(head.modules_to_save["default"].weight, head.original_module.weight)  # the copy is re-seated
    assert torch.equal(target.base_network()(pixel_values=IMAGES).logits, target(IMAGES))  # the adapter starts at 0


def test_a_burn_in_keeps_the_checkpoints_a_longer_run_keeps_last():
    target = tiny_lora_target()
    kwargs = {"lr": 0.01, "batch_size": 8, "seed": 0, "progress": False}
    splits = ((IMAGES, LABELS),) * 3
    long = collect_checkpoints(target.model, target.layout, *splits, num_checkpoints=7, **kwargs)
    burnt = collect_checkpoints(target.model, target.layout, *splits, num_checkpoints=4, burn_in=3, **kwargs)
    assert burnt.steps == [3, 4, 5, 6]
    assert torch.equal(burnt.vectors, long.vectors[3:])
    assert not torch.equal(burnt.vectors[0], target.base_vector())


@pytest.mark.parametrize("lora, match", [
    ({"base_classes": [0, 12]}, r"lora.base_classes \[0, 12\] names classes \[12\] that digits lacks"),
    ({"base_classes": [0]}, r"collect.base_batch_size 8 is larger than the 7 training images of digits in "
                            r"lora.base_classes"),
])
def test_base_classes_the_data_cannot_serve_are_refused(lora, match):
    with pytest.raises(UsageError, match=match):
        collect_run.check_splits(_recipe(**lora), {"train": (IMAGES, LABELS)})


@pytest.mark.parametrize("values, match", [
    ({"lora": {"rank": 2}}, "lora.target_modules must name some when lora.rank > 0"),
    ({"lora": {"base_classes": [0, 1]}}, "lora.base_classes must be empty when lora.rank is 0"),
    ({"lora": {"burn_in_steps": 10}}, "lora.burn_in_steps must be 0 when lora.rank is 0"),
    ({"lora": {"rank": 2, "target_modules": ["fc"]}, "tasks": {"num_train_tasks": 2}},
     "lora.rank must be 0 when tasks.num_train_tasks > 0"),
])
def test_lora_keys_that_contradict_each_other_are_refused(values, match):
    with pytest.raises(UsageError, match=match):
        recipe_from_dict(values)


def test_a_base_dataset_is_loaded_for_the_base_network_alone(monkeypatch):
    from accelerate import Accelerator

    recipe = _recipe(base_dataset="digits", base_classes=[5, 6, 7, 8, 9])
    splits = collect_run.load_splits(recipe, Accelerator(cpu=True))
    assert set(splits) == {"train", "validation", "test", "base_train"}
    assert collect_run.base_training_split(splits) is splits["base_train"]
    assert collect_run.base_training_split({"train": splits["train"]}) is splits["train"]
    with pytest.raises(UsageError, match="lora.base_dataset must be empty when lora.rank is 0"):
        recipe_from_dict({"lora": {"base_dataset": "mnist"}})
