"""The evaluation's figures, drawn from an :class:`~pdiff_hub.evaluation.result.EvaluationResult`.

Figures are built with :class:`matplotlib.figure.Figure` rather than pyplot: no GUI backend and no global state,
so they can be written on training machines and from several threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .result import ENSEMBLE, ORIGINAL, PDIFF, EvaluationResult

__all__ = [
    "CALIBRATION_FIGURE",
    "FIGURES",
    "plot_accuracy_calibration",
    "plot_accuracy_distribution",
    "plot_accuracy_vs_max_iou",
    "plot_tsne_latents",
    "write_figures",
]

FIGURES = {
    "accuracy_vs_max_iou": "accuracy_vs_max_iou.png",
    "accuracy_distribution": "accuracy_distribution.png",
    "tsne_latents": "tsne_latents.png",
}
CALIBRATION_FIGURE = {"accuracy_calibration": "accuracy_calibration.png"}
"""Written besides :data:`FIGURES` for an accuracy-prompted pipeline (a result with ``prompts``)."""
_FIXED_COLOURS = {ORIGINAL: "#4d4d4d", ENSEMBLE: "#000000", PDIFF: "#d62728"}
_OTHER_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22"]
_MARKERS = {ORIGINAL: "o", ENSEMBLE: "*", PDIFF: "D"}


def _style(rows: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A (colour, marker) per row: fixed ones for the paper's rows, the rest in order."""
    others = iter(_OTHER_COLOURS * 2)
    marks = iter(["s", "^", "v", "P", "X", "<", ">", "h"] * 2)
    return {row: (_FIXED_COLOURS.get(row) or next(others), _MARKERS.get(row) or next(marks)) for row in rows}


def _scatter_row(ax: Axes, x, y, row: str, colour: str, marker: str, sizes: tuple[int, int]) -> None:
    """One row's models as points; a row of a single model (the ensemble) is drawn large and on top."""
    single = len(x) == 1
    ax.scatter(x, y, s=sizes[1] if single else sizes[0], c=colour, marker=marker, alpha=1.0 if single else 0.6,
               edgecolors="white" if single else "none", linewidths=0.8, label=f"{row} ({len(x)})",
               zorder=3 if single else 2)


def _legend_outside(ax: Axes) -> None:
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="row (models)", markerscale=1.5)


def _save(fig: Figure, path: str | os.PathLike) -> None:
    fig.tight_layout()
    fig.savefig(path)


def plot_accuracy_vs_max_iou(result: EvaluationResult, path: str | os.PathLike) -> None:
    """Scatter of each model's test accuracy against its highest wrong-prediction IoU to any original.

    A point far right is a near copy of a collected checkpoint; far up is accurate. The originals' IoU is to the
    other originals.
    """
    rows = result.setup.rows
    style = _style(rows)
    fig = Figure(figsize=(8, 5.5), dpi=120)
    ax = fig.subplots()
    for row in rows:
        per_model = result.per_model[row]
        _scatter_row(ax, per_model.max_iou, per_model.test_accuracy, row, *style[row], sizes=(18, 160))
    ax.set_xlabel("max IoU of wrong predictions to any original (test split)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against similarity to the collected checkpoints")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    _zoom_on_bulk(ax, result)
    _save(fig, path)


def _zoom_on_bulk(ax: Axes, result: EvaluationResult) -> None:
    """Keep the y range on the originals and the bulk of p-diff, so a collapsed baseline does not flatten the rest.

    Models below the range are counted in a note on the figure; the tables have every value.
    """
    accuracy = {row: np.asarray(result.per_model[row].test_accuracy) for row in result.setup.rows}
    values = np.concatenate(list(accuracy.values()))
    reference = [accuracy[row].min() for row in (ORIGINAL, ENSEMBLE) if row in accuracy]
    if PDIFF in accuracy:
        reference.append(np.percentile(accuracy[PDIFF], 5))
    high = float(values.max())
    low = float(min(reference))
    margin = max(0.1, 0.1 * (high - low))
    hidden = int((values < low - margin).sum())
    if hidden:
        ax.set_ylim(low - margin, high + margin)
        ax.annotate(f"{hidden} model(s) below {low - margin:.2f}% not shown (see the tables)", xy=(0.01, 0.01),
                    xycoords="axes fraction", fontsize=8, color="#555555")


def plot_accuracy_distribution(result: EvaluationResult, path: str | os.PathLike) -> None:
    """Box plot with every model as a point, one column per row; the dashed line is the originals' mean."""
    rows = result.setup.rows
    style = _style(rows)
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(max(7.0, 1.15 * len(rows) + 2), 5.5), dpi=120)
    ax = fig.subplots()
    data = [np.asarray(result.per_model[row].test_accuracy) for row in rows]
    grey = {"color": "#888888"}
    ax.boxplot(data, positions=range(len(rows)), widths=0.55, showfliers=False, medianprops={"color": "black"},
               boxprops=grey, whiskerprops=grey, capprops=grey)
    for i, (row, values) in enumerate(zip(rows, data)):
        colour, marker = style[row]
        single = len(values) == 1
        jitter = np.zeros(1) if single else rng.uniform(-0.18, 0.18, len(values))
        ax.scatter(i + jitter, values, s=120 if single else 12, c=colour, marker=marker, alpha=1.0 if single else 0.55,
                   zorder=3, edgecolors="none")
    mean = result.table[ORIGINAL].mean
    ax.axhline(mean, color=_FIXED_COLOURS[ORIGINAL], linestyle="--", linewidth=1, label=f"originals' mean {mean:.2f}%")
    ax.set_xticks(range(len(rows)), rows, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy of every model, per row")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    _zoom_on_bulk(ax, result)
    _save(fig, path)


def plot_tsne_latents(
    result: EvaluationResult, path: str | os.PathLike, rows: Sequence[str] | None = None, seed: int = 0
) -> None:
    """t-SNE of the autoencoder latents of the originals, the generated models and the baselines.

    The perplexity is 30, or less for small sets (t-SNE needs it below the number of points).

    Args:
        result: the evaluation, with its latents.
        path: the PNG to write.
        rows: the rows to embed; all by default.
        seed: seeds the t-SNE initialisation.
    """
    from sklearn.manifold import TSNE

    rows = list(rows or result.setup.rows)
    style = _style(result.setup.rows)
    latents = [np.asarray(result.latents[row], dtype=np.float64) for row in rows]
    points = np.concatenate(latents)
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    if len(points) <= perplexity:
        perplexity = max(1.0, len(points) - 1.0)
    embedded = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    fig = Figure(figsize=(8, 6), dpi=120)
    ax = fig.subplots()
    start = 0
    for row, block in zip(rows, latents):
        xy = embedded[start : start + len(block)]
        start += len(block)
        _scatter_row(ax, xy[:, 0], xy[:, 1], row, *style[row], sizes=(16, 200))
    title = f"t-SNE of the autoencoder latents (perplexity {perplexity:g})"
    checks = result.checks
    if checks.latents_identical:
        title += (f"\nThe originals' latents are (nearly) identical (std {checks.latent_std_across_originals:.1e}): "
                  "the autoencoder does not tell them apart,\nso the embedding shows duplicates, not structure.")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    _legend_outside(ax)
    _save(fig, path)


def plot_accuracy_calibration(result: EvaluationResult, path: str | os.PathLike) -> None:
    """Accuracy achieved against accuracy prompted, one point per prompt: the validation and the test mean with
    one-standard-error bars, the diagonal (achieved = prompted) and the average of checkpoints' test mean."""
    prompts = list(result.prompts.values())
    prompted = np.array([p.prompted for p in prompts])
    fig = Figure(figsize=(7, 5.5), dpi=120)
    ax = fig.subplots()
    shown = [*prompted]
    if all(p.val_mean is not None for p in prompts):
        val = [p.val_mean for p in prompts]
        ax.errorbar(prompted, val, yerr=[p.val_se or 0.0 for p in prompts], fmt="o", color=_FIXED_COLOURS[PDIFF],
                    capsize=4, label="achieved validation mean")
        shown += val
    test = [p.test_mean for p in prompts]
    ax.errorbar(prompted, test, yerr=[p.test_se or 0.0 for p in prompts], fmt="s", color="#1f77b4", capsize=4,
                label="achieved test mean")
    average = f"average of {result.setup.average_size}"
    if average in result.table:
        ax.axhline(result.table[average].mean, color="#2ca02c", linestyle="--", linewidth=1,
                   label=f"{average}: test mean {result.table[average].mean:.2f}%")
        shown.append(result.table[average].mean)
    low, high = min(shown + test), max(shown + test)
    margin = max(0.1, 0.1 * (high - low))
    ax.plot([low - margin, high + margin], [low - margin, high + margin], ":", color="#555555",
            label="achieved = prompted")
    ax.set_xlabel("prompted validation accuracy (%)")
    ax.set_ylabel("achieved accuracy (%)")
    ax.set_title("Accuracy prompts: achieved against prompted")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", frameon=False, fontsize=8)
    _save(fig, path)


def write_figures(result: EvaluationResult, folder: str | os.PathLike) -> dict[str, str]:
    """Write every figure of :data:`FIGURES` into ``folder``, and :data:`CALIBRATION_FIGURE` for a result with
    accuracy prompts; returns name -> file name (relative to ``folder``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_max_iou(result, folder / FIGURES["accuracy_vs_max_iou"])
    plot_accuracy_distribution(result, folder / FIGURES["accuracy_distribution"])
    plot_tsne_latents(result, folder / FIGURES["tsne_latents"], seed=result.setup.seed)
    if not result.prompts:
        return dict(FIGURES)
    plot_accuracy_calibration(result, folder / CALIBRATION_FIGURE["accuracy_calibration"])
    return {**FIGURES, **CALIBRATION_FIGURE}
