"""The authors' networks, re-created for the benchmarks that compare against them: p-diff v2's default sizes.

The components' defaults are those sizes: the autoencoder's channels 64/128/256 with a 128-value latent, kernel 7;
the denoiser's 8-layer 1D CNN (channels 1-64-128-256-512-256-128-64-1, kernel 7). A recipe keeps everything else
(batch sizes, step counts, the noise schedule).
"""

from __future__ import annotations

import dataclasses

import torch
from diffusers import DDPMScheduler

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.recipes.config import AutoencoderConfig, DenoiserConfig, Recipe
from pdiff_hub.training.objectives import build_autoencoder, build_denoiser, build_scheduler

__all__ = ["paper_pipeline", "paper_sized"]


def paper_sized(recipe: Recipe) -> Recipe:
    """``recipe`` with the authors' v2 autoencoder and denoiser sizes instead of its own."""
    return dataclasses.replace(recipe, autoencoder=AutoencoderConfig(), denoiser=DenoiserConfig())


def paper_pipeline(recipe: Recipe, params: ParameterDataset, seed: int = 0) -> PDiffPipeline:
    """An *untrained* pipeline with the authors' network sizes for ``params``' network, sampling with the recipe's
    DDPM schedule; for timing only (the time of a forward pass does not depend on the weights)."""
    paper = paper_sized(recipe)
    torch.manual_seed(seed)
    scheduler: DDPMScheduler = build_scheduler(paper)
    pipe = PDiffPipeline(target=params.target, autoencoder=build_autoencoder(paper, params.target, params.vectors),
                         denoiser=build_denoiser(paper), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
