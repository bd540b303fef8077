"""Evaluate a p-diff pipeline: the paper's Table 1, its similarity analysis, and the memorization critique's baselines.

    python scripts/evaluate.py --pipeline runs/fmnist/pipeline --param_dataset runs/fmnist/params \\
        --num_models 100 --output_dir runs/fmnist/eval
    python scripts/evaluate.py --pipeline org/pdiff-fmnist --param_dataset org/params --output_dir OUT \\
        --evaluate.scheduler ddpm --evaluate.num_inference_steps 1000
    accelerate launch --multi_gpu --num_processes 4 scripts/evaluate.py --pipeline ... --output_dir OUT

Generates ``--num_models`` models in one batch, evaluates them, the collected checkpoints, their weight average and
the baselines (noise-added checkpoints, averages of random checkpoints, a per-coordinate Gaussian) on the validation
and test splits, and writes OUT/metrics.json, OUT/report.md, the figures and OUT/args.yaml (atomically: OUT appears
complete or not at all). Under ``accelerate launch`` with N processes the main process samples the models and draws
the baselines, each process measures its share of all the rows' models, and the main process alone writes OUT: the
same metrics.json as one process (timings apart; on the CPU the predictions are equal bit for bit). Everything is
checked before the work, on every process alike and before the processes first meet: the output folder (empty, or
``--overwrite``; not an input), the pipeline's files against the checksums recorded when it was saved, the recipe's
network against the pipeline's, and the parameter dataset against the one the pipeline records it was trained on
(another one only with ``--allow_other_param_dataset``). Without ``--recipe`` the recipe is the one recorded with
the pipeline (its ``args.yaml``, which holds the collection's data section), so the data are split exactly as at
collection; the command line's ``--section.key`` flags override it either way.

A conditional pipeline with the task family it was trained on gets the held-out task evaluation instead (on the main
process): for every held-out task (never seen in training) its generated models against SGD on that task and the
non-generative maps (nearest training task, average of the nearest, per-coordinate Gaussian, ridge from the code),
for some training tasks the generated models against their own checkpoints, and the time to a model; OUT holds
metrics.json, report.md, heldout_tasks.png and args.yaml. ``--guidance_scale`` sets classifier-free guidance.

A pipeline trained with ``train.accuracy_prompt`` (conditioned on each checkpoint's validation accuracy) gets Table 1
with one more row per ``evaluate.accuracy_prompts`` (``--evaluate.accuracy_prompts [90.2,90.8]``; default: the
checkpoints' validation accuracy at its median, 90th percentile and maximum): its models generated for that
accuracy, their calibration (achieved against prompted, ``accuracy_calibration.png``) and whether they beat the
average of checkpoints at a lower max IoU; the "p-diff" row is its unprompted samples (the null condition).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from huggingface_hub import snapshot_download

from pdiff_hub import PDiffPipeline
from pdiff_hub.core.cli import UsageError, check_output_dir, run_script
from pdiff_hub.core.io import atomic_output_dir, resolve_folder
from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.evaluation.figures import write_figures
from pdiff_hub.evaluation.generation import check_recipe_target, check_same_param_dataset, check_same_target
from pdiff_hub.evaluation.prompts import is_accuracy_prompted
from pdiff_hub.evaluation.report import render_report
from pdiff_hub.evaluation.result import EvaluationResult
from pdiff_hub.evaluation.run import run_evaluation
from pdiff_hub.evaluation.sharding import ProcessGroup, default_device
from pdiff_hub.evaluation.task_figures import write_task_figures
from pdiff_hub.evaluation.task_report import render_task_report
from pdiff_hub.evaluation.task_result import TaskEvaluationResult
from pdiff_hub.evaluation.task_run import run_task_evaluation
from pdiff_hub.recipes.config import (
    Recipe,
    add_recipe_arguments,
    command_line,
    recipe_from_args,
    recorded_recipe,
    write_run_args,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    add_recipe_arguments(parser)
    parser.add_argument("--pipeline", required=True, help="pipeline folder or Hub model id")
    parser.add_argument("--param_dataset", required=True, help="parameter dataset folder or Hub dataset id")
    parser.add_argument("--num_models", dest="evaluate.num_models", default=None,
                        help="models to generate (shortcut for --evaluate.num_models)")
    parser.add_argument("--output_dir", required=True, help="folder for metrics.json, report.md and the figures")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--device", default=None,
                        help="torch device (default: cuda if available, else cpu; under accelerate launch each "
                             "process's own GPU, or the CPU with --cpu or ACCELERATE_USE_CPU=true)")
    parser.add_argument("--revision", default=None, help="revision of a Hub pipeline")
    parser.add_argument("--param_dataset_revision", default=None, help="revision of a Hub parameter dataset")
    parser.add_argument("--allow_other_param_dataset", action="store_true",
                        help="evaluate against a parameter dataset other than the one the pipeline was trained on")
    parser.add_argument("--guidance_scale", type=float, default=1.0,
                        help="classifier-free guidance of a conditional pipeline (1: the conditional prediction "
                             "alone, 0: unconditional); recorded in the report")
    return parser.parse_args(argv)


def resolve_recipe(args: argparse.Namespace, pipeline_dir: Path) -> Recipe:
    """``--recipe`` if given, else the recipe recorded with the pipeline (its args.yaml); then the overrides."""
    if args.recipe:
        return recipe_from_args(args)
    return recipe_from_args(args, base=recorded_recipe(pipeline_dir))


def print_table(result: EvaluationResult) -> None:
    print(f"{'row':<16}{'best':>8}{'mean':>8}{'median':>8}{'std':>7}{'min':>8}{'n':>5}   max IoU")
    for row, t in result.table.items():
        iou = result.similarity.rows[row].max_iou.mean
        print(f"{row:<16}{t.best:>8.2f}{t.mean:>8.2f}{t.median:>8.2f}{t.std:>7.2f}{t.min:>8.2f}{t.n:>5}   {iou:.3f}")


def resolve_device(name: str | None) -> torch.device:
    """``--device``, else cuda when available (and not refused by ``ACCELERATE_USE_CPU``); a name torch does not
    know, or an absent GPU, is refused now."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"--device {name!r} is not a torch device ({err}); use cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asks for a GPU, but torch sees none here; use --device cpu")
    return device


def print_task_table(result: TaskEvaluationResult) -> None:
    tasks = result.setup.num_heldout_tasks
    print(f"{'method':<18}{'mean':>8}{'SE':>7}{'median':>8}{'min':>8}   (over {tasks} held-out tasks)")
    for method, s in result.summary.items():
        se = f"{s.se:>7.2f}" if s.se is not None else f"{'n/a':>7}"
        print(f"{method:<18}{s.mean:>8.2f}{se}{s.median:>8.2f}{s.min:>8.2f}")
    for goal in result.goals.values():
        print(f"{'met' if goal.met else 'NOT met'}: {goal.statement}")


def check_kind(pipe: PDiffPipeline, params: ParameterDataset, guidance_scale: float) -> bool:
    """Whether this is a task evaluation (a task-conditioned pipeline and a task family); any other pairing is
    refused. An accuracy-prompted pipeline (``train.accuracy_prompt``) with one task's checkpoints is the Table 1
    evaluation, with a row per ``evaluate.accuracy_prompts``, sampled with the conditional prediction alone."""
    if is_accuracy_prompted(pipe):
        if params.is_task_family:
            raise UsageError(f"The pipeline is conditioned on accuracy but {params.source} is a task family; pass the "
                             "parameter dataset of one task it was trained on to --param_dataset")
        if guidance_scale != 1.0:
            raise UsageError("--guidance_scale applies to task-conditioned pipelines only; an accuracy-prompted "
                             "pipeline is evaluated with its conditional prediction alone, so leave it out")
        return False
    conditional = pipe.denoiser.config.condition_dim > 0
    if conditional != params.is_task_family:
        if conditional:
            raise UsageError(f"The pipeline is conditional but {params.source} holds the checkpoints of one task; pass "
                             "the task family's parameter dataset it was trained on to --param_dataset")
        raise UsageError(f"{params.source} is a task family but the pipeline is unconditional; pass the conditional "
                         "pipeline trained on it to --pipeline")
    if not conditional and guidance_scale != 1.0:
        raise UsageError("--guidance_scale applies to conditional pipelines only; leave it out for this pipeline")
    return conditional


def main(args: argparse.Namespace) -> None:
    check_output_dir(args.output_dir, overwrite=args.overwrite, inputs=[args.pipeline, args.param_dataset])
    device = resolve_device(args.device)
    # Resolved first, so that a missing pipeline is named as such rather than as a missing recipe.
    pipeline_dir = resolve_folder(args.pipeline, "pipeline folder",
                                  lambda repo_id: snapshot_download(repo_id, revision=args.revision))
    recipe = resolve_recipe(args, pipeline_dir)
    params = ParameterDataset.load(args.param_dataset, revision=args.param_dataset_revision)
    pipe = PDiffPipeline.from_pretrained(pipeline_dir)
    tasks = check_kind(pipe, params, args.guidance_scale)
    check_recipe_target(recipe, pipe.target)
    check_same_target(pipe.target, params.target)
    check_same_param_dataset(pipe, params, allow_other=args.allow_other_param_dataset)
    splits = load_recipe_splits(recipe.data, recipe.target.image_kwargs())
    # Every check above ran on every process alike; only now do the processes meet.
    group = ProcessGroup.from_accelerate(device)
    device = group.device(device)
    pipe.to(device)
    params.target.to(device)
    if tasks:
        if group.is_main_process:  # the task evaluation runs on the main process alone
            evaluate_tasks(args, recipe, pipe, params, splits)
        return
    result = run_evaluation(pipe, params, splits, recipe.evaluate,
                            allow_other_param_dataset=args.allow_other_param_dataset, group=group)
    if not group.is_main_process:
        return
    command = command_line(sys.argv)

    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        figures = write_figures(result, tmp)
        (tmp / "report.md").write_text(render_report(result, figures))
        (tmp / "metrics.json").write_text(json.dumps(result.to_dict(), indent=1))
        write_run_args(tmp, recipe, command=command, pipeline=args.pipeline, param_dataset=args.param_dataset)
    print_table(result)
    print(f"report: {Path(args.output_dir) / 'report.md'}")


def evaluate_tasks(args: argparse.Namespace, recipe: Recipe, pipe: PDiffPipeline, params: ParameterDataset,
                   splits: dict) -> None:
    """The held-out task evaluation of a conditional pipeline, written as the unconditional one is."""
    result = run_task_evaluation(pipe, params, splits, recipe, guidance_scale=args.guidance_scale,
                                 allow_other_param_dataset=args.allow_other_param_dataset)
    command = command_line(sys.argv)
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        figures = write_task_figures(result, tmp)
        (tmp / "report.md").write_text(render_task_report(result, figures))
        (tmp / "metrics.json").write_text(json.dumps(result.to_dict(), indent=1))
        write_run_args(tmp, recipe, command=command, pipeline=args.pipeline, param_dataset=args.param_dataset,
                       guidance_scale=args.guidance_scale)
    print_task_table(result)
    print(f"report: {Path(args.output_dir) / 'report.md'}")


if __name__ == "__main__":
    run_script(main, parse_args)
