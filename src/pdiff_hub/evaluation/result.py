"""The typed result of an evaluation: what :func:`~pdiff_hub.evaluation.run.run_evaluation` measured and decided.

Every judgement (who beats whom, ties, "beyond two standard errors", a collapsed autoencoder) is made once, while
evaluating, and stored here; the report and the figures render these fields and decide nothing. ``metrics.json`` is
:meth:`EvaluationResult.to_dict`, and :meth:`EvaluationResult.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ENSEMBLE",
    "GAUSSIAN",
    "ORIGINAL",
    "PDIFF",
    "Checks",
    "Distribution",
    "EvaluationResult",
    "Outcome",
    "PerModel",
    "PromptResult",
    "RowSimilarity",
    "RowStatistics",
    "Setup",
    "Similarity",
    "Verdict",
]

ORIGINAL, ENSEMBLE, PDIFF, GAUSSIAN = "original", "ensemble", "p-diff", "gaussian"

Outcome = Literal["higher", "lower", "tie"]
"""How p-diff's value compares with another row's."""


@dataclass
class RowStatistics:
    """The Table 1 statistics of one row's test (or validation) accuracies, in percent.

    ``best`` is the accuracy of the model chosen on the validation split (see ``Setup.best_selected_by``); ``std``
    is the population one (ddof=0), so a row of a single model has 0.
    """

    best: float
    mean: float
    median: float
    std: float
    min: float
    max: float
    n: int


@dataclass
class Distribution:
    """Mean, median, population std, min and max of one per-model measure over a row."""

    mean: float
    median: float
    std: float
    min: float
    max: float


@dataclass
class RowSimilarity:
    """How close a row's models are to the collected checkpoints (for the originals: to the other originals).

    ``max_iou``: each model's highest wrong-prediction IoU to any original; ``nearest_l2``: each vector's distance
    to the nearest original; ``mean_iou_within``: mean IoU among the row's own models (None for a single model);
    ``mean_iou_to_originals``: mean IoU between the row's models and the originals.
    """

    max_iou: Distribution
    nearest_l2: Distribution
    mean_iou_within: float | None
    mean_iou_to_originals: float | None


@dataclass
class Similarity:
    """The paper's similarity analysis on the test split, and the same measures for every row."""

    mean_iou_among_originals: float | None
    mean_iou_among_generated: float | None
    mean_iou_between: float | None
    rows: dict[str, RowSimilarity]


@dataclass
class PerModel:
    """One value per model of a row, in the row's order (rounded for the file; the figures plot these)."""

    test_accuracy: list[float]
    val_accuracy: list[float] | None
    max_iou: list[float]
    nearest_l2: list[float]


@dataclass
class Verdict:
    """p-diff against one other row, decided by :func:`~pdiff_hub.evaluation.verdicts.compare_rows`.

    Margins are p-diff's value minus the row's. A higher mean counts as beating the row only beyond two standard
    errors of the difference (``mean_two_se``; None when a row has a single model, and then any higher mean
    counts). Lower mean max-IoU to the originals means more novel behaviour.
    """

    mean_beats: bool
    mean_within_2se: bool
    mean_margin: float
    best_beats: bool
    best_margin: float
    more_novel: bool
    max_iou_margin: float
    mean_outcome: Outcome
    mean_two_se: float | None
    best_outcome: Outcome
    max_iou_outcome: Outcome


@dataclass
class Checks:
    """Sanity checks of the run, with their verdicts.

    ``max_recorded_vs_recomputed_test_accuracy``: largest gap between the originals' test accuracy recorded at
    collection and recomputed here (None when the test split was subsampled); ``recorded_accuracy_mismatch``: the
    gap is large enough that the splits probably differ from the collection's. ``reconstruction_vs_mean_error``,
    ``latent_std_across_originals``, ``saturated_latent_fraction``: see
    :func:`~pdiff_hub.evaluation.checks.autoencoder_checks`; ``autoencoder_collapsed`` and ``latents_identical``
    are their verdicts. ``latent_nearest_original``: mean latent distance to the nearest original's latent, for
    p-diff and for the originals (to the nearest other one); None with a single original. ``latents_saturated``:
    more than :data:`~pdiff_hub.evaluation.checks.SATURATION_WARNING` of the latent values are saturated;
    ``generated_off_originals``: the generated models lie more than
    :data:`~pdiff_hub.evaluation.checks.LATENT_DISTANCE_RATIO` times the originals' own spacing from the nearest
    original's latent (None without a distance). Both default for results saved before they existed.
    """

    max_recorded_vs_recomputed_test_accuracy: float | None
    reconstruction_vs_mean_error: float | None
    latent_std_across_originals: float
    saturated_latent_fraction: float
    latent_nearest_original: dict[str, float] | None
    recorded_accuracy_mismatch: bool
    autoencoder_collapsed: bool
    latents_identical: bool
    latents_saturated: bool = False
    generated_off_originals: bool | None = None


@dataclass
class PromptResult:
    """The models an accuracy-prompted pipeline generated for one prompt, decided by
    :func:`~pdiff_hub.evaluation.prompts.prompt_results`.

    ``prompted``: the validation accuracy (%) asked for, ``condition`` its standardized value. ``val_mean`` /
    ``test_mean``: the models' mean accuracy measured here (``val_*`` None without a validation split), ``*_se`` the
    standard error of that mean (None for a single model); ``val_minus_prompted`` the calibration error; ``best`` the
    test accuracy of the model chosen on validation; ``mean_max_iou`` the mean max-IoU to the originals.
    ``versus`` holds the prompted models' verdict (:func:`~pdiff_hub.evaluation.verdicts.compare_rows`, with these
    models in p-diff's place) against the originals, their weight average, the average of ``average_size`` and the
    Gaussian; ``goal_met``: they beat the average in mean test accuracy beyond two standard errors at a lower mean
    max-IoU (more accurate and more novel), which no published method has reached.
    """

    prompted: float
    condition: float
    val_mean: float | None
    val_se: float | None
    val_minus_prompted: float | None
    test_mean: float
    test_se: float | None
    best: float
    mean_max_iou: float
    versus: dict[str, Verdict]
    goal_met: bool


@dataclass
class Setup:
    """What was evaluated and how: the network, the generation settings and the splits; ``accuracy_prompts``: the
    validation accuracies an accuracy-prompted pipeline was prompted with (empty for any other pipeline)."""

    model_name: str
    param_names: list[str]
    num_params: int
    num_originals: int
    num_models: int
    num_inference_steps: int
    scheduler: str
    seed: int
    noise_amplitudes: list[float]
    average_size: int
    split_sizes: dict[str, int]
    full_split_sizes: dict[str, int]
    best_selected_by: str
    rows: list[str]
    accuracy_prompts: list[float] = field(default_factory=list)


@dataclass
class EvaluationResult:
    """Table 1, the similarity analysis, the verdicts and the checks of one evaluation.

    ``table`` and ``val_table`` (None without a validation split) map each row to its statistics, in the order of
    ``setup.rows``; ``verdict`` maps every row but p-diff to p-diff's verdict against it; ``latents`` holds each
    row's autoencoder latents (for the t-SNE figure); ``timings`` the seconds each stage took. ``prompts`` maps each
    prompted row of an accuracy-prompted pipeline (``p-diff @ <accuracy>``) to its result; those rows are in the
    tables but not in p-diff's ``verdict``. Empty for other pipelines, whose ``metrics.json`` then has neither
    ``prompts`` nor ``setup.accuracy_prompts``, as before.
    """

    setup: Setup
    table: dict[str, RowStatistics]
    val_table: dict[str, RowStatistics] | None
    similarity: Similarity
    verdict: dict[str, Verdict]
    per_model: dict[str, PerModel]
    latents: dict[str, list[list[float]]]
    checks: Checks
    timings: dict[str, float]
    prompts: dict[str, PromptResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (the content of ``metrics.json``)."""
        data = dataclasses.asdict(self)
        if not self.prompts:  # an evaluation without prompts writes the file it always did
            del data["prompts"], data["setup"]["accuracy_prompts"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        """The result back from :meth:`to_dict`'s output (e.g. a loaded ``metrics.json``)."""
        similarity = data["similarity"]
        return cls(
            setup=Setup(**data["setup"]),
            table=_rows(RowStatistics, data["table"]),
            val_table=None if data["val_table"] is None else _rows(RowStatistics, data["val_table"]),
            similarity=Similarity(**{
                **similarity,
                "rows": {
                    row: RowSimilarity(**{**s, "max_iou": Distribution(**s["max_iou"]),
                                          "nearest_l2": Distribution(**s["nearest_l2"])})
                    for row, s in similarity["rows"].items()
                },
            }),
            verdict=_rows(Verdict, data["verdict"]),
            per_model=_rows(PerModel, data["per_model"]),
            latents=data["latents"],
            checks=Checks(**data["checks"]),
            timings=data["timings"],
            prompts={row: PromptResult(**{**p, "versus": _rows(Verdict, p["versus"])})
                     for row, p in data.get("prompts", {}).items()},
        )


def _rows(kind: type, values: dict[str, dict]) -> dict:
    return {row: kind(**fields) for row, fields in values.items()}
