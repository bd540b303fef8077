"""The figures are drawn from a result, and the t-SNE caption follows the stored check."""

from pathlib import Path

import pytest

from pdiff_hub.evaluation.figures import FIGURES, plot_tsne_latents, write_figures
from pdiff_hub.evaluation.result import EvaluationResult

from .helpers import hand_built_result
from .test_report import verdict


def test_write_figures_from_a_metrics_json_round_trip(result, tmp_path):
    figures = write_figures(EvaluationResult.from_dict(result.to_dict()), tmp_path)
    assert figures == FIGURES
    for file in figures.values():
        assert (tmp_path / file).stat().st_size > 10_000


def test_tsne_title_renders_the_identical_latents_check(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr("matplotlib.axes.Axes.set_title", lambda self, label, **kw: titles.append(label))
    result = hand_built_result({"gaussian": verdict()})
    plot_tsne_latents(result, tmp_path / "a.png")
    result.checks.latents_identical = True
    plot_tsne_latents(result, tmp_path / "b.png")
    assert "identical" not in titles[0]
    assert "The originals' latents are (nearly) identical (std 2.0e-01)" in titles[1]
    assert all(Path(tmp_path / name).is_file() for name in ("a.png", "b.png"))


@pytest.mark.parametrize("rows", [["original", "p-diff"], None])
def test_tsne_of_chosen_rows(tmp_path, rows):
    plot_tsne_latents(hand_built_result({"gaussian": verdict()}), tmp_path / "t.png", rows=rows)
    assert (tmp_path / "t.png").stat().st_size > 5_000
