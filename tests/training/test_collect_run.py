"""The collection run's assembly: pieces gathered from several processes -> one parameter dataset and its metrics."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from accelerate import Accelerator

from pdiff_hub import TargetModel
from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.recipes.config import load_recipe
from pdiff_hub.training.collect_run import (
    assemble_dataset,
    collect_shard,
    machine_description,
    scoring_splits,
    summarize,
    write_collection,
)
from pdiff_hub.training.sharding import plan_shards


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("digits-mlp")


@pytest.fixture(scope="module")
def target(recipe):
    t = recipe.target
    return TargetModel(t.model_name, t.model_kwargs, t.param_patterns, image_size=recipe.data.image_size)


def piece(target, seed, steps, rank, base_acc, seconds, prefix_cached=False):
    n = len(steps)
    return {"seed": seed, "vectors": torch.full((n, target.layout.num_params), float(seed)), "steps": steps,
            "val_accuracy": [50.0 + s for s in steps], "test_accuracy": [60.0 + s for s in steps],
            "base_test_accuracy": base_acc, "prefix_cached": prefix_cached, "rank": rank,
            "base_seconds": seconds[0], "collect_seconds": seconds[1],
            "scored_images": {"validation": 7, "test": 9}}


def test_summarize():
    stats = summarize([1.0, 2.0, 6.0])
    assert (stats["min"], stats["mean"], stats["median"], stats["max"]) == (1.0, 3.0, 2.0, 6.0)
    assert stats["std"] == pytest.approx(2.1602, abs=1e-4)


def test_pieces_become_one_dataset_in_their_order_with_the_slowest_process_times(recipe, target):
    # rank 0: seed 0's first steps, then seed 1; rank 1: the rest of seed 0 (no base accuracy: not the lead shard)
    pieces = [piece(target, 0, [1, 2], 0, 90.0, (1.0, 0.5)), piece(target, 0, [3], 1, None, (1.5, 0.25)),
              piece(target, 1, [1, 2], 0, 91.0, (1.0, 0.5), prefix_cached=True)]
    collected = assemble_dataset(recipe, pieces, target)
    table = collected.params.dataset
    assert table["step"] == [1, 2, 3, 1, 2] and table["seed"] == [0, 0, 0, 1, 1]
    assert table["lr"] == [recipe.collect.lr] * 5 and table["test_accuracy"] == [61.0, 62.0, 63.0, 61.0, 62.0]
    assert collected.params.vectors[:, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert (collected.base_seconds, collected.collect_seconds) == (2.0, 1.0)  # rank 0: 1.0 + 1.0 s and 0.5 + 0.5 s
    metrics = collected.metrics
    assert metrics["base_test_accuracy"] == [90.0, 91.0] and metrics["prefix_cached"] is True
    assert metrics["num_params"] == target.layout.num_params and metrics["test"]["max"] == 63.0
    assert metrics["scored_images"] == {"validation": 7, "test": 9}
    assert collected.summary("OUT").splitlines() == [
        f"5 checkpoints of {target.layout.num_params} values -> OUT",
        "  test accuracy: min 61.00 mean 61.80 max 63.00",
        "  base training 2.0 s, collection 1.00 s (frozen prefix cached: True)",
    ]


def test_write_collection_writes_the_folder(tmp_path, recipe, target):
    collected = assemble_dataset(recipe, [piece(target, 0, [1, 2, 3], 0, 90.0, (1.0, 0.5))], target)
    write_collection(collected, tmp_path / "out", overwrite=False, card="the card\n", recipe=recipe, command="cmd")
    out = tmp_path / "out"
    assert (out / "README.md").read_text() == "the card\n"
    assert json.loads((out / "metrics.json").read_text())["base_test_accuracy"] == [90.0]
    assert (out / "args.yaml").is_file()
    assert torch.equal(ParameterDataset.load(out).vectors, collected.params.vectors)


def test_machine_description_names_the_processes_only_when_several():
    assert "processes" not in machine_description(1)
    assert machine_description(2).endswith(" per process, 2 processes")


def test_checkpoints_are_scored_on_the_evaluation_subsets_when_the_recipe_sets_them(recipe):
    small = dataclasses.replace(recipe, collect=dataclasses.replace(recipe.collect, base_epochs=1, num_checkpoints=3),
                                evaluate=dataclasses.replace(recipe.evaluate, val_images=40, test_images=60))
    splits = load_recipe_splits(small.data, small.target.model_kwargs)
    scored = scoring_splits(small, splits)
    assert [len(scored[k][1]) for k in ("train", "validation", "test")] == [len(splits["train"][1]), 40, 60]
    target, piece = collect_shard(small, splits, plan_shards([3], 1)[0][0], 3, Accelerator(cpu=True))
    assert piece["scored_images"] == {"validation": 40, "test": 60}
    evaluator = ParameterEvaluator(target.model, target.layout, *scored["test"])
    assert piece["test_accuracy"] == evaluator.accuracy(piece["vectors"]).tolist()
    # without the recipe keys the whole splits are used
    assert scoring_splits(recipe, splits)["test"][0] is splits["test"][0]
