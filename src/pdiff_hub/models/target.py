"""The network whose parameters p-diff generates: a timm model or a transformers classifier, with its frozen weights."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..core.adapters import attach_lora, base_state_dict, trainable_names
from ..core.classifiers import classifier_io, create_classifier, restore_transformers_class
from ..core.layout import ParameterLayout

__all__ = ["TargetModel"]


class TargetModel(ModelMixin, ConfigMixin):
    """A timm model or a 🤗 transformers image classifier, its frozen weights, and the layout of the generated
    parameters.

    The weights saved with this component are those of the base model the checkpoints were collected from: every
    generated model shares them and differs only in the generated parameters. Normalization layers stay in eval
    mode, so their running statistics are part of the frozen remainder.

    Args:
        model_name: a ``timm.create_model`` name (``"resnet18"``, ``"vit_tiny_patch16_224"``, ``"pdiff_mlp"``, ...);
            for ``library="transformers"`` an architecture class (``"ViTForImageClassification"``), a config type
            (``"resnet"``), a local folder or a Hub id.
        model_kwargs: keyword arguments for ``timm.create_model`` (``num_classes``, ``in_chans``, ``img_size``...),
            or transformers config values (``num_labels``, ``num_channels``, ``hidden_size``...).
        param_patterns: name patterns of the generated parameters (``["layer4.1.bn*"]``; ``["*"]`` = all), in the
            library's own parameter names.
        param_names: the resolved, ordered parameter names; filled in from ``param_patterns`` when omitted.
        param_shapes: their shapes; filled in with ``param_names``.
        image_size: the input resolution the model was trained at.
        library: ``"timm"`` (the default, and what targets saved before this argument existed are) or
            ``"transformers"``. A transformers network is called as ``model(images)`` and returns its logits
            (:func:`~pdiff_hub.core.classifiers.logits_class`); :meth:`build_transformers_model` gives the plain one.
        hf_config: a transformers network's full config; filled in when omitted, so that a saved target rebuilds
            without the folder or repo ``model_name`` named.
        adapter: ``peft.LoraConfig`` arguments (``r``, ``lora_alpha``, ``target_modules``, ``modules_to_save``...):
            the network is wrapped with ``peft.get_peft_model`` and the generated parameters are chosen among the
            adapter's (``param_patterns`` ``["*"]`` = the whole adapter: the LoRA matrices and the modules it trains
            whole, such as a new head). The frozen remainder is the base network. None: no adapter.

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
        library: str = "timm",
        hf_config: dict | None = None,
        adapter: dict | None = None,
    ):
        super().__init__()
        self.model, recorded = create_classifier(library, model_name, model_kwargs, hf_config)
        if library == "transformers" and hf_config is None:
            self.register_to_config(hf_config=recorded)
        among = None
        if adapter is not None:
            self.model = attach_lora(self.model, dict(adapter))
            among = trainable_names(self.model)
        if param_names is None:
            layout = ParameterLayout.from_model(self.model, list(param_patterns), among)
            self.register_to_config(param_names=list(layout.names), param_shapes=[list(s) for s in layout.shapes])
        else:
            layout = ParameterLayout(tuple(param_names), tuple(tuple(s) for s in (param_shapes or [])))
            layout.check_state_dict(dict(self.model.named_parameters()), what=f"{library} model {model_name!r}")
        self.layout = layout
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> TargetModel:
        # The target is a frozen reference; its normalization statistics must never update.
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    @property
    def has_adapter(self) -> bool:
        """Whether the generated parameters are a PEFT LoRA adapter's."""
        return self.config.adapter is not None

    def base_network(self) -> nn.Module:
        """A copy of the frozen base network, without the adapter, under its own library's class and names.

        Raises:
            ValueError: when the target has no adapter (its network is the base network).
        """
        if not self.has_adapter:
            raise ValueError("The target has no adapter: its network is the base network itself")
        c = self.config
        base, _ = create_classifier(c.library, c.model_name, c.model_kwargs, c.hf_config)
        base.load_state_dict(base_state_dict(self.model), strict=True)
        return restore_transformers_class(base).eval()

    @property
    def is_transformers(self) -> bool:
        """Whether the network is a transformers classifier."""
        return self.config.library == "transformers"

    def classes_and_channels(self) -> tuple[int | None, int]:
        """The network's class count (None when its arguments do not say) and input channels."""
        if self.is_transformers:
            return int(self.model.config.num_labels), int(getattr(self.model.config, "num_channels", 3))
        return classifier_io("timm", self.config.model_name, self.config.model_kwargs)

    def base_vector(self) -> torch.Tensor:
        """The generated parameters of the base model as one vector."""
        return self.layout.flatten(dict(self.model.named_parameters()))

    def build_model(self, vector: torch.Tensor) -> nn.Module:
        """The network (timm, or transformers returning logits) in eval mode with ``vector`` as its generated
        parameters.

        The frozen parameters and buffers are shared with this component, not copied, so a hundred generated
        ResNet-18s cost a hundred times 2,048 values, not a hundred networks. ``copy.deepcopy`` the result to get an
        independent model (for example, to fine-tune it).
        """
        model = copy.deepcopy(self.model, self._frozen_memo())
        return self.layout.load_into(model, vector).eval()

    def build_transformers_model(self, vector: torch.Tensor) -> nn.Module:
        """A transformers classifier of the network's own class (``model(pixel_values).logits``) in eval mode, with
        ``vector`` as its generated parameters; frozen tensors are shared as in :meth:`build_model`. With an adapter,
        the ``peft.PeftModel`` around it.

        Raises:
            ValueError: when the target is a timm model.
        """
        if not self.is_transformers:
            raise ValueError(f"The target {self.config.model_name!r} is a timm model, not a transformers one; use "
                             f"build_model")
        model = self.build_model(vector)
        restore_transformers_class(model.get_base_model() if self.has_adapter else model)
        return model

    def _frozen_memo(self) -> dict:
        """A ``copy.deepcopy`` memo that shares the frozen parameters and every buffer with this component."""
        generated = set(self.layout.names)
        memo = {id(t): t for n, t in self.model.named_parameters() if n not in generated}
        memo.update({id(t): t for t in self.model.buffers()})
        return memo

    def build_state_dict(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The full ``state_dict`` of the model with ``vector`` as its generated parameters."""
        state = dict(self.model.state_dict())
        state.update({k: v.clone() for k, v in self.layout.unflatten(vector).items()})
        return state
