"""The network whose parameters p-diff generates: a timm model with its frozen weights."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import timm
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..core import networks  # noqa: F401  (registers the small whole-network models with timm)
from ..core.layout import ParameterLayout

__all__ = ["TargetModel"]


class TargetModel(ModelMixin, ConfigMixin):
    """A timm model, its frozen weights, and the layout of the parameters that are generated.

    The weights saved with this component are those of the base model the checkpoints were collected from: every
    generated model shares them and differs only in the generated parameters. Normalization layers stay in eval
    mode, so their running statistics are part of the frozen remainder.

    Args:
        model_name: a ``timm.create_model`` name (``"resnet18"``, ``"vit_tiny_patch16_224"``, ``"pdiff_mlp"``, ...).
        model_kwargs: keyword arguments for ``timm.create_model`` (``num_classes``, ``in_chans``, ``img_size``...).
        param_patterns: name patterns of the generated parameters (``["layer4.1.bn*"]``; ``["*"]`` = all).
        param_names: the resolved, ordered parameter names; filled in from ``param_patterns`` when omitted.
        param_shapes: their shapes; filled in with ``param_names``.
        image_size: the input resolution the model was trained at.

    Example:
        ```py
        >>> target = TargetModel("resnet18", {"num_classes": 10, "in_chans": 1}, ["layer4.1.bn*"], image_size=32)
        >>> target.layout.num_params
        2048
        ```
    """

    @register_to_config
    def __init__(
        self,
        model_name: str = "resnet18",
        model_kwargs: dict | None = None,
        param_patterns: Sequence[str] = ("layer4.1.bn1.*", "layer4.1.bn2.*"),
        param_names: Sequence[str] | None = None,
        param_shapes: Sequence[Sequence[int]] | None = None,
        image_size: int = 32,
    ):
        super().__init__()
        self.model = timm.create_model(model_name, pretrained=False, **(model_kwargs or {}))
        if param_names is None:
            layout = ParameterLayout.from_model(self.model, list(param_patterns))
            self.register_to_config(param_names=list(layout.names), param_shapes=[list(s) for s in layout.shapes])
        else:
            layout = ParameterLayout(tuple(param_names), tuple(tuple(s) for s in (param_shapes or [])))
            layout.check_state_dict(dict(self.model.named_parameters()), what=f"timm model {model_name!r}")
        self.layout = layout
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> TargetModel:
        # The target is a frozen reference; its normalization statistics must never update.
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def base_vector(self) -> torch.Tensor:
        """The generated parameters of the base model as one vector."""
        return self.layout.flatten(dict(self.model.named_parameters()))

    def build_model(self, vector: torch.Tensor) -> nn.Module:
        """A timm model in eval mode with ``vector`` written into its generated parameters.

        The frozen parameters and buffers are shared with this component, not copied, so a hundred generated
        ResNet-18s cost a hundred times 2,048 values, not a hundred networks. ``copy.deepcopy`` the result to get an
        independent model (for example, to fine-tune it).
        """
        generated = set(self.layout.names)
        memo = {id(t): t for n, t in self.model.named_parameters() if n not in generated}
        memo.update({id(t): t for t in self.model.buffers()})
        model = copy.deepcopy(self.model, memo)
        return self.layout.load_into(model, vector).eval()

    def build_state_dict(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The full ``state_dict`` of the model with ``vector`` as its generated parameters."""
        state = dict(self.model.state_dict())
        state.update({k: v.clone() for k, v in self.layout.unflatten(vector).items()})
        return state
