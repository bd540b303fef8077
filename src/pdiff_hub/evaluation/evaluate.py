"""Evaluating generated parameters: the paper's Table 1, its similarity analysis, and the critique's baselines.

The frozen part of the network is the same for every vector, so its activations are computed once per split
(:class:`~pdiff_hub.engine.split.FrozenPrefixSplit`) and only the layers that change run per vector
(:class:`ParameterEvaluator`).

On top of it, :func:`run_evaluation` answers both the paper (Wang et al. 2024: best of the originals, their weight
average, best of the generated models; wrong-prediction IoU among and between them) and the memorization critique
(Zeng et al. 2025: do p-diff's models beat noise-added checkpoints, averages of 16 random checkpoints and a
per-coordinate Gaussian, in accuracy and in novelty?). All accuracies are percentages; "best" is always the test
accuracy of the model chosen on the validation split, never the highest test accuracy.
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from tqdm.auto import tqdm

from ..data.parameters import ParameterDataset
from ..engine.evaluator import ParameterEvaluator
from ..engine.split import FrozenPrefixSplit
from ..models.target import TargetModel
from ..pipeline import PDiffPipeline
from ..recipes.config import EvaluateConfig

__all__ = [
    "autoencoder_checks",
    "baseline_rows",
    "check_same_target",
    "generate_parameters",
    "max_iou",
    "mean_iou_between",
    "mean_pairwise_iou",
    "nearest_l2",
    "noise_added",
    "per_coordinate_gaussian",
    "random_averages",
    "run_evaluation",
    "subsample_splits",
    "summarize",
    "weight_average",
    "wrong_prediction_iou",
]

ORIGINAL, ENSEMBLE, PDIFF = "original", "ensemble", "p-diff"
Split = tuple[torch.Tensor, torch.Tensor]


# ---------------------------------------------------------------------------------------------------- summaries


def summarize(acc_test: torch.Tensor | Sequence[float], acc_val: torch.Tensor | Sequence[float] | None = None) -> dict:
    """The Table 1 statistics of a set of models' test accuracies (percent).

    Args:
        acc_test: test accuracy of each model.
        acc_val: validation accuracy of each model, in the same order. ``best`` is the test accuracy of the model
            with the highest validation accuracy (the first one among ties); without ``acc_val`` it falls back to
            the highest test accuracy, which flatters every row equally but is selection on the test set.

    Returns:
        ``best``, ``mean``, ``median``, ``std`` (population, ddof=0, so a single model has 0), ``min``, ``max`` as
        floats and ``n`` as an int.
    """
    test = np.asarray(torch.as_tensor(acc_test, dtype=torch.float64).cpu()).reshape(-1)
    if test.size == 0:
        raise ValueError("summarize() needs at least one accuracy")
    if acc_val is None:
        chosen = int(test.argmax())
    else:
        val = np.asarray(torch.as_tensor(acc_val, dtype=torch.float64).cpu()).reshape(-1)
        if val.shape != test.shape:
            raise ValueError(f"{val.size} validation accuracies for {test.size} test accuracies")
        chosen = int(val.argmax())
    return {
        "best": float(test[chosen]),
        "mean": float(test.mean()),
        "median": float(np.median(test)),
        "std": float(test.std()),
        "min": float(test.min()),
        "max": float(test.max()),
        "n": int(test.size),
    }


def _distribution(values: torch.Tensor) -> dict:
    """Mean, median, std (ddof=0), min and max of a 1-D tensor, as floats."""
    v = np.asarray(values.detach().double().cpu()).reshape(-1)
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


# ---------------------------------------------------------------------------------------------------- similarity


def wrong_prediction_iou(wrong_a: torch.Tensor, wrong_b: torch.Tensor) -> torch.Tensor:
    """IoU of wrong-prediction sets, |A and B| / |A or B|, for every pair of models (the paper's similarity).

    Computed with one matrix product: the intersections are ``A @ B.T`` and the unions ``|A| + |B| - |A and B|``.
    Two models that get nothing wrong behave identically on the split and have IoU 1.

    Args:
        wrong_a: boolean (M, N): which of N samples each of M models gets wrong.
        wrong_b: boolean (P, N), on the same samples.

    Returns:
        (M, P) float64 IoU matrix.
    """
    if wrong_a.ndim != 2 or wrong_b.ndim != 2 or wrong_a.shape[1] != wrong_b.shape[1]:
        raise ValueError(
            f"Expected (M, N) and (P, N) wrong-prediction masks, got {tuple(wrong_a.shape)} and {tuple(wrong_b.shape)}"
        )
    a, b = wrong_a.float(), wrong_b.to(device=wrong_a.device, dtype=torch.float32)
    # 0/1 products summed in float32 are exact integers for any N below 2**24.
    intersection = (a @ b.T).double()
    union = a.sum(1).double()[:, None] + b.sum(1).double()[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def mean_pairwise_iou(wrong: torch.Tensor) -> float:
    """Mean IoU over all pairs of distinct models of one set (the off-diagonal of its IoU matrix).

    Args:
        wrong: boolean (M, N) wrong-prediction masks, M >= 2.
    """
    m = wrong.shape[0]
    if m < 2:
        raise ValueError(f"Pairwise IoU needs at least 2 models, got {m}")
    iou = wrong_prediction_iou(wrong, wrong)
    return float((iou.sum() - iou.diagonal().sum()) / (m * (m - 1)))


def mean_iou_between(wrong_a: torch.Tensor, wrong_b: torch.Tensor) -> float:
    """Mean IoU over all pairs of one model of ``wrong_a`` and one of ``wrong_b``."""
    return float(wrong_prediction_iou(wrong_a, wrong_b).mean())


def max_iou(wrong: torch.Tensor, reference: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """Each model's highest IoU to any reference model (the paper's max-IoU: near 1 means a copy).

    Args:
        wrong: boolean (M, N) wrong-prediction masks.
        reference: boolean (P, N) masks of the reference models (the originals).
        exclude_self: ``wrong`` is ``reference`` itself: skip each model's IoU with itself.

    Returns:
        (M,) float64.
    """
    iou = wrong_prediction_iou(wrong, reference)
    if exclude_self:
        _check_self(iou, "max_iou")
        iou.fill_diagonal_(-1.0)
    return iou.max(dim=1).values


def nearest_l2(vectors: torch.Tensor, reference: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """L2 distance of each vector to its nearest reference vector (the critique's distance to the training set).

    Collected checkpoints are close to each other relative to their norm (BatchNorm weights near 1 that move by
    1e-3), so distances are taken in float64 after centring on the reference mean: in float32 the
    ``|x|^2 + |y|^2 - 2 x.y`` expansion of ``torch.cdist`` would cancel away the very differences measured.

    Args:
        vectors: (M, D).
        reference: (P, D).
        exclude_self: ``vectors`` is ``reference`` itself: skip each vector's zero distance to itself.

    Returns:
        (M,) float64.
    """
    if vectors.ndim != 2 or reference.ndim != 2 or vectors.shape[1] != reference.shape[1]:
        raise ValueError(f"Expected (M, D) and (P, D) vectors, got {tuple(vectors.shape)} and {tuple(reference.shape)}")
    ref = reference.double()
    center = ref.mean(dim=0)
    distances = torch.cdist(vectors.to(ref.device).double() - center, ref - center)
    if exclude_self:
        _check_self(distances, "nearest_l2")
        distances.fill_diagonal_(float("inf"))
    return distances.min(dim=1).values


def _check_self(matrix: torch.Tensor, what: str) -> None:
    if matrix.shape[0] != matrix.shape[1] or matrix.shape[1] < 2:
        raise ValueError(
            f"{what}(exclude_self=True) compares a set with itself: it needs the same >= 2 rows on "
            f"both sides, got {tuple(matrix.shape)}"
        )


# ---------------------------------------------------------------------------------------------------- baselines


def noise_added(
    originals: torch.Tensor, amplitude: float, *, num: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Collected checkpoints plus Gaussian noise: ``originals[i] + amplitude * N(0, 1)``, independently per value.

    The amplitude is absolute, in the parameters' own units and the same for every coordinate, as in the critique
    (Zeng et al. use 0.06 and 0.12 on ResNet-18's last BatchNorm weights and biases, which sit near 1 and 0); it is
    not relative to each tensor's scale, so the same amplitude perturbs small-valued tensors comparatively more.

    Args:
        originals: (K, D) collected checkpoints.
        amplitude: standard deviation of the noise.
        num: how many models; defaults to K. The originals are taken in a random order and each is used once
            before any is used again, so ``num=K`` noises every checkpoint once, as the critique does.
        generator: seeds the order and the noise.

    Returns:
        (num, D) float32.
    """
    k = originals.shape[0]
    num = k if num is None else num
    _check_num(num)
    order = torch.cat([torch.randperm(k, generator=generator) for _ in range(-(-num // k))])[:num]
    noise = torch.randn(num, originals.shape[1], generator=generator)
    return originals[order].float() + amplitude * noise


def random_averages(
    originals: torch.Tensor, size: int = 16, *, num: int = 100, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform averages of ``size`` distinct, randomly chosen collected checkpoints (the critique's baseline (a)).

    Args:
        originals: (K, D) collected checkpoints.
        size: checkpoints per average (16 in the critique); at most K.
        num: how many averages.
        generator: seeds the choice of checkpoints.

    Returns:
        (num, D) float32.
    """
    k = originals.shape[0]
    _check_num(num)
    if not 1 <= size <= k:
        raise ValueError(f"Cannot average {size} distinct checkpoints out of {k}; lower evaluate.average_size")
    chosen = torch.rand(num, k, generator=generator).argsort(dim=1)[:, :size]
    weights = torch.zeros(num, k).scatter_(1, chosen, 1.0 / size)
    return weights @ originals.float()


def per_coordinate_gaussian(
    originals: torch.Tensor, *, num: int = 100, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each value drawn independently from a Gaussian fitted to that coordinate (the critique's baseline (b)).

    Args:
        originals: (K, D) collected checkpoints, K >= 2; the per-coordinate std is the unbiased one.
        num: how many models.
        generator: seeds the draws.

    Returns:
        (num, D) float32.
    """
    _check_num(num)
    if originals.shape[0] < 2:
        raise ValueError("A per-coordinate Gaussian needs at least 2 checkpoints")
    mean, std = originals.float().mean(dim=0), originals.float().std(dim=0)
    return mean + std * torch.randn(num, originals.shape[1], generator=generator)


def weight_average(originals: torch.Tensor) -> torch.Tensor:
    """The paper's "ensemble": the uniform average of all collected parameters, a single (1, D) model."""
    return originals.float().mean(dim=0, keepdim=True)


def _check_num(num: int) -> None:
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")


# ---------------------------------------------------------------------------------------------------- the run


def check_same_target(generating: TargetModel, collected: TargetModel) -> None:
    """Raise ``ValueError`` unless the pipeline's network is the one the parameter dataset was collected from.

    Compares the timm model name, the generated layout (names and shapes) and the frozen weights: generated
    vectors are only meaningful in the network whose remainder they were trained with.
    """
    a, b = generating.config.model_name, collected.config.model_name
    if a != b:
        raise ValueError(f"The pipeline generates parameters of {a!r}, the parameter dataset holds {b!r}")
    la, lb = generating.layout, collected.layout
    if la.names != lb.names or la.shapes != lb.shapes:
        raise ValueError(
            f"The pipeline's generated layout {dict(zip(la.names, la.shapes))} differs from the "
            f"parameter dataset's {dict(zip(lb.names, lb.shapes))}"
        )
    generated = set(la.names)
    theirs = collected.model.state_dict()
    for name, tensor in generating.model.state_dict().items():
        if name in generated:
            continue
        other = theirs.get(name)
        if (
            other is None
            or other.shape != tensor.shape
            or not torch.allclose(tensor.float().cpu(), other.float().cpu(), rtol=1e-4, atol=1e-6)
        ):
            raise ValueError(
                f"The frozen weights differ ({name!r}): the pipeline was trained on checkpoints of "
                "another base model than this parameter dataset's"
            )


def generate_parameters(
    pipe: PDiffPipeline,
    num_models: int,
    num_inference_steps: int,
    scheduler: str = "ddim",
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Sample ``num_models`` parameter vectors in one batch, with a DDIM or DDPM sampler built from the pipeline's.

    The pipeline itself is left untouched: a sibling pipeline shares its components with the chosen scheduler
    (``DDIMScheduler.from_config`` keeps the paper's training schedule).

    Returns:
        (num_models, D) float32 on the CPU.
    """
    if num_models < 1:
        raise ValueError(f"num_models must be at least 1, got {num_models}")
    schedulers = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
    if scheduler not in schedulers:
        raise ValueError(f"evaluate.scheduler must be one of {sorted(schedulers)}, got {scheduler!r}")
    sampler = PDiffPipeline(
        pipe.target, pipe.autoencoder, pipe.denoiser, schedulers[scheduler].from_config(pipe.scheduler.config)
    )
    sampler.set_progress_bar_config(disable=not progress, desc=f"sampling ({scheduler})")
    out = sampler(num_models=num_models, num_inference_steps=num_inference_steps, generator=generator, output_type="pt")
    return out.parameters


def run_evaluation(
    pipe: PDiffPipeline,
    params: ParameterDataset,
    splits: Mapping[str, Split],
    config: EvaluateConfig,
    progress: bool = True,
) -> dict:
    """Table 1, the similarity analysis and the critique's baselines for one pipeline and its parameter dataset.

    Rows: ``original`` (the K collected checkpoints), ``ensemble`` (their weight average), ``p-diff``
    (``config.num_models`` generated models), ``noise <a>`` for each of ``config.noise_amplitudes``, ``average of
    <config.average_size>`` and ``gaussian`` (``config.num_models`` models each, so that every generated row's "best"
    is a best-of-the-same-number). Every row is evaluated on the validation and the test split; similarity uses the
    test split's wrong predictions, as the paper does.

    Args:
        pipe: the trained pipeline.
        params: the collected checkpoints the pipeline was trained on.
        splits: ``{"validation": (images, labels), "test": (images, labels)}``; other splits are ignored. Without
            (or with an empty) validation split, "best" is the highest test accuracy and the result says so.
        config: the recipe's ``evaluate`` section.
        progress: show progress bars.

    Returns:
        A JSON-safe dict: ``setup``, ``table`` (row -> :func:`summarize` of its test accuracies), ``val_table``,
        ``similarity``, ``per_model`` (row -> per-model ``test_accuracy``, ``val_accuracy``, ``max_iou``,
        ``nearest_l2``), ``latents`` (row -> the autoencoder's latents, for the t-SNE figure), ``verdict`` (for each
        other row: does p-diff beat it in mean, in best, and is it more novel), ``checks`` and ``timings``.

    Example:
        ```py
        >>> metrics = run_evaluation(pipe, ParameterDataset.load("runs/params"), splits, recipe.evaluate)
        >>> metrics["table"]["p-diff"]["best"], metrics["verdict"]["average of 16"]["mean_beats"]
        ```
    """
    start = time.perf_counter()
    check_same_target(pipe.target, params.target)
    if config.num_models < 1:
        raise ValueError(f"evaluate.num_models must be at least 1, got {config.num_models}")
    if "test" not in splits or len(splits["test"][1]) == 0:
        raise ValueError(f"run_evaluation needs a non-empty 'test' split; got splits {sorted(splits)}")
    full_sizes = {split: len(data[1]) for split, data in splits.items()}
    splits = subsample_splits(splits, {"validation": config.val_images, "test": config.test_images}, config.seed)
    has_val = "validation" in splits and len(splits["validation"][1]) > 0
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    generated = generate_parameters(
        pipe,
        config.num_models,
        config.num_inference_steps,
        config.scheduler,
        torch.Generator().manual_seed(config.seed),
        progress,
    )
    timings["generation_s"] = time.perf_counter() - tick

    originals = params.vectors
    # A separate stream, so that the baselines do not change when the sampler's step count does.
    baselines = baseline_rows(originals, config, torch.Generator().manual_seed(config.seed + 1))
    rows = {ORIGINAL: originals, ENSEMBLE: baselines.pop(ENSEMBLE), PDIFF: generated, **baselines}
    names = list(rows)

    stacked = torch.cat(list(rows.values()))
    bounds = np.cumsum([0] + [len(v) for v in rows.values()])
    wrong = {}
    prefix_split = FrozenPrefixSplit.from_model(params.target.model, params.target.layout.names)
    for split in ("validation", "test") if has_val else ("test",):
        tick = time.perf_counter()
        evaluator = ParameterEvaluator(params.target.model, params.target.layout, *splits[split],
                                       batch_size=config.batch_size, split=prefix_split)
        masks = _wrong_in_chunks(evaluator, stacked, progress, f"evaluating on {split}")
        wrong[split] = {name: masks[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
        timings[f"evaluate_{split}_s"] = time.perf_counter() - tick
    acc = {split: {name: 100.0 * (~w).double().mean(1) for name, w in masks.items()} for split, masks in wrong.items()}
    val_acc = acc.get("validation", {})

    tick = time.perf_counter()
    similarity, per_model_similarity = _similarity(rows, wrong["test"])
    per_model = {
        name: {
            "test_accuracy": _rounded(acc["test"][name]),
            "val_accuracy": _rounded(val_acc[name]) if has_val else None,
            **per_model_similarity[name],
        }
        for name in names
    }
    timings["similarity_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    encoded = {name: _encode(pipe, rows[name]) for name in names}
    latents = {name: _rounded(z, 4) for name, z in encoded.items()}
    timings["latents_s"] = time.perf_counter() - tick

    table = {name: summarize(acc["test"][name], val_acc.get(name)) for name in names}
    val_table = {name: summarize(val_acc[name]) for name in names} if has_val else None
    # The accuracies recorded at collection are on the whole test split: comparable only when it was not subsampled.
    recorded = _recorded_test_accuracy(params) if len(splits["test"][1]) == full_sizes["test"] else None
    checks = {"max_recorded_vs_recomputed_test_accuracy": None,
              **autoencoder_checks(pipe, originals, encoded[ORIGINAL])}
    # Does the diffusion model sample where the originals' latents are? (memorizing: as close as they are to each
    # other; far beyond that: off the data, between the training latents.)
    if len(originals) > 1:
        checks["latent_nearest_original"] = {
            ORIGINAL: float(nearest_l2(encoded[ORIGINAL], encoded[ORIGINAL], exclude_self=True).mean()),
            PDIFF: float(nearest_l2(encoded[PDIFF], encoded[ORIGINAL]).mean()),
        }
    if recorded is not None:
        gap = float((recorded - acc["test"][ORIGINAL].cpu()).abs().max())
        checks["max_recorded_vs_recomputed_test_accuracy"] = gap
        if gap > 0.1:
            warnings.warn(
                f"The originals' test accuracy differs by up to {gap:.2f} points from the one recorded at "
                "collection: is the data section of the recipe the one the dataset was collected with?",
                stacklevel=2,
            )
    timings["total_s"] = time.perf_counter() - start

    layout = params.target.layout
    return {
        "setup": {
            "model_name": params.target.config.model_name,
            "param_names": list(layout.names),
            "num_params": layout.num_params,
            "num_originals": len(originals),
            "num_models": config.num_models,
            "num_inference_steps": config.num_inference_steps,
            "scheduler": config.scheduler,
            "seed": config.seed,
            "noise_amplitudes": [float(a) for a in config.noise_amplitudes],
            "average_size": config.average_size,
            "split_sizes": {split: len(splits[split][1]) for split in wrong},
            "full_split_sizes": {split: full_sizes[split] for split in wrong},
            "best_selected_by": "validation" if has_val else "test (no validation split)",
            "rows": names,
        },
        "table": table,
        "val_table": val_table,
        "similarity": similarity,
        "verdict": _verdict(table, similarity["rows"]),
        "per_model": per_model,
        "latents": latents,
        "checks": checks,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def subsample_splits(splits: Mapping[str, Split], sizes: Mapping[str, int], seed: int = 0) -> dict[str, Split]:
    """Each split named in ``sizes`` cut to a random subset of that many images (0, or more than it has: unchanged).

    The subset of a split depends only on ``seed``, the split's name and its length, so every row of an evaluation,
    and every rerun with the same seed, sees the same images (in their original order).

    Raises:
        ValueError: on a negative size.
    """
    result = dict(splits)
    for split, size in sizes.items():
        if size < 0:
            raise ValueError(f"the {split} subset size must be 0 (whole split) or positive, got {size}")
        if split not in splits or size == 0 or size >= len(splits[split][1]):
            continue
        images, labels = splits[split]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(split.encode()))
        keep = torch.randperm(len(labels), generator=generator)[:size].sort().values
        result[split] = (images[keep.to(images.device)], labels[keep.to(labels.device)])
    return result


def baseline_rows(
    originals: torch.Tensor, config: EvaluateConfig, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """The rows p-diff is compared with, by name: the paper's ensemble and the critique's three baselines.

    ``ensemble`` is one model; ``noise <a>`` (one row per amplitude of ``config.noise_amplitudes``), ``average of
    <config.average_size>`` and ``gaussian`` have ``config.num_models`` models each, as many as p-diff generates.
    """
    n = config.num_models
    rows = {ENSEMBLE: weight_average(originals)}
    for amplitude in config.noise_amplitudes:
        rows[f"noise {amplitude:g}"] = noise_added(originals, float(amplitude), num=n, generator=generator)
    rows[f"average of {config.average_size}"] = random_averages(
        originals, config.average_size, num=n, generator=generator
    )
    rows["gaussian"] = per_coordinate_gaussian(originals, num=n, generator=generator)
    return rows


def _similarity(rows: Mapping[str, torch.Tensor], wrong: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Summaries of IoU and nearest-L2 per row, and the per-model values, all relative to the originals."""
    summary, per_model = {}, {}
    for name, vectors in rows.items():
        is_original = name == ORIGINAL
        row_max_iou = max_iou(wrong[name], wrong[ORIGINAL], exclude_self=is_original)
        row_l2 = nearest_l2(vectors, rows[ORIGINAL], exclude_self=is_original)
        within = mean_pairwise_iou(wrong[name]) if len(vectors) > 1 else None
        summary[name] = {
            "max_iou": _distribution(row_max_iou),
            "nearest_l2": _distribution(row_l2),
            "mean_iou_within": within,
            "mean_iou_to_originals": within if is_original else mean_iou_between(wrong[name], wrong[ORIGINAL]),
        }
        per_model[name] = {"max_iou": _rounded(row_max_iou), "nearest_l2": _rounded(row_l2, 6)}
    similarity = {
        "mean_iou_among_originals": summary[ORIGINAL]["mean_iou_within"],
        "mean_iou_among_generated": summary[PDIFF]["mean_iou_within"],
        "mean_iou_between": summary[PDIFF]["mean_iou_to_originals"],
        "rows": summary,
    }
    return similarity, per_model


def _wrong_in_chunks(
    evaluator: ParameterEvaluator, vectors: torch.Tensor, progress: bool, desc: str, chunk: int = 64
) -> torch.Tensor:
    """``evaluator.wrong`` of all vectors, in chunks so that a progress bar can follow."""
    starts = range(0, len(vectors), chunk)
    parts = [evaluator.wrong(vectors[s : s + chunk]) for s in tqdm(starts, desc=desc, disable=not progress)]
    return torch.cat(parts)


@torch.no_grad()
def autoencoder_checks(pipe: PDiffPipeline, originals: torch.Tensor, latents: torch.Tensor | None = None) -> dict:
    """Does the autoencoder tell the collected checkpoints apart, or has it collapsed onto their mean?

    Returns:
        ``reconstruction_vs_mean_error``: mean squared error of the reconstructions divided by that of predicting
        every checkpoint by the checkpoints' mean (near or above 1: the latents carry no information about which
        checkpoint they encode, and every decoded model is the mean); ``latent_std_across_originals``: the
        per-coordinate std of the originals' latents, averaged; ``saturated_latent_fraction``: the fraction of the
        originals' latent values with magnitude above 0.99 (a bounded latent pinned at +-1 ignores its input).

    ``latents``: the originals' latents when the caller has them already (as :func:`run_evaluation` does).
    """
    z = _encode(pipe, originals) if latents is None else latents
    autoencoder = pipe.autoencoder
    reconstructed = autoencoder.decode(z.to(autoencoder.device, autoencoder.dtype)).float().cpu()
    originals = originals.float()
    error = (reconstructed - originals).pow(2).mean()
    mean_error = (originals - originals.mean(dim=0)).pow(2).mean()
    return {
        "reconstruction_vs_mean_error": float(error / mean_error) if mean_error > 0 else None,
        "latent_std_across_originals": float(z.std(dim=0).mean()),
        "saturated_latent_fraction": float((z.abs() > 0.99).float().mean()),
    }


@torch.no_grad()
def _encode(pipe: PDiffPipeline, vectors: torch.Tensor) -> torch.Tensor:
    autoencoder = pipe.autoencoder.eval()
    z = autoencoder.encode(vectors.to(autoencoder.device, autoencoder.dtype))
    return z.reshape(len(vectors), -1).float().cpu()


def _recorded_test_accuracy(params: ParameterDataset) -> torch.Tensor | None:
    if "test_accuracy" not in params.dataset.column_names:
        return None
    return params.column("test_accuracy").double()


def _rounded(values: torch.Tensor, digits: int = 4) -> list:
    return np.round(np.asarray(values.detach().double().cpu()), digits).tolist()


def standard_error_of_difference(a: dict, b: dict) -> float | None:
    """Standard error of the difference of two rows' mean accuracies; None if a row has a single model."""
    if a["n"] < 2 or b["n"] < 2:
        return None
    # The rows store the population std; the sample variance is std^2 * n / (n - 1).
    return math.sqrt(sum(r["std"] ** 2 * r["n"] / (r["n"] - 1) / r["n"] for r in (a, b)))


def _verdict(table: dict, similarity_rows: dict) -> dict:
    """For every row other than p-diff: does p-diff beat it in mean and in best accuracy, and is it more novel?"""
    ours = table[PDIFF]
    our_iou = similarity_rows[PDIFF]["max_iou"]["mean"]
    verdict = {}
    for name, row in table.items():
        if name == PDIFF:
            continue
        their_iou = similarity_rows[name]["max_iou"]["mean"]
        se = standard_error_of_difference(ours, row)
        verdict[name] = {
            # A higher mean counts only beyond two standard errors of the difference (when both rows have spread).
            "mean_beats": ours["mean"] - row["mean"] > (2 * se if se is not None else 0.0),
            "mean_within_2se": se is not None and abs(ours["mean"] - row["mean"]) <= 2 * se,
            "mean_margin": ours["mean"] - row["mean"],
            "best_beats": ours["best"] > row["best"],
            "best_margin": ours["best"] - row["best"],
            # Lower max-IoU to the originals = more different behaviour from every collected checkpoint.
            "more_novel": our_iou < their_iou,
            "max_iou_margin": our_iou - their_iou,
        }
    return verdict
