"""The evaluation report: figures and a markdown page from the metrics of :func:`~pdiff_hub.evaluate.run_evaluation`.

Every sentence of the report is computed from the numbers: which rows p-diff beats, by how much, and whether the
difference is larger than the noise between models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .evaluate import standard_error_of_difference  # noqa: E402

__all__ = [
    "FIGURES",
    "plot_accuracy_distribution",
    "plot_accuracy_vs_max_iou",
    "plot_tsne_latents",
    "render_report",
    "write_figures",
]

FIGURES = {
    "accuracy_vs_max_iou": "accuracy_vs_max_iou.png",
    "accuracy_distribution": "accuracy_distribution.png",
    "tsne_latents": "tsne_latents.png",
}
_FIXED_COLOURS = {"original": "#4d4d4d", "ensemble": "#000000", "p-diff": "#d62728"}
_OTHER_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22"]
_MARKERS = {"original": "o", "ensemble": "*", "p-diff": "D"}


def _style(rows: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A (colour, marker) per row: fixed ones for the paper's rows, the rest in order."""
    others = iter(_OTHER_COLOURS * 2)
    marks = iter(["s", "^", "v", "P", "X", "<", ">", "h"] * 2)
    return {row: (_FIXED_COLOURS.get(row) or next(others), _MARKERS.get(row) or next(marks)) for row in rows}


def _scatter_row(ax, x, y, row: str, colour, marker: str, sizes: tuple[int, int]) -> None:
    """One row's models as points; a row of a single model (the ensemble) is drawn large and on top."""
    single = len(x) == 1
    ax.scatter(x, y, s=sizes[1] if single else sizes[0], c=colour, marker=marker, alpha=1.0 if single else 0.6,
               edgecolors="white" if single else "none", linewidths=0.8, label=f"{row} ({len(x)})",
               zorder=3 if single else 2)


def plot_accuracy_vs_max_iou(metrics: Mapping, path: str | os.PathLike) -> None:
    """Scatter of each model's test accuracy against its highest wrong-prediction IoU to any original.

    A point far right is a near copy of a collected checkpoint; far up is accurate. The originals' IoU is to the
    other originals.
    """
    rows = metrics["setup"]["rows"]
    style = _style(rows)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for row in rows:
        per_model = metrics["per_model"][row]
        colour, marker = style[row]
        _scatter_row(ax, per_model["max_iou"], per_model["test_accuracy"], row, colour, marker, sizes=(18, 160))
    ax.set_xlabel("max IoU of wrong predictions to any original (test split)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against similarity to the collected checkpoints")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="row (models)", markerscale=1.5)
    _zoom_on_bulk(ax, metrics, rows)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _zoom_on_bulk(ax: plt.Axes, metrics: Mapping, rows: Sequence[str]) -> None:
    """Keep the y range on the originals and the bulk of p-diff, so a collapsed baseline does not flatten the rest.

    Models below the range are counted in a note on the figure; the tables have every value.
    """
    accuracy = {row: np.asarray(metrics["per_model"][row]["test_accuracy"]) for row in rows}
    values = np.concatenate(list(accuracy.values()))
    reference = [accuracy[row].min() for row in ("original", "ensemble") if row in accuracy]
    if "p-diff" in accuracy:
        reference.append(np.percentile(accuracy["p-diff"], 5))
    high = float(values.max())
    low = float(min(reference))
    margin = max(0.1, 0.1 * (high - low))
    hidden = int((values < low - margin).sum())
    if hidden:
        ax.set_ylim(low - margin, high + margin)
        ax.annotate(
            f"{hidden} model(s) below {low - margin:.2f}% not shown (see the tables)",
            xy=(0.01, 0.01),
            xycoords="axes fraction",
            fontsize=8,
            color="#555555",
        )


def plot_accuracy_distribution(metrics: Mapping, path: str | os.PathLike) -> None:
    """Box plot with every model as a point, one column per row; the dashed line is the originals' mean."""
    rows = metrics["setup"]["rows"]
    style = _style(rows)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.15 * len(rows) + 2), 5.5), dpi=120)
    data = [np.asarray(metrics["per_model"][row]["test_accuracy"]) for row in rows]
    ax.boxplot(
        data,
        positions=range(len(rows)),
        widths=0.55,
        showfliers=False,
        medianprops={"color": "black"},
        boxprops={"color": "#888888"},
        whiskerprops={"color": "#888888"},
        capprops={"color": "#888888"},
    )
    for i, (row, values) in enumerate(zip(rows, data)):
        colour, marker = style[row]
        jitter = rng.uniform(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(
            i + jitter,
            values,
            s=120 if len(values) == 1 else 12,
            c=colour,
            marker=marker,
            alpha=1.0 if len(values) == 1 else 0.55,
            zorder=3,
            edgecolors="none",
        )
    mean = metrics["table"]["original"]["mean"]
    ax.axhline(
        mean, color=_FIXED_COLOURS["original"], linestyle="--", linewidth=1, label=f"originals' mean {mean:.2f}%"
    )
    ax.set_xticks(range(len(rows)), rows, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy of every model, per row")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    _zoom_on_bulk(ax, metrics, rows)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_tsne_latents(
    metrics: Mapping, path: str | os.PathLike, rows: Sequence[str] | None = None, seed: int = 0
) -> None:
    """t-SNE of the autoencoder latents of the originals, the generated models and the baselines.

    The perplexity is 30, or less for small sets (t-SNE needs it below the number of points).

    Args:
        metrics: the output of ``run_evaluation``, with its ``latents``.
        path: the PNG to write.
        rows: the rows to embed; all by default.
        seed: seeds the t-SNE initialisation.
    """
    from sklearn.manifold import TSNE

    rows = list(rows or metrics["setup"]["rows"])
    style = _style(metrics["setup"]["rows"])
    latents = [np.asarray(metrics["latents"][row], dtype=np.float64) for row in rows]
    points = np.concatenate(latents)
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    if len(points) <= perplexity:
        perplexity = max(1.0, len(points) - 1.0)
    embedded = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    start = 0
    for row, block in zip(rows, latents):
        xy = embedded[start : start + len(block)]
        start += len(block)
        colour, marker = style[row]
        _scatter_row(ax, xy[:, 0], xy[:, 1], row, colour, marker, sizes=(16, 200))
    title = f"t-SNE of the autoencoder latents (perplexity {perplexity:g})"
    spread = metrics.get("checks", {}).get("latent_std_across_originals")
    if spread is not None and spread < 1e-3:
        title += (f"\nThe originals' latents are (nearly) identical (std {spread:.1e}): the autoencoder does not "
                  "tell them apart,\nso the embedding shows duplicates, not structure.")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="row (models)", markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_figures(metrics: Mapping, folder: str | os.PathLike) -> dict[str, str]:
    """Write every figure of :data:`FIGURES` into ``folder``; returns name -> file name (relative to ``folder``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_max_iou(metrics, folder / FIGURES["accuracy_vs_max_iou"])
    plot_accuracy_distribution(metrics, folder / FIGURES["accuracy_distribution"])
    plot_tsne_latents(metrics, folder / FIGURES["tsne_latents"], seed=metrics["setup"].get("seed", 0))
    return dict(FIGURES)


# ---------------------------------------------------------------------------------------------------- markdown


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _compare(what: str, ours: float, theirs: float, note: str = "") -> str:
    margin = ours - theirs
    if abs(margin) < 0.005:
        return f"{what} ties ({ours:.2f}%)"
    side = "higher" if margin > 0 else "lower"
    return f"{what} is {side} ({ours:.2f}% vs {theirs:.2f}%, {margin:+.2f} points{note})"


def _verdict_sentences(metrics: Mapping) -> list[str]:
    table, verdict = metrics["table"], metrics["verdict"]
    iou = {row: metrics["similarity"]["rows"][row]["max_iou"]["mean"] for row in table}
    ours = table["p-diff"]
    lines = []
    for row, v in verdict.items():
        theirs = table[row]
        se = standard_error_of_difference(ours, theirs)
        note = "" if se is None else f", {'within' if abs(v['mean_margin']) < 2 * se else 'beyond'} 2 SE = {2 * se:.2f}"
        mean_text = _compare("mean", ours["mean"], theirs["mean"], note)
        best_text = _compare("best", ours["best"], theirs["best"])
        if v["more_novel"]:
            novelty = "its models are more novel" + ("" if v["mean_beats"] else ", but less accurate")
        elif v["max_iou_margin"] > 0:
            novelty = "its models are closer copies of the originals"
        else:
            novelty = "its models are as close to the originals"
        novelty += f" (mean max IoU to the originals {iou['p-diff']:.3f} vs {iou[row]:.3f})"
        lines.append(f"- vs **{row}**: p-diff's {mean_text}; its {best_text}; {novelty}.")
    return lines


def _headline(metrics: Mapping) -> str:
    verdict = metrics["verdict"]
    both = [row for row, v in verdict.items() if v["mean_beats"] and v["best_beats"]]
    mean_only = [row for row, v in verdict.items() if v["mean_beats"] and not v["best_beats"]]
    best_only = [row for row, v in verdict.items() if v["best_beats"] and not v["mean_beats"]]
    neither = [row for row, v in verdict.items() if not v["mean_beats"] and not v["best_beats"]]

    def names(rows: list[str]) -> str:
        return ", ".join(f"**{r}**" for r in rows)

    parts = []
    if both:
        parts.append(f"p-diff beats {names(both)} in both mean and best test accuracy")
    if mean_only:
        parts.append(f"beats {names(mean_only)} in mean but not in best")
    if best_only:
        parts.append(f"beats {names(best_only)} in best but not in mean")
    if neither:
        parts.append(f"does not beat {names(neither)} in mean or best")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + " (a mean counts as beaten only when the gap exceeds two standard errors)."


def _check_lines(checks: Mapping) -> list[str]:
    lines = []
    gap = checks.get("max_recorded_vs_recomputed_test_accuracy")
    if gap is not None:
        lines.append(f"- Originals' test accuracy recomputed here vs recorded at collection: largest difference "
                     f"{gap:.4f} points{' (the splits may differ from the collection run)' if gap > 0.1 else ''}.")
    ratio = checks.get("reconstruction_vs_mean_error")
    if ratio is not None:
        lines.append(f"- Autoencoder reconstruction error of the originals / error of predicting their mean: "
                     f"{ratio:.3f}.{f' **{_COLLAPSE}**' if ratio > 0.5 else ''}")
    if checks.get("latent_std_across_originals") is not None:
        lines.append(f"- Latents of the originals: std across checkpoints {checks['latent_std_across_originals']:.2e}"
                     f", {100 * checks['saturated_latent_fraction']:.1f}% of values saturated (|z| > 0.99).")
    nearest = checks.get("latent_nearest_original")
    if nearest is not None:
        lines.append(f"- Latent distance to the nearest original's latent (the models encoded): p-diff "
                     f"{nearest['p-diff']:.3f}, originals (to the nearest other original) {nearest['original']:.3f}.")
    return lines


_COLLAPSE = ("The autoencoder reconstructs the checkpoints no better than their mean: its latents do not tell them "
             "apart, so every decoded model is (a perturbation of) the mean checkpoint.")


def render_report(metrics: Mapping, figures: Mapping[str, str]) -> str:
    """The evaluation report as markdown: setup, Table 1, similarity, verdict sentences and the figures.

    Args:
        metrics: the output of :func:`~pdiff_hub.evaluate.run_evaluation` (or its JSON round trip).
        figures: figure name -> path relative to the report (see :func:`write_figures`).
    """
    setup, table, sim = metrics["setup"], metrics["table"], metrics["similarity"]
    rows = setup["rows"]
    full_sizes = setup.get("full_split_sizes", {})
    split_sizes = ", ".join(
        f"{k} {v:,}" + (f" (a random subset of {full_sizes[k]:,})" if full_sizes.get(k, v) != v else "")
        for k, v in setup["split_sizes"].items()
    )
    out = [
        f"# p-diff evaluation: {setup['model_name']}",
        "",
        f"{setup['num_models']} models generated in one batch ({setup['scheduler'].upper()}, "
        f"{setup['num_inference_steps']} steps, seed {setup['seed']}) from {setup['num_originals']} collected "
        f"checkpoints of {setup['num_params']:,} parameters ({', '.join(setup['param_names'][:6])}"
        f"{', ...' if len(setup['param_names']) > 6 else ''}). Splits: {split_sizes}.",
        "",
        *([f"> **Warning:** {_COLLAPSE}", ""] if (metrics.get("checks", {}).get("reconstruction_vs_mean_error") or 0)
          > 0.5 else []),
        "## Table 1",
        "",
        f"Test accuracy (%). **best** is the test accuracy of the model chosen by {setup['best_selected_by']} "
        'accuracy; "original" are the collected checkpoints, "ensemble" their weight average (one model), and '
        "the rows below p-diff are the baselines of the memorization critique (noise-added checkpoints, averages of "
        "random checkpoints, a per-coordinate Gaussian), with as many models as p-diff.",
        "",
        "| row | best | mean | median | std | min | max | n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        t = table[row]
        name = f"**{row}**" if row == "p-diff" else row
        out.append(
            f"| {name} | {_fmt(t['best'])} | {_fmt(t['mean'])} | {_fmt(t['median'])} | {_fmt(t['std'])} | "
            f"{_fmt(t['min'])} | {_fmt(t['max'])} | {t['n']} |"
        )
    out += [
        "",
        "## Does p-diff beat the baselines?",
        "",
        _headline(metrics),
        "",
        *_verdict_sentences(metrics),
        "",
        "## Similarity to the collected checkpoints",
        "",
        "IoU of the sets of test samples two models get wrong (1 = the same mistakes), and the L2 distance of each "
        "parameter vector to its nearest original. For the originals, both are to the *other* originals.",
        "",
        f"Mean IoU among originals {_fmt(sim['mean_iou_among_originals'], 3)}, among generated "
        f"{_fmt(sim['mean_iou_among_generated'], 3)}, between generated and originals "
        f"{_fmt(sim['mean_iou_between'], 3)}.",
        "",
        "| row | max IoU to originals: mean | median | min | mean IoU within row | nearest L2: mean | median | min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = sim["rows"][row]
        m, d = s["max_iou"], s["nearest_l2"]
        out.append(
            f"| {row} | {_fmt(m['mean'], 3)} | {_fmt(m['median'], 3)} | {_fmt(m['min'], 3)} | "
            f"{_fmt(s['mean_iou_within'], 3)} | {_fmt(d['mean'], 4)} | {_fmt(d['median'], 4)} | "
            f"{_fmt(d['min'], 4)} |"
        )
    captions = {
        "accuracy_vs_max_iou": "Test accuracy against max IoU to the originals (right = a near copy).",
        "accuracy_distribution": "Test accuracy of every model; dashed: the originals' mean.",
        "tsne_latents": "t-SNE of the autoencoder latents.",
    }
    out += ["", "## Figures", ""]
    for name, file in figures.items():
        out += [f"![{name}]({file})", "", f"*{captions.get(name, name)}*", ""]
    timings = metrics.get("timings", {})
    out += ["## Checks", "", *_check_lines(metrics.get("checks", {}))]
    if timings:
        out.append("- Timings (s): " + ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in timings.items()) + ".")
    return "\n".join(out).rstrip() + "\n"
