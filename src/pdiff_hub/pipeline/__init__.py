"""The inference pipeline: :class:`PDiffPipeline` (noise -> latents -> parameter vectors -> ready classifiers) and the
checks of a saved pipeline folder. Inference only: nothing here trains, evaluates or publishes."""

from .pipeline_pdiff import PDiffPipeline, PDiffPipelineOutput

__all__ = ["PDiffPipeline", "PDiffPipelineOutput"]
