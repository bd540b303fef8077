"""Summaries over tasks, paired differences and the verdicts on issue 13's goals for conditional generation.

The goals, for the held-out tasks (issue 13, point 5):

* the generated models' mean accuracy is within 0.5 point of SGD's (no more than 0.5 point below it);
* it is above the best non-generative map, both ridge variants, by more than 2 standard errors of the paired
  difference across tasks;
* a model for a new task takes less than 1/100 of SGD's wall time;
* over at least 20 held-out tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .task_result import (
    GENERATED,
    HEAD_RIDGE,
    RIDGE,
    SGD,
    Goal,
    MethodSummary,
    PairedDifference,
    TaskRow,
    TaskTiming,
    method_label,
)

__all__ = ["MAX_BELOW_SGD", "MIN_HELDOUT_TASKS", "MIN_SPEEDUP", "paired_differences", "summarize_tasks", "task_goals"]

MAX_BELOW_SGD = 0.5
"""Points the generated models' mean may fall below SGD's."""
MIN_SPEEDUP = 100.0
"""How many times faster than SGD a model for a new task must come."""
MIN_HELDOUT_TASKS = 20
"""Held-out tasks the goals are stated over."""


def summarize_tasks(rows: Sequence[TaskRow]) -> dict[str, MethodSummary]:
    """Each method over the tasks of ``rows``: its per-task means' statistics and the mean of its per-task bests."""
    summary = {}
    for method in rows[0].methods:
        means = np.array([r.methods[method].mean for r in rows])
        best = np.array([r.methods[method].best for r in rows])
        summary[method] = MethodSummary(mean=_r(means.mean()), se=_se(means), median=_r(np.median(means)),
                                        min=_r(means.min()), max=_r(means.max()), best_mean=_r(best.mean()),
                                        n=len(means))
    return summary


def paired_differences(rows: Sequence[TaskRow]) -> dict[str, PairedDifference]:
    """Generated minus each other method, task by task on the per-task means; keyed by the other method."""
    generated = np.array([r.methods[GENERATED].mean for r in rows])
    differences = {}
    for method in rows[0].methods:
        if method != GENERATED:
            d = generated - np.array([r.methods[method].mean for r in rows])
            differences[method] = PairedDifference(mean=_r(d.mean()), se=_se(d), n=len(d))
    return differences


def task_goals(summary: Mapping[str, MethodSummary], differences: Mapping[str, PairedDifference], timing: TaskTiming,
               num_tasks: int) -> dict[str, Goal]:
    """The verdict on each goal, with a sentence that states it plainly."""
    gen = summary[GENERATED].mean
    sgd = differences[SGD]
    met = sgd.mean >= -MAX_BELOW_SGD
    goals = {"sgd": Goal(met, (
        f"Generated models {'are' if met else 'are not'} within {MAX_BELOW_SGD} point of SGD on the held-out tasks: "
        f"{gen:.2f}% vs {summary[SGD].mean:.2f}% ({_signed(sgd)}): goal {_word(met)}."))}

    ridges = [m for m in (RIDGE, HEAD_RIDGE) if m in differences]
    beaten = {m: differences[m].se is not None and differences[m].mean > 2 * differences[m].se for m in ridges}
    met = all(beaten.values())
    parts = "; ".join(f"{method_label(m)} {summary[m].mean:.2f}% ({_signed(differences[m])}, "
                      f"{'beyond' if beaten[m] else 'not beyond'} 2 SE)" for m in ridges)
    goals["ridge"] = Goal(met, (
        f"Generated models {'are' if met else 'are not'} above every non-generative map by more than 2 standard "
        f"errors: generated {gen:.2f}%; {parts}: goal {_word(met)}."))

    speedup = 1 / timing.ratio if timing.ratio > 0 else float("inf")
    met = timing.ratio < 1 / MIN_SPEEDUP
    goals["time"] = Goal(met, (
        f"A model for a new task takes {timing.generation_s_per_model:.4g} s by generation (in a batch of "
        f"{timing.generation_s_per_task / timing.generation_s_per_model:.0f} per task) and "
        f"{timing.sgd_s_per_task:.4g} s by SGD (generation is {speedup:.3g} times as fast; at least "
        f"{MIN_SPEEDUP:g} times is asked): goal {_word(met)}."))

    met = num_tasks >= MIN_HELDOUT_TASKS
    goals["heldout_tasks"] = Goal(met, (
        f"The goals are stated over at least {MIN_HELDOUT_TASKS} held-out tasks; this evaluation has {num_tasks}: "
        f"{'enough' if met else 'too few, so the verdicts above are indicative only'}."))
    return goals


def _se(values: np.ndarray) -> float | None:
    """Standard error of the mean across tasks (ddof=1); None for a single task."""
    return _r(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def _r(value: float) -> float:
    """Rounded for the file: accuracies are in percent, four decimals is far below any difference that matters."""
    return round(float(value), 4)


def _signed(d: PairedDifference) -> str:
    se = "SE n/a" if d.se is None else f"SE {d.se:.2f}"
    return f"{d.mean:+.2f} points, {se}"


def _word(met: bool) -> str:
    return "met" if met else "not met"
