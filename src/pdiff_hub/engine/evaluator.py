"""Batched evaluation: predictions and accuracy of many parameter vectors of one network on one labelled split.

The frozen part of the network is the same for every vector, so its activations are computed once per split
(:class:`~pdiff_hub.engine.split.FrozenPrefixSplit`) and only the layers that change run per vector.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.layout import ParameterLayout
from .split import FrozenPrefixSplit

__all__ = ["ParameterEvaluator"]


class ParameterEvaluator:
    """Predictions and accuracy of many parameter vectors of one network on one labelled split.

    Args:
        model: the network, in eval mode, holding every frozen parameter and buffer.
        layout: the layout of its generated parameters.
        images: the split's images, (N, C, H, W).
        labels: the split's labels, (N,).
        batch_size: images per forward pass.
        split: an existing :class:`~pdiff_hub.engine.split.FrozenPrefixSplit` of ``model`` to reuse.
        simplify: run the split's simplified suffix (:meth:`~pdiff_hub.engine.split.FrozenPrefixSplit.simplified`:
            convolutions on 1x1 maps as their centre tap, only the tokens a ViT's head reads), the same logits up to
            float rounding: identical predictions but for near-ties (measured on the Fashion-MNIST recipes in
            ``benchmarks/flop_floor.py``). False runs the split exactly as given.

    Example:
        ```py
        >>> evaluator = ParameterEvaluator(pipe.target.model, pipe.target.layout, test_images, test_labels)
        >>> evaluator.accuracy(pipe(num_models=100, output_type="pt").parameters)  # (100,) percent
        ```
    """

    def __init__(
        self,
        model: nn.Module,
        layout: ParameterLayout,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 1024,
        split: FrozenPrefixSplit | None = None,
        simplify: bool = True,
    ):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.layout = layout
        self.labels = labels
        self.batch_size = batch_size
        # One traced split serves every split of the data; pass it in to avoid tracing the network again.
        split = split or FrozenPrefixSplit.from_model(model, layout.names)
        self.split = split.simplified() if simplify else split
        self.frontier = self.split.compute_prefix(images, batch_size=batch_size)

    def predictions(self, vectors: torch.Tensor) -> torch.Tensor:
        """Predicted labels (M, N) of parameter vectors (M, D)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.layout.num_params:
            raise ValueError(f"Expected parameter vectors of shape (M, {self.layout.num_params}), "
                             f"got {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("Parameter vectors contain NaN or infinite values")
        params = self.layout.unflatten(vectors.float())
        return self.split.predict_many(self.frontier, params, batch_size=self.batch_size)

    def wrong(self, vectors: torch.Tensor) -> torch.Tensor:
        """Boolean (M, N): which samples each vector's model gets wrong."""
        return self.predictions(vectors) != self.labels[None]

    def accuracy(self, vectors: torch.Tensor) -> torch.Tensor:
        """Top-1 accuracy in percent of each vector, (M,)."""
        return 100.0 * (~self.wrong(vectors)).float().mean(dim=1)
