"""The latent denoiser: a 1D CNN that predicts the noise in a (1, latent_dim) latent (p-diff's second stage),
optionally given a condition (see :mod:`pdiff_hub.models.conditioning`)."""

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

from .conditioning import (
    CONDITION_MODES,
    ConditionEmbedding,
    ConditionMap,
    ConditionTokens,
    LatentCrossAttention,
    check_condition,
)

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

    def forward(self, x: torch.Tensor, temb: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``extra``: more input channels, already convolved (the condition map's), added before the activation."""
        out = self.conv(x + self.time_proj(temb)[:, :, None])
        return self.post(out if extra is None else out + extra)


class LatentDenoiser(ModelMixin, ConfigMixin):
    """p-diff's latent noise predictor: a 1D CNN on the latent without down-sampling.

    The conv layers form an encoder (channels rising) and a decoder (channels falling); each decoder layer's output
    is added to the encoder activation of the same width (additive skips). The timestep enters through diffusers'
    sinusoidal ``Timesteps`` projection (cosines first, frequencies ``10000**(-i / half)``) and a ``TimestepEmbedding``
    MLP, projected and added to the input of every conv layer.

    With ``condition_dim`` > 0 it also takes a condition, one vector of that many values per latent. In the ``"add"``
    mode an MLP embedding of the condition is added to the time embedding; in ``"cross_attention"`` the latent
    features after the bottleneck layer attend to one token per condition value; ``"both"`` does both; ``"input"``
    adds the embedding too and feeds an MLP map of the condition, one value per latent position, to the first conv
    layer as a second input channel (the only path that tells each position its own value). Where the
    condition is absent or dropped a learned null embedding takes its place: the unconditional prediction of
    classifier-free guidance. With ``condition_dim`` 0 (the default) the network is the unconditional one, parameter
    for parameter.

    Args:
        latent_dim: length of the latent.
        channels: the conv channels from input to output, symmetric, starting and ending at 1 (the paper's
            ``[1, 64, 128, 256, 512, 256, 128, 64, 1]``).
        kernel_size: convolution kernel size.
        time_embed_dim: width of the timestep embedding (and of the condition embedding and tokens).
        condition_dim: number of values in a condition; 0 for an unconditional denoiser.
        condition_mode: how the condition enters: ``"add"``, ``"cross_attention"``, ``"both"`` or ``"input"``.
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 128,
        channels: Sequence[int] = (1, 64, 128, 256, 512, 256, 128, 64, 1),
        kernel_size: int = 7,
        time_embed_dim: int = 128,
        condition_dim: int = 0,
        condition_mode: str = "add",
    ):
        super().__init__()
        channels = list(channels)
        if channels != channels[::-1] or len(channels) < 3 or len(channels) % 2 == 0:
            raise ValueError(f"channels must be symmetric with an odd length, e.g. [1, 64, 128, 64, 1]; got {channels}")
        if condition_dim < 0 or condition_mode not in CONDITION_MODES:
            raise ValueError(f"condition_dim must be >= 0 and condition_mode one of {CONDITION_MODES}; got "
                             f"{condition_dim} and {condition_mode!r}")
        self.time_proj = Timesteps(time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_embed_dim, time_embed_dim, act_fn="silu")
        n = len(channels) - 1
        self.layers = nn.ModuleList(
            _ConvLayer(channels[i], channels[i + 1], kernel_size, time_embed_dim, last=i == n - 1) for i in range(n)
        )
        # Created after the unconditional layers, so that those draw the same initial weights from the same seed.
        add = condition_dim > 0 and condition_mode in ("add", "both", "input")
        attend = condition_dim > 0 and condition_mode in ("cross_attention", "both")
        self.condition_embedding = ConditionEmbedding(condition_dim, time_embed_dim) if add else None
        self.condition_tokens = ConditionTokens(condition_dim, time_embed_dim) if attend else None
        self.cross_attention = LatentCrossAttention(channels[n // 2], time_embed_dim) if attend else None
        self.condition_map = self.map_conv = None
        if condition_dim > 0 and condition_mode == "input":
            self.condition_map = ConditionMap(condition_dim, latent_dim, time_embed_dim)
            # The map's own weights of the first conv layer (a second input channel), zero: a new model's output is
            # the unconditional network's until training finds a use for the map.
            self.map_conv = nn.Conv1d(1, channels[1], kernel_size, padding=kernel_size // 2, bias=False)
            nn.init.zeros_(self.map_conv.weight)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        condition: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> LatentDenoiserOutput | tuple[torch.Tensor]:
        """Predict the noise in ``sample`` (N, 1, latent_dim) at ``timestep`` (an int, a scalar or one per sample).

        Args:
            sample: the noisy latents.
            timestep: the diffusion timestep(s).
            condition: (N, condition_dim) values, one condition per latent; None: the null condition for all.
            drop_condition: (N,) bool mask of the latents that get the null condition instead of theirs (condition
                dropout in training, the unconditional half of a guided batch).
            return_dict: return a :class:`LatentDenoiserOutput` (default) or a tuple.
        """
        if sample.ndim != 3 or sample.shape[1] != 1 or sample.shape[2] != self.config.latent_dim:
            raise ValueError(f"Expected latents of shape (N, 1, {self.config.latent_dim}), got {tuple(sample.shape)}")
        batch = sample.shape[0]
        check_condition(condition, drop_condition, batch, self.config.condition_dim)
        if condition is not None:
            condition = condition.to(device=sample.device, dtype=sample.dtype)
        if drop_condition is not None:
            drop_condition = drop_condition.to(sample.device)
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        # One timestep per sample; a single one is broadcast to the batch.
        timesteps = timesteps.expand(batch) if timesteps.numel() == 1 else timesteps
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))
        if self.condition_embedding is not None:
            temb = temb + self.condition_embedding(condition, drop_condition, batch)

        half = len(self.layers) // 2
        skips, x = [], sample
        extra = None
        if self.condition_map is not None:
            extra = self.map_conv(self.condition_map(condition, drop_condition, batch).to(sample.dtype))
        for i, layer in enumerate(self.layers[:half]):
            x = layer(x, temb, extra if i == 0 else None)
            skips.append(x)
        skips.pop()  # the bottleneck output is not added to itself
        if self.cross_attention is not None:
            x = self.cross_attention(x, self.condition_tokens(condition, drop_condition, batch))
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
