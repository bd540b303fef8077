"""The rows p-diff is compared with: the paper's weight average and the memorization critique's baselines.

Zeng et al. (2025) ask whether p-diff's models beat simple ways of making new parameters from the collected
checkpoints: adding noise to them, averaging random subsets of them, and sampling each coordinate from a Gaussian
fitted to them.
"""

from __future__ import annotations

import torch

from ..recipes.config import EvaluateConfig
from .result import ENSEMBLE, GAUSSIAN

__all__ = ["baseline_rows", "noise_added", "per_coordinate_gaussian", "random_averages", "weight_average"]


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


def baseline_rows(
    originals: torch.Tensor, config: EvaluateConfig, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """The rows p-diff is compared with, by name: the paper's ensemble and the critique's three baselines.

    ``ensemble`` is one model; ``noise <a>`` (one row per amplitude of ``config.noise_amplitudes``), ``average of
    <config.average_size>`` and ``gaussian`` have ``config.num_models`` models each, as many as p-diff generates.
    The rows are drawn in this order from ``generator``.
    """
    n = config.num_models
    rows = {ENSEMBLE: weight_average(originals)}
    for amplitude in config.noise_amplitudes:
        rows[f"noise {amplitude:g}"] = noise_added(originals, float(amplitude), num=n, generator=generator)
    rows[f"average of {config.average_size}"] = random_averages(
        originals, config.average_size, num=n, generator=generator
    )
    rows[GAUSSIAN] = per_coordinate_gaussian(originals, num=n, generator=generator)
    return rows


def _check_num(num: int) -> None:
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
