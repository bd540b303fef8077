import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pdiff_hub import LatentDenoiser
from pdiff_hub.models.conditioning import CONDITION_MODES, as_conditions, guided_noise_prediction

DIM = 10  # a 10-bit task code


def conditional(mode, seed=0, trained=True, **kwargs):
    """A tiny conditional denoiser; ``trained`` moves every weight off its initial value (the zero-initialized
    attention output and null embedding included), as training would."""
    torch.manual_seed(seed)
    den = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16, condition_dim=DIM,
                         condition_mode=mode, **kwargs).eval()
    if trained:
        with torch.no_grad():
            for p in den.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return den


def latents(n=4, seed=0):
    return torch.randn(n, 1, 16, generator=torch.Generator().manual_seed(seed))


def codes(n=4, seed=1):
    return torch.randint(0, 2, (n, DIM), generator=torch.Generator().manual_seed(seed)).float()


@pytest.fixture(scope="module", params=CONDITION_MODES)
def denoiser(request):
    return conditional(request.param)


@torch.no_grad()
def test_each_latent_is_denoised_for_its_own_condition(denoiser):
    x, c, t = latents(), codes(), torch.tensor([3, 50, 400, 999])
    out = denoiser(x, t, condition=c).sample
    assert out.shape == (4, 1, 16)
    for i in range(4):
        torch.testing.assert_close(out[i], denoiser(x[i : i + 1], t[i : i + 1], condition=c[i : i + 1]).sample[0])
    # every value of the code counts: flipping one bit changes the prediction
    flipped = c.clone()
    flipped[:, 7] = 1 - flipped[:, 7]
    assert not torch.allclose(out, denoiser(x, t, condition=flipped).sample)


@torch.no_grad()
def test_wrong_condition_shapes_are_refused(denoiser):
    x = latents()
    for bad in (codes()[:, :9], codes(3), codes()[0]):
        with pytest.raises(ValueError, match=r"condition of shape \(4, 10\)"):
            denoiser(x, 0, condition=bad)
    for mask in (torch.ones(4), torch.ones(3, dtype=torch.bool)):
        with pytest.raises(ValueError, match=r"bool mask of shape \(4,\)"):
            denoiser(x, 0, condition=codes(), drop_condition=mask)
    with pytest.raises(ValueError, match="condition_mode"):
        LatentDenoiser(latent_dim=16, condition_dim=DIM, condition_mode="concat")


def test_an_unconditional_denoiser_takes_no_condition():
    den = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16)
    with pytest.raises(ValueError, match="unconditional"):
        den(latents(), 0, condition=codes())
    with pytest.raises(ValueError, match="unconditional"):
        den(latents(), 0, drop_condition=torch.ones(4, dtype=torch.bool))


@torch.no_grad()
def test_a_dropped_condition_is_the_null_condition(denoiser):
    x, c, t = latents(), codes(), 25
    none = denoiser(x, t).sample
    assert torch.equal(denoiser(x, t, condition=c, drop_condition=torch.ones(4, dtype=torch.bool)).sample, none)
    kept = denoiser(x, t, condition=c).sample
    mask = torch.tensor([True, False, False, True])
    mixed = denoiser(x, t, condition=c, drop_condition=mask).sample
    assert torch.equal(mixed[mask], none[mask]) and torch.equal(mixed[~mask], kept[~mask])
    assert not torch.allclose(kept, none)


@pytest.mark.parametrize("mode", CONDITION_MODES)
@torch.no_grad()
def test_a_new_conditional_denoiser_starts_as_the_unconditional_one(mode):
    """Its unconditional layers draw the same initial weights, and its null condition changes nothing yet."""
    torch.manual_seed(0)
    plain = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16).eval()
    fresh = conditional(mode, trained=False)
    extra = set(fresh.state_dict()) - set(plain.state_dict())
    assert all(k.startswith(("condition_embedding.", "condition_tokens.", "cross_attention.", "condition_map.",
                             "map_conv.")) for k in extra)
    assert any(k.startswith("condition_embedding.") for k in extra) == (mode != "cross_attention")
    assert any(k.startswith("cross_attention.") for k in extra) == (mode in ("cross_attention", "both"))
    assert any(k.startswith("condition_map.") for k in extra) == (mode == "input")
    for name, value in plain.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    x = latents()
    assert torch.equal(fresh(x, 10).sample, plain(x, 10).sample)


@torch.no_grad()
def test_guidance_scale_one_is_the_conditional_prediction_and_zero_the_unconditional_one(denoiser):
    x, c, t = latents(), codes(), torch.tensor(30)
    cond, uncond = denoiser(x, t, condition=c).sample, denoiser(x, t).sample
    assert torch.equal(guided_noise_prediction(denoiser, x, t, c, 1.0), cond)
    assert torch.equal(guided_noise_prediction(denoiser, x, t, c, 0.0), uncond)
    torch.testing.assert_close(guided_noise_prediction(denoiser, x, t, c, 3.0), uncond + 3 * (cond - uncond))
    assert torch.equal(guided_noise_prediction(denoiser, x, t, None, 1.0), uncond)


def test_guidance_runs_one_denoiser_call_and_the_unconditional_half_only_when_needed():
    den = conditional("add")
    calls = []

    def record(module, args, kwargs):
        calls.append((len(args[0]), kwargs.get("drop_condition")))

    handle = den.register_forward_pre_hook(record, with_kwargs=True)
    with torch.no_grad():
        for scale in (1.0, 0.0, 2.5):
            guided_noise_prediction(den, latents(), 5, codes(), scale)
    handle.remove()
    assert [n for n, _ in calls] == [4, 4, 8]
    assert calls[0][1] is None and calls[1][1] is None
    assert calls[2][1].tolist() == [False] * 4 + [True] * 4  # conditional half first, then the null half


def test_conditions_are_read_from_lists_arrays_and_tensors():
    rows = [[0, 1] * 5, [1, 0] * 5]
    expected = torch.tensor(rows, dtype=torch.float32)
    for given in (rows, np.array(rows), expected.double()):
        assert torch.equal(as_conditions(given, DIM), expected)
    assert as_conditions(None, DIM) is None
    with pytest.raises(ValueError, match=r"\(C, 10\).*wrap a single code"):
        as_conditions(rows[0], DIM)
    with pytest.raises(ValueError, match=r"\(C, 10\)"):
        as_conditions([[0, 1]], DIM)
    with pytest.raises(ValueError, match="NaN"):
        as_conditions([[float("nan")] * DIM], DIM)
    with pytest.raises(ValueError, match="must be numbers"):
        as_conditions([["a"] * DIM], DIM)
    with pytest.raises(ValueError, match="needs a condition"):
        as_conditions(None, DIM, guidance_scale=2.0)
    with pytest.raises(ValueError, match="finite"):
        as_conditions(rows, DIM, guidance_scale=float("inf"))


@pytest.mark.slow
@torch.no_grad()
def test_cost_of_cross_attention_and_added_embedding():
    """Parameters, FLOPs and time per denoiser call on a (100, 1, 128) batch, paper-sized network (printed, not
    judged). The modes take turns and the fastest of 5 calls is kept, so that other work on the machine weighs less;
    the FLOP count does not depend on the machine at all."""
    x, c = torch.randn(100, 1, 128), torch.randint(0, 2, (100, DIM)).float()
    modes = ("none", *CONDITION_MODES)
    nets = {mode: LatentDenoiser(**({} if mode == "none" else {"condition_dim": DIM, "condition_mode": mode})).eval()
            for mode in modes}
    seconds = {mode: float("inf") for mode in modes}
    for _ in range(5):
        for mode, den in nets.items():
            start = time.perf_counter()
            den(x, 500, condition=None if mode == "none" else c)
            seconds[mode] = min(seconds[mode], time.perf_counter() - start)
    base = sum(p.numel() for p in nets["none"].parameters())
    print(f"\n{'mode':<16}{'parameters':>12}{'extra':>10}{'GFLOP':>8}{'ms/call':>10}  "
          f"({torch.get_num_threads()} threads)")
    for mode, den in nets.items():
        params = sum(p.numel() for p in den.parameters())
        with FlopCounterMode(display=False) as flops:
            den(x, 500, condition=None if mode == "none" else c)
        print(f"{mode:<16}{params:>12,}{params - base:>10,}{flops.get_total_flops() / 1e9:>8.2f}"
              f"{1000 * seconds[mode]:>10.1f}")
