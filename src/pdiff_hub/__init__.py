"""pdiff_hub: Neural Network Diffusion (p-diff) the Hugging Face way."""

from .models.autoencoder import ParameterAutoencoder
from .models.denoiser import LatentDenoiser, LatentDenoiserOutput
from .params import ParameterLayout, select_parameters
from .pipeline import PDiffPipeline, PDiffPipelineOutput
from .target import TargetModel

__version__ = "0.1.0"

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
