"""The Hub: a folder as one commit, parameter datasets and pipelines published, timm and transformers export, cards.

Fetching lives with the objects (``PDiffPipeline.from_pretrained``, ``ParameterDataset.load``, timm's ``hf-hub:``
names); this layer writes and uploads.
"""

from .cards import render_card
from .commit import IGNORE_PATTERNS, HubUploadError, files_to_push, push_folder_to_hub
from .datasets import parameter_dataset_card, push_parameter_dataset
from .export import GenerationRecord, export_timm_model
from .export_transformers import export_transformers_model
from .pipelines import pipeline_card, push_pipeline_to_hub

__all__ = [
    "IGNORE_PATTERNS",
    "GenerationRecord",
    "HubUploadError",
    "export_timm_model",
    "export_transformers_model",
    "files_to_push",
    "parameter_dataset_card",
    "pipeline_card",
    "push_folder_to_hub",
    "push_parameter_dataset",
    "push_pipeline_to_hub",
    "render_card",
]
