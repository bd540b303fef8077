"""One training run, as ``scripts/train.py`` drives it: the output folder's check and the metrics of the result.

:func:`check_run_folder` refuses an output folder the run must not write, before anything is loaded;
:func:`run_metrics` gathers what ``metrics.json`` records once :class:`~pdiff_hub.training.trainer.PDiffTrainer`
has finished, the reconstruction accuracy included (measured by :func:`reconstruction_evaluator`'s test images; for
a task family, each checkpoint's accuracy on its own binary task).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.cli import UsageError, check_output_dir
from ..core.io import is_temporary
from ..data.images import load_recipe_splits
from ..data.parameters import ParameterDataset
from ..data.subsets import subsample_splits
from ..engine.evaluator import ParameterEvaluator
from ..recipes.config import Recipe
from .trainer import TrainingResult, reconstruction_accuracy

__all__ = ["check_run_folder", "reconstruction_evaluator", "run_metrics"]


def check_run_folder(output_dir: str | os.PathLike, param_dataset: str | os.PathLike, *, overwrite: bool,
                     resume_from_checkpoint: str | None) -> Path:
    """Refuse an output folder this run must not write, before anything is loaded; return it as a Path.

    Refused always: a file, the current folder or one above it, a folder that is, contains or lies inside the
    parameter dataset, a folder that cannot be written. Without ``overwrite``: a folder holding a pipeline, and any
    other content than the checkpoints (and logs) of a run that ``resume_from_checkpoint`` continues. Whose
    checkpoints they are is checked by the trainer, once the parameter dataset is loaded.

    Raises:
        UsageError: the folder is refused; the message names the flag that would allow it, if any.
    """
    folder = check_output_dir(output_dir, overwrite=True, inputs=[param_dataset])
    if overwrite or not folder.is_dir():
        return folder
    if (folder / "model_index.json").exists():
        raise UsageError(f"--output_dir {output_dir} holds a pipeline; pass --overwrite to replace it, or choose "
                         "another folder")
    content = sorted(p.name for p in folder.iterdir() if not is_temporary(p.name))
    if "checkpoints" in content and not resume_from_checkpoint:
        raise UsageError(f"--output_dir {output_dir} holds the checkpoints of an unfinished run; pass "
                         "--resume_from_checkpoint latest to continue it, or --overwrite to start a new one")
    others = [name for name in content if name not in ("checkpoints", "logs")]
    if others:
        raise UsageError(f"--output_dir {output_dir} exists and holds {', '.join(others[:3])}; pass "
                         "--overwrite to write the pipeline beside them, or choose another folder")
    return folder


def reconstruction_evaluator(recipe: Recipe, params: ParameterDataset) -> ParameterEvaluator:
    """The test images the evaluation uses: the whole split, or the recipe's ``evaluate.test_images`` subset.

    The labels are the dataset's classes, also for a task family: each task's binary labels derive from them. The
    evaluator's simplified split is the one collection scores with, so checkpoints are measured as they were."""
    splits = load_recipe_splits(recipe.data, recipe.target.image_kwargs())
    test = subsample_splits(splits, {"test": recipe.evaluate.test_images}, recipe.evaluate.seed)["test"]
    target = params.target
    return ParameterEvaluator(target.model, target.layout, *test, batch_size=recipe.evaluate.batch_size)


def run_metrics(recipe: Recipe, params: ParameterDataset, result: TrainingResult, *, evaluate: bool) -> dict:
    """What ``metrics.json`` records: final losses, training time, the fraction of the checkpoints' latent values
    that are saturated (:meth:`~pdiff_hub.ParameterAutoencoder.saturated_fraction`), and (``evaluate``) the
    reconstruction accuracy.

    The process count is recorded when it is more than one, and accelerate's mixed precision when it is not ``"no"``:
    the weights depend on them (each process draws its own noise; bfloat16 rounds). For a task family the accuracies
    are each checkpoint's on its own binary task, originals and reconstructions alike, and
    ``reconstruction_accuracy_kind`` says so (``"per_task"``).
    """
    metrics = {"final_losses": result.final_losses, "train_seconds": round(result.train_seconds, 1),
               "num_checkpoints": len(params.vectors)}
    if result.num_processes > 1:
        metrics["num_processes"] = result.num_processes
    if result.mixed_precision != "no":
        metrics["mixed_precision"] = result.mixed_precision
    autoencoder = result.pipeline.autoencoder
    with torch.no_grad():
        latents = autoencoder.encoder_latents(params.vectors)
    metrics["saturated_latent_fraction"] = autoencoder.saturated_fraction(latents)
    if evaluate:
        evaluator = reconstruction_evaluator(recipe, params)
        metrics.update(reconstruction_accuracy(result.pipeline.autoencoder, params.vectors, evaluator, params.tasks))
        if params.is_task_family:
            metrics["reconstruction_accuracy_kind"] = "per_task"
    return metrics
