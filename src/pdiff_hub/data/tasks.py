"""A family of binary tasks on one labelled dataset: each task is a subset of the classes, written as a bit code.

A task over ``n`` classes is a string of ``n`` characters ``0``/``1``; character ``i`` is ``1`` when class ``i`` is a
positive class (``"0110010010"`` asks "is it a 1, 2, 5 or 8?"). The empty and the full set are not tasks (every
image would have one label). The code read as floats, ``(0., 1., 1., 0., ...)``, is a task's *condition*: what a
conditional generator, and the non-generative maps it is compared with, are given. Distances between tasks are
Hamming distances between codes: two tasks one class apart disagree on that class's images only.

Everything here is pure and seeded: the same arguments give the same codes and splits on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TaskSplit", "binary_labels", "check_code", "hamming_distances", "nearest_tasks", "num_tasks_possible",
           "positive_classes", "sample_task_codes", "split_tasks", "task_accuracy", "task_conditions", "task_seed"]


def num_tasks_possible(num_classes: int) -> int:
    """How many tasks ``num_classes`` classes allow: every subset but the empty and the full one."""
    if num_classes < 2:
        raise ValueError(f"A binary task needs at least 2 classes; got {num_classes}")
    return 2**num_classes - 2


def check_code(code: str, num_classes: int | None = None) -> str:
    """``code`` itself if it is a task's code (of ``num_classes`` characters when given).

    Raises:
        ValueError: naming the code and what is wrong with it.
    """
    if not isinstance(code, str) or not code or set(code) - {"0", "1"}:
        raise ValueError(f"A task code is a string of 0s and 1s, one per class; got {code!r}")
    if num_classes is not None and len(code) != num_classes:
        raise ValueError(f"Task code {code!r} has {len(code)} characters; the dataset has {num_classes} classes")
    if "1" not in code or "0" not in code:
        raise ValueError(f"Task code {code!r} makes every image {'negative' if '1' not in code else 'positive'}; "
                         "a task needs at least one positive and one negative class")
    return code


def _code_of(value: int, num_classes: int) -> str:
    """The code whose class ``i`` is bit ``i`` of ``value``."""
    return "".join("1" if (value >> i) & 1 else "0" for i in range(num_classes))


def sample_task_codes(num_tasks: int, num_classes: int = 10, seed: int = 0) -> list[str]:
    """``num_tasks`` distinct task codes drawn uniformly at random (without replacement) from all possible ones.

    Raises:
        ValueError: if ``num_tasks`` is negative or more than :func:`num_tasks_possible` allows.
    """
    possible = num_tasks_possible(num_classes)
    if not 0 <= num_tasks <= possible:
        raise ValueError(f"Cannot draw {num_tasks} distinct tasks over {num_classes} classes: there are {possible}")
    values = np.random.default_rng(seed).choice(possible, size=num_tasks, replace=False) + 1  # 1 .. 2**n - 2
    return [_code_of(int(v), num_classes) for v in values]


@dataclass(frozen=True)
class TaskSplit:
    """Training tasks (collected, seen by the generator) and held-out tasks (never seen), as code strings."""

    train: list[str]
    heldout: list[str]


def split_tasks(codes: Sequence[str], num_heldout: int, seed: int = 0) -> TaskSplit:
    """A seeded split of ``codes`` into training and held-out tasks, each list in the order of ``codes``.

    Raises:
        ValueError: on a repeated or malformed code, codes of different lengths, or ``num_heldout`` outside
            ``[0, len(codes) - 1]`` (at least one training task is left).
    """
    codes = [check_code(c, len(codes[0])) for c in codes] if codes else []
    if len(set(codes)) != len(codes):
        raise ValueError("The task codes to split have repeats")
    if not 0 <= num_heldout < len(codes):
        raise ValueError(f"Cannot hold out {num_heldout} of {len(codes)} tasks and keep at least one for training")
    heldout = set(np.random.default_rng(seed).permutation(len(codes))[:num_heldout].tolist())
    return TaskSplit([c for i, c in enumerate(codes) if i not in heldout],
                     [c for i, c in enumerate(codes) if i in heldout])


def positive_classes(code: str) -> list[int]:
    """The classes a task calls positive."""
    return [i for i, bit in enumerate(check_code(code)) if bit == "1"]


def task_conditions(codes: str | Sequence[str]) -> torch.Tensor:
    """The conditions of tasks: each code as floats, (len(codes), num_classes) float32 ((num_classes,) for one)."""
    single = isinstance(codes, str)
    rows = [[float(bit) for bit in check_code(c)] for c in ([codes] if single else codes)]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("Task codes of different lengths cannot be stacked")
    conditions = torch.tensor(rows, dtype=torch.float32) if rows else torch.zeros(0, 0)
    return conditions[0] if single else conditions


def binary_labels(labels: torch.Tensor, code: str) -> torch.Tensor:
    """A task's labels (1 for an image of a positive class, else 0; int64) from the dataset's class labels."""
    code = check_code(code)
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(code)):
        raise ValueError(f"Class labels must lie in [0, {len(code) - 1}] for task code {code!r}; got labels from "
                         f"{labels.min().item()} to {labels.max().item()}")
    positive = torch.tensor([bit == "1" for bit in code], device=labels.device)
    return positive[labels].long()


def task_accuracy(predictions: torch.Tensor, labels: torch.Tensor, tasks: Sequence[str]) -> torch.Tensor:
    """Accuracy in percent of each row of binary ``predictions`` (M, N) on its own task ``tasks[m]``.

    ``labels`` are the dataset's class labels (N,); the predictions are 0/1, e.g. the argmax of a 2-way head as
    :meth:`~pdiff_hub.engine.evaluator.ParameterEvaluator.predictions` returns it.
    """
    if predictions.ndim != 2 or len(tasks) != predictions.shape[0] or predictions.shape[1] != len(labels):
        raise ValueError(f"Expected predictions of shape ({len(tasks)}, {len(labels)}); got {tuple(predictions.shape)}")
    targets = torch.stack([binary_labels(labels, c) for c in tasks]).to(predictions.device)
    return 100.0 * (predictions == targets).float().mean(dim=1)


def hamming_distances(codes: Sequence[str], others: Sequence[str]) -> torch.Tensor:
    """Hamming distances (len(codes), len(others)), int64: how many classes each pair of tasks disagrees on."""
    a, b = task_conditions(list(codes)), task_conditions(list(others))
    if not len(codes) or not len(others):
        return torch.zeros(len(codes), len(others), dtype=torch.int64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Task codes of {a.shape[1]} and {b.shape[1]} classes cannot be compared")
    return (a[:, None, :] != b[None, :, :]).sum(dim=-1)


def nearest_tasks(codes: Sequence[str], train_codes: Sequence[str], k: int = 1) -> torch.Tensor:
    """Indices into ``train_codes`` of the ``k`` nearest training tasks of each code, (len(codes), k), nearest first.

    Ties in distance go to the task that comes first in ``train_codes``, so the answer never depends on chance.
    """
    if not 1 <= k <= len(train_codes):
        raise ValueError(f"Cannot take the {k} nearest of {len(train_codes)} training tasks")
    distances = hamming_distances(codes, train_codes)
    return torch.sort(distances, dim=1, stable=True).indices[:, :k]


def task_seed(seed: int, code: str) -> int:
    """The seed of a task's batches: one per (seed, code), so a task's checkpoints never depend on the other tasks
    collected with it (tasks can be collected in any order, or in shards)."""
    return seed * 2 ** len(code) + int(check_code(code), 2)
