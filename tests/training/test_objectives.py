"""The two objectives of p-diff and the batches they train on."""

import pytest
import torch
from torch import nn

from pdiff_hub import ParameterAutoencoder
from pdiff_hub.models.denoiser import LatentDenoiserOutput
from pdiff_hub.training.objectives import autoencoder_loss, diffusion_loss, sample_batch

from ..components import paper_scheduler


class _Reconstruct(nn.Module):
    """An "autoencoder" that returns the input shifted by a fixed amount, with given standardization scales."""

    def __init__(self, shift: float, param_std: torch.Tensor):
        super().__init__()
        self.shift = shift
        self.register_buffer("param_std", param_std)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors + self.shift


def test_autoencoder_loss_is_the_error_in_standardized_units():
    vectors = torch.randn(4, 6)
    assert autoencoder_loss(_Reconstruct(0.0, torch.ones(6)), vectors) == 0
    # An error of 0.3 on coordinates scaled by 0.1 is 3 standard units: a squared error of 9.
    loss = autoencoder_loss(_Reconstruct(0.3, torch.full((6,), 0.1)), vectors)
    torch.testing.assert_close(loss, torch.tensor(9.0))
    coordinates = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    torch.testing.assert_close(autoencoder_loss(_Reconstruct(1.0, coordinates), vectors), torch.tensor(0.625))


def test_autoencoder_loss_of_the_real_autoencoder_reaches_through_a_wrapper():
    torch.manual_seed(0)
    autoencoder = ParameterAutoencoder(num_params=20, latent_dim=4, channels=(4,))
    autoencoder.fit_normalization(torch.randn(8, 20) * 5)
    vectors = torch.randn(3, 20)
    autoencoder.eval()
    expected = ((autoencoder(vectors) - vectors) / autoencoder.param_std).pow(2).mean()
    wrapped = nn.DataParallel(autoencoder)  # what accelerate may hand back: the buffers sit on `.module`
    torch.testing.assert_close(autoencoder_loss(wrapped, vectors), expected)


class _Oracle(nn.Module):
    """A denoiser that knows the noise: it recovers it from the noisy sample with the scheduler's own schedule."""

    def __init__(self, scheduler, latents: torch.Tensor):
        super().__init__()
        self.scheduler, self.latents = scheduler, latents
        self.seen: list[torch.Tensor] = []

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor) -> LatentDenoiserOutput:
        self.seen.append(timesteps)
        alpha_bar = self.scheduler.alphas_cumprod[timesteps][:, None, None]
        noise = (noisy - alpha_bar.sqrt() * self.latents) / (1 - alpha_bar).sqrt()
        return LatentDenoiserOutput(sample=noise)


def test_diffusion_loss_is_zero_for_a_denoiser_that_returns_the_true_noise():
    scheduler = paper_scheduler()
    latents = torch.randn(64, 1, 8)
    oracle = _Oracle(scheduler, latents)
    torch.manual_seed(0)
    loss = diffusion_loss(oracle, scheduler, latents.reshape(64, 8))  # flat latents are reshaped to (N, 1, D)
    assert loss < 1e-8
    timesteps = oracle.seen[0]
    assert timesteps.shape == (64,) and timesteps.min() >= 0 and timesteps.max() < 1000
    assert len(timesteps.unique()) > 32, "one timestep per sample, drawn uniformly"


def test_diffusion_loss_of_a_denoiser_that_predicts_zero_is_the_noise_variance():
    scheduler = paper_scheduler()

    def zero(noisy, timesteps):
        return LatentDenoiserOutput(sample=torch.zeros_like(noisy))

    torch.manual_seed(0)
    loss = diffusion_loss(zero, scheduler, torch.randn(4096, 1, 16))
    assert abs(loss.item() - 1.0) < 0.02


def test_sample_batch_without_and_with_replacement():
    data = torch.arange(10)[:, None]
    torch.manual_seed(0)
    batch = sample_batch(data, 4)
    assert batch.shape == (4, 1) and len(batch.unique()) == 4  # smaller than the data: distinct rows
    draws = torch.cat([sample_batch(data, 10) for _ in range(20)])
    # As large as the data or larger: drawn with replacement, so some rows repeat within a batch.
    assert sample_batch(data, 25).shape == (25, 1)
    assert any(len(draws[i:i + 10].unique()) < 10 for i in range(0, len(draws), 10))
    assert set(draws.flatten().tolist()) <= set(range(10))


@pytest.mark.parametrize("batch_size", [3, 12])
def test_sample_batch_follows_the_global_generator(batch_size):
    data = torch.randn(8, 5)
    torch.manual_seed(7)
    first = sample_batch(data, batch_size)
    torch.manual_seed(7)
    assert torch.equal(sample_batch(data, batch_size), first)  # what makes a resumed run repeat its batches
