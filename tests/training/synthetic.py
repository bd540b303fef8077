"""A parameter dataset for the digits-mlp recipe made in a second, without collecting: the base MLP plus noise.

It trains like a collected one (finite losses, the same layout), which is all the fast training and bad-input tests
need; tests that check what training learns collect real checkpoints instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pdiff_hub import TargetModel
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.recipes.config import load_recipe

# A few steps of each stage, a checkpoint every 3 steps (for --section.key overrides on the command line)
TINY_TRAIN = ["--train.autoencoder_steps", "4", "--train.diffusion_steps", "4", "--train.autoencoder_batch_size", "4",
              "--train.diffusion_batch_size", "4", "--checkpointing_steps", "3", "--skip_eval", "--report_to", "none"]


def digits_parameter_dataset(folder: Path, num_checkpoints: int = 8, seed: int = 0) -> Path:
    """Save a parameter dataset matching the digits-mlp recipe's target into ``folder``; return ``folder``."""
    recipe = load_recipe("digits-mlp")
    torch.manual_seed(seed)
    target = TargetModel(recipe.target.model_name, recipe.target.model_kwargs, recipe.target.param_patterns,
                         image_size=recipe.data.image_size)
    base = target.base_vector()
    vectors = base + 0.01 * torch.randn(num_checkpoints, base.numel())
    rows = [{"step": i, "seed": seed, "lr": 1e-3, "val_accuracy": 50.0, "test_accuracy": 50.0}
            for i in range(num_checkpoints)]
    ParameterDataset(build_parameter_table(vectors, rows), target).save(folder)
    return Path(folder)
