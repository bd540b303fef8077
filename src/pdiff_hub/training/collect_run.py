"""One collection run, as ``scripts/collect.py`` drives it: checks, the per-seed work of each process, the dataset.

:func:`check_plan` and :func:`load_splits` refuse what would fail later, before the work; :func:`collect_pieces`
trains the base model of each of this process's shards and collects its checkpoints (every process gathers the
pieces in seed and step order); :func:`assemble_dataset` turns them into the :class:`ParameterDataset` and its
metrics, and :func:`write_collection` writes the output folder (atomically) with the card the caller rendered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..core.adapters import copy_trained_modules
from ..core.cli import UsageError
from ..core.io import atomic_output_dir
from ..core.layout import PatternError
from ..data.images import load_recipe_splits
from ..data.parameters import ParameterDataset, build_parameter_table
from ..data.subsets import subsample_splits
from ..models.target import TargetModel
from ..recipes.config import Recipe, write_run_args
from .collection import accuracy, checkpoints_per_seed, collect_checkpoints, train_base_model
from .sharding import Shard, gather_or_raise, order_pieces, plan_shards

__all__ = [
    "CollectedDataset",
    "assemble_dataset",
    "base_training_split",
    "build_target",
    "check_plan",
    "check_splits",
    "collect_pieces",
    "collect_shard",
    "load_splits",
    "machine_description",
    "scoring_splits",
    "summarize",
    "train_base",
    "write_collection",
]


def summarize(values: list[float]) -> dict:
    """Min, mean, median, max and standard deviation of ``values``."""
    array = np.asarray(values, dtype=float)
    return {"min": array.min(), "mean": array.mean(), "median": float(np.median(array)), "max": array.max(),
            "std": array.std()}


def check_plan(recipe: Recipe) -> list[int]:
    """Refuse what would fail or mean nothing later, before any data is read; return the checkpoints per seed.

    Builds the target network once (cheap next to training) so that an unknown model, a wrong model argument or a
    pattern that matches no parameter is named now rather than after base training.

    Raises:
        UsageError: too few checkpoints per seed, a target network its library cannot build or whose parameters the
            patterns do not fit, or several seeds for a partly generated network.
    """
    c = recipe.collect
    seeds = list(c.seeds)
    try:
        counts = checkpoints_per_seed(c.num_checkpoints, seeds)
    except ValueError:
        counts = [0]
    if min(counts) < 2:
        raise UsageError(f"collect.num_checkpoints {c.num_checkpoints} cannot give each of the {len(seeds)} seeds "
                         f"in collect.seeds {seeds} at least 2 checkpoints; raise collect.num_checkpoints or use "
                         f"fewer seeds")
    target = build_target(recipe)
    if len(seeds) > 1 and target.layout.num_params != sum(p.numel() for p in target.model.parameters()):
        raise UsageError(f"collect.seeds {seeds} has several base-model seeds, which only make sense when the whole "
                         f"network is generated (target.param_patterns: ['*']): otherwise the frozen remainder would "
                         f"differ between seeds")
    return counts


def build_target(recipe: Recipe, model_kwargs: dict | None = None) -> TargetModel:
    """The recipe's target network, freshly initialized, built with ``model_kwargs`` (default
    ``target.model_kwargs``).

    Raises:
        UsageError: when the library (timm or transformers) cannot build the network or the patterns do not fit it.
    """
    t = recipe.target
    try:
        return TargetModel(**recipe.target_kwargs(t.model_kwargs if model_kwargs is None else model_kwargs))
    except PatternError as err:
        raise UsageError(f"target.param_patterns {t.param_patterns} do not fit {t.model_name!r}: {err}") from None
    except (RuntimeError, TypeError, ValueError, OSError) as err:
        # timm: "Unknown model (...)", a keyword the model does not take; transformers: an unknown config type, a
        # folder without config.json, a config it refuses (hidden_size not a multiple of num_attention_heads)
        raise UsageError(f"{t.library} cannot build target.model_name {t.model_name!r} with target.model_kwargs "
                         f"{t.model_kwargs}: {err}".split("\n")[0]) from None


def check_splits(recipe: Recipe, splits: dict) -> None:
    """Refuse a base batch larger than the training split, which would train nothing (full batches only), and base
    classes (``lora.base_classes``) the dataset lacks.

    Raises:
        UsageError: ``collect.base_batch_size`` is larger than the (base classes') training split, or a base class
            is not one of the dataset's labels.
    """
    labels = base_training_split(splits)[1]
    dataset = recipe.lora.base_dataset or recipe.data.dataset
    size, classes = len(labels), recipe.lora.base_classes
    if classes:
        missing = sorted(set(classes) - set(labels.unique().tolist()))
        if missing:
            raise UsageError(f"lora.base_classes {list(classes)} names classes {missing} that {dataset} lacks; its "
                             f"classes are 0 to {int(labels.max())}")
        size = int(torch.isin(labels, torch.tensor(classes)).sum())
    if recipe.collect.base_batch_size > size:
        raise UsageError(f"collect.base_batch_size {recipe.collect.base_batch_size} is larger than the "
                         f"{size} training images of {dataset}{' in lora.base_classes' if classes else ''}; lower it")


def base_training_split(splits: dict) -> tuple:
    """The images the base network trains on: ``base_train`` (``lora.base_dataset``'s) when loaded, else ``train``."""
    return splits.get("base_train", splits["train"])


def load_splits(recipe: Recipe, accelerator: Accelerator) -> dict:
    """The recipe's splits (with ``base_train``, ``lora.base_dataset``'s training split, when it is set), on every
    process; a refusal on any process stops every process.

    The main process reads (and downloads) them first, the others then read its cache.
    """
    splits = {}

    def load() -> list:
        splits.update(load_recipe_splits(recipe.data, recipe.target.image_kwargs()))
        if recipe.lora.rank and recipe.lora.base_dataset:
            base_data = dataclasses.replace(recipe.data, dataset=recipe.lora.base_dataset)
            splits["base_train"] = load_recipe_splits(base_data, recipe.target.image_kwargs())["train"]
        check_splits(recipe, splits)
        return []

    for main_turn in (True, False):
        gather_or_raise(load if accelerator.is_main_process == main_turn else list)
    return splits


def scoring_splits(recipe: Recipe, splits: dict) -> dict:
    """The splits with validation and test cut to the recipe's evaluation subsets when it sets them
    (``evaluate.val_images`` / ``test_images``): checkpoints are scored on the images the evaluation uses."""
    e = recipe.evaluate
    return subsample_splits(splits, {"validation": e.val_images, "test": e.test_images}, e.seed)


def collect_shard(recipe: Recipe, splits: dict, shard: Shard, count: int,
                  accelerator: Accelerator) -> tuple[TargetModel, dict]:
    """Train the base model of one shard's seed and collect its checkpoints; return its target and its piece.

    Every seed starts from ``set_seed(seed)``, so its base model and checkpoints are the same whichever process (and
    after whichever other seeds) it runs.
    """
    c = recipe.collect
    seed = c.seeds[shard.seed_index]
    set_seed(seed)
    target = build_target(recipe)
    progress = accelerator.is_local_main_process
    start = time.perf_counter()
    train_base(recipe, target, base_training_split(splits), seed=seed, device=accelerator.device, progress=progress)
    base_seconds = time.perf_counter() - start
    base_acc = None
    if shard.lead:
        base_acc = accuracy(target.model, *splits["test"], batch_size=c.eval_batch_size)
        print(f"base model (seed {seed}): test accuracy {base_acc:.2f}%", flush=True)
    start = time.perf_counter()
    scored = scoring_splits(recipe, splits)
    result = collect_checkpoints(target.model, target.layout, splits["train"], scored["validation"], scored["test"],
                                 num_checkpoints=count, lr=c.lr, weight_decay=c.weight_decay, batch_size=c.batch_size,
                                 seed=seed, eval_batch_size=c.eval_batch_size, progress=progress, rows=shard.rows,
                                 burn_in=recipe.lora.burn_in_steps)
    piece = {"seed": seed, "vectors": result.vectors.cpu(), "steps": result.steps, "val_accuracy": result.val_accuracy,
             "test_accuracy": result.test_accuracy, "base_test_accuracy": base_acc,
             "prefix_cached": result.prefix_cached, "rank": accelerator.process_index, "base_seconds": base_seconds,
             "collect_seconds": time.perf_counter() - start,
             "scored_images": {name: len(scored[name][1]) for name in ("validation", "test")}}
    return target, piece


def train_base(recipe: Recipe, target: TargetModel, train: tuple, *, seed: int, device, progress: bool) -> None:
    """Train the target's network from scratch (``collect.base_*``); with a LoRA adapter, train the base network
    alone (adapter disabled) on ``lora.base_classes``, then start the modules the adapter trains whole from it."""
    c = recipe.collect
    images, labels = train
    if target.has_adapter and recipe.lora.base_classes:
        kept = torch.isin(labels, torch.tensor(recipe.lora.base_classes, device=labels.device))
        images, labels = images[kept], labels[kept]
    kwargs = {"epochs": c.base_epochs, "lr": c.base_lr, "weight_decay": c.base_weight_decay,
              "batch_size": c.base_batch_size, "seed": seed, "device": device, "progress": progress}
    if not target.has_adapter:
        train_base_model(target.model, (images, labels), **kwargs)
        return
    with target.model.disable_adapter():
        train_base_model(target.model, (images, labels), **kwargs)
    copy_trained_modules(target.model)


def collect_pieces(recipe: Recipe, splits: dict, counts: list[int],
                   accelerator: Accelerator) -> tuple[list[dict], list[TargetModel]]:
    """Collect this process's shards; return every process's pieces in (seed, step) order and this one's targets.

    A failure on any process stops every process. Process 0 always holds the first checkpoints of the first seed,
    so on the main process the first target is the base model of the dataset.
    """
    shards = plan_shards(counts, accelerator.num_processes)[accelerator.process_index]
    targets = []

    def work() -> list:
        pieces = []
        for shard in shards:
            target, piece = collect_shard(recipe, splits, shard, counts[shard.seed_index], accelerator)
            targets.append(target)
            pieces.append((shard, piece))
        return pieces

    return [piece for _, piece in order_pieces(gather_or_raise(work), counts)], targets


@dataclass
class CollectedDataset:
    """The gathered collection: the parameter dataset, its ``metrics.json`` values and the stages' times.

    Args:
        params: the checkpoints in (seed, step) order, with the base model of the first seed.
        metrics: what ``metrics.json`` holds (accuracy statistics, base accuracies, rounded times).
        base_seconds: base training time of the slowest process (the sum over its seeds).
        collect_seconds: collection time of the slowest process (the sum over its seeds).
    """

    params: ParameterDataset
    metrics: dict
    base_seconds: float
    collect_seconds: float

    def summary(self, output_dir: str | os.PathLike) -> str:
        """The lines printed at the end of a run that wrote the dataset to ``output_dir``."""
        test_stats = self.metrics["test"]
        return (
            f"{len(self.params.dataset)} checkpoints of {self.params.target.layout.num_params} values -> "
            f"{output_dir}\n"
            f"  test accuracy: min {test_stats['min']:.2f} mean {test_stats['mean']:.2f} max {test_stats['max']:.2f}\n"
            f"  base training {self.base_seconds:.1f} s, collection {self.collect_seconds:.2f} s "
            f"(frozen prefix cached: {self.metrics['prefix_cached']})"
        )


def assemble_dataset(recipe: Recipe, pieces: list[dict], first_target: TargetModel) -> CollectedDataset:
    """The parameter dataset and metrics of the gathered ``pieces`` (in (seed, step) order)."""
    c = recipe.collect
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
    val_stats, test_stats = summarize(table["val_accuracy"]), summarize(table["test_accuracy"])
    metrics = {"base_test_accuracy": base_acc, "validation": val_stats, "test": test_stats,
               "base_training_seconds": round(base_seconds, 1), "collect_seconds": round(collect_seconds, 2),
               "prefix_cached": pieces[-1]["prefix_cached"], "num_params": first_target.layout.num_params,
               "scored_images": pieces[-1]["scored_images"]}
    return CollectedDataset(params, metrics, base_seconds, collect_seconds)


def machine_description(num_processes: int) -> str:
    """The machine as the dataset card names it: architecture, threads, and the process count when several."""
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if num_processes > 1:
        machine += f" per process, {num_processes} processes"
    return machine


def write_collection(collected: CollectedDataset, output_dir: str | os.PathLike, *, overwrite: bool, card: str,
                     recipe: Recipe, command: str) -> None:
    """Write the output folder atomically: ``dataset/``, ``target/``, README.md, metrics.json and args.yaml."""
    with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:
        collected.params.save(tmp)
        (tmp / "README.md").write_text(card)
        (tmp / "metrics.json").write_text(json.dumps(collected.metrics, indent=2))
        write_run_args(tmp, recipe, command=command)
