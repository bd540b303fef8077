"""The evaluation report: a markdown page rendered from an :class:`~pdiff_hub.evaluation.result.EvaluationResult`.

The report decides nothing: which rows p-diff beats, ties, "within" or "beyond" two standard errors and the checks'
warnings are the result's verdicts (see :mod:`~pdiff_hub.evaluation.verdicts`), written out in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .checks import LATENT_DISTANCE_RATIO
from .prompts import standard_error
from .result import ENSEMBLE, GAUSSIAN, ORIGINAL, PDIFF, Checks, EvaluationResult, Outcome, PromptResult, Verdict

__all__ = ["render_report"]

COLLAPSE = ("The autoencoder reconstructs the checkpoints no better than their mean: its latents do not tell them "
            "apart, so every decoded model is (a perturbation of) the mean checkpoint.")
SATURATION = ("Most of the originals' latent values are saturated (|z| > 0.99): the autoencoder encodes the "
              "checkpoints as +-1 codes, and the decoder was never trained between them, where the denoiser's "
              "samples land. A normalized latent avoids it (autoencoder.latent_norm 'layer', bound_latent false).")
OFF_ORIGINALS = ("The generated models' latents lie more than {ratio:g}x the originals' own spacing from the nearest "
                 "original: the denoiser samples between the training latents rather than where they are.")
_CAPTIONS = {
    "accuracy_vs_max_iou": "Test accuracy against max IoU to the originals (right = a near copy).",
    "accuracy_distribution": "Test accuracy of every model; dashed: the originals' mean.",
    "tsne_latents": "t-SNE of the autoencoder latents.",
    "accuracy_calibration": "Accuracy achieved against accuracy prompted (mean ± 1 SE); dotted: achieved = prompted.",
}
_NOVELTY = {
    "lower": "its models are more novel",
    "higher": "its models are closer copies of the originals",
    "tie": "its models are as close to the originals",
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _comparison(what: str, outcome: Outcome, ours: float, theirs: float, margin: float, note: str = "") -> str:
    if outcome == "tie":
        return f"{what} ties ({ours:.2f}%)"
    return f"{what} is {outcome} ({ours:.2f}% vs {theirs:.2f}%, {margin:+.2f} points{note})"


def _se_note(v: Verdict) -> str:
    if v.mean_two_se is None:
        return ""
    return f", {'within' if v.mean_within_2se else 'beyond'} 2 SE = {v.mean_two_se:.2f}"


def _verdict_sentence(result: EvaluationResult, row: str, v: Verdict) -> str:
    ours, theirs = result.table[PDIFF], result.table[row]
    note = _se_note(v)
    mean_text = _comparison("mean", v.mean_outcome, ours.mean, theirs.mean, v.mean_margin, note)
    best_text = _comparison("best", v.best_outcome, ours.best, theirs.best, v.best_margin)
    novelty = _NOVELTY[v.max_iou_outcome]
    if v.more_novel and not v.mean_beats:
        novelty += ", but not more accurate"
    iou = result.similarity.rows
    novelty += f" (mean max IoU to the originals {iou[PDIFF].max_iou.mean:.3f} vs {iou[row].max_iou.mean:.3f})"
    return f"- vs **{row}**: p-diff's {mean_text}; its {best_text}; {novelty}."


def _headline(verdict: Mapping[str, Verdict]) -> str:
    groups = {
        "p-diff beats {} in both mean and best test accuracy": lambda v: v.mean_beats and v.best_beats,
        "beats {} in mean but not in best": lambda v: v.mean_beats and not v.best_beats,
        "beats {} in best but not in mean": lambda v: v.best_beats and not v.mean_beats,
        "does not beat {} in mean or best": lambda v: not v.mean_beats and not v.best_beats,
    }
    parts = []
    for sentence, member in groups.items():
        rows = [row for row, v in verdict.items() if member(v)]
        if rows:
            parts.append(sentence.format(", ".join(f"**{r}**" for r in rows)))
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + " (a mean counts as beaten only when the gap exceeds two standard errors)."


def _check_lines(checks: Checks) -> list[str]:
    lines = []
    gap = checks.max_recorded_vs_recomputed_test_accuracy
    if gap is not None:
        suspect = " (the splits may differ from the collection run)" if checks.recorded_accuracy_mismatch else ""
        lines.append(f"- Originals' test accuracy recomputed here vs recorded at collection: largest difference "
                     f"{gap:.4f} points{suspect}.")
    ratio = checks.reconstruction_vs_mean_error
    if ratio is not None:
        lines.append(f"- Autoencoder reconstruction error of the originals / error of predicting their mean: "
                     f"{ratio:.3f}.{f' **{COLLAPSE}**' if checks.autoencoder_collapsed else ''}")
    lines.append(f"- Latents of the originals: std across checkpoints {checks.latent_std_across_originals:.2e}, "
                 f"{100 * checks.saturated_latent_fraction:.1f}% of values saturated (|z| > 0.99).")
    nearest = checks.latent_nearest_original
    if nearest is not None:
        ratio = nearest[PDIFF] / nearest["original"] if nearest["original"] > 0 else math.inf
        lines.append(f"- Latent distance to the nearest original's latent (the models encoded): p-diff "
                     f"{nearest[PDIFF]:.3f}, originals (to the nearest other original) {nearest['original']:.3f}: "
                     f"{ratio:.1f}x (goal: within {LATENT_DISTANCE_RATIO:g}x).")
    return lines


_PROMPT_NOVELTY = {"lower": "more novel", "higher": "closer copies of the originals",
                   "tie": "as close to the originals"}


def _pm(mean: float | None, se: float | None) -> str:
    return _fmt(mean) + (f" ± {se:.2f}" if mean is not None and se is not None else "")


def _goal_statement(result: EvaluationResult) -> str:
    return (f"beats the **average of {result.setup.average_size}** in mean test accuracy (beyond 2 SE) at a lower "
            "mean max IoU to the originals")


def _prompt_comparisons(result: EvaluationResult, row: str, prompt: PromptResult) -> str:
    parts = []
    for ref, v in prompt.versus.items():
        note = _se_note(v)
        theirs = result.table[ref]
        mean_text = _comparison("mean", v.mean_outcome, prompt.test_mean, theirs.mean, v.mean_margin, note)
        best_text = _comparison("best", v.best_outcome, prompt.best, theirs.best, v.best_margin)
        iou = result.similarity.rows[ref].max_iou.mean
        parts.append(f"vs {ref}: {mean_text}, {best_text}, {_PROMPT_NOVELTY[v.max_iou_outcome]} "
                     f"(mean max IoU {prompt.mean_max_iou:.3f} vs {iou:.3f})")
    return f"- **{row}**: " + "; ".join(parts) + "."


def _prompt_section(result: EvaluationResult) -> list[str]:
    """The section "Accuracy prompts": calibration, the prompted models against the references, the goal."""
    setup, sim = result.setup, result.similarity
    average = f"average of {setup.average_size}"
    out = [
        "## Accuracy prompts",
        "",
        f"The pipeline was trained conditioned on each checkpoint's validation accuracy; each row **p-diff @ a** holds "
        f"{setup.num_models} models generated for validation accuracy a (all prompts in one call, from p-diff's "
        f"seed). Prompts: {', '.join(f'{a:.2f}' for a in setup.accuracy_prompts)} (%). Achieved accuracies are "
        "measured here (mean ± standard error of the mean); best is the test accuracy of the model chosen on "
        f"{setup.best_selected_by}.",
        "",
        "| row | prompted val | achieved val | achieved − prompted | test mean | best | mean max IoU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row, p in result.prompts.items():
        out.append(f"| **{row}** | {p.prompted:.2f} | {_pm(p.val_mean, p.val_se)} | "
                   f"{'n/a' if p.val_minus_prompted is None else f'{p.val_minus_prompted:+.2f}'} | "
                   f"{_pm(p.test_mean, p.test_se)} | {_fmt(p.best)} | {_fmt(p.mean_max_iou, 3)} |")
    for ref in (ORIGINAL, ENSEMBLE, average, GAUSSIAN):
        if ref in result.table:
            val = result.val_table[ref].mean if result.val_table else None
            t = result.table[ref]
            out.append(f"| {ref} | | {_fmt(val)} | | {_pm(t.mean, standard_error(t))} | {_fmt(t.best)} | "
                       f"{_fmt(sim.rows[ref].max_iou.mean, 3)} |")
    met = [row for row, p in result.prompts.items() if p.goal_met]
    out += ["", *(_prompt_comparisons(result, row, p) for row, p in result.prompts.items()), "",
            f"**Goal** (no published method has reached it): a row of prompted models that {_goal_statement(result)}.",
            ""]
    for row, p in result.prompts.items():
        v = p.versus.get(average)
        detail = "" if v is None else (
            f" (mean {v.mean_margin:+.2f} points"
            + ("" if v.mean_two_se is None else f", 2 SE = {v.mean_two_se:.2f}")
            + f"; mean max IoU {p.mean_max_iou:.3f} vs {sim.rows[average].max_iou.mean:.3f})")
        out.append(f"- {row}: {'**met**' if p.goal_met else '**not met**'}{detail}.")
    out += ["", f"The goal is {'met' if met else 'not met'}: {len(met)} of {len(result.prompts)} prompts.", ""]
    return out


def _split_sizes(result: EvaluationResult) -> str:
    full = result.setup.full_split_sizes
    return ", ".join(f"{split} {n:,}" + (f" (a random subset of {full[split]:,})" if full.get(split, n) != n else "")
                     for split, n in result.setup.split_sizes.items())


def render_report(result: EvaluationResult, figures: Mapping[str, str]) -> str:
    """The evaluation report as markdown: setup, Table 1, verdict sentences, similarity, figures and checks.

    Args:
        result: the output of :func:`~pdiff_hub.evaluation.run.run_evaluation` (or
            :meth:`~pdiff_hub.evaluation.result.EvaluationResult.from_dict` of a ``metrics.json``).
        figures: figure name -> path relative to the report (see :func:`~pdiff_hub.evaluation.figures.write_figures`).
    """
    setup, sim = result.setup, result.similarity
    names = ", ".join(setup.param_names[:6]) + (", ..." if len(setup.param_names) > 6 else "")
    out = [
        f"# p-diff evaluation: {setup.model_name}",
        "",
        f"{setup.num_models} models generated in one batch ({setup.scheduler.upper()}, "
        f"{setup.num_inference_steps} steps, seed {setup.seed}) from {setup.num_originals} collected "
        f"checkpoints of {setup.num_params:,} parameters ({names}). Splits: {_split_sizes(result)}.",
        "",
        *([f"> **Warning:** {COLLAPSE}", ""] if result.checks.autoencoder_collapsed else []),
        *([f"> **Warning:** {SATURATION}", ""] if result.checks.latents_saturated else []),
        *([f"> **Warning:** {OFF_ORIGINALS.format(ratio=LATENT_DISTANCE_RATIO)}", ""]
          if result.checks.generated_off_originals else []),
        "## Table 1",
        "",
        f"Test accuracy (%). **best** is the test accuracy of the model chosen by {setup.best_selected_by} "
        'accuracy; "original" are the collected checkpoints, "ensemble" their weight average (one model), and '
        "the rows below p-diff are the baselines of the memorization critique (noise-added checkpoints, averages of "
        "random checkpoints, a per-coordinate Gaussian), with as many models as p-diff.",
        *([] if not result.prompts else [
            "", 'Rows "p-diff @ a" are the same pipeline prompted for validation accuracy a (see Accuracy prompts); '
            '"p-diff" is its unconditional sampling.']),
        "",
        "| row | best | mean | median | std | min | max | n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in setup.rows:
        t = result.table[row]
        name = f"**{row}**" if row == PDIFF else row
        out.append(f"| {name} | {_fmt(t.best)} | {_fmt(t.mean)} | {_fmt(t.median)} | {_fmt(t.std)} | "
                   f"{_fmt(t.min)} | {_fmt(t.max)} | {t.n} |")
    out += [
        "",
        "## Does p-diff beat the baselines?",
        "",
        _headline(result.verdict),
        "",
        *(_verdict_sentence(result, row, v) for row, v in result.verdict.items()),
        "",
        *(_prompt_section(result) if result.prompts else []),
        "## Similarity to the collected checkpoints",
        "",
        "IoU of the sets of test samples two models get wrong (1 = the same mistakes), and the L2 distance of each "
        "parameter vector to its nearest original. For the originals, both are to the *other* originals.",
        "",
        f"Mean IoU among originals {_fmt(sim.mean_iou_among_originals, 3)}, among generated "
        f"{_fmt(sim.mean_iou_among_generated, 3)}, between generated and originals {_fmt(sim.mean_iou_between, 3)}.",
        "",
        "| row | max IoU to originals: mean | median | min | mean IoU within row | nearest L2: mean | median | min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in setup.rows:
        s = sim.rows[row]
        m, d = s.max_iou, s.nearest_l2
        out.append(f"| {row} | {_fmt(m.mean, 3)} | {_fmt(m.median, 3)} | {_fmt(m.min, 3)} | "
                   f"{_fmt(s.mean_iou_within, 3)} | {_fmt(d.mean, 4)} | {_fmt(d.median, 4)} | {_fmt(d.min, 4)} |")
    out += ["", "## Figures", ""]
    for name, file in figures.items():
        out += [f"![{name}]({file})", "", f"*{_CAPTIONS.get(name, name)}*", ""]
    out += ["## Checks", "", *_check_lines(result.checks)]
    if result.timings:
        timings = ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in result.timings.items())
        out.append(f"- Timings (s): {timings}.")
    return "\n".join(out).rstrip() + "\n"
