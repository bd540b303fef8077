"""The task evaluation's figure: accuracy per held-out task for the generated models and the main references.

Built with :class:`matplotlib.figure.Figure` rather than pyplot (no GUI backend, no global state), as
:mod:`~pdiff_hub.evaluation.figures` does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .task_result import GENERATED, HEAD_RIDGE, NEAREST, RIDGE, SGD, TaskEvaluationResult, method_label

__all__ = ["TASK_FIGURES", "plot_heldout_tasks", "write_task_figures"]

TASK_FIGURES = {"heldout_tasks": "heldout_tasks.png"}
_STYLE = {SGD: ("#000000", "o"), GENERATED: ("#d62728", "D"), NEAREST: ("#1f77b4", "s"), RIDGE: ("#2ca02c", "^"),
          HEAD_RIDGE: ("#9467bd", "v")}


def plot_heldout_tasks(result: TaskEvaluationResult, path: str | os.PathLike) -> None:
    """Mean test accuracy on each held-out task (sorted by SGD's) of generated, nearest task, ridge and SGD."""
    rows = sorted(result.heldout, key=lambda r: r.methods[SGD].mean)
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(6.0, 0.28 * len(rows) + 3), 4.2))
    ax = fig.add_subplot()
    for method, (colour, marker) in _STYLE.items():
        if method in rows[0].methods:
            y = [r.methods[method].mean for r in rows]
            ax.plot(x, y, marker=marker, color=colour, linestyle="-" if method == SGD else "none", markersize=5,
                    alpha=0.9, label=method_label(method, result.setup.nearest_k))
    ax.set_xticks(x)
    ax.set_xticklabels([r.code for r in rows], rotation=90, fontsize=7, family="monospace")
    ax.set_xlabel("held-out task (code; sorted by SGD accuracy)")
    ax.set_ylabel("mean test accuracy on the task (%)")
    ax.set_title(f"{len(rows)} held-out tasks, guidance scale {result.setup.guidance_scale:g}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def write_task_figures(result: TaskEvaluationResult, folder: str | os.PathLike) -> dict[str, str]:
    """Write every figure of :data:`TASK_FIGURES` into ``folder``; returns name -> file name (relative to it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_heldout_tasks(result, folder / TASK_FIGURES["heldout_tasks"])
    return dict(TASK_FIGURES)
