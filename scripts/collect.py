"""Collect a parameter dataset: train a base model from scratch, then save K checkpoints of the generated subset.

    python scripts/collect.py --recipe fashion-mnist-resnet18 --output_dir runs/fmnist/params
    python scripts/collect.py --recipe fashion-mnist-resnet18 --collect.num_checkpoints 50 --output_dir OUT

The output folder (written atomically: it appears complete or not at all) holds the parameter dataset
(``dataset/``), the frozen base model (``target/``), the dataset card (``README.md``), ``metrics.json`` and the
final arguments (``args.yaml``).

On several processes (one per GPU; on a machine without one, CPU processes that talk over gloo):

    accelerate launch --multi_gpu --num_processes 2 scripts/collect.py --recipe digits-mlp \
        --collect.seeds "[0, 1]" --output_dir OUT

each process trains the base models of its block of ``collect.seeds`` and collects and evaluates their checkpoints;
with more processes than seeds, a seed's processes each evaluate a block of its checkpoints. The main process gathers
them in seed and step order and writes the folder: the same dataset, row for row, as one process writes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from pdiff_hub.core.cli import UsageError, check_output_dir, run_script
from pdiff_hub.core.io import atomic_output_dir
from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.hub.cards import render_card
from pdiff_hub.models.target import TargetModel
from pdiff_hub.recipes.config import (
    Recipe,
    add_recipe_arguments,
    command_line,
    recipe_from_args,
    resolve_recipe_path,
    write_run_args,
)
from pdiff_hub.training.collection import accuracy, checkpoints_per_seed, collect_checkpoints, train_base_model
from pdiff_hub.training.sharding import Shard, gather_or_raise, on_main_or_raise, order_pieces, plan_shards


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--output_dir", required=True, help="folder for the parameter dataset")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_recipe_arguments(parser)
    return parser.parse_args(argv)


def summarize(values: list[float]) -> dict:
    array = np.asarray(values, dtype=float)
    return {"min": array.min(), "mean": array.mean(), "median": float(np.median(array)), "max": array.max(),
            "std": array.std()}


def check_plan(recipe: Recipe) -> list[int]:
    """Refuse what would fail or mean nothing later, before any data is read; return the checkpoints per seed.

    Builds the target network once (cheap next to training) so that an unknown model, a wrong model argument or a
    pattern that matches no parameter is named now rather than after base training.
    """
    c, t = recipe.collect, recipe.target
    seeds = list(c.seeds)
    try:
        counts = checkpoints_per_seed(c.num_checkpoints, seeds)
    except ValueError:
        counts = [0]
    if min(counts) < 2:
        raise UsageError(f"collect.num_checkpoints {c.num_checkpoints} cannot give each of the {len(seeds)} seeds "
                         f"in collect.seeds {seeds} at least 2 checkpoints; raise collect.num_checkpoints or use "
                         f"fewer seeds")
    try:
        target = TargetModel(t.model_name, t.model_kwargs, t.param_patterns, image_size=recipe.data.image_size)
    except (RuntimeError, TypeError) as err:  # timm: "Unknown model (...)"; a keyword the model does not take
        raise UsageError(f"timm cannot build target.model_name {t.model_name!r} with target.model_kwargs "
                         f"{t.model_kwargs}: {err}") from None
    except ValueError as err:
        raise UsageError(f"target.param_patterns {t.param_patterns} do not fit {t.model_name!r}: {err}") from None
    if len(seeds) > 1 and target.layout.num_params != sum(p.numel() for p in target.model.parameters()):
        raise UsageError(f"collect.seeds {seeds} has several base-model seeds, which only make sense when the whole "
                         f"network is generated (target.param_patterns: ['*']): otherwise the frozen remainder would "
                         f"differ between seeds")
    return counts


def check_splits(recipe: Recipe, splits: dict) -> None:
    """Refuse a base batch larger than the training split, which would train nothing (full batches only)."""
    size = len(splits["train"][1])
    if recipe.collect.base_batch_size > size:
        raise UsageError(f"collect.base_batch_size {recipe.collect.base_batch_size} is larger than the "
                         f"{size} training images of {recipe.data.dataset}; lower it")


def collect_shard(recipe: Recipe, splits: dict, shard: Shard, count: int,
                  accelerator: Accelerator) -> tuple[TargetModel, dict]:
    """Train the base model of one shard's seed and collect its checkpoints; return its target and its piece.

    Every seed starts from ``set_seed(seed)``, so its base model and checkpoints are the same whichever process (and
    after whichever other seeds) it runs.
    """
    c = recipe.collect
    seed = c.seeds[shard.seed_index]
    set_seed(seed)
    target = TargetModel(recipe.target.model_name, recipe.target.model_kwargs, recipe.target.param_patterns,
                         image_size=recipe.data.image_size)
    progress = accelerator.is_local_main_process
    start = time.perf_counter()
    train_base_model(target.model, splits["train"], epochs=c.base_epochs, lr=c.base_lr,
                     weight_decay=c.base_weight_decay, batch_size=c.base_batch_size, seed=seed,
                     device=accelerator.device, progress=progress)
    base_seconds = time.perf_counter() - start
    base_acc = None
    if shard.lead:
        base_acc = accuracy(target.model, *splits["test"], batch_size=c.eval_batch_size)
        print(f"base model (seed {seed}): test accuracy {base_acc:.2f}%", flush=True)
    start = time.perf_counter()
    result = collect_checkpoints(target.model, target.layout, splits["train"], splits["validation"], splits["test"],
                                 num_checkpoints=count, lr=c.lr, weight_decay=c.weight_decay, batch_size=c.batch_size,
                                 seed=seed, eval_batch_size=c.eval_batch_size, progress=progress, rows=shard.rows)
    piece = {"seed": seed, "vectors": result.vectors.cpu(), "steps": result.steps, "val_accuracy": result.val_accuracy,
             "test_accuracy": result.test_accuracy, "base_test_accuracy": base_acc,
             "prefix_cached": result.prefix_cached, "rank": accelerator.process_index, "base_seconds": base_seconds,
             "collect_seconds": time.perf_counter() - start}
    return target, piece


def load_splits(recipe: Recipe, accelerator: Accelerator) -> dict:
    """The recipe's splits, on every process; a refusal on any process stops every process.

    The main process reads (and downloads) them first, the others then read its cache.
    """
    splits = {}

    def load() -> list:
        splits.update(load_recipe_splits(recipe.data, recipe.target.model_kwargs))
        check_splits(recipe, splits)
        return []

    for main_turn in (True, False):
        gather_or_raise(load if accelerator.is_main_process == main_turn else list)
    return splits


def write_dataset(args: argparse.Namespace, recipe: Recipe, pieces: list[dict], first_target: TargetModel,
                  num_processes: int) -> None:
    """Write the gathered pieces, in (seed, step) order, as the output folder (atomically)."""
    c = recipe.collect
    seeds = list(c.seeds)
    rows = [{"step": s, "seed": p["seed"], "lr": c.lr, "val_accuracy": v, "test_accuracy": t}
            for p in pieces for s, v, t in zip(p["steps"], p["val_accuracy"], p["test_accuracy"])]
    table = build_parameter_table(torch.cat([p["vectors"] for p in pieces]), rows)
    params = ParameterDataset(table, first_target)
    base_acc = [p["base_test_accuracy"] for p in pieces if p["base_test_accuracy"] is not None]
    # The time of each stage is that of the slowest process (the sum over seeds with one process).
    base_seconds, collect_seconds = (
        max(sum(p[key] for p in pieces if p["rank"] == rank) for rank in {p["rank"] for p in pieces})
        for key in ("base_seconds", "collect_seconds")
    )
    prefix_cached = pieces[-1]["prefix_cached"]
    val_stats, test_stats = summarize(table["val_accuracy"]), summarize(table["test_accuracy"])
    metrics = {"base_test_accuracy": base_acc, "validation": val_stats, "test": test_stats,
               "base_training_seconds": round(base_seconds, 1), "collect_seconds": round(collect_seconds, 2),
               "prefix_cached": prefix_cached, "num_params": first_target.layout.num_params}
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if num_processes > 1:
        machine += f" per process, {num_processes} processes"
    command = command_line(sys.argv)
    layout = first_target.layout
    card = render_card(
        "parameter_dataset",
        {"tags": ["p-diff", "neural-network-diffusion", "model-parameters", recipe.target.model_name],
         "library_name": "pdiff_hub", "pretty_name": f"p-diff parameters: {recipe.name}",
         "size_categories": ["n<1K"] if len(table) < 1000 else ["1K<n<10K"]},
        title=f"p-diff parameter dataset: {recipe.name}", num_checkpoints=len(table), num_params=layout.num_params,
        param_patterns=", ".join(recipe.target.param_patterns), param_names=", ".join(layout.names),
        model_name=recipe.target.model_name, model_kwargs=recipe.target.model_kwargs, dataset=recipe.data.dataset,
        base_epochs=c.base_epochs, base_lr=c.base_lr, base_batch_size=c.base_batch_size,
        image_size=recipe.data.image_size, seeds=seeds, base_test_accuracy=", ".join(f"{a:.2f}%" for a in base_acc),
        lr=c.lr, batch_size=c.batch_size, command=command,
        accuracy_rows=[{"split": "validation", **val_stats}, {"split": "test", **test_stats}],
        val_size=recipe.data.val_size, split_seed=recipe.data.split_seed, repo_hint=args.output_dir,
        collect_seconds=f"{collect_seconds:.1f}", machine=machine)

    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        params.save(tmp)
        (tmp / "README.md").write_text(card)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_run_args(tmp, recipe, command=command)
    print(
        f"{len(table)} checkpoints of {layout.num_params} values -> {args.output_dir}\n"
        f"  test accuracy: min {test_stats['min']:.2f} mean {test_stats['mean']:.2f} max {test_stats['max']:.2f}\n"
        f"  base training {base_seconds:.1f} s, collection {collect_seconds:.2f} s "
        f"(frozen prefix cached: {prefix_cached})"
    )


def main(args: argparse.Namespace) -> None:
    recipe = recipe_from_args(args)  # the same answer on every process, before any collective
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    # Only the main process writes, so only it checks the output folder; its refusal stops every process.
    on_main_or_raise(accelerator, lambda: check_output_dir(
        args.output_dir, overwrite=args.overwrite, inputs=[resolve_recipe_path(args.recipe)] if args.recipe else []))
    counts = check_plan(recipe)
    splits = load_splits(recipe, accelerator)
    shards = plan_shards(counts, accelerator.num_processes)[accelerator.process_index]
    targets = {}

    def work() -> list:
        pieces = []
        for shard in shards:
            targets[shard], piece = collect_shard(recipe, splits, shard, counts[shard.seed_index], accelerator)
            pieces.append((shard, piece))
        return pieces

    pieces = [piece for _, piece in order_pieces(gather_or_raise(work), counts)]
    if accelerator.is_main_process:
        # Process 0 always holds the first checkpoints of the first seed, hence its base model.
        write_dataset(args, recipe, pieces, targets[shards[0]], accelerator.num_processes)


if __name__ == "__main__":
    run_script(main, parse_args)
