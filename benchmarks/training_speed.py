"""Training speed of both p-diff stages at a recipe's batch sizes, on a real parameter dataset.

    .venv/bin/python benchmarks/training_speed.py --recipe fashion-mnist-resnet18 \\
        --param_dataset runs/fashion-mnist-resnet18/params [--steps 100] [--train.autoencoder_batch_size 100]

Prints steps per second of the autoencoder stage and of the diffusion stage (after a few warm-up steps), and the
time the recipe's step counts therefore take, for the recipe's networks and, in the same run, for networks of the
authors' v2 sizes (``paper_networks.py``; the ratio), and for the recipe's networks under bfloat16 autocast (what
``accelerate launch --mixed_precision bf16`` runs; the ratio to float32). The same one-step functions as
``scripts/train.py`` are used.
"""

from __future__ import annotations

import argparse
import time

import torch
from paper_networks import paper_sized
from resources import print_peak_memory

from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.recipes.config import Recipe, add_recipe_arguments, load_recipe, recipe_from_args
from pdiff_hub.training.objectives import (
    autoencoder_loss,
    build_autoencoder,
    build_denoiser,
    build_scheduler,
    diffusion_loss,
    sample_batch,
)


def steps_per_second(model: torch.nn.Module, loss_fn, steps: int, lr: float, bf16: bool = False) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for i in range(steps + 5):
        if i == 5:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--param_dataset", default="runs/fashion-mnist-resnet18/params")
    parser.add_argument("--steps", type=int, default=100)
    add_recipe_arguments(parser)
    args = parser.parse_args()

    recipe = recipe_from_args(args, base=load_recipe("fashion-mnist-resnet18"))
    params = ParameterDataset.load(args.param_dataset)
    print(f"threads: {torch.get_num_threads()}; parameter vectors: {tuple(params.vectors.shape)}")
    ours = measure(recipe, params, args.steps, "recipe")
    theirs = measure(paper_sized(recipe), params, args.steps, "paper-sized")
    bf16 = measure(recipe, params, args.steps, "recipe, bf16 autocast", bf16=True)
    for stage in ("autoencoder", "denoiser"):
        print(f"{stage}: the recipe's network trains {ours[stage] / theirs[stage]:.1f}x as many steps/s as the "
              f"paper-sized one; bfloat16 autocast {bf16[stage] / ours[stage]:.2f}x as many as float32")
    print_peak_memory()


def measure(recipe: Recipe, params: ParameterDataset, steps: int, label: str, bf16: bool = False) -> dict[str, float]:
    """Steps per second of both stages for ``recipe``'s networks and batch sizes; prints them."""
    t = recipe.train
    vectors = params.vectors
    torch.manual_seed(0)
    autoencoder = build_autoencoder(recipe, params.target, vectors)
    denoiser = build_denoiser(recipe)
    scheduler = build_scheduler(recipe)
    with torch.no_grad():
        latents = autoencoder.eval().encode(vectors)
    rates = {
        "autoencoder": steps_per_second(
            autoencoder, lambda: autoencoder_loss(autoencoder, sample_batch(vectors, t.autoencoder_batch_size)),
            steps, t.autoencoder_lr, bf16),
        "denoiser": steps_per_second(
            denoiser, lambda: diffusion_loss(denoiser, scheduler, sample_batch(latents, t.diffusion_batch_size)),
            steps, t.diffusion_lr, bf16),
    }
    for stage, model, batch, total in (("autoencoder", autoencoder, t.autoencoder_batch_size, t.autoencoder_steps),
                                       ("denoiser", denoiser, t.diffusion_batch_size, t.diffusion_steps)):
        count = sum(p.numel() for p in model.parameters())
        print(f"{label} {stage} ({count:,} params), batch {batch}: {rates[stage]:.1f} steps/s; "
              f"the recipe's {total} steps take {total / rates[stage]:.0f} s")
    return rates


if __name__ == "__main__":
    main()
