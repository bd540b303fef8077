"""A generated model as a timm Hub repo folder (``config.json``, ``model.safetensors``, ``README.md``) and its card.

Example:
    ```py
    >>> out = pipe(num_models=1, generator=torch.Generator().manual_seed(0))
    >>> export_timm_model(pipe.target, out.parameters[0], "sample-0", card_values=record, mean=0.5, std=0.5)
    ```
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models import save_for_hf
from torch import nn

from .. import __version__
from ..core.io import atomic_output_dir
from ..models.target import TargetModel
from .cards import render_card

__all__ = ["AccuracyPrompt", "GenerationRecord", "TaskRecord", "card_metadata", "card_name", "export_timm_model"]

# Repos of the datasets the built-in offline builders read (pdiff_hub.data.images), for the cards' `datasets` metadata.
_HUB_DATASET_IDS = {"fashion_mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist"}


@dataclass
class TaskRecord:
    """The binary task a model generated for a condition solves (:mod:`pdiff_hub.data.tasks`).

    Args:
        code: the task's code: character ``i`` is ``1`` when class ``i`` is a positive class.
        positive: the names of the positive classes, in class order.
        status: ``"training"`` (the pipeline was trained on checkpoints of this task), ``"held-out"`` (split off
            for evaluation and never shown to the pipeline) or ``"new"`` (neither).
        guidance_scale: the classifier-free guidance scale of the sampling.
        label_names: the names of the 2-way network's outputs, negative first.
    """

    code: str
    positive: list[str]
    status: str
    guidance_scale: float
    label_names: list[str]


@dataclass
class AccuracyPrompt:
    """The validation accuracy an accuracy-prompted pipeline's models were generated for (``train.accuracy_prompt``).

    Args:
        accuracy: the prompt: a validation accuracy in percent.
        condition: the condition it became, ``(accuracy - accuracy_mean) / accuracy_std`` of the pipeline's
            ``condition_info``.
        guidance_scale: the classifier-free guidance scale of the sampling.
        checkpoint_accuracy: the lowest and highest validation accuracy of the checkpoints the pipeline was trained
            on, in percent.
        extrapolated: the prompt lies outside that range: no checkpoint showed the denoiser such a model.
    """

    accuracy: float
    condition: float
    guidance_scale: float
    checkpoint_accuracy: list[float]
    extrapolated: bool


@dataclass
class GenerationRecord:
    """Where a generated model comes from and how well it does: its card, and a row of ``generation.json``.

    Args:
        pipeline: Hub id or local folder of the pipeline that generated it.
        revision: the pipeline's revision, if one was asked for.
        seed: seed of the ``torch.Generator`` of the call.
        num_models: models sampled in that one batch (a row depends on the batch size).
        index: the model's row in the batch.
        num_inference_steps: denoising steps.
        scheduler: the diffusers scheduler class used (``"DDIMScheduler"``, ``"DDPMScheduler"``).
        dataset: the dataset the accuracies were measured on (built-in name, folder or Hub id).
        val_accuracy: top-1 accuracy in percent on the validation split (used for selection).
        test_accuracy: top-1 accuracy in percent on the test split.
        val_size: images in the validation split.
        test_size: images in the test split.
        rank: rank by validation accuracy among the ``num_models`` (1 = best).
        repo_id: the Hub repo it is published to, if any (used in the card's loading snippet).
        task: for a conditional pipeline, the task the model was generated for; its accuracies are on that task.
        prompt: for an accuracy-prompted pipeline given a prompt, the accuracy the model was generated for.
    """

    pipeline: str
    revision: str | None
    seed: int
    num_models: int
    index: int
    num_inference_steps: int
    scheduler: str
    dataset: str
    val_accuracy: float
    test_accuracy: float
    val_size: int
    test_size: int
    rank: int
    repo_id: str | None = None
    task: TaskRecord | None = None
    prompt: AccuracyPrompt | None = None

    def row(self) -> dict:
        """The record as a JSON row of ``generation.json`` (``task`` and ``prompt`` only when there is one)."""
        row = dataclasses.asdict(self)
        for key in ("task", "prompt"):
            if row[key] is None:
                del row[key]
        return row


def export_timm_model(
    target: TargetModel,
    vector: torch.Tensor,
    folder: str | os.PathLike,
    *,
    card_values: GenerationRecord,
    mean: float,
    std: float,
    label_names: Sequence[str] | None = None,
    image_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a generated model as a timm Hub repo folder: ``config.json``, ``model.safetensors``, ``README.md``.

    The weights and config are written by ``timm.models.save_for_hf`` with the preprocessing the accuracies were
    measured with (``in_chans`` x ``image_size`` x ``image_size``, bilinear, ``mean``/``std`` on every channel), so
    for a timm architecture ``timm.create_model("hf-hub:org/name", pretrained=True)`` rebuilds the same network
    without pdiff_hub. The architecture is rebuilt from ``config.json`` and the saved weights are checked to be the
    generated model's, bit for bit. The folder appears complete or not at all.

    Args:
        target: the pipeline's target (architecture, frozen weights, layout).
        vector: one generated parameter vector, (D,).
        folder: the output folder.
        card_values: provenance and measured accuracy, for the card.
        mean: the per-channel mean the images were normalized with (``pdiff_hub.data.images.DEFAULT_MEAN`` for
            the built-in loaders).
        std: the per-channel standard deviation (``pdiff_hub.data.images.DEFAULT_STD``).
        label_names: class names, stored in ``config.json`` (timm's ``label_names``).
        image_size: the input resolution the accuracy was measured at; default: the target's ``image_size``.
        overwrite: replace an existing non-empty folder.

    Returns:
        The folder.
    """
    if target.is_transformers:
        raise ValueError(f"The target {target.config.model_name!r} is a transformers classifier; export it with "
                         f"pdiff_hub.hub.export_transformers.export_transformers_model")
    model = target.build_model(vector)
    model_name = target.config.model_name
    in_chans, image_size = target.classes_and_channels()[1], int(image_size or target.config.image_size)
    stock_timm = timm.models.model_entrypoint(model_name).__module__.startswith("timm.")
    source_cfg = getattr(model, "pretrained_cfg", None) or {}
    # Only what describes the architecture survives from the source cfg: its tag, license, test sizes and pool size
    # belong to the original pretrained weights, not to these.
    model.pretrained_cfg = {
        "architecture": model_name,
        "num_classes": model.num_classes,
        "input_size": (in_chans, image_size, image_size),
        **{k: source_cfg[k] for k in ("first_conv", "classifier", "fixed_input_size") if k in source_cfg},
    }
    give_num_features(model)
    data_config = {"input_size": (in_chans, image_size, image_size), "interpolation": "bilinear", "crop_pct": 1.0,
                   "crop_mode": "center", "mean": (mean,) * in_chans, "std": (std,) * in_chans}
    model_config = {"label_names": list(label_names)} if label_names else None
    if label_names and len(label_names) != model.num_classes:
        raise ValueError(f"{len(label_names)} label names for a model with {model.num_classes} classes")

    folder = Path(folder)
    with atomic_output_dir(folder, overwrite=overwrite) as tmp:
        save_for_hf(model, tmp, model_config=model_config, safe_serialization=True, data_config=data_config)
        _check_export(model, tmp)
        card = _generated_model_card(target, card_values, stock_timm, folder.name, image_size, mean, std)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return folder


def _check_export(model: nn.Module, folder: Path) -> None:
    """Rebuild the architecture from ``config.json`` alone and check the saved weights are the model's, bit for bit."""
    config = json.loads((folder / "config.json").read_text())
    rebuilt = timm.create_model(config["architecture"], pretrained=False, **config.get("model_args", {}))
    saved = load_file(folder / "model.safetensors")
    rebuilt.load_state_dict(saved, strict=True)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(saved[k], v)]
    if changed:
        raise RuntimeError(f"The export in {folder} does not hold the generated model's values for {changed}")


def _generated_model_card(
    target: TargetModel, record: GenerationRecord, stock_timm: bool, folder_name: str, image_size: int,
    mean: float, std: float,
) -> str:
    config = target.config
    model_kwargs = dict(config.model_kwargs or {})
    name = card_name(record, folder_name)
    task, prompt = record.task, record.prompt
    metadata = card_metadata(record, name, "timm")
    aim = f" for task {task.code}" if task else f" for {prompt.accuracy:g}% accuracy" if prompt else ""
    return render_card(
        "generated_model", metadata,
        title=f"{config.model_name} generated by p-diff{aim} ({name})",
        model_name=config.model_name,
        model_kwargs=model_kwargs, stock_timm=stock_timm, repo_id=record.repo_id, **layout_card_values(target),
        image_size=image_size, in_chans=target.classes_and_channels()[1], mean=mean, std=std, record=record,
        task=task, task_condition=[int(bit) for bit in task.code] if task is not None else None, prompt=prompt,
        pdiff_hub_version=__version__, timm_version=timm.__version__,
    )


def give_num_features(model: nn.Module) -> None:
    """``timm.models.save_for_hf`` records ``model.num_features``; give the small pdiff_hub networks, which lack it,
    their last linear layer's input size."""
    if not hasattr(model, "num_features"):
        model.num_features = next(m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)).in_features


def layout_card_values(target: TargetModel) -> dict:
    """What a generated model's card says of the generated parameters: their count, tensors, patterns, and whether
    they are the whole network."""
    layout = target.layout
    return {"num_params": layout.num_params, "num_tensors": len(layout.names),
            "param_patterns": ", ".join(target.config.param_patterns),
            "generated_all": layout.num_params == sum(p.numel() for p in target.model.parameters())}


def card_name(record: GenerationRecord, folder_name: str) -> str:
    """The model's name on its card: its repo's name, else its folder's."""
    return record.repo_id.split("/")[-1] if record.repo_id else folder_name


def card_metadata(record: GenerationRecord, name: str, library: str, tags: Sequence[str] = ()) -> dict:
    """The Hub metadata of a generated model's card: library, tags, dataset and the measured test accuracy."""
    dataset_id = _hub_dataset_id(record.dataset)
    task, prompt = record.task, record.prompt
    dataset_meta = {"name": record.dataset, "type": dataset_id or record.dataset, "split": "test"}
    if task is not None:  # the accuracy is that of one binary task of the dataset: its code names it
        dataset_meta = {**dataset_meta, "name": f"{record.dataset}, task {task.code}", "config": task.code}
    return {
        "library_name": library,
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", library, "p-diff", "generated-weights", *tags,
                 *(["task-conditioned", "binary-classification"] if task is not None else []),
                 *(["accuracy-prompted"] if prompt is not None else [])],
        "datasets": [dataset_id] if dataset_id else None,
        "metrics": ["accuracy"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "image-classification", "name": "Image Classification"},
                "dataset": dataset_meta,
                "metrics": [{"type": "accuracy", "value": round(record.test_accuracy, 2),
                             "name": "Top-1 accuracy (%)"}],
            }],
        }],
    }


def _hub_dataset_id(dataset: str) -> str | None:
    key = dataset.strip().lower().replace("-", "_")
    if key in _HUB_DATASET_IDS:
        return _HUB_DATASET_IDS[key]
    looks_local = dataset.startswith((".", "/", "~")) or Path(dataset).exists()
    return dataset if dataset.count("/") == 1 and not looks_local else None
