"""The two training objectives of p-diff and the components a recipe builds. No argparse, no I/O.

The noise and timesteps (and the autoencoder's noise augmentation) come from torch's global generator, whose state
``accelerator.save_state`` stores for every process: a resumed run continues exactly where the interrupted one
stopped. The batches of a 1-process run come from the global generator too (:func:`sample_batch`); under N processes
every step's global batch is drawn from a generator seeded by the run's seed and the step alone, the same on every
rank, and each rank takes its slice of it (:func:`rank_batch`): the ranks' batches are distinct, reproducible, and
need no state of their own in a checkpoint. Both give row indices (:func:`batch_indices`, :func:`rank_rows`), so that a
task family's latents and their conditions are batched with the same rows.
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch
from diffusers import DDPMScheduler
from torch import nn

from ..models.autoencoder import ParameterAutoencoder
from ..models.denoiser import LatentDenoiser
from ..models.target import TargetModel
from ..recipes.config import Recipe

__all__ = ["autoencoder_loss", "batch_indices", "build_autoencoder", "build_denoiser", "build_scheduler",
           "diffusion_loss", "rank_batch", "rank_rows", "sample_batch", "step_generator"]


def build_autoencoder(recipe: Recipe, target: TargetModel, vectors: torch.Tensor) -> ParameterAutoencoder:
    """The recipe's autoencoder for ``target``'s layout, its standardization fitted to the checkpoints."""
    autoencoder = ParameterAutoencoder(num_params=target.layout.num_params, tensor_sizes=target.layout.sizes,
                                       **dataclasses.asdict(recipe.autoencoder))
    autoencoder.fit_normalization(vectors)
    return autoencoder


def build_denoiser(recipe: Recipe, condition_dim: int = 0) -> LatentDenoiser:
    """The recipe's denoiser for latents of the autoencoder's ``latent_dim``, taking conditions of ``condition_dim``
    values (a task family's number of classes; 0: unconditional)."""
    return LatentDenoiser(latent_dim=recipe.autoencoder.latent_dim, condition_dim=condition_dim,
                          **dataclasses.asdict(recipe.denoiser))


def build_scheduler(recipe: Recipe) -> DDPMScheduler:
    """DDPM with the paper's linear schedule; ``clip_sample`` off, since latents are not images in [-1, 1]."""
    t = recipe.train
    return DDPMScheduler(num_train_timesteps=t.num_train_timesteps, beta_start=t.beta_start, beta_end=t.beta_end,
                         beta_schedule="linear", clip_sample=False)


def sample_batch(data: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random batch (with replacement when the data is smaller than the batch), from ``generator`` or the global
    one."""
    return data[batch_indices(len(data), batch_size, generator)]


def batch_indices(num_rows: int, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The rows of a random batch: distinct when there are more rows than the batch, else drawn with replacement."""
    if batch_size >= num_rows:
        return torch.randint(num_rows, (batch_size,), generator=generator)
    return torch.randperm(num_rows, generator=generator)[:batch_size]


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator that depends on ``(seed, step)`` only: what every rank draws a step's global batch from."""
    digest = hashlib.sha256(f"pdiff-batch:{seed}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def rank_batch(data: torch.Tensor, batch_size: int, *, seed: int, step: int, rank: int,
               num_processes: int) -> torch.Tensor:
    """This rank's share of step ``step``'s global batch of ``batch_size`` rows.

    The global batch is drawn as :func:`sample_batch` draws it, from :func:`step_generator`, and split into
    ``num_processes`` consecutive slices of ``batch_size // num_processes`` rows: rank ``rank`` takes slice ``rank``.
    Together the ranks train on exactly one global batch, rows distinct across ranks when the data is larger than
    the batch, whatever the process count.

    Raises:
        ValueError: when ``batch_size`` is not a multiple of ``num_processes``.
    """
    return data[rank_rows(len(data), batch_size, seed=seed, step=step, rank=rank, num_processes=num_processes)]


def rank_rows(num_rows: int, batch_size: int, *, seed: int, step: int, rank: int, num_processes: int) -> torch.Tensor:
    """The row indices of :func:`rank_batch`'s share, for batching several tensors of ``num_rows`` rows alike.

    Raises:
        ValueError: when ``batch_size`` is not a multiple of ``num_processes``.
    """
    if batch_size % num_processes:
        raise ValueError(f"a batch of {batch_size} does not split evenly over {num_processes} processes")
    share = batch_size // num_processes
    rows = batch_indices(num_rows, batch_size, step_generator(seed, step))
    return rows[rank * share:(rank + 1) * share]


def autoencoder_loss(autoencoder: nn.Module, vectors: torch.Tensor) -> torch.Tensor:
    """Reconstruction MSE in standardized units, plus ``latent_kl`` times the latent's KL divergence for a variational
    latent; noise augmentation happens inside the model in training mode."""
    model = getattr(autoencoder, "module", autoencoder)
    weight = model.config.get("latent_kl", 0.0)
    if weight > 0:
        reconstruction, kl = autoencoder(vectors, return_kl=True)
        return ((reconstruction - vectors) / model.param_std).pow(2).mean() + weight * kl
    reconstruction = autoencoder(vectors)
    return ((reconstruction - vectors) / model.param_std).pow(2).mean()


def diffusion_loss(denoiser: nn.Module, scheduler: DDPMScheduler, latents: torch.Tensor,
                   conditions: torch.Tensor | None = None, condition_dropout: float = 0.0) -> torch.Tensor:
    """The DDPM objective: MSE between the added noise and the denoiser's prediction, at uniform timesteps.

    Args:
        denoiser: predicts the noise; it takes ``condition`` and ``drop_condition`` when ``conditions`` are given.
        scheduler: adds the noise.
        latents: (N, latent_dim) or (N, 1, latent_dim).
        conditions: (N, condition_dim), each latent's condition; None: the unconditional objective.
        condition_dropout: the probability that a row is trained with the null condition instead of its own
            (classifier-free guidance); used with ``conditions`` only.
    """
    latents = latents.reshape(latents.shape[0], 1, -1)
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if conditions is None:
        return nn.functional.mse_loss(denoiser(noisy, timesteps).sample, noise)
    # Drawn after the noise and timesteps, so those are what the unconditional objective draws. The mask is passed
    # even when no row is dropped: the null condition then takes part with a zero gradient, and every parameter gets
    # a gradient each step, as DistributedDataParallel requires.
    drop = torch.rand(latents.shape[0], device=latents.device) < condition_dropout
    prediction = denoiser(noisy, timesteps, condition=conditions, drop_condition=drop).sample
    return nn.functional.mse_loss(prediction, noise)
