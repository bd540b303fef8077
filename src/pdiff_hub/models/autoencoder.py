"""The parameter autoencoder: flat parameter vectors <-> small latents (p-diff's first stage)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

__all__ = ["LATENT_NORMS", "SATURATED", "ParameterAutoencoder"]

LATENT_NORMS = ("none", "layer")  # the latent_norm values
SATURATED = 0.99
"""Magnitude above which a latent value counts as saturated (``tanh`` pinned at +-1)."""


def _conv_block(c_in: int, c_out: int, kernel_size: int, transpose: bool) -> nn.Sequential:
    pad = kernel_size // 2
    if transpose:
        conv = nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=2, padding=pad, output_padding=1)
    else:
        conv = nn.Conv1d(c_in, c_out, kernel_size, stride=2, padding=pad)
    # GroupNorm does not depend on the batch, so decoding one model or a hundred gives the same parameters.
    return nn.Sequential(conv, nn.GroupNorm(min(8, c_out), c_out), nn.LeakyReLU(0.2))


class ParameterAutoencoder(ModelMixin, ConfigMixin):
    """Encodes flattened parameter vectors into latents and decodes them back.

    Inputs are standardized per parameter tensor (mean and std of each tensor over the collected checkpoints,
    stored as buffers with the model), zero-padded to a multiple of ``2**len(channels)``, and passed through strided
    ``Conv1d`` blocks, a linear layer and ``tanh`` (when ``bound_latent``) or a per-latent normalization (when
    ``latent_norm="layer"``) to a latent of ``latent_dim`` values. The decoder mirrors it with transposed
    convolutions. During training only, Gaussian noise of amplitude ``input_noise`` is added to the standardized
    input and of amplitude ``latent_noise`` to the latent: the paper's noise augmentation. Bounding or normalizing
    the latent keeps the latent noise meaningful: an unbounded encoder can grow its latents until a fixed noise
    amplitude no longer matters. ``tanh`` does so by saturating: the encoder learns +-1 codes (95-99.6% of values
    at |z| > 0.99 on the recipes), between which the decoder was never trained; the normalized latent has a fixed
    scale (zero mean and unit RMS over its ``latent_dim`` values) and nothing to saturate. With ``latent_kl`` the
    latent is a VAE's: the encoder also gives a log-variance, training decodes a sample of the posterior
    ``N(mean, exp(log_var))``, and the loss adds ``latent_kl`` times its KL divergence to ``N(0, 1)``, which sets the
    latents' scale; the latent is the posterior mean.

    With ``standardize_latents``, :meth:`encode` and :meth:`decode` work in a standardized latent space: each
    coordinate centred and scaled by its mean and std over the collected checkpoints (:meth:`fit_latent_normalization`,
    after the autoencoder is trained; the statistics are buffers of the model), so that the checkpoints fill the
    unit-variance scale that the DDPM's noise schedule assumes (the role of Stable Diffusion's VAE scaling factor,
    per coordinate). :meth:`encoder_latents` gives the latents before that standardization.

    Args:
        num_params: length ``D`` of the parameter vectors.
        tensor_sizes: number of values of each parameter tensor, in vector order (sums to ``num_params``); each
            tensor gets its own standardization statistics. Defaults to one tensor.
        latent_dim: size of the latent.
        channels: channels of the encoder's conv blocks (the decoder uses them reversed); each block halves the length.
        kernel_size: convolution kernel size.
        input_noise: training-time noise amplitude on the standardized input.
        latent_noise: training-time noise amplitude on the latent.
        bound_latent: squash the latent with ``tanh`` into (-1, 1).
        latent_norm: ``"none"``, or ``"layer"``: normalize each latent to zero mean and unit RMS over its values
            (``layer_norm`` without affine parameters). Excludes ``bound_latent``.
        standardize_latents: the latents the denoiser sees are standardized per coordinate over the checkpoints.
        latent_kl: 0, or the weight of a KL-regularized (variational) latent: the KL divergence per latent value
            against the mean squared reconstruction error per parameter (standardized units). Excludes
            ``bound_latent`` and ``latent_norm="layer"``.
        center_per_coordinate: subtract each coordinate's mean over the checkpoints before the per-tensor scaling,
            so that the autoencoder models how checkpoints differ rather than what they share. Off is the paper's
            plain per-tensor standardization, under which the shared mean dominates the loss and the autoencoder
            can collapse onto it (every checkpoint decoded to the same vector).
    """

    @register_to_config
    def __init__(
        self,
        num_params: int = 2048,
        tensor_sizes: Sequence[int] | None = None,
        latent_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256),
        kernel_size: int = 7,
        input_noise: float = 0.001,
        latent_noise: float = 0.1,
        bound_latent: bool = True,
        center_per_coordinate: bool = True,
        latent_norm: str = "none",
        standardize_latents: bool = False,
        latent_kl: float = 0.0,
    ):
        super().__init__()
        if latent_norm not in LATENT_NORMS:
            raise ValueError(f"latent_norm must be one of {LATENT_NORMS}, got {latent_norm!r}")
        if latent_norm != "none" and bound_latent:
            raise ValueError("bound_latent and latent_norm='layer' exclude each other: a normalized latent has a fixed "
                             "scale already; set bound_latent to false")
        if latent_kl > 0 and (bound_latent or latent_norm != "none"):
            raise ValueError("latent_kl sets the latent's scale itself: set bound_latent to false and latent_norm to "
                             "'none' with it")
        tensor_sizes = list(tensor_sizes) if tensor_sizes is not None else [num_params]
        if sum(tensor_sizes) != num_params:
            raise ValueError(f"tensor_sizes sum to {sum(tensor_sizes)}, but num_params is {num_params}")
        factor = 2 ** len(channels)
        self.padded_length = -(-num_params // factor) * factor
        self.reduced_length = self.padded_length // factor
        self.register_buffer("param_mean", torch.zeros(num_params))
        self.register_buffer("param_std", torch.ones(num_params))
        if standardize_latents:  # only then: pipelines saved before these buffers existed load as they were
            self.register_buffer("latent_mean", torch.zeros(latent_dim))
            self.register_buffer("latent_std", torch.ones(latent_dim))

        enc_channels = [1, *channels]
        self.encoder = nn.Sequential(
            *(_conv_block(a, b, kernel_size, False) for a, b in zip(enc_channels[:-1], enc_channels[1:]))
        )
        self.to_latent = nn.Linear(channels[-1] * self.reduced_length, latent_dim)
        if latent_kl > 0:  # only then: pipelines saved before the option load as they were
            self.to_log_var = nn.Linear(channels[-1] * self.reduced_length, latent_dim)
        self.from_latent = nn.Linear(latent_dim, channels[-1] * self.reduced_length)
        dec_channels = list(reversed(channels))
        self.decoder = nn.Sequential(
            *(_conv_block(a, b, kernel_size, True) for a, b in zip(dec_channels, [*dec_channels[1:], dec_channels[-1]]))
        )
        self.to_params = nn.Conv1d(dec_channels[-1], 1, kernel_size, padding=kernel_size // 2)

    @torch.no_grad()
    def fit_normalization(self, vectors: torch.Tensor) -> None:
        """Set the standardization statistics from the collected checkpoints, a (K, D) matrix."""
        self._check_vectors(vectors)
        vectors = vectors.float()
        if self.config.center_per_coordinate:
            mean = vectors.mean(dim=0)
        else:
            mean = torch.cat([c.mean().expand(c.shape[1]) for c in torch.split(vectors, self._tensor_sizes, dim=1)])
        stds = []
        for chunk in torch.split(vectors - mean, self._tensor_sizes, dim=1):
            std = chunk.pow(2).mean().sqrt()
            # A tensor that never moved (std 0) is only centred, not scaled.
            stds.append(torch.where(std > 1e-12, std, torch.ones_like(std)).expand(chunk.shape[1]))
        self.param_mean.copy_(mean)
        self.param_std.copy_(torch.cat(stds))

    @torch.no_grad()
    def fit_latent_normalization(self, vectors: torch.Tensor) -> None:
        """Set the latent standardization from the checkpoints' latents (``standardize_latents`` only); a (K, D)
        matrix of collected checkpoints, encoded without noise."""
        if not self.config.standardize_latents:
            raise ValueError("this autoencoder was built without standardize_latents")
        z = self.encoder_latents(vectors).float()
        std = z.std(dim=0) if len(z) > 1 else torch.ones_like(z[0])
        # A coordinate that does not vary over the checkpoints is only centred, not scaled.
        self.latent_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        self.latent_mean.copy_(z.mean(dim=0))

    @property
    def _tensor_sizes(self) -> list[int]:
        return list(self.config.tensor_sizes or [self.config.num_params])

    def _check_vectors(self, vectors: torch.Tensor) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.config.num_params:
            raise ValueError(f"Expected parameter vectors of shape (N, {self.config.num_params}), "
                             f"got {tuple(vectors.shape)}")

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_dim) of parameter vectors (N, D), without noise: the latents the denoiser models
        (standardized with ``standardize_latents``)."""
        z = self.encoder_latents(vectors)
        if self.config.standardize_latents:
            z = (z - self.latent_mean) / self.latent_std
        return z

    def encoder_latents(self, vectors: torch.Tensor) -> torch.Tensor:
        """The encoder's latents (N, latent_dim), without noise and before any latent standardization: what the
        decoder was trained on (their saturation is what :mod:`pdiff_hub.evaluation.checks` reports)."""
        return self._encode(vectors, noise=False)[0]

    def saturated_fraction(self, latents: torch.Tensor) -> float:
        """The fraction of the encoder's latent values (:meth:`encoder_latents`) with magnitude above
        :data:`SATURATED`: near 1, a ``tanh`` latent is a code of +-1 values between which the decoder was never
        trained. 0 for a latent without the bound (unbounded or normalized), which has nothing to saturate."""
        if not self.config.bound_latent:
            return 0.0
        return float((latents.detach().abs() > SATURATED).float().mean())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Parameter vectors (N, D) from latents (N, latent_dim) or (N, 1, latent_dim), as :meth:`encode` gives."""
        latents = latents.reshape(latents.shape[0], -1)
        if self.config.standardize_latents:
            latents = latents * self.latent_std + self.latent_mean
        return self._decode(latents)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(latents).view(latents.shape[0], -1, self.reduced_length)
        out = self.to_params(self.decoder(h))[:, 0, : self.config.num_params]
        return out * self.param_std + self.param_mean

    def _encode(self, vectors: torch.Tensor, noise: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latents (with the noise augmentation and the posterior sample when ``noise``), and the mean KL
        divergence per latent value for a ``latent_kl`` autoencoder (else None)."""
        self._check_vectors(vectors)
        x = (vectors - self.param_mean) / self.param_std
        if noise and self.config.input_noise > 0:
            x = x + self.config.input_noise * torch.randn_like(x)
        x = nn.functional.pad(x, (0, self.padded_length - x.shape[1]))
        h = self.encoder(x[:, None, :]).flatten(1)
        z, kl = self.to_latent(h), None
        if self.config.bound_latent:
            z = torch.tanh(z)
        elif self.config.latent_norm == "layer":
            z = nn.functional.layer_norm(z, z.shape[-1:])
        elif self.config.latent_kl > 0:
            log_var = self.to_log_var(h)
            kl = 0.5 * (z.pow(2) + log_var.exp() - 1 - log_var).mean()
            if noise:
                z = z + (0.5 * log_var).exp() * torch.randn_like(z)
        if noise and self.config.latent_noise > 0:
            z = z + self.config.latent_noise * torch.randn_like(z)
        return z, kl

    def forward(self, vectors: torch.Tensor, return_kl: bool = False):
        """Reconstructions of ``vectors``; noise augmentation (and the posterior sample of a ``latent_kl`` latent) in
        training mode only. With ``return_kl``: ``(reconstructions, kl)``, kl the mean KL divergence per latent value
        (0 without ``latent_kl``)."""
        z, kl = self._encode(vectors, noise=self.training)
        out = self._decode(z)
        return (out, kl if kl is not None else out.new_zeros(())) if return_kl else out

    def normalized_error(self, vectors: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error in standardized units: the training loss."""
        return ((self(vectors) - vectors) / self.param_std).pow(2).mean()
