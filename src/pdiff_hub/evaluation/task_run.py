"""Evaluation of a conditional pipeline on a family of binary tasks: models for tasks no checkpoint was collected for.

Issue 13, point 4. On every held-out task (never seen by the autoencoder or the denoiser) it measures the generated
models against the SGD reference (what the collection would have produced for that task, with its wall time) and
against non-generative answers (:mod:`~pdiff_hub.evaluation.task_baselines`: the nearest training task's
checkpoints, the average of the ``k`` nearest tasks' checkpoints, a per-coordinate Gaussian of all checkpoints, ridge
maps from the code to all generated values and to the head only). On up to 20 training tasks it asks whether
generation reproduces the tasks it saw. Each model's accuracy is on its own task (0/1 labels from the class labels).

It runs on the main process alone: the vectors of every method and task go through one evaluator per split, in
chunks, so multi-process sharding (:mod:`~pdiff_hub.evaluation.sharding`) is not needed at these sizes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.layout import ParameterLayout
from ..data.parameters import ParameterDataset
from ..data.subsets import Split, subsample_splits
from ..data.tasks import binary_labels, task_accuracy, task_conditions, task_seed
from ..engine.evaluator import ParameterEvaluator
from ..engine.fitting import fit_generated_parameters
from ..engine.split import FrozenPrefixSplit
from ..pipeline import PDiffPipeline
from ..recipes.config import Recipe
from .generation import check_same_param_dataset, check_same_target, generate_parameters
from .metrics import summarize
from .task_baselines import (
    RidgeTaskMap,
    coordinates_of,
    gaussian_of_checkpoints,
    group_by_task,
    nearest_task_average,
    nearest_task_checkpoints,
)
from .task_result import (
    AVERAGE,
    COLLECTED,
    GAUSSIAN,
    GENERATED,
    HEAD_RIDGE,
    NEAREST,
    RIDGE,
    SGD,
    TaskAccuracy,
    TaskEvaluationResult,
    TaskRow,
    TaskSetup,
    TaskTiming,
)
from .task_verdicts import paired_differences, summarize_tasks, task_goals

__all__ = ["head_parameter_names", "run_task_evaluation", "sgd_reference", "training_tasks_to_evaluate"]


def run_task_evaluation(
    pipe: PDiffPipeline,
    params: ParameterDataset,
    splits: Mapping[str, Split],
    recipe: Recipe,
    *,
    guidance_scale: float = 1.0,
    nearest_k: int = 5,
    num_training_tasks: int = 20,
    progress: bool = True,
    allow_other_param_dataset: bool = False,
) -> TaskEvaluationResult:
    """Held-out and training tasks of a conditional pipeline, against SGD and every non-generative baseline.

    Args:
        pipe: a conditional pipeline (``condition_dim`` = the dataset's number of classes).
        params: the task family's parameter dataset the pipeline was trained on.
        splits: ``{"train", "validation", "test"}`` as (images, class labels); ``train`` feeds the SGD reference,
            ``validation`` picks each method's best model, ``test`` is measured (``recipe.evaluate.val_images`` /
            ``test_images`` subsets apply).
        recipe: ``evaluate`` (models per task, sampler, seed, subsets) and ``tasks`` (the SGD reference's settings).
        guidance_scale: classifier-free guidance of the generation.
        nearest_k: how many nearest training tasks the averaging baseline averages (at most all of them).
        num_training_tasks: how many training tasks (a seeded choice) to check generation on.
        progress: show progress bars.
        allow_other_param_dataset: see :func:`~pdiff_hub.evaluation.generation.check_same_param_dataset`.

    Raises:
        ValueError: on an unconditional pipeline, a parameter dataset of one task or without held-out tasks, a
            condition size other than the number of classes, or an empty train or test split.
    """
    start = time.perf_counter()
    config = recipe.evaluate
    split_record = _check(pipe, params, splits, recipe, allow_other_param_dataset)
    heldout = split_record.heldout
    chosen = training_tasks_to_evaluate(split_record.train, num_training_tasks, config.seed)
    full_sizes = {name: len(data[1]) for name, data in splits.items()}
    train_split = splits["train"]
    splits = subsample_splits(splits, {"validation": config.val_images, "test": config.test_images}, config.seed)
    evaluated = ("validation", "test") if len(splits.get("validation", ((), ()))[1]) else ("test",)
    layout, timings = params.target.layout, {}

    tick = time.perf_counter()
    generated, generation_s = _generate(pipe, heldout, recipe, guidance_scale, config.seed, progress)
    trained, _ = _generate(pipe, chosen, recipe, guidance_scale, config.seed + 2, progress)
    timings["generation_s"] = time.perf_counter() - tick

    # As the collection: frozen convolutions on 1x1 maps run as their centre tap (the same fits up to rounding).
    prefix_split = FrozenPrefixSplit.from_model(params.target.model, layout.names, one_pixel_convs=True)
    tick = time.perf_counter()
    sgd, sgd_s, features_s = sgd_reference(prefix_split, *train_split, heldout, recipe, progress)
    timings["sgd_s"] = time.perf_counter() - tick

    vectors, tasks = params.vectors, params.tasks
    head = head_parameter_names(params.target.model, layout, params.task_info.get("head"))
    answers = {GENERATED: generated, SGD: sgd, **_baselines(vectors, tasks, heldout, params, head, nearest_k, config)}
    ridge_alphas = answers.pop("alphas")
    codes, grouped = group_by_task(vectors, tasks)
    collected = grouped[[codes.index(c) for c in chosen]]

    tick = time.perf_counter()
    blocks = [(heldout, v) for v in answers.values()] + [(chosen, trained), (chosen, collected)]
    accuracy = {split: _block_accuracies(prefix_split, layout, splits[split], blocks, config.batch_size, progress,
                                         f"evaluating on {split}") for split in evaluated}
    timings["evaluate_s"] = time.perf_counter() - tick

    per_block = [_task_accuracies(accuracy["test"][i], accuracy["validation"][i] if "validation" in accuracy else None)
                 for i in range(len(blocks))]
    heldout_rows = _rows(heldout, dict(zip(answers, per_block)))
    training_rows = _rows(chosen, {GENERATED: per_block[-2], COLLECTED: per_block[-1]})
    summary, differences = summarize_tasks(heldout_rows), paired_differences(heldout_rows)
    timing = _timing(generation_s, sgd_s, features_s, len(heldout), config.num_models)
    timings["total_s"] = time.perf_counter() - start
    setup = TaskSetup(
        model_name=params.target.config.model_name, param_names=list(layout.names), num_params=layout.num_params,
        head_names=head, backbone={k: v for k, v in params.task_info.items() if k not in ("train", "heldout")},
        num_classes=len(heldout[0]), num_train_tasks=len(split_record.train), num_heldout_tasks=len(heldout),
        num_training_tasks_evaluated=len(chosen), num_models=config.num_models,
        num_inference_steps=config.num_inference_steps, scheduler=config.scheduler,
        guidance_scale=float(guidance_scale), seed=config.seed, nearest_k=min(nearest_k, len(split_record.train)),
        sgd=_sgd_settings(recipe), split_sizes={s: len(splits[s][1]) for s in evaluated},
        full_split_sizes={s: full_sizes[s] for s in evaluated},
        best_selected_by="validation" if "validation" in accuracy else "test (no validation split)",
        methods=list(answers),
    )
    return TaskEvaluationResult(
        setup=setup, heldout=heldout_rows, training=training_rows, summary=summary,
        training_summary=summarize_tasks(training_rows), differences=differences, timing=timing,
        goals=task_goals(summary, differences, timing, len(heldout)), ridge_alphas=ridge_alphas,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def sgd_reference(
    split: FrozenPrefixSplit,
    images: torch.Tensor,
    labels: torch.Tensor,
    codes: Sequence[str],
    recipe: Recipe,
    progress: bool = True,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """What the collection would have produced for each task of ``codes``: the SGD reference.

    :func:`~pdiff_hub.engine.fitting.fit_generated_parameters` from ``split.model``'s current generated values with
    the recipe's ``tasks`` section (lr, weight decay, batch size, kept steps), batches seeded by
    :func:`~pdiff_hub.data.tasks.task_seed`, on the frozen features of ``images`` with each task's 0/1 labels.

    Returns:
        Every kept checkpoint, (len(codes), checkpoints_per_task, D); each task's fitting wall time by code (the fit
        alone); the wall time of computing the features, shared by all tasks.
    """
    tasks = recipe.tasks
    keep = tasks.kept_steps()
    device = next(iter(split.model.parameters())).device
    tick = time.perf_counter()
    features = tuple(f.to(device) for f in split.compute_prefix(images, batch_size=recipe.collect.eval_batch_size))
    _synchronize(device)
    features_s = time.perf_counter() - tick
    labels = labels.to(device)
    init = dict(split.model.named_parameters())
    vectors, seconds = [], {}
    for code in tqdm(codes, desc="SGD reference fits", disable=not progress):
        task_labels = binary_labels(labels, code)
        tick = time.perf_counter()
        fit = fit_generated_parameters(
            split, features, task_labels, init, keep=keep, lr=tasks.lr, weight_decay=tasks.weight_decay,
            batch_size=tasks.batch_size, generator=torch.Generator().manual_seed(task_seed(tasks.seed, code)),
            lr_key="tasks.lr", desc=f"task {code}",
        )
        seconds[code] = time.perf_counter() - tick
        vectors.append(fit.vectors)
    return torch.stack(vectors), seconds, features_s


def head_parameter_names(model: nn.Module, layout: ParameterLayout, recorded: Sequence[str] | None = None
                         ) -> list[str] | None:
    """The generated parameters of the classifier head: ``recorded`` (the names the collection wrote in
    ``tasks.json``) when given, else those of timm's ``get_classifier()`` (else the model's last ``nn.Linear``);
    None when they are every generated value (a head-only map would be the full one)."""
    if recorded:
        names = [n for n in layout.names if n in set(recorded)]
    else:
        head = model.get_classifier() if callable(getattr(model, "get_classifier", None)) else None
        modules = dict(model.named_modules())
        if head is None:
            linear = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
            head = modules[linear[-1]] if linear else None
        prefix = next((name for name, m in modules.items() if m is head), None)
        names = [] if prefix is None else [n for n in layout.names if n.rsplit(".", 1)[0] == prefix]
    return names if names and len(names) < len(layout.names) else None


def training_tasks_to_evaluate(train: Sequence[str], num: int, seed: int) -> list[str]:
    """A seeded choice of ``num`` training tasks (all of them when there are no more), in their order."""
    if len(train) <= num:
        return list(train)
    picked = np.random.default_rng(seed).choice(len(train), size=num, replace=False)
    return [train[i] for i in sorted(picked.tolist())]


def _check(pipe: PDiffPipeline, params: ParameterDataset, splits: Mapping[str, Split], recipe: Recipe,
           allow_other: bool):
    """The task split, once the pipeline, parameter dataset, splits and settings are known to fit together."""
    check_same_target(pipe.target, params.target)
    check_same_param_dataset(pipe, params, allow_other=allow_other)
    if not params.is_task_family:
        raise ValueError("The parameter dataset holds the checkpoints of one task; a task evaluation needs a task "
                         "family (collect one with a recipe whose tasks.num_train_tasks > 0)")
    split = params.task_split
    dim = pipe.denoiser.config.condition_dim
    if not dim:
        raise ValueError("The pipeline is unconditional (its denoiser has condition_dim 0); a task evaluation needs "
                         "the conditional pipeline trained on this task family")
    if not split.heldout:
        raise ValueError("The task family has no held-out tasks to evaluate on; collect it with "
                         "tasks.num_heldout_tasks > 0")
    if dim != len(split.heldout[0]):
        raise ValueError(f"The pipeline's conditions have {dim} values but the tasks' codes {len(split.heldout[0])}; "
                         "pass the pipeline trained on this parameter dataset")
    for name in ("train", "test"):
        if name not in splits or len(splits[name][1]) == 0:
            raise ValueError(f"A task evaluation needs a non-empty {name!r} split; got splits {sorted(splits)}")
    _check_same_collection(params, recipe)
    if recipe.evaluate.num_models < 1:
        raise ValueError(f"evaluate.num_models must be at least 1, got {recipe.evaluate.num_models}")
    return split


def _check_same_collection(params: ParameterDataset, recipe: Recipe) -> None:
    """The SGD reference refits held-out tasks as the collection fitted the training tasks: the recipe's ``tasks``
    section must be the collection's where the parameter dataset records it (its kept steps, its rows' lr)."""
    t = recipe.tasks
    ours = {"kept steps": list(t.kept_steps()), "lr": t.lr}
    theirs = {"kept steps": params.task_info.get("kept_steps"), "lr": round(float(params.column("lr")[0]), 8)}
    differ = [key for key in ours if theirs[key] is not None and not _same(ours[key], theirs[key])]
    if differ:
        raise ValueError(f"The recipe's tasks section ({', '.join(f'{k} {ours[k]}' for k in differ)}) differs from the "
                         f"collection's ({', '.join(f'{k} {theirs[k]}' for k in differ)}); evaluate with the recipe "
                         "the parameter dataset was collected with, so that SGD is the collection's own fit")


def _same(a, b) -> bool:
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6))


def _timing(generation_s: float, sgd_s: Mapping[str, float], features_s: float, num_tasks: int,
            num_models: int) -> TaskTiming:
    per_model, sgd_per_task = generation_s / (num_tasks * num_models), float(np.mean(list(sgd_s.values())))
    return TaskTiming(generation_s=round(generation_s, 4), generation_s_per_task=generation_s / num_tasks,
                      generation_s_per_model=per_model, sgd_s_per_task=sgd_per_task, ratio=per_model / sgd_per_task,
                      features_s=round(features_s, 4),
                      sgd_s={code: round(s, 4) for code, s in sgd_s.items()})


def _sgd_settings(recipe: Recipe) -> dict:
    """The SGD reference's settings, as recorded in the result."""
    tasks = recipe.tasks
    return {"lr": tasks.lr, "weight_decay": tasks.weight_decay, "batch_size": tasks.batch_size, "seed": tasks.seed,
            "keep": list(tasks.kept_steps())}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generate(pipe: PDiffPipeline, codes: Sequence[str], recipe: Recipe, guidance_scale: float, seed: int,
              progress: bool) -> tuple[torch.Tensor, float]:
    """``evaluate.num_models`` models per code, in one pipeline call, (len(codes), M, D), and its wall time."""
    config = recipe.evaluate
    device = pipe.device
    _synchronize(device)
    tick = time.perf_counter()
    vectors = generate_parameters(pipe, config.num_models, config.num_inference_steps, config.scheduler,
                                  torch.Generator().manual_seed(seed), progress, condition=task_conditions(codes),
                                  guidance_scale=guidance_scale)
    _synchronize(device)
    return vectors.reshape(len(codes), config.num_models, -1), time.perf_counter() - tick


def _baselines(vectors: torch.Tensor, tasks: list[str], heldout: list[str], params: ParameterDataset,
               head: list[str] | None, k: int, config) -> dict:
    """The non-generative answers for the held-out codes, each (Q, m, D), and the ridge penalties under ``alphas``."""
    ridge = RidgeTaskMap().fit(vectors, tasks)
    answers = {
        NEAREST: nearest_task_checkpoints(vectors, tasks, heldout),
        AVERAGE: nearest_task_average(vectors, tasks, heldout, k=min(k, len(set(tasks)))),
        # A separate stream, so that the baseline does not change when the sampler's settings do.
        GAUSSIAN: gaussian_of_checkpoints(vectors, heldout, num=config.num_models,
                                          generator=torch.Generator().manual_seed(config.seed + 1)),
        RIDGE: ridge(heldout),
    }
    alphas = {RIDGE: ridge.alpha}
    if head is not None:
        base = params.target.base_vector().detach().float().cpu()
        head_ridge = RidgeTaskMap(coordinates=coordinates_of(params.target.layout, head), base=base).fit(vectors, tasks)
        answers[HEAD_RIDGE] = head_ridge(heldout)
        alphas[HEAD_RIDGE] = head_ridge.alpha
    return {**answers, "alphas": alphas}


def _block_accuracies(split: FrozenPrefixSplit, layout: ParameterLayout, data: Split,
                      blocks: Sequence[tuple[Sequence[str], torch.Tensor]], batch_size: int,
                      progress: bool, desc: str, chunk: int = 256) -> list[torch.Tensor]:
    """Each block's accuracies (Q, m): a block is Q codes and their (Q, m, D) vectors, each model measured on its own
    task. All blocks' vectors go through one evaluator, in chunks (all their predictions at once could fill memory)."""
    evaluator = ParameterEvaluator(split.model, layout, *data, batch_size=batch_size, split=split)
    vectors = torch.cat([v.reshape(-1, v.shape[-1]) for _, v in blocks])
    tasks = [code for codes, v in blocks for code in codes for _ in range(v.shape[1])]
    accuracy = torch.cat([task_accuracy(evaluator.predictions(vectors[s : s + chunk]), evaluator.labels,
                                        tasks[s : s + chunk])
                          for s in tqdm(range(0, len(vectors), chunk), desc=desc, disable=not progress)])
    bounds = np.cumsum([0] + [v.shape[0] * v.shape[1] for _, v in blocks])
    return [accuracy[bounds[i] : bounds[i + 1]].reshape(v.shape[:2]) for i, (_, v) in enumerate(blocks)]


def _task_accuracies(test: torch.Tensor, val: torch.Tensor | None) -> list[TaskAccuracy]:
    """One :class:`TaskAccuracy` per task, from its models' test (and validation) accuracies (Q, m)."""
    out = []
    for i in range(len(test)):
        stats = summarize(test[i], None if val is None else val[i])
        out.append(TaskAccuracy(mean=round(stats.mean, 4), best=round(stats.best, 4), n=stats.n))
    return out


def _rows(codes: Sequence[str], methods: Mapping[str, list[TaskAccuracy]]) -> list[TaskRow]:
    """One row per code with every method's accuracy on it."""
    return [TaskRow(code, {name: accuracies[i] for name, accuracies in methods.items()})
            for i, code in enumerate(codes)]
