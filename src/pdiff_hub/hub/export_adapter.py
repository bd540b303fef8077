"""A generated LoRA adapter as a PEFT adapter folder (``adapter_config.json``, ``adapter_model.safetensors``, card),
and the base network it adapts as a plain timm or transformers folder.

``PeftModel.from_pretrained(base, folder)`` loads the adapter onto the base without pdiff_hub.

Example:
    ```py
    >>> export_base_network(pipe.target, "generated/base", pipeline="org/pipe")
    >>> export_lora_adapter(pipe.target, out.parameters[0], "generated/sample-0", card_values=record,
    ...                     base_reference="../base", mean=0.5, std=0.5)
    ```
"""

from __future__ import annotations

import os
from pathlib import Path

import peft
import torch
from peft import PeftModel, get_peft_model_state_dict
from timm.models import save_for_hf

from .. import __version__
from ..core.io import atomic_output_dir
from ..models.target import TargetModel
from .cards import render_card
from .export import GenerationRecord, card_metadata, card_name, give_num_features

__all__ = ["export_base_network", "export_lora_adapter"]


def _check_adapter_target(target: TargetModel) -> None:
    if not target.has_adapter:
        raise ValueError(f"The target {target.config.model_name!r} has no LoRA adapter; export its models with "
                         f"export_timm_model or export_transformers_model")


def export_base_network(target: TargetModel, folder: str | os.PathLike, *, pipeline: str,
                        overwrite: bool = False) -> Path:
    """Write the frozen base network the adapters adapt, without them: a transformers repo folder
    (``save_pretrained``) or a timm one (``timm.models.save_for_hf``), with a card naming ``pipeline`` (the pipeline
    the adapters come from). The folder appears complete or not at all.

    Raises:
        ValueError: when the target has no adapter.
    """
    _check_adapter_target(target)
    base = target.base_network()
    folder = Path(folder)
    with atomic_output_dir(folder, overwrite=overwrite) as tmp:
        if target.is_transformers:
            base.save_pretrained(tmp, safe_serialization=True)
        else:
            base.pretrained_cfg = getattr(base, "pretrained_cfg", None) or {"architecture": target.config.model_name}
            give_num_features(base)
            save_for_hf(base, tmp, safe_serialization=True)
        card = render_card("adapter_base", {"library_name": target.config.library, "tags": ["p-diff", "lora-base"]},
                           pipeline=pipeline, library=target.config.library, model_name=target.config.model_name,
                           base_class=type(base).__name__, pdiff_hub_version=__version__)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return folder


def export_lora_adapter(
    target: TargetModel,
    vector: torch.Tensor,
    folder: str | os.PathLike,
    *,
    card_values: GenerationRecord,
    base_reference: str,
    mean: float,
    std: float,
    image_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one generated adapter as a PEFT adapter folder, with a card that names its base and its accuracy.

    The adapter is saved by ``PeftModel.save_pretrained`` (its LoRA matrices and the modules it trains whole), with
    ``base_reference`` (the base's Hub id, or its folder) as ``base_model_name_or_path``. It is loaded back onto a
    fresh copy of the base with ``PeftModel.from_pretrained`` and checked to hold the generated values, bit for bit.
    The folder appears complete or not at all.

    Args:
        target: the pipeline's target, one with an adapter.
        vector: one generated adapter vector, (D,).
        folder: the output folder.
        card_values: provenance and measured accuracy, for the card.
        base_reference: where the base network is (:func:`export_base_network`'s folder or its Hub repo).
        mean: the per-channel mean the images were normalized with.
        std: the per-channel standard deviation.
        image_size: the input resolution the accuracy was measured at; default: the target's ``image_size``.
        overwrite: replace an existing non-empty folder.

    Raises:
        ValueError: when the target has no adapter.
    """
    _check_adapter_target(target)
    model = target.build_transformers_model(vector) if target.is_transformers else target.build_model(vector)
    config = next(iter(model.peft_config.values()))
    config.base_model_name_or_path = base_reference
    folder = Path(folder)
    with atomic_output_dir(folder, overwrite=overwrite) as tmp:
        # An image classifier has no token embeddings to save; PEFT's "auto" would look the base up on the Hub to
        # compare vocabularies (a network call for every export).
        model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
        _check_export(target, model, tmp)
        in_chans = target.classes_and_channels()[1]
        card = render_card(
            "generated_lora_adapter", card_metadata(card_values, card_name(card_values, folder.name), "peft",
                                                    tags=["lora", target.config.library]),
            title=f"LoRA adapter for {target.config.model_name} generated by p-diff "
                  f"({card_name(card_values, folder.name)})",
            library=target.config.library, model_name=target.config.model_name, base_reference=base_reference,
            base_class=type(model.get_base_model()).__name__, rank=config.r, alpha=config.lora_alpha,
            target_modules=sorted(config.target_modules), modules_to_save=sorted(config.modules_to_save or []),
            num_params=target.layout.num_params, record=card_values, in_chans=in_chans,
            image_size=int(image_size or target.config.image_size), mean=mean, std=std,
            pdiff_hub_version=__version__, peft_version=peft.__version__,
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return folder


def _check_export(target: TargetModel, model: torch.nn.Module, folder: Path) -> None:
    """Load the adapter onto a fresh base as any PEFT user would; its adapter must be the generated one."""
    loaded = PeftModel.from_pretrained(target.base_network(), folder)
    ours, theirs = (get_peft_model_state_dict(m, save_embedding_layers=False) for m in (model, loaded))
    changed = [k for k, v in ours.items() if k not in theirs or not torch.equal(theirs[k], v)]
    if changed or set(theirs) != set(ours):
        raise RuntimeError(f"The adapter in {folder} does not load back as the generated one ({changed[:4]})")
