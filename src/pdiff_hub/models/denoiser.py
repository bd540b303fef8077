"""The latent denoiser: a 1D CNN that predicts the noise in a (1, latent_dim) latent (p-diff's second stage)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput
from torch import nn

__all__ = ["LatentDenoiser", "LatentDenoiserOutput"]


@dataclass
class LatentDenoiserOutput(BaseOutput):
    """Output of :class:`LatentDenoiser`.

    Args:
        sample: the predicted noise, shaped like the input latents (N, 1, latent_dim).
    """

    sample: torch.Tensor


# Parameter names before the time embedding became diffusers' TimestepEmbedding; pipelines saved then still load.
_LEGACY_KEYS = {
    "time_mlp.0.weight": "time_embedding.linear_1.weight",
    "time_mlp.0.bias": "time_embedding.linear_1.bias",
    "time_mlp.2.weight": "time_embedding.linear_2.weight",
    "time_mlp.2.bias": "time_embedding.linear_2.bias",
}


def _rename_legacy_keys(state_dict: dict[str, torch.Tensor], prefix: str = "") -> None:
    for old, new in _LEGACY_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class _ConvLayer(nn.Module):
    """Time-conditioned conv: the timestep embedding, projected to the input channels, is added to the input."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, time_dim: int, last: bool):
        super().__init__()
        self.time_proj = nn.Linear(time_dim, c_in)
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2)
        self.post = nn.Identity() if last else nn.Sequential(nn.GroupNorm(min(8, c_out), c_out), nn.ELU())

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x + self.time_proj(temb)[:, :, None]))


class LatentDenoiser(ModelMixin, ConfigMixin):
    """p-diff's latent noise predictor: a 1D CNN on the latent without down-sampling.

    The conv layers form an encoder (channels rising) and a decoder (channels falling); each decoder layer's output
    is added to the encoder activation of the same width (additive skips). The timestep enters through diffusers'
    sinusoidal ``Timesteps`` projection (cosines first, frequencies ``10000**(-i / half)``) and a ``TimestepEmbedding``
    MLP, projected and added to the input of every conv layer.

    Args:
        latent_dim: length of the latent.
        channels: the conv channels from input to output, symmetric, starting and ending at 1 (the paper's
            ``[1, 64, 128, 256, 512, 256, 128, 64, 1]``).
        kernel_size: convolution kernel size.
        time_embed_dim: width of the timestep embedding.
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 128,
        channels: Sequence[int] = (1, 64, 128, 256, 512, 256, 128, 64, 1),
        kernel_size: int = 7,
        time_embed_dim: int = 128,
    ):
        super().__init__()
        channels = list(channels)
        if channels != channels[::-1] or len(channels) < 3 or len(channels) % 2 == 0:
            raise ValueError(f"channels must be symmetric with an odd length, e.g. [1, 64, 128, 64, 1]; got {channels}")
        self.time_proj = Timesteps(time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_embed_dim, time_embed_dim, act_fn="silu")
        n = len(channels) - 1
        self.layers = nn.ModuleList(
            _ConvLayer(channels[i], channels[i + 1], kernel_size, time_embed_dim, last=i == n - 1) for i in range(n)
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, return_dict: bool = True
    ) -> LatentDenoiserOutput | tuple[torch.Tensor]:
        """Predict the noise in ``sample`` (N, 1, latent_dim) at ``timestep`` (an int, a scalar or one per sample)."""
        if sample.ndim != 3 or sample.shape[1] != 1 or sample.shape[2] != self.config.latent_dim:
            raise ValueError(f"Expected latents of shape (N, 1, {self.config.latent_dim}), got {tuple(sample.shape)}")
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        # One timestep per sample; a single one is broadcast to the batch.
        timesteps = timesteps.expand(sample.shape[0]) if timesteps.numel() == 1 else timesteps
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))

        half = len(self.layers) // 2
        skips, x = [], sample
        for layer in self.layers[:half]:
            x = layer(x, temb)
            skips.append(x)
        skips.pop()  # the bottleneck output is not added to itself
        for layer in self.layers[half:]:
            x = layer(x, temb)
            if skips:
                x = x + skips.pop()
        return LatentDenoiserOutput(sample=x) if return_dict else (x,)

    def _fix_state_dict_keys_on_load(self, state_dict: OrderedDict) -> OrderedDict:
        # diffusers' hook for renamed parameters, called by ``from_pretrained`` before the weights are matched.
        super()._fix_state_dict_keys_on_load(state_dict)
        _rename_legacy_keys(state_dict)
        return state_dict

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The same renaming for ``load_state_dict``, which bypasses the hook above.
        _rename_legacy_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
