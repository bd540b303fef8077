"""Generate models with a p-diff pipeline, measure them, keep the best by validation accuracy, export them for timm
(or transformers, for a transformers target).

    python scripts/generate.py --pipeline runs/fmnist/pipeline --num_models 100 --export_dir runs/fmnist/generated
    python scripts/generate.py --pipeline org/pdiff-fashion-mnist-resnet18 --num_models 100 --select 3 \\
        --export_dir OUT --push_to_hub --hub_model_id org/fmnist-resnet18-generated

All models are sampled in one batch and measured on the validation and test splits of the pipeline's dataset. Without
``--recipe`` the recipe is the one recorded with the pipeline (its ``args.yaml``), so the data are split exactly as
at collection and selection never sees the base model's training images; ``--data.KEY VALUE`` overrides its data
section. Only the data section is used (the pipeline fixes the rest): an override of another section is refused.
The sampler is set by this script's own flags (--num_models, --num_inference_steps, --scheduler, --seed), not by
the recipe's evaluate section. The chosen ones (by VALIDATION accuracy) are written to ``EXPORT_DIR/sample-<i>/``
as timm Hub repo folders (``config.json``, ``model.safetensors``, ``README.md``; a transformers target's as plain
transformers repo folders, ``preprocessor_config.json`` beside them; a LoRA target's as PEFT adapter folders, beside
the base network they adapt in ``EXPORT_DIR/base/``, pushed to ``<hub_model_id>-base``), with
``EXPORT_DIR/generation.json``
recording the seed, the steps and every accuracy. The export folder appears complete or not at all. With
``--push_to_hub`` each sample goes to ``<hub_model_id>-sample-<i>`` (a single one to ``hub_model_id``); log in first
(``hf auth login``).

A conditional pipeline (one trained on a family of binary tasks) makes models for the task ``--condition`` names,
one 0 or 1 per class of the dataset (``0,1,1,0,0,1,0,0,1,0`` or ``0110010010``: "is it a 1, 2, 5 or 8?"), with
classifier-free guidance ``--guidance_scale``. The task need not be one the pipeline was trained on. Every accuracy is
then the task's (its 2-way labels on the same validation and test splits), the exported networks are 2-way timm
classifiers whose labels and cards name the task, say whether the pipeline saw it in training, held it out, or never
heard of it, and ``generation.json`` records it under ``condition``:

    python scripts/generate.py --pipeline runs/digits-tasks/pipeline --condition 0,1,1,0,0,1,0,0,1,0 \\
        --num_models 100 --export_dir runs/digits-tasks/generated-0110010010

A pipeline trained with ``train.accuracy_prompt`` makes models of about the validation accuracy ``--accuracy`` asks
for (one prompt per run, in percent), with ``--guidance_scale``; they are measured and selected as any others, and
``generation.json`` and every exported card record the prompt beside the measured accuracy. A prompt outside the
checkpoints' validation accuracies (the pipeline card gives their range) is extrapolation. Without ``--accuracy``
such a pipeline samples unconditionally (the null condition):

    python scripts/generate.py --pipeline runs/fmnist-prompted/pipeline --accuracy 90.3 --num_models 100 \\
        --export_dir runs/fmnist-prompted/generated-90.3

Under ``accelerate launch`` with N processes (``--multi_gpu --num_processes N``; the models run on the CPU) the main
process samples the batch, each process measures its share of it, and the main process alone exports and pushes:
generation.json is the one a single process writes, apart from the command line. Every input is checked first, on
every process alike, before the processes meet.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from pdiff_hub import PDiffPipeline
from pdiff_hub.core.cli import UsageError, check_output_dir, run_script
from pdiff_hub.core.io import is_hub_id
from pdiff_hub.evaluation.generation import SCHEDULERS
from pdiff_hub.evaluation.sharding import ProcessGroup
from pdiff_hub.hub.conditions import check_accuracy_prompt, check_task_condition, describe_task, parse_condition
from pdiff_hub.hub.generation import (
    Sampling,
    export_generated,
    generate_and_measure,
    parse_selection,
    push_generated,
    sample_repo_ids,
    select_indices,
    selection_splits,
)
from pdiff_hub.recipes.config import (
    add_recipe_arguments,
    command_line,
    recipe_from_args,
    recipe_overrides,
    recorded_recipe,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--pipeline", required=True, help="pipeline folder or Hub repo id")
    parser.add_argument("--revision", default=None, help="revision of a Hub pipeline")
    parser.add_argument("--num_models", type=int, default=100, help="models generated in one batch")
    parser.add_argument("--export_dir", required=True, help="output folder: sample-<i>/ and generation.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    parser.add_argument("--select", default="best",
                        help="'best' (one model), 'all', or K (the top K) by validation accuracy")
    parser.add_argument("--num_inference_steps", type=int, default=50, help="denoising steps")
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="ddim")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument("--condition", action="append", default=None,
                        help="a task family's pipelines: the task, one 0/1 per class "
                             "(0,1,1,0,0,1,0,0,1,0 or 0110010010)")
    parser.add_argument("--accuracy", type=float, action="append", default=None, metavar="PERCENT",
                        help="accuracy-prompted pipelines (train.accuracy_prompt): the validation accuracy in percent "
                             "to generate models of, one per run (e.g. 90.3); without it such a pipeline samples "
                             "unconditionally (the null condition)")
    parser.add_argument("--guidance_scale", type=float, default=1.0,
                        help="classifier-free guidance with --condition or --accuracy (1: conditional only, "
                             "0: unconditional)")
    hub = parser.add_argument_group("Hub")
    hub.add_argument("--push_to_hub", action="store_true", help="push each exported model to the Hub")
    hub.add_argument("--hub_model_id", default=None, help="'org/name'; several samples go to '<id>-sample-<i>'")
    hub.add_argument("--hub_private", action="store_true", help="create the repos private")
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    args.select = parse_selection(args.select)
    if args.condition is not None and len(args.condition) > 1:
        raise UsageError(f"--condition is given {len(args.condition)} times; give one task per run")
    args.condition = parse_condition(args.condition[0]) if args.condition else None
    args.accuracy = check_accuracy_flag(args.accuracy)
    if args.accuracy is not None and args.condition is not None:
        raise UsageError("--accuracy and --condition cannot be combined: --accuracy prompts a pipeline trained with "
                         "train.accuracy_prompt, --condition names a task of a task family's pipeline; give one")
    if not math.isfinite(args.guidance_scale):
        raise UsageError(f"--guidance_scale {args.guidance_scale} is not allowed: give a finite number (1 is the "
                         "conditional prediction alone)")
    if args.condition is None and args.accuracy is None and args.guidance_scale != 1:
        raise UsageError("--guidance_scale needs --condition or --accuracy: guidance steers a conditional pipeline "
                         "towards a task or an accuracy")
    if args.num_models < 1:
        raise UsageError(f"--num_models {args.num_models} is not allowed: generate at least 1 model")
    if args.num_inference_steps < 1:
        raise UsageError(f"--num_inference_steps {args.num_inference_steps} is not allowed: use at least 1 step")
    if isinstance(args.select, int) and args.select > args.num_models:
        raise UsageError(f"--select {args.select} asks for more models than --num_models {args.num_models}; "
                         f"select at most {args.num_models}")
    if args.push_to_hub and not args.hub_model_id:
        raise UsageError("--push_to_hub needs --hub_model_id org/name")
    unused = sorted(key for key in recipe_overrides(args) if not key.startswith("data."))
    if unused:
        raise UsageError(f"--{unused[0]} has no effect here: generate.py reads only the recipe's data section "
                         f"(--data.KEY), and its sampler is set by --num_models, --num_inference_steps, --scheduler "
                         f"and --seed")
    return args


def check_accuracy_flag(values: list[float] | None) -> float | None:
    """The one ``--accuracy`` prompt, a percentage; None without one."""
    if values is None:
        return None
    if len(values) > 1:
        raise UsageError(f"--accuracy is given {len(values)} times; give one prompt per run")
    if not (math.isfinite(values[0]) and 0 <= values[0] <= 100):
        raise UsageError(f"--accuracy {values[0]} is not allowed: give a validation accuracy in percent, from 0 to 100")
    return values[0]


def main(args: argparse.Namespace) -> list[str]:
    """Generate, measure, select, export and optionally push; returns the commit URLs of the pushes."""
    local = not is_hub_id(args.pipeline)
    if local and not Path(args.pipeline).is_dir():
        reason = "is a file" if Path(args.pipeline).exists() else "does not exist"
        raise UsageError(f"--pipeline {args.pipeline} {reason}; give a pipeline folder or a Hub model id ('org/name')")
    check_output_dir(args.export_dir, overwrite=args.overwrite, inputs=[args.pipeline] if local else [],
                     flag="--export_dir")
    base = None if args.recipe else recorded_recipe(args.pipeline, revision=args.revision)
    data = recipe_from_args(args, base=base).data
    pipe = PDiffPipeline.from_pretrained(args.pipeline, revision=args.revision)
    prompt = check_accuracy_prompt(pipe, args.accuracy, args.guidance_scale, name=f"--pipeline {args.pipeline}")
    code = check_task_condition(pipe, args.condition, name=f"--pipeline {args.pipeline}")
    splits = selection_splits(data, pipe.target, task=code)
    task = None if code is None else describe_task(code, pipe.condition_info, splits.label_names, args.guidance_scale)

    # Every check above ran on every process alike; only now do the processes meet.
    group = ProcessGroup.from_accelerate(torch.device("cpu"))
    sampling = Sampling(args.num_models, args.num_inference_steps, args.scheduler, args.seed,
                        condition=code, guidance_scale=args.guidance_scale, accuracy=args.accuracy)
    batch = generate_and_measure(pipe, splits.tensors, sampling, group=group)
    if not group.is_main_process:
        return []
    chosen = select_indices(batch.accuracy["validation"], args.select)
    base_repo_id = f"{args.hub_model_id}-base" if args.push_to_hub and pipe.target.has_adapter else None
    records = export_generated(
        pipe.target, batch, chosen, args.export_dir, sampling=sampling, pipeline=args.pipeline, data=data,
        select=args.select, revision=args.revision, label_names=splits.label_names,
        repo_ids=sample_repo_ids(chosen, args.hub_model_id if args.push_to_hub else None),
        command=command_line(sys.argv), overwrite=args.overwrite, task=task, prompt=prompt, base_repo_id=base_repo_id)

    val, test = batch.accuracy["validation"], batch.accuracy["test"]
    if task is not None:
        print(f"task {task.code} (positive: {', '.join(task.positive)}; {task.status} task), "
              f"guidance scale {task.guidance_scale}:")
    elif prompt is not None:
        low, high = prompt.checkpoint_accuracy
        outside = f"; outside the checkpoints' {low:.2f}-{high:.2f}%: extrapolation" if prompt.extrapolated else ""
        print(f"prompted for {prompt.accuracy:g}% validation accuracy (condition {prompt.condition:.3f}{outside}), "
              f"guidance scale {prompt.guidance_scale}:")
    elif code is None and pipe.denoiser.config.condition_dim:
        print("no --accuracy: sampled unconditionally (the null condition)")
    print(f"{args.num_models} models ({args.scheduler}, {args.num_inference_steps} steps, seed {args.seed}): "
          f"validation {val.min():.2f}/{val.mean():.2f}/{val.max():.2f}, "
          f"test {test.min():.2f}/{test.mean():.2f}/{test.max():.2f} (min/mean/max %)")
    for i in chosen:
        print(f"  sample-{i}: validation {val[i]:.2f}%, test {test[i]:.2f}% -> {Path(args.export_dir) / f'sample-{i}'}")
    if not args.push_to_hub:
        return []
    urls = push_generated(args.export_dir, records, private=args.hub_private, base_repo_id=base_repo_id)
    if base_repo_id:
        print(f"  pushed the base network to {base_repo_id}: {urls[0]}")
    for record, url in zip(records, urls[len(urls) - len(records):]):
        print(f"  pushed sample-{record.index} to {record.repo_id}: {url}")
    return urls


if __name__ == "__main__":
    run_script(main, parse_args)
