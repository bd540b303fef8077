"""How a condition (a task code, a target accuracy) enters the latent denoiser, with a learned null for guidance.

Three paths, chosen by ``LatentDenoiser``'s ``condition_mode``: :class:`ConditionEmbedding` turns the condition vector
into one embedding added to the time embedding; :class:`ConditionTokens` turns it into one token per value, which
:class:`LatentCrossAttention` lets every latent position attend to; :class:`ConditionMap` turns it into one value per
latent position, a second input channel. Each has a learned null used where the condition is absent or dropped, the
unconditional branch of classifier-free guidance.

Why a map: the denoiser's convolutions treat every latent position alike, and an embedding added to the time
embedding reaches every position as the same per-channel bias. Where the noise hides the latent (large timesteps),
nothing else tells a position which value the condition asks of it; the map does.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding
from torch import nn

__all__ = ["CONDITION_MODES", "ConditionEmbedding", "ConditionMap", "ConditionTokens", "LatentCrossAttention",
           "as_conditions",
           "check_condition", "guided_noise_prediction"]

CONDITION_MODES = ("add", "cross_attention", "both", "input")


def as_conditions(condition, condition_dim: int, guidance_scale: float = 1.0) -> torch.Tensor | None:
    """A user's conditions (a (C, condition_dim) tensor or array, a list of C codes, or None) as a float32 CPU
    tensor, checked with the guidance scale that goes with them.

    Raises:
        ValueError: in one sentence, for a wrong shape, non-finite values or a guidance scale without a condition.
    """
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
    if condition is None:
        if guidance_scale != 1:
            raise ValueError("guidance_scale needs a condition: without one, generation is unconditional")
        return None
    try:
        conditions = torch.as_tensor(condition, dtype=torch.float32).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"condition must be numbers: a (C, {condition_dim}) tensor or array or a list of C codes "
                         f"({err})") from err
    if conditions.ndim != 2 or conditions.shape[0] < 1 or conditions.shape[1] != condition_dim:
        raise ValueError(f"condition must be (C, {condition_dim}), one row of {condition_dim} values per condition "
                         f"(wrap a single code in a list); got shape {tuple(conditions.shape)}")
    if not torch.isfinite(conditions).all():
        raise ValueError("condition holds NaN or infinite values")
    return conditions


def guided_noise_prediction(denoiser: nn.Module, latents: torch.Tensor, timestep: torch.Tensor | int,
                            conditions: torch.Tensor | None, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``eps_uncond + s * (eps_cond - eps_uncond)`` from one denoiser call.

    ``s`` = 1 is the conditional prediction alone and 0 the unconditional one alone (exactly: the other is not
    computed); any other scale runs both halves in one doubled batch. ``conditions`` None: the unconditional
    prediction.
    """
    if guidance_scale == 1:
        return denoiser(latents, timestep, condition=conditions).sample
    if guidance_scale == 0 or conditions is None:
        return denoiser(latents, timestep).sample
    drop = torch.arange(2 * len(latents), device=latents.device) >= len(latents)
    both = denoiser(torch.cat([latents, latents]), timestep, condition=torch.cat([conditions, conditions]),
                    drop_condition=drop).sample
    cond, uncond = both.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def check_condition(condition: torch.Tensor | None, drop: torch.Tensor | None, batch: int, condition_dim: int) -> None:
    """Raise a ValueError unless ``condition`` is (batch, condition_dim) and ``drop`` a (batch,) bool mask (or None)."""
    if condition_dim == 0 and (condition is not None or drop is not None):
        raise ValueError("This denoiser is unconditional (condition_dim 0): it takes no condition or drop mask")
    if condition is not None and (condition.ndim != 2 or tuple(condition.shape) != (batch, condition_dim)):
        raise ValueError(f"Expected a condition of shape ({batch}, {condition_dim}), one row per latent; "
                         f"got {tuple(condition.shape)}")
    if drop is not None and (drop.dtype != torch.bool or tuple(drop.shape) != (batch,)):
        raise ValueError(f"Expected drop_condition as a bool mask of shape ({batch},); got {drop.dtype} of shape "
                         f"{tuple(drop.shape)}")


def _with_null(values: torch.Tensor | None, null: torch.Tensor, drop: torch.Tensor | None, batch: int) -> torch.Tensor:
    """``values`` (batch, *null.shape) with ``null`` in the dropped rows, or ``null`` in every row without values."""
    if values is None:
        return null.expand(batch, *null.shape)
    if drop is None:
        return values
    return torch.where(drop.view(-1, *[1] * null.ndim), null.to(values.dtype), values)


class ConditionEmbedding(nn.Module):
    """The condition as one vector added to the time embedding: diffusers' ``TimestepEmbedding`` MLP
    (Linear-SiLU-Linear) on the condition values, or the learned null embedding where there is no condition.

    Args:
        condition_dim: number of values in a condition.
        embed_dim: width of the time embedding it is added to.
    """

    def __init__(self, condition_dim: int, embed_dim: int):
        super().__init__()
        self.mlp = TimestepEmbedding(condition_dim, embed_dim, act_fn="silu")
        # Zero: a new model's unconditional branch is the time embedding alone, as in the unconditional network.
        self.null = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, condition: torch.Tensor | None, drop: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The (batch, embed_dim) embedding; ``drop`` (batch,) marks the rows that get the null embedding."""
        return _with_null(None if condition is None else self.mlp(condition), self.null, drop, batch)


class ConditionMap(nn.Module):
    """The condition as one value per latent position, (batch, 1, latent_dim): diffusers' ``TimestepEmbedding`` MLP
    from the condition values to ``latent_dim`` outputs, or the learned null map where there is no condition.

    Args:
        condition_dim: number of values in a condition.
        latent_dim: length of the latent.
        hidden_dim: width of the MLP's hidden layer.
    """

    def __init__(self, condition_dim: int, latent_dim: int, hidden_dim: int):
        super().__init__()
        self.mlp = TimestepEmbedding(condition_dim, hidden_dim, act_fn="silu", out_dim=latent_dim)
        self.null = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, condition: torch.Tensor | None, drop: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The (batch, 1, latent_dim) map; ``drop`` (batch,) marks the rows that get the null map."""
        return _with_null(None if condition is None else self.mlp(condition), self.null, drop, batch)[:, None]


class ConditionTokens(nn.Module):
    """One token per condition value, ``value * weight_i + bias_i`` (FT-Transformer's numerical feature tokens), so
    that attention can weigh the values one by one; learned null tokens where there is no condition.

    Args:
        condition_dim: number of values in a condition (= number of tokens).
        token_dim: width of a token.
    """

    def __init__(self, condition_dim: int, token_dim: int):
        super().__init__()
        bound = token_dim**-0.5
        self.weight = nn.Parameter(torch.empty(condition_dim, token_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(condition_dim, token_dim).uniform_(-bound, bound))
        # Random, not zero: identical null tokens would receive identical gradients and never become distinct.
        self.null = nn.Parameter(torch.empty(condition_dim, token_dim).uniform_(-bound, bound))

    def forward(self, condition: torch.Tensor | None, drop: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The (batch, condition_dim, token_dim) tokens; ``drop`` (batch,) marks the rows that get the null tokens."""
        tokens = None if condition is None else condition[:, :, None] * self.weight + self.bias
        return _with_null(tokens, self.null, drop, batch)


class LatentCrossAttention(nn.Module):
    """Residual cross-attention from every position of the latent features (N, C, L) to the condition tokens, with
    diffusers' ``Attention`` (group-normalized queries, heads of 64 channels).

    The output projection starts at zero, so a new conditional denoiser starts as the network without it.

    Args:
        channels: channels of the latent features (the queries).
        token_dim: width of the condition tokens (the keys and values).
    """

    def __init__(self, channels: int, token_dim: int, head_dim: int = 64):
        super().__init__()
        self.attention = Attention(query_dim=channels, cross_attention_dim=token_dim,
                                   heads=max(1, channels // head_dim), dim_head=head_dim,
                                   norm_num_groups=min(8, channels), residual_connection=True)
        nn.init.zeros_(self.attention.to_out[0].weight)
        nn.init.zeros_(self.attention.to_out[0].bias)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``features`` (N, C, L) attended to ``tokens`` (N, T, token_dim); returns (N, C, L)."""
        # diffusers' Attention takes sequences (N, L, C): the latent positions are the queries.
        out = self.attention(features.transpose(1, 2), encoder_hidden_states=tokens)
        return out.transpose(1, 2)
