"""Collection for a family of binary tasks: one frozen backbone, one generated part per task, several checkpoints each.

The backbone is trained once (for example on the dataset's classes, as one would use a pretrained feature
extractor) and frozen; its generated part is a 2-way classifier head, optionally with the last normalization layers.
Every task trains that part from the *same* initial values on the task's 0/1 labels, on the frontier features
computed once for all tasks (:func:`~pdiff_hub.engine.fitting.fit_generated_parameters`), so a task costs seconds.
The rows (one per kept checkpoint) carry the task's code and condition, which become the parameter dataset's
``task`` and ``condition`` columns.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.tasks import binary_labels, check_code, task_conditions, task_seed
from ..engine.fitting import fit_generated_parameters, kept_steps
from ..engine.split import FrozenPrefixSplit

__all__ = ["TaskCheckpoints", "collect_task_checkpoints", "kept_steps", "task_seed", "with_binary_head"]


def with_binary_head(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of a timm classifier whose head is a fresh 2-way one, initialized from ``seed`` (the global RNG is left
    as it was).

    Raises:
        TypeError: if ``model`` has no timm ``reset_classifier``.
    """
    if not callable(getattr(model, "reset_classifier", None)):
        raise TypeError(f"{type(model).__name__} has no reset_classifier(num_classes): give a timm classifier, or "
                        "replace its head with a 2-way one yourself")
    model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(2)
    return model.eval()


@dataclass
class TaskCheckpoints:
    """The checkpoints of a task family, one row per kept checkpoint, grouped by task in the order given.

    Attributes:
        vectors: (R, D) float32 flat generated parameters.
        tasks: the code of each row's task.
        steps: the 0-based step of each row.
        losses: every task's loss at every step run, by code.
        seconds: every task's fitting wall time, by code.
        prefix_cached: whether the frozen prefix was split off (False: each step ran the whole model).
    """

    vectors: Tensor
    tasks: list[str]
    steps: list[int]
    losses: dict[str, list[float]]
    seconds: dict[str, float]
    prefix_cached: bool

    @property
    def conditions(self) -> Tensor:
        """Each row's condition: its task's code as floats, (R, num_classes) float32."""
        return task_conditions(self.tasks)


def collect_task_checkpoints(
    split: FrozenPrefixSplit,
    features: Sequence[Tensor],
    labels: Tensor,
    codes: Sequence[str],
    *,
    keep: Sequence[int],
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    init: Mapping[str, Tensor] | None = None,
    lr_key: str = "tasks.lr",
    progress: bool = True,
) -> TaskCheckpoints:
    """Fit the generated part of ``split.model`` to each task of ``codes``, from the same start, and keep checkpoints.

    Args:
        split: the backbone with its 2-way generated part, split at it (``FrozenPrefixSplit.from_model``).
        features: the frontier of the training images (``split.compute_prefix(images)``), shared by every task.
        labels: (N,) class labels of the training images, in ``[0, num_classes)``.
        codes: the tasks (see :mod:`pdiff_hub.data.tasks`), all over the same classes.
        keep: the 0-based steps kept per task (:func:`kept_steps`).
        lr: AdamW's constant learning rate.
        weight_decay: AdamW's weight decay.
        batch_size: images per step.
        seed: with each code, seeds the task's batches (:func:`task_seed`).
        init: the starting values by name (default: the current values of ``split.model``'s generated parameters).
        lr_key: the recipe key of ``lr``, named if a task diverges.
        progress: show a progress bar over tasks.

    Returns:
        ``len(codes) * len(keep)`` rows, task by task.

    Raises:
        ValueError: on a malformed or repeated code, or codes of another number of classes than the labels allow.
        FloatingPointError: if a task's loss is NaN or infinite.
    """
    codes = [check_code(c, len(codes[0])) for c in codes] if codes else []
    if not codes or len(set(codes)) != len(codes):
        raise ValueError(f"Need distinct task codes; got {list(codes)}")
    if init is None:
        init = dict(split.model.named_parameters())
    vectors, tasks, steps, losses, seconds = [], [], [], {}, {}
    for code in tqdm(codes, desc="collecting task checkpoints", disable=not progress):
        start = time.perf_counter()
        fit = fit_generated_parameters(
            split, features, binary_labels(labels, code), init, keep=keep, lr=lr, weight_decay=weight_decay,
            batch_size=batch_size, generator=torch.Generator().manual_seed(task_seed(seed, code)), lr_key=lr_key,
            desc=f"task {code}",
        )
        seconds[code] = time.perf_counter() - start
        vectors.append(fit.vectors)
        tasks += [code] * len(fit.vectors)
        steps += list(keep)
        losses[code] = fit.losses
    return TaskCheckpoints(torch.cat(vectors), tasks, steps, losses, seconds, split.is_split)
