"""Sampling the models to evaluate, from a pipeline checked to belong to the parameter dataset and its network."""

from __future__ import annotations

import json

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ..core.layout import ParameterLayout
from ..data.parameters import ParameterDataset
from ..models.target import TargetModel
from ..pipeline import PDiffPipeline
from ..recipes.config import Recipe

__all__ = ["SCHEDULERS", "check_recipe_target", "check_same_param_dataset", "check_same_target",
           "generate_parameters"]

SCHEDULERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
"""The samplers ``evaluate.scheduler`` can name."""


def check_same_target(generating: TargetModel, collected: TargetModel) -> None:
    """Raise ``ValueError`` unless the pipeline's network is the one the parameter dataset was collected from.

    Compares the library and model name, the generated layout (names and shapes) and the frozen weights: generated
    vectors are only meaningful in the network whose remainder they were trained with.
    """
    a, b = ((t.config.library, t.config.model_name) for t in (generating, collected))
    if a != b:
        raise ValueError(f"The pipeline generates parameters of {a[0]} {a[1]!r}, the parameter dataset holds {b[0]} "
                         f"{b[1]!r}; pass the "
                         "parameter dataset the pipeline was trained on")
    la, lb = generating.layout, collected.layout
    if la.names != lb.names or la.shapes != lb.shapes:
        raise ValueError(
            f"The pipeline's generated layout {dict(zip(la.names, la.shapes))} differs from the "
            f"parameter dataset's {dict(zip(lb.names, lb.shapes))}; pass the parameter dataset the pipeline was "
            "trained on"
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


def check_same_param_dataset(pipe: PDiffPipeline, params: ParameterDataset, allow_other: bool = False) -> None:
    """Raise ``ValueError`` when the pipeline records that it was trained on another parameter dataset.

    The fingerprint a trained pipeline records (``pipe.provenance["param_dataset_fingerprint"]``) is compared with
    ``params.fingerprint``; a pipeline that records none (saved before the record existed, or built by hand) passes.
    Comparing against foreign checkpoints is legitimate only on purpose: ``allow_other`` says so.
    """
    recorded = pipe.provenance.get("param_dataset_fingerprint")
    if allow_other or recorded is None or recorded == params.fingerprint:
        return
    raise ValueError(
        f"The pipeline {pipe.name_or_path or ''} was trained on the parameter dataset with fingerprint "
        f"{str(recorded)[:12]}, not on {params.source or 'the given one'} (fingerprint {params.fingerprint[:12]}); "
        "evaluate it with its own parameter dataset, or allow this with --allow_other_param_dataset "
        "(allow_other_param_dataset=True)"
    )


def check_recipe_target(recipe: Recipe, target: TargetModel) -> None:
    """Raise ``ValueError`` unless the recipe describes the pipeline's network.

    The evaluation images are prepared from the recipe (``data.image_size``, ``target.model_kwargs``' channels and
    classes): a recipe of another network would evaluate the models on the wrong inputs.
    """
    config = target.config
    pairs = {
        "target.library": (recipe.target.library, config.library),
        "target.model_name": (recipe.target.model_name, config.model_name),
        # A task family generates a 2-way network (its backbone has the recipe's kwargs as they are).
        "target.model_kwargs": (_plain(recipe.generated_model_kwargs()), _plain(config.model_kwargs or {})),
        "data.image_size": (recipe.data.image_size, config.image_size),
        "lora adapter": (_plain(recipe.lora.peft_arguments()), _plain(config.adapter)),
    }
    for key, (ours, theirs) in pairs.items():
        if ours != theirs:
            raise ValueError(f"The recipe's {key} is {ours!r} but the pipeline's network has {theirs!r}; use the "
                             "recipe the pipeline was trained with (without --recipe, the one recorded beside it)")
    if list(recipe.target.param_patterns) != list(config.param_patterns):
        layout = ParameterLayout.from_model(target.model, list(recipe.target.param_patterns))
        if layout != target.layout:
            raise ValueError(f"The recipe's target.param_patterns {list(recipe.target.param_patterns)} select "
                             f"{layout.num_params} values, but the pipeline generates {target.layout.num_params} "
                             f"({list(config.param_patterns)}); use the recipe the pipeline was trained with")


def _plain(value: object) -> object:
    """``value`` as JSON reads it back (tuples become lists), so that a recorded and a live config compare equal."""
    return json.loads(json.dumps(value, default=str))


def generate_parameters(
    pipe: PDiffPipeline,
    num_models: int,
    num_inference_steps: int,
    scheduler: str = "ddim",
    generator: torch.Generator | None = None,
    progress: bool = True,
    condition: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """Sample ``num_models`` parameter vectors (per condition) in one batch, with a DDIM or DDPM sampler built from
    the pipeline's.

    The pipeline itself is left untouched: a sibling pipeline shares its components with the chosen scheduler
    (``DDIMScheduler.from_config`` keeps the paper's training schedule).

    Args:
        pipe: the trained pipeline.
        num_models: how many vectors.
        num_inference_steps: denoising steps.
        scheduler: a name of :data:`SCHEDULERS`.
        generator: seeds the sampling.
        progress: show a progress bar.
        condition: a conditional pipeline's (C, condition_dim) conditions; None samples unconditionally.
        guidance_scale: classifier-free guidance (see :meth:`~pdiff_hub.pipeline.PDiffPipeline.__call__`).

    Returns:
        (num_models, D) float32 on the CPU; (C * num_models, D) for C conditions, condition by condition.
    """
    if num_models < 1:
        raise ValueError(f"num_models must be at least 1, got {num_models}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"evaluate.scheduler must be one of {sorted(SCHEDULERS)}, got {scheduler!r}")
    sampler = PDiffPipeline(
        pipe.target, pipe.autoencoder, pipe.denoiser, SCHEDULERS[scheduler].from_config(pipe.scheduler.config)
    )
    sampler.set_progress_bar_config(disable=not progress, desc=f"sampling ({scheduler})")
    kwargs = {} if condition is None else {"condition": condition, "guidance_scale": guidance_scale}
    out = sampler(num_models=num_models, num_inference_steps=num_inference_steps, generator=generator, output_type="pt",
                  **kwargs)
    return out.parameters
