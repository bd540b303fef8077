"""Sampling the models to evaluate, from a pipeline checked to belong to the parameter dataset's network."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ..models.target import TargetModel
from ..pipeline import PDiffPipeline

__all__ = ["SCHEDULERS", "check_same_target", "generate_parameters"]

SCHEDULERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
"""The samplers ``evaluate.scheduler`` can name."""


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

    Args:
        pipe: the trained pipeline.
        num_models: how many vectors.
        num_inference_steps: denoising steps.
        scheduler: a name of :data:`SCHEDULERS`.
        generator: seeds the sampling.
        progress: show a progress bar.

    Returns:
        (num_models, D) float32 on the CPU.
    """
    if num_models < 1:
        raise ValueError(f"num_models must be at least 1, got {num_models}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"evaluate.scheduler must be one of {sorted(SCHEDULERS)}, got {scheduler!r}")
    sampler = PDiffPipeline(
        pipe.target, pipe.autoencoder, pipe.denoiser, SCHEDULERS[scheduler].from_config(pipe.scheduler.config)
    )
    sampler.set_progress_bar_config(disable=not progress, desc=f"sampling ({scheduler})")
    out = sampler(num_models=num_models, num_inference_steps=num_inference_steps, generator=generator, output_type="pt")
    return out.parameters
