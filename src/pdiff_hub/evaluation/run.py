"""One evaluation: Table 1, the similarity analysis and the critique's baselines for a pipeline and its checkpoints.

It answers both the paper (Wang et al. 2024: best of the originals, their weight average, best of the generated
models; wrong-prediction IoU among and between them) and the memorization critique (Zeng et al. 2025: do p-diff's
models beat noise-added checkpoints, averages of random checkpoints and a per-coordinate Gaussian, in accuracy and
in novelty?). "Best" is always the test accuracy of the model chosen on the validation split, never the highest
test accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.parameters import ParameterDataset
from ..data.subsets import Split, subsample_splits
from ..engine.evaluator import ParameterEvaluator
from ..engine.split import FrozenPrefixSplit
from ..pipeline import PDiffPipeline
from ..recipes.config import EvaluateConfig
from .baselines import baseline_rows
from .checks import (
    COLLAPSE_RATIO,
    IDENTICAL_LATENT_STD,
    LATENT_DISTANCE_RATIO,
    RECORDED_ACCURACY_TOLERANCE,
    SATURATION_WARNING,
    autoencoder_checks,
    encode,
    latent_nearest_original,
    recorded_accuracy_gap,
)
from .generation import check_same_param_dataset, check_same_target, generate_parameters
from .metrics import distribution, max_iou, mean_iou_between, mean_pairwise_iou, nearest_l2, summarize
from .prompts import prompt_results, prompt_row, prompted_rows, resolve_prompts
from .result import (
    ENSEMBLE,
    ORIGINAL,
    PDIFF,
    Checks,
    EvaluationResult,
    PerModel,
    RowSimilarity,
    Setup,
    Similarity,
)
from .sharding import ProcessGroup
from .verdicts import compare_rows

__all__ = ["run_evaluation"]


def run_evaluation(
    pipe: PDiffPipeline,
    params: ParameterDataset,
    splits: Mapping[str, Split],
    config: EvaluateConfig,
    progress: bool = True,
    allow_other_param_dataset: bool = False,
    group: ProcessGroup | None = None,
) -> EvaluationResult:
    """Table 1, the similarity analysis and the critique's baselines for one pipeline and its parameter dataset.

    Rows: ``original`` (the K collected checkpoints), ``ensemble`` (their weight average), ``p-diff``
    (``config.num_models`` generated models), ``noise <a>`` for each of ``config.noise_amplitudes``, ``average of
    <config.average_size>`` and ``gaussian`` (``config.num_models`` models each, so that every generated row's "best"
    is a best-of-the-same-number). Every row is evaluated on the validation and the test split; similarity uses the
    test split's wrong predictions, as the paper does.

    An accuracy-prompted pipeline (``train.accuracy_prompt``) gets, right after ``p-diff`` (its unconditional
    samples), a row ``p-diff @ <a>`` of ``config.num_models`` models for each prompt of
    :func:`~pdiff_hub.evaluation.prompts.resolve_prompts`, and ``result.prompts`` judges them (see
    :mod:`~pdiff_hub.evaluation.prompts`); p-diff's ``verdict`` stays against the originals and the baselines.

    Args:
        pipe: the trained pipeline.
        params: the collected checkpoints the pipeline was trained on.
        splits: ``{"validation": (images, labels), "test": (images, labels)}``; other splits are ignored. Without
            (or with an empty) validation split, "best" is the highest test accuracy and the result says so.
        config: the recipe's ``evaluate`` section.
        progress: show progress bars.
        allow_other_param_dataset: evaluate even when the pipeline records that it was trained on another
            parameter dataset (see :func:`~pdiff_hub.evaluation.generation.check_same_param_dataset`).
        group: the processes sharing the work (default: this one alone). The main process samples the models and
            draws the baselines and sends them to the others; each process measures its block of every row's
            vectors; all get every prediction back, in order, and return the same result (on the CPU, equal to a
            single process's apart from the timings; see :mod:`~pdiff_hub.evaluation.sharding`).

    Returns:
        The measures, the verdicts of p-diff against every other row and the checks.

    Example:
        ```py
        >>> result = run_evaluation(pipe, ParameterDataset.load("runs/params"), splits, recipe.evaluate)
        >>> result.table["p-diff"].best, result.verdict["average of 16"].mean_beats
        ```
    """
    start = time.perf_counter()
    check_same_target(pipe.target, params.target)
    check_same_param_dataset(pipe, params, allow_other=allow_other_param_dataset)
    if config.num_models < 1:
        raise ValueError(f"evaluate.num_models must be at least 1, got {config.num_models}")
    if "test" not in splits or len(splits["test"][1]) == 0:
        raise ValueError(f"run_evaluation needs a non-empty 'test' split; got splits {sorted(splits)}")
    full_sizes = {split: len(data[1]) for split, data in splits.items()}
    splits = subsample_splits(splits, {"validation": config.val_images, "test": config.test_images}, config.seed)
    evaluated = ("validation", "test") if "validation" in splits and len(splits["validation"][1]) > 0 else ("test",)
    timings: dict[str, float] = {}
    prompts = resolve_prompts(pipe, params, config)
    group = group or ProcessGroup()
    progress = progress and group.is_main_process

    tick = time.perf_counter()
    originals = params.vectors
    # Made once and sent to every process, so that all of them measure the very same vectors.
    rows = group.on_main(lambda: _rows(pipe, originals, config, progress, prompts))
    timings["generation_s"] = time.perf_counter() - tick

    accuracy, wrong = {}, {}
    prefix_split = FrozenPrefixSplit.from_model(params.target.model, params.target.layout.names)
    for split in evaluated:
        tick = time.perf_counter()
        evaluator = ParameterEvaluator(params.target.model, params.target.layout, *splits[split],
                                       batch_size=config.batch_size, split=prefix_split)
        wrong[split] = _wrong_per_row(evaluator, rows, progress, f"evaluating on {split}", group)
        accuracy[split] = {name: 100.0 * (~w).double().mean(1) for name, w in wrong[split].items()}
        timings[f"evaluate_{split}_s"] = time.perf_counter() - tick
    test_acc, val_acc = accuracy["test"], accuracy.get("validation")

    tick = time.perf_counter()
    similarity, max_ious, distances = _similarity(rows, wrong["test"])
    per_model = {
        name: PerModel(test_accuracy=_rounded(test_acc[name]),
                       val_accuracy=_rounded(val_acc[name]) if val_acc else None,
                       max_iou=_rounded(max_ious[name]), nearest_l2=_rounded(distances[name], 6))
        for name in rows
    }
    timings["similarity_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    latents = {name: encode(pipe, vectors) for name, vectors in rows.items()}
    timings["latents_s"] = time.perf_counter() - tick

    table = {name: summarize(test_acc[name], val_acc[name] if val_acc else None) for name in rows}
    checks = _checks(pipe, params, latents, test_acc[ORIGINAL],
                     whole_test_split=len(splits["test"][1]) == full_sizes["test"])
    timings["total_s"] = time.perf_counter() - start

    layout = params.target.layout
    setup = Setup(
        model_name=params.target.config.model_name,
        param_names=list(layout.names),
        num_params=layout.num_params,
        num_originals=len(originals),
        num_models=config.num_models,
        num_inference_steps=config.num_inference_steps,
        scheduler=config.scheduler,
        seed=config.seed,
        noise_amplitudes=[float(a) for a in config.noise_amplitudes],
        average_size=config.average_size,
        split_sizes={split: len(splits[split][1]) for split in evaluated},
        full_split_sizes={split: full_sizes[split] for split in evaluated},
        best_selected_by="validation" if val_acc else "test (no validation split)",
        rows=list(rows),
        accuracy_prompts=prompts,
    )
    prompted = {prompt_row(a) for a in prompts}
    val_table = {name: summarize(val_acc[name]) for name in rows} if val_acc else None
    return EvaluationResult(
        setup=setup,
        table=table,
        val_table=val_table,
        similarity=similarity,
        verdict={name: compare_rows(table[PDIFF], table[name], similarity.rows[PDIFF], similarity.rows[name])
                 for name in rows if name != PDIFF and name not in prompted},
        per_model=per_model,
        latents={name: _rounded(z, 4) for name, z in latents.items()},
        checks=checks,
        timings={k: round(v, 3) for k, v in timings.items()},
        prompts=prompt_results(prompts, pipe.condition_info, table, val_table, similarity,
                               f"average of {config.average_size}") if prompts else {},
    )


def _rows(
    pipe: PDiffPipeline, originals: torch.Tensor, config: EvaluateConfig, progress: bool, prompts: list[float]
) -> dict[str, torch.Tensor]:
    """Every row's vectors: the originals, their average, ``config.num_models`` generated ones, as many per accuracy
    prompt, the baselines."""
    generator = torch.Generator().manual_seed(config.seed)
    generated = generate_parameters(pipe, config.num_models, config.num_inference_steps, config.scheduler, generator,
                                    progress)
    # A separate stream, so that the baselines do not change when the sampler's step count does.
    baselines = baseline_rows(originals, config, torch.Generator().manual_seed(config.seed + 1))
    prompted = prompted_rows(pipe, prompts, config, progress)
    return {ORIGINAL: originals, ENSEMBLE: baselines.pop(ENSEMBLE), PDIFF: generated, **prompted, **baselines}


def _wrong_per_row(
    evaluator: ParameterEvaluator,
    rows: Mapping[str, torch.Tensor],
    progress: bool,
    desc: str,
    group: ProcessGroup,
    chunk: int = 64,
) -> dict[str, torch.Tensor]:
    """Each row's wrong-prediction masks; all rows' vectors go through the evaluator together (each process its
    block of them), in chunks of ``chunk`` so that a progress bar can follow."""

    def wrong(vectors: torch.Tensor) -> torch.Tensor:
        starts = range(0, len(vectors), chunk)
        return torch.cat([evaluator.wrong(vectors[s : s + chunk])
                          for s in tqdm(starts, desc=desc, disable=not progress)])

    masks = group.map_rows(wrong, torch.cat(list(rows.values())))
    bounds = np.cumsum([0] + [len(v) for v in rows.values()])
    return {name: masks[bounds[i] : bounds[i + 1]] for i, name in enumerate(rows)}


def _similarity(
    rows: Mapping[str, torch.Tensor], wrong: Mapping[str, torch.Tensor]
) -> tuple[Similarity, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every row's similarity to the originals, and each model's max-IoU and nearest-L2 by row."""
    summary, max_ious, distances = {}, {}, {}
    for name, vectors in rows.items():
        is_original = name == ORIGINAL
        max_ious[name] = max_iou(wrong[name], wrong[ORIGINAL], exclude_self=is_original)
        distances[name] = nearest_l2(vectors, rows[ORIGINAL], exclude_self=is_original)
        within = mean_pairwise_iou(wrong[name]) if len(vectors) > 1 else None
        summary[name] = RowSimilarity(
            max_iou=distribution(max_ious[name]),
            nearest_l2=distribution(distances[name]),
            mean_iou_within=within,
            mean_iou_to_originals=within if is_original else mean_iou_between(wrong[name], wrong[ORIGINAL]),
        )
    similarity = Similarity(
        mean_iou_among_originals=summary[ORIGINAL].mean_iou_within,
        mean_iou_among_generated=summary[PDIFF].mean_iou_within,
        mean_iou_between=summary[PDIFF].mean_iou_to_originals,
        rows=summary,
    )
    return similarity, max_ious, distances


def _checks(
    pipe: PDiffPipeline,
    params: ParameterDataset,
    latents: Mapping[str, torch.Tensor],
    originals_test_accuracy: torch.Tensor,
    whole_test_split: bool,
) -> Checks:
    """The run's sanity checks and their verdicts (see :class:`~pdiff_hub.evaluation.result.Checks`)."""
    autoencoder = autoencoder_checks(pipe, params.vectors, latents[ORIGINAL])
    # The accuracies recorded at collection are on the whole test split: comparable only when it was not subsampled.
    gap = recorded_accuracy_gap(params, originals_test_accuracy) if whole_test_split else None
    ratio = autoencoder["reconstruction_vs_mean_error"]
    nearest = latent_nearest_original(latents[ORIGINAL], latents[PDIFF])
    return Checks(
        max_recorded_vs_recomputed_test_accuracy=gap,
        **autoencoder,
        latent_nearest_original=nearest,
        recorded_accuracy_mismatch=gap is not None and gap > RECORDED_ACCURACY_TOLERANCE,
        autoencoder_collapsed=ratio is not None and ratio > COLLAPSE_RATIO,
        latents_identical=autoencoder["latent_std_across_originals"] < IDENTICAL_LATENT_STD,
        latents_saturated=autoencoder["saturated_latent_fraction"] > SATURATION_WARNING,
        generated_off_originals=None if nearest is None or nearest["original"] <= 0
        else nearest[PDIFF] > LATENT_DISTANCE_RATIO * nearest["original"],
    )


def _rounded(values: torch.Tensor, digits: int = 4) -> list:
    return np.round(np.asarray(values.detach().double().cpu()), digits).tolist()
