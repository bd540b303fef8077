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

A recipe with a ``tasks`` section (``tasks.num_train_tasks`` > 0) collects a family of binary tasks instead: one
frozen backbone, then a 2-way head (and the recipe's other generated parameters) fitted per task, several checkpoints
each, with ``task``/``condition`` columns and the training/held-out split in ``tasks.json``:

    python scripts/collect.py --recipe fashion-mnist-resnet18-tasks --output_dir runs/tasks/params

A recipe with a ``lora`` section (``lora.rank`` > 0) collects checkpoints of a PEFT LoRA adapter: the base network
trains alone (on ``lora.base_classes`` or ``lora.base_dataset`` when given), then the adapter (and the modules it
trains whole, such as a new head) trains for ``lora.burn_in_steps`` steps and one checkpoint per step is kept:

    python scripts/collect.py --recipe digits-transformers-vit-lora --output_dir runs/vit-lora/params
"""

from __future__ import annotations

import argparse
import sys

import torch
from accelerate import Accelerator

from pdiff_hub.core.cli import check_output_dir, run_script
from pdiff_hub.data.images import load_recipe_data
from pdiff_hub.hub.datasets import parameter_dataset_card
from pdiff_hub.recipes.config import add_recipe_arguments, command_line, recipe_from_args, resolve_recipe_path
from pdiff_hub.training.collect_run import (
    assemble_dataset,
    check_plan,
    check_splits,
    collect_pieces,
    load_splits,
    machine_description,
    write_collection,
)
from pdiff_hub.training.sharding import on_main_or_raise
from pdiff_hub.training.task_collect_run import check_task_plan, collect_task_family


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--output_dir", required=True, help="folder for the parameter dataset")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_recipe_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    recipe = recipe_from_args(args)  # the same answer on every process, before any collective
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    # Only the main process writes, so only it checks the output folder; its refusal stops every process.
    on_main_or_raise(accelerator, lambda: check_output_dir(
        args.output_dir, overwrite=args.overwrite, inputs=[resolve_recipe_path(args.recipe)] if args.recipe else []))
    if recipe.is_task_family:
        check_task_plan(recipe, accelerator.num_processes)
        splits, class_names = load_recipe_data(recipe.data, recipe.target.image_kwargs())
        check_splits(recipe, splits)
        collected = collect_task_family(recipe, splits, class_names, device=accelerator.device)
    else:
        counts = check_plan(recipe)
        splits = load_splits(recipe, accelerator)
        pieces, targets = collect_pieces(recipe, splits, counts, accelerator)
        if not accelerator.is_main_process:
            return
        # Process 0 always holds the first checkpoints of the first seed, hence its base model.
        collected = assemble_dataset(recipe, pieces, targets[0])
    command = command_line(sys.argv)
    card = parameter_dataset_card(recipe, collected.params, collected.metrics, command,
                                  collect_seconds=collected.collect_seconds,
                                  machine=machine_description(accelerator.num_processes), repo_hint=args.output_dir)
    write_collection(collected, args.output_dir, overwrite=args.overwrite, card=card, recipe=recipe, command=command)
    print(collected.summary(args.output_dir))


if __name__ == "__main__":
    run_script(main, parse_args)
