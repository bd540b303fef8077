"""Sanity checks of an evaluation: the originals' accuracy as recorded, and whether the autoencoder tells them apart.

Each check stores its measure and its verdict, with the thresholds below, so that the report only renders them.
"""

from __future__ import annotations

import warnings

import torch

from ..data.parameters import ParameterDataset
from ..models.autoencoder import SATURATED
from ..pipeline import PDiffPipeline
from .metrics import nearest_l2

__all__ = [
    "COLLAPSE_RATIO",
    "IDENTICAL_LATENT_STD",
    "LATENT_DISTANCE_RATIO",
    "SATURATED",
    "SATURATION_WARNING",
    "RECORDED_ACCURACY_TOLERANCE",
    "autoencoder_checks",
    "encode",
    "latent_nearest_original",
    "recorded_accuracy_gap",
]

RECORDED_ACCURACY_TOLERANCE = 0.1
"""Points of test accuracy by which recomputing the originals may differ from the record before it is suspect."""
COLLAPSE_RATIO = 0.5
"""Reconstruction error, relative to predicting the mean checkpoint, above which the autoencoder has collapsed."""
SATURATION_WARNING = 0.5
"""Fraction of saturated latent values above which the report warns."""
LATENT_DISTANCE_RATIO = 2.0
"""How many times the originals' own spacing the generated models' latent distance to the nearest original may be
before they count as off the originals' region (issue goal: within 2x)."""
IDENTICAL_LATENT_STD = 1e-3
"""Spread of the originals' latents below which they are (nearly) identical."""


def recorded_accuracy_gap(params: ParameterDataset, recomputed: torch.Tensor) -> float | None:
    """Largest difference between the originals' test accuracy recorded at collection and ``recomputed``.

    A gap above :data:`RECORDED_ACCURACY_TOLERANCE` is warned about: the data section of the recipe is probably
    not the one the dataset was collected with.

    Args:
        params: the parameter dataset, with its ``test_accuracy`` column (percent).
        recomputed: (K,) the originals' test accuracy on the same, whole test split.

    Returns:
        The gap in points, or None when the dataset records no test accuracy.
    """
    if "test_accuracy" not in params.dataset.column_names:
        return None
    gap = float((params.column("test_accuracy").double() - recomputed.cpu()).abs().max())
    if gap > RECORDED_ACCURACY_TOLERANCE:
        warnings.warn(
            f"The originals' test accuracy differs by up to {gap:.2f} points from the one recorded at "
            "collection: is the data section of the recipe the one the dataset was collected with?",
            stacklevel=3,
        )
    return gap


@torch.no_grad()
def encode(pipe: PDiffPipeline, vectors: torch.Tensor) -> torch.Tensor:
    """The autoencoder's latents of parameter vectors, flattened to (M, latent size) float32 on the CPU."""
    autoencoder = pipe.autoencoder.eval()
    z = autoencoder.encode(vectors.to(autoencoder.device, autoencoder.dtype))
    return z.reshape(len(vectors), -1).float().cpu()


@torch.no_grad()
def autoencoder_checks(pipe: PDiffPipeline, originals: torch.Tensor, latents: torch.Tensor | None = None) -> dict:
    """Does the autoencoder tell the collected checkpoints apart, or has it collapsed onto their mean?

    Args:
        pipe: the trained pipeline.
        originals: (K, D) collected checkpoints.
        latents: the originals' latents when the caller has them already (as the evaluation does).

    Returns:
        ``reconstruction_vs_mean_error``: mean squared error of the reconstructions divided by that of predicting
        every checkpoint by the checkpoints' mean (near or above 1: the latents carry no information about which
        checkpoint they encode, and every decoded model is the mean; None when the checkpoints are all equal);
        ``latent_std_across_originals``: the per-coordinate std of the originals' latents, averaged;
        ``saturated_latent_fraction``: the fraction of the originals' latent values with magnitude above
        :data:`SATURATED` (a ``tanh`` latent pinned at +-1 ignores its input, and the decoder has never seen the
        values between); both of the encoder's latents, before any
        latent standardization (:meth:`~pdiff_hub.ParameterAutoencoder.encoder_latents`).
    """
    z = encode(pipe, originals) if latents is None else latents
    autoencoder = pipe.autoencoder
    reconstructed = autoencoder.decode(z.to(autoencoder.device, autoencoder.dtype)).float().cpu()
    if autoencoder.config.standardize_latents:  # the decoder's own latents, before the standardization
        z = autoencoder.encoder_latents(originals.to(autoencoder.device, autoencoder.dtype)).float().cpu()
    saturated = autoencoder.saturated_fraction(z)
    originals = originals.float()
    error = (reconstructed - originals).pow(2).mean()
    mean_error = (originals - originals.mean(dim=0)).pow(2).mean()
    return {
        "reconstruction_vs_mean_error": float(error / mean_error) if mean_error > 0 else None,
        "latent_std_across_originals": float(z.std(dim=0).mean()),
        "saturated_latent_fraction": saturated,
    }


def latent_nearest_original(originals: torch.Tensor, generated: torch.Tensor) -> dict[str, float] | None:
    """Mean latent distance to the nearest original's latent: of the generated models, and of each original.

    Does the diffusion model sample where the originals' latents are? As close as the originals are to each other:
    memorizing; far beyond that: off the data, between the training latents.

    Args:
        originals: (K, L) the originals' latents.
        generated: (M, L) the generated models' latents.

    Returns:
        ``{"original": ..., "p-diff": ...}``, or None with a single original (it has no other to be near).
    """
    if len(originals) < 2:
        return None
    return {
        "original": float(nearest_l2(originals, originals, exclude_self=True).mean()),
        "p-diff": float(nearest_l2(generated, originals).mean()),
    }
