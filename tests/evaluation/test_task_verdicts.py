"""The goals of conditional generation, decided on hand-built numbers either side of each threshold."""

from __future__ import annotations

import pytest

from pdiff_hub.evaluation.task_result import (
    GENERATED,
    HEAD_RIDGE,
    NEAREST,
    RIDGE,
    SGD,
    MethodSummary,
    PairedDifference,
    TaskAccuracy,
    TaskRow,
    TaskTiming,
)
from pdiff_hub.evaluation.task_verdicts import paired_differences, summarize_tasks, task_goals


def _rows(per_method: dict[str, list[float]]) -> list[TaskRow]:
    n = len(next(iter(per_method.values())))
    return [TaskRow(f"{i + 1:04b}", {m: TaskAccuracy(mean=v[i], best=v[i] + 1, n=2) for m, v in per_method.items()})
            for i in range(n)]


def _summary(mean: float) -> MethodSummary:
    return MethodSummary(mean=mean, se=0.1, median=mean, min=mean, max=mean, best_mean=mean, n=20)


def _timing(ratio: float) -> TaskTiming:
    return TaskTiming(generation_s=ratio * 20, generation_s_per_task=ratio, generation_s_per_model=ratio,
                      sgd_s_per_task=1.0, ratio=ratio, features_s=0.1, sgd_s={"0001": 1.0})


def test_summaries_and_paired_differences():
    rows = _rows({GENERATED: [90.0, 92.0, 94.0], SGD: [91.0, 91.0, 97.0], RIDGE: [80.0, 90.0, 90.0]})
    summary = summarize_tasks(rows)
    assert summary[GENERATED].mean == 92.0 and summary[GENERATED].se == pytest.approx(2 / 3**0.5, abs=1e-4)
    assert summary[SGD].median == 91.0 and summary[SGD].min == 91.0 and summary[SGD].best_mean == 94.0
    differences = paired_differences(rows)
    assert set(differences) == {SGD, RIDGE}
    assert differences[SGD].mean == -1.0 and differences[SGD].se == pytest.approx(2 / 3**0.5, abs=1e-4)
    assert differences[RIDGE].mean == pytest.approx(16 / 3, abs=1e-4)
    assert summarize_tasks(rows[:1])[GENERATED].se is None and paired_differences(rows[:1])[SGD].se is None


def _goals(sgd_gap: float, ridge_gap: float, head_gap: float | None, se: float | None, ratio: float, tasks: int = 20):
    summary = {GENERATED: _summary(90.0), SGD: _summary(90.0 - sgd_gap), RIDGE: _summary(90.0 - ridge_gap),
               NEAREST: _summary(80.0)}
    differences = {SGD: PairedDifference(sgd_gap, se, tasks), RIDGE: PairedDifference(ridge_gap, se, tasks),
                   NEAREST: PairedDifference(10.0, se, tasks)}
    if head_gap is not None:
        summary[HEAD_RIDGE] = _summary(90.0 - head_gap)
        differences[HEAD_RIDGE] = PairedDifference(head_gap, se, tasks)
    return task_goals(summary, differences, _timing(ratio), tasks)


def test_every_goal_met():
    goals = _goals(sgd_gap=-0.4, ridge_gap=1.0, head_gap=0.5, se=0.2, ratio=0.001)
    assert {k: g.met for k, g in goals.items()} == {"sgd": True, "ridge": True, "time": True, "heldout_tasks": True}
    assert "goal met" in goals["sgd"].statement and "ridge (head only)" in goals["ridge"].statement
    assert "1e+03 times as fast" in goals["time"].statement


def test_each_goal_can_fail():
    goals = _goals(sgd_gap=-0.6, ridge_gap=1.0, head_gap=0.3, se=0.2, ratio=0.02, tasks=12)
    assert {k: g.met for k, g in goals.items()} == {"sgd": False, "ridge": False, "time": False,
                                                    "heldout_tasks": False}
    assert "not beyond 2 SE" in goals["ridge"].statement and "goal not met" in goals["sgd"].statement
    assert "12" in goals["heldout_tasks"].statement
    # without a standard error (one task) nothing is beaten beyond it; without a head ridge, the full one decides
    assert not _goals(-0.1, 5.0, None, None, 0.001)["ridge"].met
    assert _goals(-0.1, 5.0, None, 0.1, 0.001)["ridge"].met
