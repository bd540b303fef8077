"""The report renders the result's verdicts as stored: it decides nothing itself."""

from pdiff_hub.evaluation.report import COLLAPSE, OFF_ORIGINALS, SATURATION, render_report
from pdiff_hub.evaluation.result import Verdict

from .helpers import hand_built_result


def verdict(**changes) -> Verdict:
    fields = dict(mean_beats=False, mean_within_2se=True, mean_margin=1.0, best_beats=False, best_margin=0.0,
                  more_novel=False, max_iou_margin=0.0, mean_outcome="higher", mean_two_se=10.0, best_outcome="tie",
                  max_iou_outcome="tie")
    return Verdict(**{**fields, **changes})


def sentence(report: str, row: str) -> str:
    return next(line for line in report.splitlines() if line.startswith(f"- vs **{row}**"))


def test_verdict_sentences_say_what_the_result_decided():
    result = hand_built_result({
        # at the boundary: a margin of exactly 2 SE, which the rule counts as within
        "original": verdict(mean_margin=-10.0, mean_outcome="lower", best_outcome="higher", best_margin=0.5,
                            best_beats=True, max_iou_outcome="lower", more_novel=True, max_iou_margin=-0.25),
        "gaussian": verdict(mean_beats=True, mean_within_2se=False, mean_margin=12.0, mean_two_se=8.0),
        "ensemble": verdict(mean_margin=0.0, mean_outcome="tie", mean_two_se=None, mean_within_2se=False,
                            max_iou_outcome="higher", max_iou_margin=0.25),
    })
    report = render_report(result, {})
    # table means: original 90, p-diff 91, gaussian 92, ensemble 93; max IoU: 0.25, 0.5, 0.75, 0.25
    assert sentence(report, "original") == (
        "- vs **original**: p-diff's mean is lower (91.00% vs 90.00%, -10.00 points, within 2 SE = 10.00); its best "
        "is higher (91.00% vs 90.00%, +0.50 points); its models are more novel, but not more accurate (mean max IoU "
        "to the originals 0.500 vs 0.250)."
    )
    assert "mean is higher (91.00% vs 92.00%, +12.00 points, beyond 2 SE = 8.00)" in sentence(report, "gaussian")
    assert "its models are as close to the originals" in sentence(report, "gaussian")
    assert "p-diff's mean ties (91.00%)" in sentence(report, "ensemble")
    assert "its best ties (91.00%)" in sentence(report, "ensemble")
    assert "its models are closer copies of the originals" in sentence(report, "ensemble")
    assert ("Beats **gaussian** in mean but not in best; beats **original** in best but not in mean; does not beat "
            "**ensemble** in mean or best") in report


def test_the_headline_follows_the_stored_booleans_not_the_margins():
    # The margins would say otherwise: the report must not re-judge them.
    result = hand_built_result({"gaussian": verdict(mean_beats=True, best_beats=True, mean_margin=-5.0,
                                                    best_margin=-1.0)})
    assert "P-diff beats **gaussian** in both mean and best test accuracy" in render_report(result, {})


def test_checks_are_rendered_from_their_verdicts():
    healthy = render_report(hand_built_result({"gaussian": verdict()}, gap=0.5), {})
    assert COLLAPSE not in healthy and "may differ" not in healthy
    assert "largest difference 0.5000 points." in healthy
    flagged = render_report(hand_built_result({"gaussian": verdict()}, collapsed=True, gap=0.05, mismatch=True), {})
    assert f"> **Warning:** {COLLAPSE}" in flagged
    assert "largest difference 0.0500 points (the splits may differ from the collection run)." in flagged
    unrecorded = render_report(hand_built_result({"gaussian": verdict()}, gap=None), {})
    assert "recorded at collection" not in unrecorded


def test_saturated_latents_and_samples_off_the_originals_are_warned_about():
    result = hand_built_result({"gaussian": verdict()})
    quiet = render_report(result, {})
    assert SATURATION not in quiet and "the originals' own spacing" not in quiet
    assert "p-diff 2.000, originals (to the nearest other original) 1.000: 2.0x (goal: within 2x)." in quiet
    result.checks.latents_saturated, result.checks.generated_off_originals = True, True
    flagged = render_report(result, {})
    assert f"> **Warning:** {SATURATION}" in flagged
    assert f"> **Warning:** {OFF_ORIGINALS.format(ratio=2)}" in flagged


def test_tables_and_figures():
    result = hand_built_result({"gaussian": verdict()})
    report = render_report(result, {"tsne_latents": "tsne.png", "custom": "other.png"})
    assert "| **p-diff** | 91.00 | 91.00 | 91.00 | 1.00 | 90.00 | 92.00 | 5 |" in report
    assert "| gaussian | 0.750 | 0.750 | 0.750 | 0.500 | 0.7500 | 0.7500 | 0.7500 |" in report
    assert "![tsne_latents](tsne.png)\n\n*t-SNE of the autoencoder latents.*" in report
    assert "![custom](other.png)\n\n*custom*" in report
    assert report.startswith("# p-diff evaluation: test_resnet\n")
