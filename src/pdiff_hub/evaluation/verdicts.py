"""The one rule that decides whether p-diff beats another row: every sentence of the report comes from it."""

from __future__ import annotations

from .metrics import standard_error_of_difference
from .result import Outcome, RowSimilarity, RowStatistics, Verdict

__all__ = ["compare_rows", "outcome"]


def outcome(margin: float) -> Outcome:
    """``higher``, ``lower`` or ``tie`` (an exactly zero margin) for p-diff's value minus another row's."""
    return "higher" if margin > 0 else "lower" if margin < 0 else "tie"


def compare_rows(
    ours: RowStatistics, theirs: RowStatistics, our_similarity: RowSimilarity, their_similarity: RowSimilarity
) -> Verdict:
    """p-diff's verdict against one other row: accuracy (mean and best) and novelty (mean max-IoU to the originals).

    A higher mean beats the row only when the margin exceeds two standard errors of the difference; within two
    standard errors means ``|margin| <= 2 SE``. When a row has a single model there is no standard error and any
    higher mean beats it. A higher best beats the row; a lower mean max-IoU is more novel.

    Args:
        ours: p-diff's test-accuracy statistics.
        theirs: the other row's.
        our_similarity: p-diff's similarity to the originals.
        their_similarity: the other row's.
    """
    se = standard_error_of_difference(ours, theirs)
    two_se = None if se is None else 2 * se
    mean_margin = ours.mean - theirs.mean
    best_margin = ours.best - theirs.best
    iou_margin = our_similarity.max_iou.mean - their_similarity.max_iou.mean
    within = two_se is not None and abs(mean_margin) <= two_se
    return Verdict(
        mean_beats=mean_margin > (two_se if two_se is not None else 0.0),
        mean_within_2se=within,
        mean_margin=mean_margin,
        best_beats=best_margin > 0,
        best_margin=best_margin,
        more_novel=iou_margin < 0,
        max_iou_margin=iou_margin,
        mean_outcome=outcome(mean_margin),
        mean_two_se=two_se,
        best_outcome=outcome(best_margin),
        max_iou_outcome=outcome(iou_margin),
    )
