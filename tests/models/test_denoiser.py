import math
from pathlib import Path

import pytest
import torch
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import load_file

from pdiff_hub import LatentDenoiser, LatentDenoiserOutput

from ..components import assert_same_up_to_rounding

LEGACY = Path(__file__).parent / "data" / "legacy"


@pytest.fixture(scope="module")
def denoiser():
    torch.manual_seed(0)
    return LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16).eval()


def latents(n=4, seed=0):
    return torch.randn(n, 1, 16, generator=torch.Generator().manual_seed(seed))


def test_time_embedding_is_diffusers_with_cosines_first(denoiser):
    timesteps = torch.tensor([0, 1, 17, 999])
    embedding = denoiser.time_proj(timesteps)
    expected = get_timestep_embedding(timesteps, 16, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert torch.equal(embedding, expected)
    # the formula the released weights were trained with: [cos(t f), sin(t f)], f_i = 10000 ** (-i / 8)
    args = timesteps[:, None].float() * torch.tensor([10000 ** (-i / 8) for i in range(8)])
    torch.testing.assert_close(embedding, torch.cat([torch.cos(args), torch.sin(args)], dim=1))
    assert embedding[0, :8].eq(1).all() and math.isclose(embedding[2, 8].item(), math.sin(17), rel_tol=1e-6)


@pytest.mark.parametrize("timestep", [17, torch.tensor(17), torch.tensor([17]), torch.full((4,), 17)])
def test_one_timestep_is_broadcast_to_the_batch(denoiser, timestep):
    x = latents()
    explicit = denoiser(x, torch.full((4,), 17)).sample
    assert torch.equal(denoiser(x, timestep).sample, explicit)


def test_each_sample_gets_its_own_timestep(denoiser):
    x, timesteps = latents(), torch.tensor([0, 10, 500, 999])
    batched = denoiser(x, timesteps).sample
    for i in range(4):
        torch.testing.assert_close(batched[i], denoiser(x[i : i + 1], int(timesteps[i])).sample[0])
    assert not torch.allclose(batched[0], denoiser(x[:1], 999).sample[0])


def test_output_shapes(denoiser):
    out = denoiser(latents(3), 5)
    assert isinstance(out, LatentDenoiserOutput) and out.sample.shape == (3, 1, 16)
    (sample,) = denoiser(latents(3), 5, return_dict=False)
    assert torch.equal(sample, out.sample)


def test_wrong_latent_shape_and_asymmetric_channels_are_refused(denoiser):
    with pytest.raises(ValueError, match=r"\(N, 1, 16\)"):
        denoiser(torch.zeros(2, 16), 0)
    with pytest.raises(ValueError, match="symmetric"):
        LatentDenoiser(latent_dim=16, channels=(1, 8, 4, 1))


def test_weights_saved_with_the_old_time_mlp_names_load(tmp_path):
    io = load_file(LEGACY / "denoiser_io.safetensors")
    loaded = LatentDenoiser.from_pretrained(LEGACY / "denoiser")
    assert_same_up_to_rounding(loaded(io["sample"], torch.tensor([0, 17, 999])).sample, io["noise_pred"])

    fresh = LatentDenoiser.from_config(loaded.config)
    fresh.load_state_dict(load_file(LEGACY / "denoiser" / "diffusion_pytorch_model.safetensors"))
    assert_same_up_to_rounding(fresh(io["sample"], torch.tensor([0, 17, 999])).sample, io["noise_pred"])

    loaded.save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "diffusion_pytorch_model.safetensors"))
    assert "time_embedding.linear_1.weight" in keys and not any(k.startswith("time_mlp") for k in keys)
