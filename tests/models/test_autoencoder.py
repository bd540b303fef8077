import pytest
import torch

from pdiff_hub import ParameterAutoencoder

from ..components import assert_same_up_to_rounding

SIZES = [20, 12, 5]  # three parameter tensors, 37 values: not a multiple of 2**depth


def checkpoints(k=6, seed=0):
    """K vectors whose tensors have very different means and spreads, and whose last tensor never moved."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.cat([torch.randn(32, generator=g), torch.zeros(5)])
    spread = torch.cat([torch.full((20,), 0.01), torch.full((12,), 3.0), torch.zeros(5)])
    offset = torch.cat([torch.full((20,), 1.0), torch.full((12,), -5.0), torch.full((5,), 2.0)])
    return offset + shared + spread * torch.randn(k, sum(SIZES), generator=g)


def autoencoder(**kwargs):
    torch.manual_seed(0)
    return ParameterAutoencoder(num_params=sum(SIZES), tensor_sizes=SIZES, latent_dim=8, channels=(4, 8), **kwargs)


def per_tensor(x):
    return torch.split(x, SIZES, dim=-1)


def test_per_coordinate_centring_standardizes_each_tensor_around_the_checkpoint_mean():
    vectors = checkpoints()
    ae = autoencoder()
    ae.fit_normalization(vectors)
    torch.testing.assert_close(ae.param_mean, vectors.mean(0))
    standardized = (vectors - ae.param_mean) / ae.param_std
    torch.testing.assert_close(standardized.mean(0), torch.zeros(sum(SIZES)), atol=1e-4, rtol=0)
    moving, still = per_tensor(standardized)[:2], per_tensor(standardized)[2]
    for chunk in moving:  # every tensor at unit RMS, whatever its own spread
        torch.testing.assert_close(chunk.pow(2).mean(), torch.tensor(1.0))
    assert torch.equal(per_tensor(ae.param_std)[2], torch.ones(5)) and still.abs().max() < 1e-5


def test_without_centring_each_tensor_gets_one_mean_and_one_std():
    vectors = checkpoints()
    ae = autoencoder(center_per_coordinate=False)
    ae.fit_normalization(vectors)
    for chunk, mean, std in zip(per_tensor(vectors), per_tensor(ae.param_mean), per_tensor(ae.param_std)):
        torch.testing.assert_close(mean, chunk.mean().expand(chunk.shape[1]))
        rms = (chunk - chunk.mean()).pow(2).mean().sqrt()
        torch.testing.assert_close(std, (rms if rms > 0 else torch.tensor(1.0)).expand(chunk.shape[1]))
    # the shared per-coordinate pattern is left in the standardized input: that is what centring removes
    assert ((vectors - ae.param_mean) / ae.param_std).mean(0).abs().max() > 0.5


def test_normalization_is_saved_with_the_model(tmp_path):
    ae = autoencoder()
    ae.fit_normalization(checkpoints())
    ae.save_pretrained(tmp_path)
    loaded = ParameterAutoencoder.from_pretrained(tmp_path)
    assert torch.equal(loaded.param_mean, ae.param_mean) and torch.equal(loaded.param_std, ae.param_std)
    assert_same_up_to_rounding(loaded.eval()(checkpoints()), ae.eval()(checkpoints()))


def test_input_is_zero_padded_to_a_multiple_of_two_to_the_depth_and_output_unpadded():
    ae = autoencoder().eval()
    ae.fit_normalization(checkpoints())
    assert ae.padded_length == 40 and ae.reduced_length == 10
    seen = []
    ae.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    vectors = checkpoints(3, seed=1)
    latents = ae.encode(vectors)
    assert latents.shape == (3, 8) and seen[0].shape == (3, 1, 40)
    torch.testing.assert_close(seen[0][:, 0, :37], (vectors - ae.param_mean) / ae.param_std)
    assert seen[0][:, 0, 37:].eq(0).all()
    assert ae.decode(latents).shape == (3, 37) and ae.decode(latents[:, None]).shape == (3, 37)


def test_noise_only_in_training_mode():
    ae = autoencoder(input_noise=0.01, latent_noise=0.1)
    vectors = checkpoints()
    ae.train()
    assert not torch.equal(ae(vectors), ae(vectors))
    assert torch.equal(ae.encode(vectors), ae.encode(vectors))  # encode never adds noise
    ae.eval()
    assert torch.equal(ae(vectors), ae(vectors))
    torch.testing.assert_close(ae(vectors), ae.decode(ae.encode(vectors)))
    quiet = autoencoder(input_noise=0.0, latent_noise=0.0).train()
    assert torch.equal(quiet(vectors), quiet(vectors))


@pytest.mark.parametrize("bound", [True, False])
def test_latent_bound(bound):
    ae = autoencoder(bound_latent=bound)
    with torch.no_grad():  # GroupNorm makes the encoder scale-free, so only large output weights give large latents
        ae.to_latent.weight.mul_(100)
    latents = ae.encode(checkpoints())
    assert (latents.abs().max() <= 1) == bound


def test_mismatched_sizes_and_shapes_are_refused():
    with pytest.raises(ValueError, match="sum to 36"):
        ParameterAutoencoder(num_params=37, tensor_sizes=[20, 16], latent_dim=8, channels=(4, 8))
    with pytest.raises(ValueError, match=r"\(N, 37\)"):
        autoencoder().encode(torch.zeros(2, 36))


def test_normalized_latent_has_zero_mean_and_unit_rms_per_model_and_cannot_saturate():
    ae = autoencoder(bound_latent=False, latent_norm="layer")
    with torch.no_grad():  # outputs that tanh would pin at +-1
        ae.to_latent.weight.mul_(100)
    latents = ae.encode(checkpoints())
    torch.testing.assert_close(latents.mean(dim=1), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(latents.pow(2).mean(dim=1), torch.ones(6), atol=1e-3, rtol=0)
    assert latents.abs().max() > 1  # not squashed: a fixed scale, not a bound


def test_latent_norm_values_and_the_tanh_bound_are_refused_together():
    with pytest.raises(ValueError, match="exclude each other"):
        autoencoder(latent_norm="layer")  # bound_latent defaults to true
    with pytest.raises(ValueError, match="latent_norm must be one of"):
        autoencoder(bound_latent=False, latent_norm="batch")


def test_standardized_latents_fill_unit_variance_per_coordinate_and_decode_as_before():
    vectors = checkpoints(k=12)
    ae = autoencoder(standardize_latents=True).eval()
    ae.fit_normalization(vectors)
    raw = ae.encoder_latents(vectors)
    assert torch.equal(ae.encode(vectors), raw)  # identity until fitted
    ae.fit_latent_normalization(vectors)
    z = ae.encode(vectors)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=0), torch.ones(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(ae.latent_mean, raw.mean(dim=0))
    # the decoder still sees the encoder's own latents: standardizing changes the denoiser's space only
    torch.testing.assert_close(ae.decode(z), ae(vectors))


def test_latent_standardization_is_saved_with_the_model_and_absent_without_it(tmp_path):
    vectors = checkpoints(k=12)
    ae = autoencoder(standardize_latents=True)
    ae.fit_normalization(vectors)
    ae.fit_latent_normalization(vectors)
    ae.save_pretrained(tmp_path / "on")
    loaded = ParameterAutoencoder.from_pretrained(tmp_path / "on").eval()
    assert torch.equal(loaded.latent_mean, ae.latent_mean) and torch.equal(loaded.latent_std, ae.latent_std)
    assert_same_up_to_rounding(loaded.encode(vectors), ae.eval().encode(vectors))
    plain = autoencoder()  # saved as every pipeline before the option: no extra weights, loads as it was
    assert "latent_mean" not in plain.state_dict()
    with pytest.raises(ValueError, match="without standardize_latents"):
        plain.fit_latent_normalization(vectors)


def test_a_variational_latent_is_the_posterior_mean_and_training_decodes_a_sample(tmp_path):
    vectors = checkpoints()
    ae = autoencoder(bound_latent=False, latent_kl=1e-3, input_noise=0.0, latent_noise=0.0)
    ae.fit_normalization(vectors)
    with torch.no_grad():  # a large posterior variance: samples far from the mean
        ae.to_log_var.bias.fill_(2.0)
    mean = ae.encode(vectors)
    assert torch.equal(ae.train().encode(vectors), mean)  # encode is the mean, in training mode too
    assert not torch.equal(ae(vectors), ae(vectors))  # training decodes posterior samples
    assert torch.equal(ae.eval()(vectors), ae.decode(mean))
    reconstruction, kl = ae(vectors, return_kl=True)
    log_var = ae.to_log_var(ae.encoder(torch.nn.functional.pad(
        (vectors - ae.param_mean) / ae.param_std, (0, ae.padded_length - 37))[:, None]).flatten(1))
    torch.testing.assert_close(kl, 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).mean())
    kl.backward()
    assert ae.to_log_var.weight.grad.abs().sum() > 0 and ae.to_latent.weight.grad.abs().sum() > 0
    ae.save_pretrained(tmp_path)
    loaded = ParameterAutoencoder.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.to_log_var.weight, ae.to_log_var.weight)
    assert "to_log_var.weight" not in autoencoder().state_dict()  # absent without the option: old saves load


def test_a_variational_latent_excludes_the_tanh_bound_and_the_normalized_latent():
    with pytest.raises(ValueError, match="latent_kl sets the latent's scale itself"):
        autoencoder(latent_kl=0.1)  # bound_latent defaults to true
    with pytest.raises(ValueError, match="latent_kl sets the latent's scale itself"):
        autoencoder(bound_latent=False, latent_norm="layer", latent_kl=0.1)
    _, kl = autoencoder()(checkpoints(), return_kl=True)
    assert kl == 0  # no KL term without the option
