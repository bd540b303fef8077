"""The target network from either library: a timm model, or a 🤗 transformers image classifier.

The rest of the package calls a classifier as ``model(images) -> logits``. timm models already are such modules. A
transformers classifier takes ``pixel_values`` and returns an ``ImageClassifierOutput``, so it is built as a thin
subclass of its own class whose ``forward`` returns the logits (:func:`logits_class`): its parameters keep their
transformers names (``vit.layernorm.weight``, ``classifier.weight``), its ``config`` and ``save_pretrained`` are
the original's, and :func:`restore_transformers_class` makes it an instance of the original class again.

A transformers target is built from a ``model_name`` that is an architecture class (``"ViTForImageClassification"``),
a config type (``"vit"``, ``"resnet"``, ``"convnext"``), a local folder or a Hub id, and ``model_kwargs`` that are
config values (``num_labels``, ``num_channels``, ``hidden_size``...). Its full config is recorded
(:func:`create_classifier` returns it), so a saved target rebuilds without the folder or repo it came from.
"""

from __future__ import annotations

import functools
from pathlib import Path

import timm
import torch
from torch import nn

from . import networks  # noqa: F401  (registers the small whole-network models with timm)

__all__ = ["LIBRARIES", "classifier_io", "create_classifier", "logits_class", "restore_transformers_class"]

LIBRARIES = ("timm", "transformers")


@functools.cache
def logits_class(cls: type) -> type:
    """A subclass of the transformers classifier ``cls`` whose ``forward(images)`` returns the logits alone."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return cls.forward(self, pixel_values=pixel_values).logits

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": __name__, "_pdiff_original": cls,
                                       "__doc__": f"{cls.__name__} returning its logits (pdiff_hub)."})


def restore_transformers_class(model: nn.Module) -> nn.Module:
    """``model`` itself, turned back into an instance of its own transformers class when it is a target network."""
    original = getattr(type(model), "_pdiff_original", None)
    if original is not None:
        model.__class__ = original
    return model


def _is_folder_or_hub_id(name: str) -> bool:
    return Path(name).expanduser().is_dir() or name.count("/") == 1


def _transformers_config(model_name: str, model_kwargs: dict, hf_config: dict | None):
    """The ``PretrainedConfig`` of a transformers target (see the module's docstring for ``model_name``)."""
    import transformers
    from transformers import AutoConfig

    if hf_config is not None:
        values = dict(hf_config)
        return AutoConfig.for_model(values.pop("model_type"), **values)
    if _is_folder_or_hub_id(model_name):
        return AutoConfig.from_pretrained(model_name, **model_kwargs)
    architecture = getattr(transformers, model_name, None)
    if isinstance(architecture, type) and hasattr(architecture, "config_class"):
        return architecture.config_class(architectures=[model_name], **model_kwargs)
    return AutoConfig.for_model(model_name, **model_kwargs)


def create_classifier(library: str, model_name: str, model_kwargs: dict | None = None,
                      hf_config: dict | None = None) -> tuple[nn.Module, dict | None]:
    """A classifier ``model(images) -> logits`` and, for transformers, its full config as a dict.

    Args:
        library: ``"timm"`` or ``"transformers"``.
        model_name: a ``timm.create_model`` name; for transformers an architecture class, a config type, a local
            folder or a Hub id (a folder's or repo's weights are loaded, when it has some).
        model_kwargs: ``timm.create_model`` arguments, or transformers config values.
        hf_config: a config recorded by an earlier call: the network is rebuilt from it alone (freshly initialized).

    Raises:
        ValueError: an unknown library or an architecture that is not an image classifier.
    """
    kwargs = dict(model_kwargs or {})
    if library == "timm":
        return timm.create_model(model_name, pretrained=False, **kwargs), None
    if library != "transformers":
        raise ValueError(f"Unknown target library {library!r}; use one of {', '.join(LIBRARIES)}")
    from transformers import AutoModelForImageClassification

    config = _transformers_config(model_name, kwargs, hf_config)
    try:
        if hf_config is None and _is_folder_or_hub_id(model_name):
            model = AutoModelForImageClassification.from_pretrained(model_name, config=config)
        else:
            model = AutoModelForImageClassification.from_config(config)
    except ValueError as err:  # "Unrecognized configuration class ... for this kind of AutoModel"
        raise ValueError(f"transformers has no image classifier for {model_name!r}: {err}".split("\n")[0]) from None
    model.__class__ = logits_class(type(model))
    recorded = model.config.to_dict()
    recorded.pop("transformers_version", None)
    return model, recorded


def classifier_io(library: str, model_name: str, model_kwargs: dict | None) -> tuple[int | None, int]:
    """The class count (None when unknown) and input channels of a target, from its arguments alone.

    timm's ``num_classes`` / ``in_chans`` (3 when not given); transformers' ``num_labels`` / ``num_channels``, read
    from the config the arguments build (a folder's or repo's own config included).
    """
    kwargs = dict(model_kwargs or {})
    if library != "transformers":
        return kwargs.get("num_classes"), int(kwargs.get("in_chans", 3))
    config = _transformers_config(model_name, kwargs, None)
    return int(config.num_labels), int(getattr(config, "num_channels", 3))
