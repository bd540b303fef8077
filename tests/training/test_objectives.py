"""The two objectives of p-diff and the batches they train on."""

import pytest
import torch
import yaml
from torch import nn

from pdiff_hub import LatentDenoiser, ParameterAutoencoder
from pdiff_hub.core.cli import UsageError
from pdiff_hub.models.denoiser import LatentDenoiserOutput
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training.objectives import (
    autoencoder_loss,
    batch_indices,
    build_denoiser,
    diffusion_loss,
    rank_batch,
    rank_rows,
    sample_batch,
    step_generator,
)

from ..components import paper_scheduler


class _Reconstruct(nn.Module):
    """An "autoencoder" that returns the input shifted by a fixed amount, with given standardization scales."""

    def __init__(self, shift: float, param_std: torch.Tensor):
        super().__init__()
        self.shift = shift
        self.config = {}  # no latent_kl: the plain reconstruction error
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


def test_a_variational_latent_adds_its_weighted_kl_divergence():
    torch.manual_seed(0)
    autoencoder = ParameterAutoencoder(num_params=20, latent_dim=4, channels=(4,), bound_latent=False, latent_kl=0.5)
    autoencoder.fit_normalization(torch.randn(8, 20) * 5)
    vectors = torch.randn(3, 20)
    autoencoder.eval()  # no noise, no posterior sample: the loss is deterministic
    reconstruction, kl = autoencoder(vectors, return_kl=True)
    expected = ((reconstruction - vectors) / autoencoder.param_std).pow(2).mean() + 0.5 * kl
    assert kl > 0
    torch.testing.assert_close(autoencoder_loss(nn.DataParallel(autoencoder), vectors), expected)


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


class _Recorder(nn.Module):
    """Wraps a denoiser and keeps what each call got and returned."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser, self.calls = denoiser, []

    def forward(self, noisy, timesteps, **kwargs) -> LatentDenoiserOutput:
        out = self.denoiser(noisy, timesteps, **kwargs)
        self.calls.append({"noisy": noisy, "timesteps": timesteps, "sample": out.sample, **kwargs})
        return out


def _conditional(mode: str = "add") -> LatentDenoiser:
    torch.manual_seed(0)
    return LatentDenoiser(latent_dim=8, channels=(1, 8, 16, 8, 1), time_embed_dim=16, condition_dim=4,
                          condition_mode=mode)


def test_the_unconditional_diffusion_loss_is_the_ddpm_formula_and_draws_nothing_more():
    scheduler = paper_scheduler()
    torch.manual_seed(0)
    denoiser = LatentDenoiser(latent_dim=8, channels=(1, 8, 16, 8, 1), time_embed_dim=16)
    latents = torch.randn(6, 8)
    torch.manual_seed(3)
    noise = torch.randn(6, 1, 8)
    timesteps = torch.randint(0, 1000, (6,))
    expected = nn.functional.mse_loss(denoiser(scheduler.add_noise(latents[:, None], noise, timesteps),
                                               timesteps).sample, noise)
    after = torch.get_rng_state()
    torch.manual_seed(3)
    loss = diffusion_loss(denoiser, scheduler, latents)
    assert torch.equal(loss, expected) and torch.equal(torch.get_rng_state(), after)
    assert loss.item() == pytest.approx(0.6273556, abs=1e-6)  # what the objective gave before conditions existed


def test_conditions_draw_the_same_noise_and_timesteps_and_always_pass_a_drop_mask():
    scheduler, latents, conditions = paper_scheduler(), torch.randn(6, 8), torch.randint(0, 2, (6, 4)).float()
    plain, conditional = _Recorder(LatentDenoiser(latent_dim=8, channels=(1, 8, 16, 8, 1))), _Recorder(_conditional())
    torch.manual_seed(3)
    diffusion_loss(plain, scheduler, latents)
    torch.manual_seed(3)
    diffusion_loss(conditional, scheduler, latents, conditions)  # no dropout: the mask is still passed
    seen, got = plain.calls[0], conditional.calls[0]
    assert torch.equal(seen["noisy"], got["noisy"]) and torch.equal(seen["timesteps"], got["timesteps"])
    assert torch.equal(got["condition"], conditions)
    assert got["drop_condition"].dtype == torch.bool and not got["drop_condition"].any()


def test_condition_dropout_drops_its_fraction_of_rows_to_the_null_condition():
    denoiser = _Recorder(_conditional())
    conditions = torch.randint(0, 2, (4000, 4)).float()
    torch.manual_seed(0)
    diffusion_loss(denoiser, paper_scheduler(), torch.randn(4000, 8), conditions, condition_dropout=0.3)
    call = denoiser.calls[0]
    drop = call["drop_condition"]
    assert abs(drop.float().mean().item() - 0.3) < 0.03
    with torch.no_grad():  # a dropped row's prediction is the unconditional one, a kept row's its condition's
        unconditional = denoiser.denoiser(call["noisy"][drop], call["timesteps"][drop]).sample
        conditional = denoiser.denoiser(call["noisy"][~drop], call["timesteps"][~drop],
                                        condition=conditions[~drop]).sample
    torch.testing.assert_close(call["sample"][drop], unconditional)
    torch.testing.assert_close(call["sample"][~drop], conditional)


@pytest.mark.parametrize("mode", ["add", "cross_attention", "both"])
def test_every_parameter_gets_a_gradient_even_when_no_row_is_dropped(mode):
    """What DistributedDataParallel requires of every step: the null condition takes part with a zero gradient."""
    denoiser = _conditional(mode)
    torch.manual_seed(0)
    loss = diffusion_loss(denoiser, paper_scheduler(), torch.randn(8, 8), torch.ones(8, 4), condition_dropout=0.0)
    loss.backward()
    missing = [name for name, p in denoiser.named_parameters() if p.grad is None]
    assert not missing
    nulls = [p.grad for name, p in denoiser.named_parameters() if name.endswith("null")]
    assert nulls and all(not g.any() for g in nulls)  # nothing dropped: the nulls' gradients are zero


def test_build_denoiser_takes_the_condition_size_from_the_data_not_the_recipe():
    recipe = recipe_from_dict({"denoiser": {"condition_mode": "cross_attention"}})
    assert build_denoiser(recipe).config.condition_dim == 0
    built = build_denoiser(recipe, condition_dim=10)
    assert (built.config.condition_dim, built.config.condition_mode) == (10, "cross_attention")
    with pytest.raises(UsageError, match=r"unknown key denoiser\.condition_dim in recipe: the condition size is "
                                         "derived from the parameter dataset"):
        recipe_from_dict({"denoiser": {"condition_dim": 10}})
    with pytest.raises(UsageError, match=r"denoiser\.condition_mode in recipe must be one of"):
        recipe_from_dict({"denoiser": {"condition_mode": "concat"}})
    with pytest.raises(UsageError, match=r"train\.condition_dropout in recipe must be a finite number >= 0 and < 1"):
        recipe_from_dict({"train": {"condition_dropout": 1}})
    assert recipe_from_dict({}).train.condition_dropout == 0.1


def test_an_args_yaml_recorded_when_condition_dim_was_a_key_still_loads(tmp_path):
    values = recipe_from_dict({}).to_dict()
    values["denoiser"]["condition_dim"] = 0
    (tmp_path / "args.yaml").write_text(yaml.safe_dump({"run": {"command": "train.py"}, **values}))
    assert load_recipe(tmp_path / "args.yaml") == recipe_from_dict({})


def test_the_ranks_rows_together_are_the_steps_global_batch():
    shares = [rank_rows(10, 6, seed=1, step=4, rank=rank, num_processes=3) for rank in range(3)]
    assert torch.equal(torch.cat(shares), batch_indices(10, 6, step_generator(1, 4)))
    data = torch.randn(10, 3)
    assert torch.equal(rank_batch(data, 6, seed=1, step=4, rank=1, num_processes=3), data[shares[1]])
