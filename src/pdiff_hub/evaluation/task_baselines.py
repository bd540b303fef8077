"""Non-generative ways to make parameters for a task nobody collected: the critique's baselines, conditioned.

Given the checkpoints of the training tasks (rows of flat vectors, each with its task's code), each function here
answers held-out codes with parameter vectors, shaped (Q, M, D): M models for each of Q codes.

* the checkpoints of the nearest training task (Hamming distance between codes);
* the average of the checkpoints of the ``k`` nearest training tasks;
* the per-coordinate Gaussian of all checkpoints (blind to the code: the unconditional critique's baseline (b));
* a learned map, ridge regression from the condition (the code as floats) to the parameters, over every generated
  value or over a subset of them (e.g. the head only, the rest taken from the backbone's own values).

A conditional generator earns its place on held-out tasks only where it beats these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from torch import Tensor

from ..core.layout import ParameterLayout
from ..data.tasks import nearest_tasks, task_conditions
from .baselines import per_coordinate_gaussian

__all__ = ["RIDGE_ALPHAS", "RidgeTaskMap", "coordinates_of", "gaussian_of_checkpoints", "group_by_task",
           "nearest_task_average", "nearest_task_checkpoints"]

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-4, 4, 17))
"""The ridge penalties :class:`RidgeTaskMap` chooses from by default, half a decade apart."""


def group_by_task(vectors: Tensor, tasks: Sequence[str]) -> tuple[list[str], Tensor]:
    """The distinct codes of ``tasks`` (in order of first appearance) and their checkpoints, (T, C, D) float32.

    Raises:
        ValueError: if ``tasks`` does not give one code per row, or the tasks have different numbers of checkpoints.
    """
    if vectors.ndim != 2 or len(tasks) != len(vectors):
        raise ValueError(f"Need one task code per row of the (R, D) checkpoints; got {len(tasks)} codes for shape "
                         f"{tuple(vectors.shape)}")
    codes = list(dict.fromkeys(tasks))
    rows = {c: [i for i, t in enumerate(tasks) if t == c] for c in codes}
    counts = {len(r) for r in rows.values()}
    if len(counts) != 1:
        raise ValueError(f"Every training task needs as many checkpoints as the others; got counts {sorted(counts)}")
    return codes, torch.stack([vectors[r].float() for r in rows.values()])


def nearest_task_checkpoints(vectors: Tensor, tasks: Sequence[str], codes: Sequence[str]) -> Tensor:
    """Each code answered with every checkpoint of its nearest training task, (Q, C, D).

    Ties (several training tasks at the same distance) go to the task whose rows come first.
    """
    train_codes, grouped = group_by_task(vectors, tasks)
    return grouped[nearest_tasks(codes, train_codes, k=1)[:, 0]]


def nearest_task_average(vectors: Tensor, tasks: Sequence[str], codes: Sequence[str], k: int = 5) -> Tensor:
    """Each code answered with the average of every checkpoint of its ``k`` nearest training tasks, (Q, 1, D)."""
    train_codes, grouped = group_by_task(vectors, tasks)
    return grouped[nearest_tasks(codes, train_codes, k=k)].mean(dim=(1, 2))[:, None]


def gaussian_of_checkpoints(
    vectors: Tensor, codes: Sequence[str], *, num: int = 10, generator: torch.Generator | None = None
) -> Tensor:
    """``num`` draws per code from the per-coordinate Gaussian of all training checkpoints, (Q, num, D).

    The Gaussian ignores the code: it measures what the spread of the collected parameters alone gives.
    """
    return per_coordinate_gaussian(vectors, num=len(codes) * num, generator=generator).reshape(len(codes), num, -1)


def coordinates_of(layout: ParameterLayout, names: Sequence[str]) -> Tensor:
    """The positions in a flat vector of ``layout`` of every value of the parameters ``names``, (n,) int64."""
    unknown = [n for n in names if n not in layout.names]
    if unknown:
        raise ValueError(f"Not generated parameters of the layout: {unknown}; it has {list(layout.names)}")
    starts = np.cumsum([0, *layout.sizes])
    return torch.cat([torch.arange(starts[i], starts[i + 1]) for i, n in enumerate(layout.names) if n in names])


class RidgeTaskMap:
    """Ridge regression from a task's condition to its parameters: the learned non-generative map.

    It is fitted to each training task's mean checkpoint (one sample per task, so every task weighs the same), with
    sklearn's :class:`~sklearn.linear_model.RidgeCV`. One penalty serves every coordinate; it is chosen from
    ``alphas`` by leave-one-task-out error on the parameters (``cv=None``, RidgeCV's efficient form) or by
    ``cv``-fold cross-validation over the tasks.

    Args:
        coordinates: positions (int64) of the values the map predicts; default every value. The others come from
            ``base``.
        base: (D,) the values outside ``coordinates`` (e.g. the backbone's own normalization layers); needed when
            ``coordinates`` is given.
        alphas: the penalties to choose from.
        cv: None for leave-one-task-out, else the number of folds.

    Example:
        ```py
        >>> head = coordinates_of(layout, ["fc.weight", "fc.bias"])
        >>> ridge = RidgeTaskMap(coordinates=head, base=layout.flatten(dict(model.named_parameters())))
        >>> ridge.fit(collected.vectors, collected.tasks)(split.heldout)  # (Q, 1, D)
        ```
    """

    def __init__(
        self,
        coordinates: Tensor | None = None,
        base: Tensor | None = None,
        alphas: Sequence[float] = RIDGE_ALPHAS,
        cv: int | None = None,
    ) -> None:
        if coordinates is not None and base is None:
            raise ValueError("A ridge map over some coordinates needs the base vector that gives the others")
        self.coordinates = coordinates
        self.base = base
        self.regression = RidgeCV(alphas=tuple(alphas), cv=cv)

    @property
    def alpha(self) -> float:
        """The chosen penalty (after :meth:`fit`)."""
        return float(self.regression.alpha_)

    def fit(self, vectors: Tensor, tasks: Sequence[str]) -> RidgeTaskMap:
        """Fit to the training tasks' checkpoints (R, D) and their codes; return ``self``."""
        codes, grouped = group_by_task(vectors, tasks)
        if self.base is not None and self.base.shape != (vectors.shape[1],):
            raise ValueError(f"base has shape {tuple(self.base.shape)}; the checkpoints have {vectors.shape[1]} values")
        means = grouped.mean(dim=1)
        targets = means if self.coordinates is None else means[:, self.coordinates]
        self.regression.fit(task_conditions(codes).double().numpy(), targets.double().numpy())
        self.num_params = vectors.shape[1]
        return self

    def __call__(self, codes: Sequence[str]) -> Tensor:
        """The map's parameters for each code, (Q, 1, D) float32."""
        predicted = torch.from_numpy(self.regression.predict(task_conditions(list(codes)).double().numpy())).float()
        predicted = predicted.reshape(len(codes), -1)
        if self.coordinates is None:
            return predicted[:, None]
        out = self.base.float().expand(len(codes), self.num_params).clone()
        out[:, self.coordinates] = predicted
        return out[:, None]
