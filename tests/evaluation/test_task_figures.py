"""The held-out task figure is a PNG written where asked."""

from __future__ import annotations

from pdiff_hub.evaluation.task_figures import TASK_FIGURES, write_task_figures

from .task_family import task_result


def test_heldout_figure_is_written(tmp_path):
    written = write_task_figures(task_result(), tmp_path / "out")
    assert written == TASK_FIGURES
    data = (tmp_path / "out" / TASK_FIGURES["heldout_tasks"]).read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
