"""The one verdict rule: beating a row in mean needs a margin beyond two standard errors of the difference."""

import pytest

from pdiff_hub.evaluation.verdicts import compare_rows, outcome

from .helpers import similarity, statistics

# Two rows of 2 models with population std 3 and 4: the standard error of the difference is exactly 5, 2 SE = 10.
THEIRS = statistics(80.0, std=4.0, n=2)
SAME = similarity(0.5)


def ours(mean: float, best: float | None = None):
    return statistics(mean, std=3.0, n=2, best=best)


@pytest.mark.parametrize(
    "mean, beats, within, mean_outcome",
    [
        (90.0, False, True, "higher"),  # exactly 2 SE higher: within, so not beaten
        (90.5, True, False, "higher"),  # beyond 2 SE
        (80.0, False, True, "tie"),
        (70.0, False, True, "lower"),  # exactly 2 SE lower: within
        (69.5, False, False, "lower"),  # beyond 2 SE, the wrong way
    ],
)
def test_mean_verdict_at_the_two_standard_error_boundary(mean, beats, within, mean_outcome):
    verdict = compare_rows(ours(mean), THEIRS, SAME, SAME)
    assert verdict.mean_two_se == 10.0
    assert verdict.mean_margin == mean - 80.0
    assert (verdict.mean_beats, verdict.mean_within_2se, verdict.mean_outcome) == (beats, within, mean_outcome)


def test_a_single_model_row_has_no_standard_error_and_any_higher_mean_beats_it():
    ensemble = statistics(80.0, std=0.0, n=1)
    higher = compare_rows(ours(80.01), ensemble, SAME, SAME)
    assert higher.mean_two_se is None and not higher.mean_within_2se
    assert higher.mean_beats and higher.mean_outcome == "higher"
    tie = compare_rows(ours(80.0), ensemble, SAME, SAME)
    assert not tie.mean_beats and tie.mean_outcome == "tie"


def test_best_and_novelty():
    verdict = compare_rows(ours(80.0, best=93.0), statistics(80.0, std=4.0, n=2, best=92.5), similarity(0.25),
                           similarity(0.75))
    assert verdict.best_beats and verdict.best_outcome == "higher" and verdict.best_margin == 0.5
    # p-diff's models are further from the originals (lower max-IoU): more novel
    assert verdict.more_novel and verdict.max_iou_outcome == "lower" and verdict.max_iou_margin == -0.5
    same_best = compare_rows(ours(80.0, best=92.5), statistics(80.0, std=4.0, n=2, best=92.5), similarity(0.75),
                             similarity(0.25))
    assert not same_best.best_beats and same_best.best_outcome == "tie"
    assert not same_best.more_novel and same_best.max_iou_outcome == "higher"


def test_outcome_signs():
    assert [outcome(m) for m in (0.25, -1e-12, 0.0)] == ["higher", "lower", "tie"]
