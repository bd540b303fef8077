"""PEFT LoRA adapters on a target network: attach one, and tell the adapter's tensors from the base network's.

With an adapter, the generated parameters are the adapter's: its LoRA matrices (``lora_A`` / ``lora_B``) and the
copies of the modules it trains whole (``modules_to_save``, e.g. a new classification head). The base network stays
frozen, and is recovered under its own names by :func:`base_state_dict`.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ADAPTER_KEYS", "attach_lora", "base_state_dict", "copy_trained_modules", "trainable_names"]

# The arguments of peft.LoraConfig a target's ``adapter`` may set.
ADAPTER_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "bias")


def attach_lora(model: nn.Module, adapter: dict) -> nn.Module:
    """``peft.get_peft_model(model, LoraConfig(**adapter))``: ``model`` is adapted in place and wrapped.

    The LoRA ``B`` matrices start at zero, so the wrapped network computes what ``model`` did; ``lora_A`` is drawn
    from torch's global generator.

    Raises:
        ValueError: an argument that is not one of :data:`ADAPTER_KEYS`, or target modules the network lacks.
    """
    from peft import LoraConfig, get_peft_model

    unknown = sorted(set(adapter) - set(ADAPTER_KEYS))
    if unknown:
        raise ValueError(f"Unknown LoRA adapter arguments {unknown}; allowed: {', '.join(ADAPTER_KEYS)}")
    names = [name for name, _ in model.named_modules() if name]
    for key in ("target_modules", "modules_to_save"):
        wanted = adapter.get(key) or []
        if isinstance(wanted, str):  # PEFT reads a string as a regular expression: it checks it itself
            continue
        # PEFT's rule: a key names the module of that name, or every module whose name ends with "." + key
        missing = [w for w in wanted if not any(n == w or n.endswith("." + w) for n in names)]
        if missing:
            raise ValueError(f"LoRA {key} {missing} name no module of {type(model).__name__}; its last modules are "
                             f"{names[-8:]}")
    return get_peft_model(model, LoraConfig(**adapter))


def copy_trained_modules(peft_model: nn.Module) -> None:
    """Start each module the adapter trains whole (``modules_to_save``) from the base's module as it is now.

    PEFT copies those modules when it wraps the network; after the base is trained (adapter disabled), the copies
    must start from the trained values again.
    """
    from peft.utils import ModulesToSaveWrapper

    for module in peft_model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            for copy in module.modules_to_save.values():
                copy.load_state_dict(module.original_module.state_dict())


def trainable_names(model: nn.Module) -> list[str]:
    """The names of the parameters PEFT trains (the adapter's), in the model's order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def base_state_dict(peft_model: nn.Module) -> dict[str, Tensor]:
    """The state dict of the base network under its own names, without the adapter's tensors.

    PEFT renames an adapted layer's weights (``q_proj.weight`` -> ``q_proj.base_layer.weight``) and keeps a saved
    module's original as ``classifier.original_module``; both get their names back.
    """
    state = {}
    for name, tensor in peft_model.get_base_model().state_dict().items():
        if ".lora_" in name or ".modules_to_save." in name:
            continue
        state[name.replace(".base_layer.", ".").replace(".original_module.", ".")] = tensor
    return state
