"""The task report names every method and states every goal; it renders from metrics.json alone."""

from __future__ import annotations

import json

from pdiff_hub.evaluation.task_report import render_task_report
from pdiff_hub.evaluation.task_result import TaskEvaluationResult, method_label

from .task_family import task_result


def test_report_renders_every_method_goal_and_setting():
    result = TaskEvaluationResult.from_dict(json.loads(json.dumps(task_result().to_dict())))
    report = render_task_report(result, {"heldout_tasks": "heldout_tasks.png"})
    for method in result.setup.methods:
        assert f"| {method_label(method, 3)} |" in report or f"| **{method_label(method, 3)}** |" in report
    for goal in result.goals.values():
        assert goal.statement in report
    assert report.count("**Met.**") + report.count("**Not met.**") == len(result.goals)
    assert "guidance scale 1.5" in report and "**4 held-out tasks**" in report
    assert "all 6 classes (97.50% test accuracy on them)" in report
    assert "![heldout_tasks](heldout_tasks.png)" in report
    for row in result.heldout + result.training:
        assert f"`{row.code}`" in report
    assert "ridge over the head only (3.weight, 3.bias" in report
    assert "Time to a model for a new task" in report and f"{result.timing.sgd_s_per_task:.4g}" in report
