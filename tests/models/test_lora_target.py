"""A PEFT LoRA adapter as the generated parameters: its layout, the frozen base, models, saving."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from transformers import ViTForImageClassification

from pdiff_hub import TargetModel

from ..components import assert_same_up_to_rounding, tiny_lora_target, tiny_target

IMAGES = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def lora():
    return tiny_lora_target()


def test_the_layout_is_the_adapter_and_its_new_head(lora):
    names = lora.layout.names
    assert all(".lora_A." in n or ".lora_B." in n or ".modules_to_save." in n for n in names)
    assert sum(".lora_" in n for n in names) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)
    assert lora.layout.num_params == 2 * 2 * (2 * 16 + 16 * 2) + 16 * 10 + 10
    assert lora.has_adapter and lora.config.adapter["r"] == 2


def test_a_fresh_adapter_computes_the_base_network(lora):
    base = lora.base_network()
    assert type(base) is ViTForImageClassification  # its own class and names, without PEFT's
    assert not any("lora" in n or "base_layer" in n for n in base.state_dict())
    assert torch.equal(base(pixel_values=IMAGES).logits, lora(IMAGES))  # lora_B starts at zero
    with pytest.raises(ValueError, match="no adapter"):
        tiny_target().base_network()


def test_a_generated_adapter_changes_the_model_and_reads_back_as_peft_state(lora):
    vector = lora.base_vector() + 0.2 * torch.randn(lora.layout.num_params, generator=torch.Generator().manual_seed(1))
    model = lora.build_model(vector)
    assert isinstance(model, PeftModel)
    assert not torch.allclose(model(IMAGES), lora(IMAGES))
    state = get_peft_model_state_dict(model)
    assert sum(t.numel() for t in state.values()) == lora.layout.num_params  # exactly what PEFT saves
    plain = lora.build_transformers_model(vector)
    assert type(plain.get_base_model()) is ViTForImageClassification
    assert torch.equal(plain(pixel_values=IMAGES).logits, model(IMAGES))
    assert torch.equal(lora.base_vector(), tiny_lora_target().base_vector())  # the target itself is untouched


def test_a_saved_adapter_target_loads_with_its_adapter(lora, tmp_path):
    lora.save_pretrained(tmp_path)
    again = TargetModel.from_pretrained(tmp_path)
    assert again.has_adapter and again.layout == lora.layout
    assert torch.equal(again.base_vector(), lora.base_vector())
    assert_same_up_to_rounding(again(IMAGES), lora(IMAGES))


def test_a_timm_network_takes_an_adapter_too():
    torch.manual_seed(0)
    target = TargetModel("pdiff_mlp", {"num_classes": 10, "in_chans": 1, "img_size": 8, "hidden": 16}, ["*"],
                         image_size=8, adapter={"r": 2, "target_modules": ["1"], "modules_to_save": ["3"]})
    assert target.layout.num_params == 2 * 64 + 16 * 2 + 16 * 10 + 10
    base = target.base_network()
    assert list(base.state_dict()) == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert torch.equal(base(IMAGES), target(IMAGES))


@pytest.mark.parametrize("adapter, match", [
    ({"rank": 2}, r"Unknown LoRA adapter arguments \['rank'\]"),
    ({"target_modules": ["query"]}, r"LoRA target_modules \['query'\] name no module of ViTForImageClassification"),
    ({"modules_to_save": ["head"]}, r"LoRA modules_to_save \['head'\] name no module"),
])
def test_a_bad_adapter_is_refused(adapter, match):
    with pytest.raises(ValueError, match=match):
        tiny_lora_target(**adapter)
