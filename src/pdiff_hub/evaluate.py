"""Evaluating generated parameters: accuracy of many parameter vectors of one network, fast.

The frozen part of the network is the same for every vector, so its activations are computed once per split
(:class:`~pdiff_hub.prefix.FrozenPrefixSplit`) and only the layers that change run per vector.
"""

from __future__ import annotations

import torch

from .prefix import FrozenPrefixSplit
from .target import TargetModel

__all__ = ["ParameterEvaluator"]


class ParameterEvaluator:
    """Predictions and accuracy of many parameter vectors of ``target`` on one labelled split.

    Args:
        target: the network and the layout of its generated parameters.
        images: the split's images, (N, C, H, W).
        labels: the split's labels, (N,).
        batch_size: images per forward pass.

    Example:
        ```py
        >>> evaluator = ParameterEvaluator(pipe.target, test_images, test_labels)
        >>> evaluator.accuracy(pipe(num_models=100, output_type="pt").parameters)  # (100,) percent
        ```
    """

    def __init__(self, target: TargetModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.target = target
        self.labels = labels
        self.batch_size = batch_size
        self.split = FrozenPrefixSplit.from_model(target.model, target.layout.names)
        self.frontier = self.split.compute_prefix(images, batch_size=batch_size)

    def predictions(self, vectors: torch.Tensor) -> torch.Tensor:
        """Predicted labels (M, N) of parameter vectors (M, D)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.target.layout.num_params:
            raise ValueError(f"Expected parameter vectors of shape (M, {self.target.layout.num_params}), "
                             f"got {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("Parameter vectors contain NaN or infinite values")
        params = self.target.layout.unflatten(vectors.float())
        return self.split.predict_many(self.frontier, params, batch_size=self.batch_size)

    def wrong(self, vectors: torch.Tensor) -> torch.Tensor:
        """Boolean (M, N): which samples each vector's model gets wrong."""
        return self.predictions(vectors) != self.labels[None]

    def accuracy(self, vectors: torch.Tensor) -> torch.Tensor:
        """Top-1 accuracy in percent of each vector, (M,)."""
        return 100.0 * (~self.wrong(vectors)).float().mean(dim=1)
