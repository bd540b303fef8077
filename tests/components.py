"""Tiny, seeded p-diff components for fast tests."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from pdiff_hub import LatentDenoiser, ParameterAutoencoder, PDiffPipeline, TargetModel

PATTERNS = ["layer4.*.bn*"]


def paper_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=2e-2, beta_schedule="linear", clip_sample=False
    )


def assert_same_up_to_rounding(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Outputs of bit-equal weights that went through a save and a load, or were recorded on another CPU.

    A CPU's vector kernels round differently for tensors at other memory alignments (and other CPU models round
    differently again), so the last bits may differ (~1e-7); weights loaded wrongly differ in every digit.
    """
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def tiny_target(model_name: str = "test_resnet", patterns: list[str] | None = None, **kwargs) -> TargetModel:
    torch.manual_seed(0)
    model_kwargs = {"num_classes": 10, "in_chans": 1, **kwargs}
    return TargetModel(model_name, model_kwargs, patterns or PATTERNS, image_size=32)


# A 2-block ViT of 8x8 images in 4x4 patches, and a 2-stage ResNet, as transformers config values.
TINY_VIT = {"image_size": 8, "patch_size": 4, "num_channels": 1, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "num_labels": 10}
TINY_HF_RESNET = {"num_channels": 1, "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
                  "num_labels": 10}


def tiny_transformers_target(model_name: str = "ViTForImageClassification", patterns: list[str] | None = None,
                             **kwargs) -> TargetModel:
    """A seeded transformers target: the tiny ViT (its final layernorm and head generated) by default."""
    torch.manual_seed(0)
    config = TINY_HF_RESNET if model_name in ("resnet", "ResNetForImageClassification") else TINY_VIT
    return TargetModel(model_name, {**config, **kwargs}, patterns or ["vit.layernorm", "classifier"],
                       image_size=config.get("image_size", 32), library="transformers")


# A LoRA adapter of the tiny ViT's attention projections, with a new head trained whole.
TINY_LORA = {"r": 2, "lora_alpha": 4.0, "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["classifier"]}


def tiny_lora_target(**adapter) -> TargetModel:
    """The tiny ViT with :data:`TINY_LORA` (updated with ``adapter``): the generated vector is the whole adapter."""
    torch.manual_seed(0)
    return TargetModel("vit", TINY_VIT, ["*"], image_size=8, library="transformers", adapter={**TINY_LORA, **adapter})


def tiny_pipeline(target: TargetModel | None = None, latent_dim: int = 16) -> PDiffPipeline:
    target = target or tiny_target()
    torch.manual_seed(0)
    layout = target.layout
    autoencoder = ParameterAutoencoder(
        num_params=layout.num_params, tensor_sizes=layout.sizes, latent_dim=latent_dim, channels=(8, 16)
    )
    denoiser = LatentDenoiser(latent_dim=latent_dim, channels=(1, 8, 16, 8, 1), time_embed_dim=16)
    pipe = PDiffPipeline(target, autoencoder, denoiser, paper_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def conditional_pipeline(target: TargetModel | None, condition_dim: int, *, scale: float = 0.1,
                         condition_mode: str = "add", **condition_info) -> PDiffPipeline:
    """:func:`tiny_pipeline` with a denoiser conditioned on ``condition_dim`` values, its weights moved off their
    initial values (``scale`` x seeded noise) as training would, so that the condition changes what it generates,
    and ``condition_info`` registered."""
    base = tiny_pipeline(target)
    torch.manual_seed(0)
    denoiser = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16, condition_dim=condition_dim,
                              condition_mode=condition_mode)
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(scale * torch.randn_like(p))
    pipe = PDiffPipeline(base.target, base.autoencoder, denoiser, base.scheduler)
    pipe.set_progress_bar_config(disable=True)
    if condition_info:
        pipe.register_condition_info(**condition_info)
    return pipe
