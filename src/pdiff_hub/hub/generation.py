"""Generated models chosen for timm: sample one batch, measure it on the validation and test splits of the pipeline's
dataset, keep the best by validation accuracy and write them as timm repo folders beside ``generation.json``.

Example:
    ```py
    >>> splits = selection_splits(recipe.data, pipe.target)
    >>> sampling = Sampling(num_models=100, num_inference_steps=50, scheduler="ddim", seed=0)
    >>> batch = generate_and_measure(pipe, splits.tensors, sampling)
    >>> chosen = select_indices(batch.accuracy["validation"], "best")
    >>> export_generated(pipe.target, batch, chosen, "OUT", sampling=sampling, pipeline="runs/pipeline",
    ...                  data=recipe.data, select="best", label_names=splits.label_names)
    ```

A conditional pipeline makes models for one binary task (:mod:`pdiff_hub.data.tasks`): the splits' labels become
that task's, so every accuracy is the task's, and the exported 2-way networks say which task they solve.

Example:
    ```py
    >>> code = check_task_condition(pipe, parse_condition("0,1,1,0,0,1,0,0,1,0"))  # from .conditions
    >>> splits = selection_splits(recipe.data, pipe.target, task=code)
    >>> task = describe_task(code, pipe.condition_info, splits.label_names, guidance_scale=1.0)
    >>> sampling = Sampling(num_models=100, condition=code)
    >>> batch = generate_and_measure(pipe, splits.tensors, sampling)
    >>> export_generated(pipe.target, batch, select_indices(batch.accuracy["validation"], "best"), "OUT",
    ...                  sampling=sampling, pipeline="runs/pipeline", data=recipe.data, select="best", task=task)
    ```
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.io import atomic_output_dir
from ..data.images import DEFAULT_MEAN, DEFAULT_STD, dataset_to_tensors, load_image_dataset, num_classes
from ..data.subsets import Split
from ..data.tasks import binary_labels, task_conditions
from ..engine.evaluator import ParameterEvaluator
from ..evaluation.generation import SCHEDULERS, generate_parameters
from ..evaluation.sharding import ProcessGroup
from ..models.target import TargetModel
from ..pipeline import PDiffPipeline
from ..pipeline.pipeline_pdiff import accuracy_conditions
from .commit import push_folder_to_hub
from .export import AccuracyPrompt, GenerationRecord, TaskRecord, export_timm_model
from .export_adapter import export_base_network, export_lora_adapter
from .export_transformers import export_transformers_model

__all__ = [
    "MeasuredBatch",
    "Sampling",
    "SelectionSplits",
    "export_generated",
    "generate_and_measure",
    "parse_selection",
    "push_generated",
    "sample_repo_ids",
    "select_indices",
    "selection_splits",
]

GENERATION_FILE = "generation.json"


@dataclass(frozen=True)
class Sampling:
    """One batch of ``num_models`` sampled with ``scheduler`` (a name of ``SCHEDULERS``) from ``seed``; for a
    task family's pipeline, all for the task ``condition`` (a code), for an accuracy-prompted one all for the
    validation ``accuracy`` in percent (None: unconditional), with classifier-free ``guidance_scale``."""

    num_models: int = 100
    num_inference_steps: int = 50
    scheduler: str = "ddim"
    seed: int = 0
    condition: str | None = None
    guidance_scale: float = 1.0
    accuracy: float | None = None

    def __post_init__(self):
        if self.condition is not None and self.accuracy is not None:
            raise ValueError("A batch is sampled for a task (condition) or for an accuracy, not both")


@dataclass
class SelectionSplits:
    """The validation and test splits as ``(images, labels)`` tensors, and the dataset's class names (None if
    unnamed). For a task the labels are the task's (0/1), the names still the dataset's classes."""

    tensors: dict[str, Split]
    label_names: list[str] | None


@dataclass
class MeasuredBatch:
    """Generated parameter vectors, (N, D), and each one's top-1 accuracy in percent by split, (N,)."""

    vectors: torch.Tensor
    accuracy: dict[str, torch.Tensor]
    split_sizes: dict[str, int]

    def ranks(self) -> dict[int, int]:
        """Each model's rank by validation accuracy (1 = best; ties: the lower index first)."""
        order = torch.sort(self.accuracy["validation"], descending=True, stable=True).indices.tolist()
        return {index: rank + 1 for rank, index in enumerate(order)}


def parse_selection(value: str) -> str | int:
    """``"best"``, ``"all"`` or a positive count K (the top K), from the command line.

    Raises:
        ValueError: naming the value and what is allowed.
    """
    if value in ("best", "all"):
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"--select {value!r} is not allowed: use 'best', 'all' or a positive count such as 3")


def selection_splits(data: Any, target: TargetModel, task: str | None = None) -> SelectionSplits:
    """The validation and test splits of a recipe's dataset, checked against the target's class count.

    The dataset is split as at collection (``data.val_size``, ``data.split_seed``), so that selection never sees
    the base model's training images.

    Args:
        data: a recipe's ``data`` section (``dataset``, ``image_size``, ``val_size``, ``split_seed``).
        target: the pipeline's target; its ``num_classes`` and ``in_chans`` decide the check and the channels.
        task: a task code: the labels become that task's (:func:`~pdiff_hub.data.tasks.binary_labels`) and the
            target must be a 2-way network.

    Raises:
        ValueError: when the class counts differ or the validation split is empty.
    """
    expected, in_chans = target.classes_and_channels()
    splits = load_image_dataset(data.dataset, val_size=data.val_size, seed=data.split_seed)
    if task is not None:
        if expected is not None and expected != 2:
            raise ValueError(f"A task's models are 2-way classifiers, but the pipeline's target "
                             f"{target.config.model_name} has {expected} classes; --condition needs a pipeline "
                             "trained on a family of tasks")
        if len(task) != num_classes(splits):
            raise ValueError(f"data.dataset {data.dataset} has {num_classes(splits)} classes but task {task} has "
                             f"{len(task)}; give the dataset the pipeline's tasks are defined on")
    elif expected is not None and num_classes(splits) != expected:
        raise ValueError(f"data.dataset {data.dataset} has {num_classes(splits)} classes but the pipeline's target "
                         f"{target.config.model_name} has {expected}; give the dataset it was trained on")
    if len(splits["validation"]) == 0:
        raise ValueError(f"data.val_size {data.val_size} leaves no validation split of {data.dataset}, and the "
                         f"generated models are chosen by validation accuracy; use the collection's val_size")
    tensors = {name: dataset_to_tensors(splits[name], image_size=data.image_size, in_chans=in_chans)
               for name in ("validation", "test")}
    if task is not None:
        tensors = {name: (images, binary_labels(labels, task)) for name, (images, labels) in tensors.items()}
    return SelectionSplits(tensors, getattr(splits["test"].features["label"], "names", None))


def generate_and_measure(
    pipe: PDiffPipeline,
    splits: Mapping[str, Split],
    sampling: Sampling,
    progress: bool = True,
    group: ProcessGroup | None = None,
) -> MeasuredBatch:
    """Sample ``sampling.num_models`` parameter vectors in one batch and measure each on every split.

    Args:
        pipe: the trained pipeline (left untouched; the sampler is a sibling with the chosen scheduler).
        splits: ``{"validation": (images, labels), "test": (images, labels)}``.
        sampling: the batch size, steps, scheduler and seed, and the task of a task family's pipeline (the splits'
            labels must then be that task's: :func:`selection_splits` with ``task``) or the accuracy prompt of an
            accuracy-prompted one (standardized with the pipeline's ``condition_info``).
        progress: show the sampler's progress bar (on the main process only).
        group: the processes sharing the work (default: this one alone). The main process samples and sends the
            vectors to the others; each process measures its block of them; every process returns the whole batch
            (on the CPU equal to a single process's; see :mod:`~pdiff_hub.evaluation.sharding`).
    """
    group = group or ProcessGroup()

    def sample() -> torch.Tensor:
        generator = torch.Generator().manual_seed(sampling.seed)
        condition = None if sampling.condition is None else task_conditions([sampling.condition])
        if sampling.accuracy is not None:
            condition = accuracy_conditions(pipe.condition_info, [sampling.accuracy])
        return generate_parameters(pipe, sampling.num_models, sampling.num_inference_steps, sampling.scheduler,
                                   generator, progress, condition=condition, guidance_scale=sampling.guidance_scale)

    vectors = group.on_main(sample)
    target = pipe.target
    accuracy = {}
    for name, (images, labels) in splits.items():
        evaluator = ParameterEvaluator(target.model, target.layout, images, labels)
        # The masks are gathered and the accuracy computed as ParameterEvaluator.accuracy does, from all of them.
        wrong = group.map_rows(evaluator.wrong, vectors)
        accuracy[name] = 100.0 * (~wrong).float().mean(dim=1)
    return MeasuredBatch(vectors, accuracy, {name: len(labels) for name, (_, labels) in splits.items()})


def select_indices(val_accuracy: torch.Tensor, select: str | int) -> list[int]:
    """Row indices of the chosen models: best first by validation accuracy (ties: lower index), or all in order."""
    if select == "all":
        return list(range(len(val_accuracy)))
    ranked = torch.sort(val_accuracy, descending=True, stable=True).indices.tolist()
    return ranked[: 1 if select == "best" else select]


def sample_repo_ids(chosen: Sequence[int], hub_model_id: str | None) -> dict[int, str | None]:
    """The Hub repo of each chosen model: ``hub_model_id`` for a single one, else ``<hub_model_id>-sample-<i>``."""
    if not hub_model_id:
        return dict.fromkeys(chosen)
    return {i: hub_model_id if len(chosen) == 1 else f"{hub_model_id}-sample-{i}" for i in chosen}


def export_generated(
    target: TargetModel,
    batch: MeasuredBatch,
    chosen: Sequence[int],
    export_dir: str | os.PathLike,
    *,
    sampling: Sampling,
    pipeline: str,
    data: Any,
    select: str | int,
    revision: str | None = None,
    label_names: Sequence[str] | None = None,
    repo_ids: Mapping[int, str | None] | None = None,
    command: str | None = None,
    overwrite: bool = False,
    task: TaskRecord | None = None,
    prompt: AccuracyPrompt | None = None,
    base_repo_id: str | None = None,
) -> list[GenerationRecord]:
    """Write each chosen model to ``export_dir/sample-<i>/`` (a timm or transformers repo folder, as the target's
    library) and ``generation.json``. For a target with a LoRA adapter, each sample is a PEFT adapter folder and
    the base network they adapt is written once to ``export_dir/base/``.

    ``generation.json`` records the command, the pipeline, the sampling, the data section, the selection, every
    model's accuracies and one :class:`GenerationRecord` per chosen model. The folder appears complete or not at all.

    Args:
        target: the pipeline's target.
        batch: the generated vectors and their accuracies.
        chosen: the indices to export, in order (:func:`select_indices`).
        export_dir: the output folder.
        sampling: how the batch was sampled.
        pipeline: the pipeline's folder or Hub id, as given.
        data: the recipe's ``data`` section the accuracies were measured on.
        select: the selection asked for (``"best"``, ``"all"`` or K).
        revision: the pipeline's revision, if one was asked for.
        label_names: class names, stored in each ``config.json`` (for a task: the task's two, ``task.label_names``).
        repo_ids: the Hub repo of each chosen model (:func:`sample_repo_ids`), for the cards.
        command: the command line, for ``generation.json``.
        overwrite: replace an existing non-empty folder.
        task: the task of a conditional pipeline's models (:func:`describe_task`); recorded as ``condition``.
        prompt: the accuracy an accuracy-prompted pipeline's models were prompted for (:func:`check_accuracy_prompt`);
            recorded as ``accuracy_prompt``, with the batch's mean validation accuracy beside it.
        base_repo_id: for adapters, the Hub repo the base network is pushed to, which each adapter names as its
            base (default: the folder ``../base``).

    Returns:
        The records of the chosen models, in the order of ``chosen``.
    """
    ranks, repo_ids = batch.ranks(), repo_ids or {}
    scheduler = SCHEDULERS[sampling.scheduler].__name__
    records = [
        GenerationRecord(
            pipeline=str(pipeline), revision=revision, seed=sampling.seed, num_models=sampling.num_models, index=i,
            num_inference_steps=sampling.num_inference_steps, scheduler=scheduler, dataset=str(data.dataset),
            val_accuracy=float(batch.accuracy["validation"][i]), test_accuracy=float(batch.accuracy["test"][i]),
            val_size=batch.split_sizes["validation"], test_size=batch.split_sizes["test"], rank=ranks[i],
            repo_id=repo_ids.get(i), task=task, prompt=prompt)
        for i in chosen
    ]
    if task is not None:
        label_names = task.label_names
    with atomic_output_dir(export_dir, overwrite=overwrite) as tmp:
        if target.has_adapter:
            export_base_network(target, tmp / "base", pipeline=str(pipeline))
        for record in records:
            folder, vector = tmp / f"sample-{record.index}", batch.vectors[record.index]
            if target.has_adapter:
                export_lora_adapter(target, vector, folder, card_values=record, base_reference=base_repo_id or
                                    "../base", mean=DEFAULT_MEAN, std=DEFAULT_STD, image_size=data.image_size)
                continue
            export = export_transformers_model if target.is_transformers else export_timm_model
            export(target, vector, folder, card_values=record, mean=DEFAULT_MEAN, std=DEFAULT_STD,
                   label_names=label_names, image_size=data.image_size)
        summary = {
            "command": command, "pipeline": str(pipeline), "revision": revision, "seed": sampling.seed,
            "num_models": sampling.num_models, "num_inference_steps": sampling.num_inference_steps,
            "scheduler": scheduler, "data": dataclasses.asdict(data), "select": select,
            "val_accuracy": batch.accuracy["validation"].tolist(), "test_accuracy": batch.accuracy["test"].tolist(),
            "samples": [{"folder": f"sample-{r.index}", **r.row()} for r in records],
        }
        if task is not None:  # absent for an unconditional pipeline: its file is as before
            summary["condition"] = dataclasses.asdict(task)
        if prompt is not None:  # absent without a prompt, as for the unconditional pipelines
            summary["accuracy_prompt"] = {**dataclasses.asdict(prompt),
                                          "mean_val_accuracy": batch.accuracy["validation"].mean().item()}
        (tmp / GENERATION_FILE).write_text(json.dumps(summary, indent=2))
    return records


def push_generated(export_dir: str | os.PathLike, records: Sequence[GenerationRecord], *, private: bool = False,
                   base_repo_id: str | None = None) -> list[str]:
    """Push each exported sample folder to its record's ``repo_id``, after the adapters' base network (``base/``) to
    ``base_repo_id`` when there is one; returns the commit URLs, in order (the base's first)."""
    base = Path(export_dir) / "base"
    pushed = []
    if base.is_dir() and base_repo_id:
        pushed.append(push_folder_to_hub(base, base_repo_id, "model", private=private,
                                         commit_message="The base network the generated LoRA adapters adapt"))
    return pushed + [
        push_folder_to_hub(Path(export_dir) / f"sample-{r.index}", r.repo_id, "model", private=private,
                           commit_message=f"Generated model {r.index} of {r.num_models} (seed {r.seed})")
        for r in records
    ]
