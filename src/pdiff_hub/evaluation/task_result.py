"""The typed result of a task-family evaluation: what :func:`~pdiff_hub.evaluation.task_run.run_task_evaluation`
measured on held-out and training tasks, and the verdicts on the goals of conditional generation.

Every judgement (a goal met or not) is made once, while evaluating, and stored here; the report and the figure
render these fields. ``metrics.json`` is :meth:`TaskEvaluationResult.to_dict`, and
:meth:`TaskEvaluationResult.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AVERAGE",
    "COLLECTED",
    "GAUSSIAN",
    "GENERATED",
    "HEAD_RIDGE",
    "NEAREST",
    "RIDGE",
    "SGD",
    "Goal",
    "MethodSummary",
    "PairedDifference",
    "TaskAccuracy",
    "TaskEvaluationResult",
    "TaskRow",
    "TaskSetup",
    "TaskTiming",
    "method_label",
]

GENERATED, SGD, NEAREST, AVERAGE, GAUSSIAN, RIDGE, HEAD_RIDGE = (
    "generated", "sgd", "nearest", "nearest_average", "gaussian", "ridge", "ridge_head")
"""The methods that answer a held-out task (keys of :attr:`TaskRow.methods`)."""
COLLECTED = "collected"
"""A training task's own collected checkpoints (compared with ``generated`` on the training tasks)."""

_LABELS = {GENERATED: "generated", SGD: "SGD", NEAREST: "nearest training task",
           AVERAGE: "average of the {k} nearest tasks", GAUSSIAN: "Gaussian of all checkpoints",
           RIDGE: "ridge (all values)", HEAD_RIDGE: "ridge (head only)", COLLECTED: "collected checkpoints"}


def method_label(method: str, nearest_k: int = 5) -> str:
    """A method's name for people (the averaging baseline's with its ``k``)."""
    return _LABELS.get(method, method).format(k=nearest_k)


@dataclass
class TaskAccuracy:
    """One method's models for one task: mean test accuracy, the test accuracy of the model best on validation
    (see ``TaskSetup.best_selected_by``), and how many models (percent)."""

    mean: float
    best: float
    n: int


@dataclass
class TaskRow:
    """One task (its code) and each method's :class:`TaskAccuracy` on it."""

    code: str
    methods: dict[str, TaskAccuracy]


@dataclass
class MethodSummary:
    """One method over tasks: statistics of its per-task mean accuracies (``se``: standard error of their mean,
    None for a single task) and the mean over tasks of its per-task best-by-validation accuracy."""

    mean: float
    se: float | None
    median: float
    min: float
    max: float
    best_mean: float
    n: int


@dataclass
class PairedDifference:
    """Generated minus another method, task by task (per-task means): mean and standard error over tasks."""

    mean: float
    se: float | None
    n: int


@dataclass
class Goal:
    """One goal of conditional generation (issue 13), decided: met or not, and the sentence that says why."""

    met: bool
    statement: str


@dataclass
class TaskTiming:
    """Time to a model for a new task, in seconds.

    ``generation_s_per_task``: the held-out pipeline call's wall time over the number of tasks (each task gets
    ``num_models`` models); ``generation_s_per_model``: over the number of models; ``sgd_s_per_task``: the mean of
    ``sgd_s`` (each held-out task's fit alone, one model); ``ratio``: a model by generation over a model by SGD;
    ``features_s``: computing the training split's frozen features once, shared by every fit (not in ``sgd_s``).
    """

    generation_s: float
    generation_s_per_task: float
    generation_s_per_model: float
    sgd_s_per_task: float
    ratio: float
    features_s: float
    sgd_s: dict[str, float]


@dataclass
class TaskSetup:
    """What was evaluated and how.

    ``backbone``: the parameter dataset's task record (``tasks.json``) without its lists of codes;
    ``head_names``: the classifier's generated parameters (the head-only ridge predicts these; None when they are
    every generated value, and that ridge is skipped); ``sgd``: the reference fit's settings (``tasks`` section and
    kept steps); ``methods``: the held-out methods evaluated, in order.
    """

    model_name: str
    param_names: list[str]
    num_params: int
    head_names: list[str] | None
    backbone: dict[str, Any]
    num_classes: int
    num_train_tasks: int
    num_heldout_tasks: int
    num_training_tasks_evaluated: int
    num_models: int
    num_inference_steps: int
    scheduler: str
    guidance_scale: float
    seed: int
    nearest_k: int
    sgd: dict[str, Any]
    split_sizes: dict[str, int]
    full_split_sizes: dict[str, int]
    best_selected_by: str
    methods: list[str]


@dataclass
class TaskEvaluationResult:
    """Everything measured: per held-out task, per training task, summaries, paired differences, timing, goals."""

    setup: TaskSetup
    heldout: list[TaskRow]
    training: list[TaskRow]
    summary: dict[str, MethodSummary]
    training_summary: dict[str, MethodSummary]
    differences: dict[str, PairedDifference]
    timing: TaskTiming
    goals: dict[str, Goal]
    ridge_alphas: dict[str, float]
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``metrics.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEvaluationResult:
        """Read back what :meth:`to_dict` wrote."""

        def rows(items: list[dict]) -> list[TaskRow]:
            return [TaskRow(r["code"], {m: TaskAccuracy(**a) for m, a in r["methods"].items()}) for r in items]

        return cls(
            setup=TaskSetup(**data["setup"]),
            heldout=rows(data["heldout"]),
            training=rows(data["training"]),
            summary={m: MethodSummary(**s) for m, s in data["summary"].items()},
            training_summary={m: MethodSummary(**s) for m, s in data["training_summary"].items()},
            differences={m: PairedDifference(**d) for m, d in data["differences"].items()},
            timing=TaskTiming(**data["timing"]),
            goals={k: Goal(**g) for k, g in data["goals"].items()},
            ridge_alphas=dict(data["ridge_alphas"]),
            timings=dict(data["timings"]),
        )
