"""The two training objectives of p-diff and the components a recipe builds. No argparse, no I/O.

All randomness (batches, noise, timesteps) comes from torch's global generator, whose state
``accelerator.save_state`` stores: a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import dataclasses

import torch
from diffusers import DDPMScheduler
from torch import nn

from ..models.autoencoder import ParameterAutoencoder
from ..models.denoiser import LatentDenoiser
from ..models.target import TargetModel
from ..recipes.config import Recipe

__all__ = ["autoencoder_loss", "build_autoencoder", "build_denoiser", "build_scheduler", "diffusion_loss",
           "sample_batch"]


def build_autoencoder(recipe: Recipe, target: TargetModel, vectors: torch.Tensor) -> ParameterAutoencoder:
    """The recipe's autoencoder for ``target``'s layout, its standardization fitted to the checkpoints."""
    autoencoder = ParameterAutoencoder(num_params=target.layout.num_params, tensor_sizes=target.layout.sizes,
                                       **dataclasses.asdict(recipe.autoencoder))
    autoencoder.fit_normalization(vectors)
    return autoencoder


def build_denoiser(recipe: Recipe) -> LatentDenoiser:
    """The recipe's denoiser for latents of the autoencoder's ``latent_dim``."""
    return LatentDenoiser(latent_dim=recipe.autoencoder.latent_dim, **dataclasses.asdict(recipe.denoiser))


def build_scheduler(recipe: Recipe) -> DDPMScheduler:
    """DDPM with the paper's linear schedule; ``clip_sample`` off, since latents are not images in [-1, 1]."""
    t = recipe.train
    return DDPMScheduler(num_train_timesteps=t.num_train_timesteps, beta_start=t.beta_start, beta_end=t.beta_end,
                         beta_schedule="linear", clip_sample=False)


def sample_batch(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A random batch (with replacement when the data is smaller than the batch)."""
    if batch_size >= len(data):
        return data[torch.randint(len(data), (batch_size,))]
    return data[torch.randperm(len(data))[:batch_size]]


def autoencoder_loss(autoencoder: nn.Module, vectors: torch.Tensor) -> torch.Tensor:
    """Reconstruction MSE in standardized units; noise augmentation happens inside the model in training mode."""
    model = getattr(autoencoder, "module", autoencoder)
    reconstruction = autoencoder(vectors)
    return ((reconstruction - vectors) / model.param_std).pow(2).mean()


def diffusion_loss(denoiser: nn.Module, scheduler: DDPMScheduler, latents: torch.Tensor) -> torch.Tensor:
    """The DDPM objective: MSE between the added noise and the denoiser's prediction, at uniform timesteps."""
    latents = latents.reshape(latents.shape[0], 1, -1)
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    return nn.functional.mse_loss(denoiser(noisy, timesteps).sample, noise)
