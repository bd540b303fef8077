"""Training speed of both p-diff stages at a recipe's batch sizes, on a real parameter dataset.

    .venv/bin/python benchmarks/training_speed.py --recipe fashion-mnist-resnet18 \\
        --param_dataset runs/fashion-mnist-resnet18/params [--steps 100]

Prints steps per second of the autoencoder stage and of the diffusion stage (after a few warm-up steps), and the
time the recipe's step counts therefore take. The same one-step functions as ``scripts/train.py`` are used.
"""

from __future__ import annotations

import argparse
import time

import torch

from pdiff_hub.param_dataset import ParameterDataset
from pdiff_hub.recipe import load_recipe
from pdiff_hub.training import (
    autoencoder_loss,
    build_autoencoder,
    build_denoiser,
    build_scheduler,
    diffusion_loss,
    sample_batch,
)


def steps_per_second(model: torch.nn.Module, loss_fn, steps: int, lr: float) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for i in range(steps + 5):
        if i == 5:
            start = time.perf_counter()
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="fashion-mnist-resnet18")
    parser.add_argument("--param_dataset", default="runs/fashion-mnist-resnet18/params")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    t = recipe.train
    params = ParameterDataset.load(args.param_dataset)
    vectors = params.vectors
    torch.manual_seed(0)
    autoencoder = build_autoencoder(recipe, params.target, vectors)
    denoiser = build_denoiser(recipe)
    scheduler = build_scheduler(recipe)
    with torch.no_grad():
        latents = autoencoder.eval().encode(vectors)

    ae = steps_per_second(
        autoencoder,
        lambda: autoencoder_loss(autoencoder, sample_batch(vectors, t.autoencoder_batch_size)),
        args.steps,
        t.autoencoder_lr,
    )
    dn = steps_per_second(
        denoiser,
        lambda: diffusion_loss(denoiser, scheduler, sample_batch(latents, t.diffusion_batch_size)),
        args.steps,
        t.diffusion_lr,
    )
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"threads: {torch.get_num_threads()}; parameter vectors: {tuple(vectors.shape)}")
    print(
        f"autoencoder ({count(autoencoder):,} params), batch {t.autoencoder_batch_size}: {ae:.1f} steps/s; "
        f"{t.autoencoder_steps} steps take {t.autoencoder_steps / ae:.0f} s"
    )
    print(
        f"denoiser ({count(denoiser):,} params), batch {t.diffusion_batch_size}: {dn:.1f} steps/s; "
        f"{t.diffusion_steps} steps take {t.diffusion_steps / dn:.0f} s"
    )


if __name__ == "__main__":
    main()
