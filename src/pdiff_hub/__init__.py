"""pdiff_hub: Neural Network Diffusion (p-diff) the Hugging Face way.

The package is layered; each layer imports only the layers below it (``import-linter`` contracts in pyproject.toml):

    core        parameter layout, small networks, target classifiers  (torch, timm, transformers)
    engine      graph split at the generated parameters, batched evaluation of many parameter vectors
    models      the pipeline components: TargetModel, ParameterAutoencoder, LatentDenoiser   (diffusers)
    pipeline    PDiffPipeline: inference only            data: image datasets, the parameter dataset
    recipes     YAML recipes (package data) read into typed sections
    training    collection, objectives, the trainer      evaluation: metrics, baselines, result, report
    hub         folder -> Hub commit, timm and transformers export, cards

The public names below are imported on first use, so ``import pdiff_hub.training.collection`` does not load
diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

_EXPORTS = {
    "ParameterLayout": "core.layout",
    "select_parameters": "core.layout",
    "TargetModel": "models.target",
    "ParameterAutoencoder": "models.autoencoder",
    "LatentDenoiser": "models.denoiser",
    "LatentDenoiserOutput": "models.denoiser",
    "PDiffPipeline": "pipeline",
    "PDiffPipelineOutput": "pipeline",
}

__all__ = [
    "LatentDenoiser",
    "LatentDenoiserOutput",
    "PDiffPipeline",
    "PDiffPipelineOutput",
    "ParameterAutoencoder",
    "ParameterLayout",
    "TargetModel",
    "select_parameters",
]

if TYPE_CHECKING:
    from .core.layout import ParameterLayout, select_parameters
    from .models.autoencoder import ParameterAutoencoder
    from .models.denoiser import LatentDenoiser, LatentDenoiserOutput
    from .models.target import TargetModel
    from .pipeline import PDiffPipeline, PDiffPipelineOutput


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pdiff_hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
