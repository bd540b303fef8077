"""Run under ``accelerate launch`` with N CPU processes (tests/training/test_train_multiprocess.py): the trainer's
models are wrapped for data parallelism, and one backward of each loss on every rank's share of the global batch
leaves, on every rank, the gradient of that loss over the whole global batch (within float rounding).

    python tests/training/ddp_gradients.py PARAM_DATASET OUTPUT_DIR

Prints one ``ok rank=<r> ...`` line per process; any mismatch is an AssertionError.
"""

from __future__ import annotations

import sys

import torch
from torch.nn.parallel import DistributedDataParallel

from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training.objectives import autoencoder_loss, diffusion_loss, rank_batch, sample_batch, step_generator
from pdiff_hub.training.trainer import PDiffTrainer

BATCH = 8
TOLERANCE = dict(rtol=1e-5, atol=1e-7)


def gradients(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def main(param_dataset: str, output_dir: str) -> None:
    values = load_recipe("digits-mlp").to_dict()
    values["train"].update(autoencoder_batch_size=BATCH, diffusion_batch_size=BATCH)
    recipe = recipe_from_dict(values)
    trainer = PDiffTrainer(recipe, ParameterDataset.load(param_dataset), output_dir, report_to="none")
    accelerator, seed = trainer.accelerator, recipe.train.seed
    rank, n = accelerator.process_index, accelerator.num_processes
    assert isinstance(trainer.autoencoder, DistributedDataParallel), type(trainer.autoencoder)
    assert isinstance(trainer.denoiser, DistributedDataParallel), type(trainer.denoiser)
    share = BATCH // n

    # Autoencoder, in eval mode so that no rank adds noise of its own: the averaged gradient of the shares' losses is
    # the gradient of the global batch's loss.
    autoencoder = accelerator.unwrap_model(trainer.autoencoder)
    trainer.autoencoder.eval()
    autoencoder_loss(trainer.autoencoder, rank_batch(trainer.vectors, BATCH, seed=seed, step=0, rank=rank,
                                                     num_processes=n)).backward()
    averaged = gradients(autoencoder)
    autoencoder.zero_grad()
    autoencoder_loss(autoencoder, sample_batch(trainer.vectors, BATCH, step_generator(seed, 0))).backward()
    reference = gradients(autoencoder)
    assert len(averaged) == len(reference) > 0
    for a, b in zip(averaged, reference, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)

    # Denoiser: each rank draws its noise and timesteps from the global generator seeded with seed + rank; the
    # reference replays every rank's draws on its share of the batch.
    denoiser = accelerator.unwrap_model(trainer.denoiser)
    latents = trainer._encode_checkpoints()
    torch.manual_seed(seed + rank)
    diffusion_loss(trainer.denoiser, trainer.scheduler, rank_batch(latents, BATCH, seed=seed, step=1, rank=rank,
                                                                   num_processes=n)).backward()
    averaged = gradients(denoiser)
    denoiser.zero_grad()
    batch = sample_batch(latents, BATCH, step_generator(seed, 1))
    losses = []
    for r in range(n):
        torch.manual_seed(seed + r)
        losses.append(diffusion_loss(denoiser, trainer.scheduler, batch[r * share:(r + 1) * share]))
    torch.stack(losses).mean().backward()
    reference = gradients(denoiser)
    assert len(averaged) == len(reference) > 0
    for a, b in zip(averaged, reference, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)
    print(f"ok rank={rank} of {n}: autoencoder and denoiser gradients are the global batch's", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
