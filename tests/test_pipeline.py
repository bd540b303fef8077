import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file, save_file

from pdiff_hub import LatentDenoiser, ParameterAutoencoder, PDiffPipeline, PDiffPipelineOutput

from .components import assert_same_up_to_rounding, tiny_pipeline, tiny_target

LEGACY = Path(__file__).parent / "models" / "data" / "legacy"


def generate(pipe, n=3, steps=2, seed=0, **kwargs):
    return pipe(num_models=n, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    pipe.save_pretrained(folder)
    return folder


def test_generates_ready_timm_models(pipe):
    out = generate(pipe)
    assert isinstance(out, PDiffPipelineOutput)
    assert out.parameters.shape == (3, pipe.target.layout.num_params)
    assert len(out.models) == 3
    logits = out.models[1](torch.randn(4, 1, 32, 32))
    assert logits.shape == (4, 10) and not out.models[1].training
    # the generated subset really is the row of `parameters`
    torch.testing.assert_close(pipe.target.layout.flatten(out.models[1].state_dict()), out.parameters[1])


def test_expected_slice(pipe):
    values = generate(pipe).parameters[0, :4]
    expected = torch.tensor([-0.0961, 0.1568, -0.2521, 0.0038])
    torch.testing.assert_close(values, expected, atol=1e-3, rtol=1e-3)


def test_same_seed_same_models_other_seed_other_models(pipe):
    a, b, c = generate(pipe, seed=1), generate(pipe, seed=1), generate(pipe, seed=2)
    assert torch.equal(a.parameters, b.parameters)
    assert not torch.allclose(a.parameters, c.parameters)


def test_dict_and_tuple_outputs_agree(pipe):
    out = generate(pipe, output_type="pt")
    models, params = generate(pipe, output_type="pt", return_dict=False)
    assert out.models is None and models is None
    assert torch.equal(out.parameters, params)


def test_state_dict_output_loads_into_a_fresh_model(pipe):
    out = generate(pipe, n=1, output_type="state_dict")
    fresh = tiny_target().model
    fresh.load_state_dict(out.models[0])
    torch.testing.assert_close(pipe.target.layout.flatten(fresh.state_dict()), out.parameters[0])


def test_ddim_swap(pipe):
    ddim = PDiffPipeline(pipe.target, pipe.autoencoder, pipe.denoiser, DDIMScheduler.from_config(pipe.scheduler.config))
    ddim.set_progress_bar_config(disable=True)
    assert ddim.scheduler.config.clip_sample is False
    out = generate(ddim, steps=5)
    assert out.parameters.shape == (3, pipe.target.layout.num_params) and torch.isfinite(out.parameters).all()


def test_bad_arguments(pipe):
    with pytest.raises(ValueError, match="num_models"):
        pipe(num_models=0)
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_models=1, output_type="numpy")


def test_save_load_round_trip_generates_the_same_vectors(pipe, saved):
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    assert {"model_index.json", "target/config.json", "autoencoder/config.json", "denoiser/config.json"} <= set(files)
    loaded = PDiffPipeline.from_pretrained(saved)
    loaded.set_progress_bar_config(disable=True)
    assert_same_up_to_rounding(generate(loaded).parameters, generate(pipe).parameters)
    assert loaded.target.config.param_names == pipe.target.config.param_names


def test_missing_component_is_named(saved, tmp_path):
    broken = tmp_path / "p"
    shutil.copytree(saved, broken)
    shutil.rmtree(broken / "denoiser")
    with pytest.raises(FileNotFoundError, match="'denoiser' is missing"):
        PDiffPipeline.from_pretrained(broken)


def test_corrupt_safetensors_is_named(saved, tmp_path):
    broken = tmp_path / "p"
    shutil.copytree(saved, broken)
    weights = next((broken / "autoencoder").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match="corrupt or truncated"):
        PDiffPipeline.from_pretrained(broken)


def test_target_layout_mismatch_is_refused(saved, tmp_path):
    broken = tmp_path / "p"
    shutil.copytree(saved, broken)
    config_file = broken / "target" / "config.json"
    config = json.loads(config_file.read_text())
    config["param_patterns"], config["param_names"], config["param_shapes"] = ["fc.*"], None, None
    config_file.write_text(json.dumps(config))
    # the weights still load (same network), but the generated layout no longer matches the autoencoder
    with pytest.raises(ValueError, match="autoencoder encodes vectors of"):
        PDiffPipeline.from_pretrained(broken)


def test_not_a_pipeline_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        PDiffPipeline.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a Hub repo id"):
        PDiffPipeline.from_pretrained(str(tmp_path / "nowhere"))


def test_nan_weights_in_autoencoder_are_refused(saved, tmp_path):
    broken = tmp_path / "p"
    shutil.copytree(saved, broken)
    weights = next((broken / "autoencoder").glob("*.safetensors"))
    tensors = load_file(weights)
    tensors["from_latent.weight"] = torch.full_like(tensors["from_latent.weight"], float("nan"))
    save_file(tensors, weights)
    (broken / "pdiff_hub.json").unlink()  # as saved before checksums were recorded: only generation can tell
    pipe = PDiffPipeline.from_pretrained(broken)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(RuntimeError, match="NaN"):
        generate(pipe)


def test_round_trip_keeps_every_config_value_and_the_generated_vectors(tmp_path):
    target = tiny_target()
    torch.manual_seed(3)
    autoencoder = ParameterAutoencoder(
        num_params=target.layout.num_params, tensor_sizes=target.layout.sizes, latent_dim=8, channels=(4, 8, 8),
        kernel_size=5, input_noise=0.02, latent_noise=0.3, bound_latent=False, center_per_coordinate=False,
    )
    autoencoder.fit_normalization(target.base_vector() + torch.randn(5, target.layout.num_params))
    denoiser = LatentDenoiser(latent_dim=8, channels=(1, 4, 8, 4, 1), kernel_size=3, time_embed_dim=12)
    scheduler = DDIMScheduler(num_train_timesteps=200, beta_start=1e-3, beta_end=3e-2, clip_sample=False)
    pipe = PDiffPipeline(target, autoencoder, denoiser, scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    loaded = PDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name in ("target", "autoencoder", "denoiser", "scheduler"):
        saved_config = {k: v for k, v in getattr(pipe, name).config.items() if not k.startswith("_")}
        loaded_config = {k: v for k, v in getattr(loaded, name).config.items() if not k.startswith("_")}
        assert json.loads(json.dumps(loaded_config)) == json.loads(json.dumps(saved_config)), name
    assert isinstance(loaded.scheduler, DDIMScheduler)
    assert_same_up_to_rounding(generate(loaded, steps=4).parameters, generate(pipe, steps=4).parameters)


def test_pipeline_saved_before_the_relayout_generates_the_same_vectors(pipe, saved, tmp_path):
    """A pipeline saved at cfcbfdb: the target under ``pdiff_hub.target``, the denoiser's MLP as ``time_mlp``."""
    old = tmp_path / "p"
    shutil.copytree(saved, old)
    shutil.rmtree(old / "denoiser")
    shutil.copytree(LEGACY / "denoiser", old / "denoiser")
    index = json.loads((old / "model_index.json").read_text())
    index["target"] = ["pdiff_hub.target", "TargetModel"]
    (old / "model_index.json").write_text(json.dumps(index))
    (old / "pdiff_hub.json").unlink()  # that version recorded no checksums
    loaded = PDiffPipeline.from_pretrained(old)
    loaded.set_progress_bar_config(disable=True)
    expected = load_file(LEGACY / "generated.safetensors")["parameters"]
    assert_same_up_to_rounding(generate(loaded, n=2, output_type="pt").parameters, expected)


def test_incompatible_components_are_refused(pipe):
    ae = ParameterAutoencoder(num_params=pipe.target.layout.num_params + 1, latent_dim=16, channels=(8, 16))
    with pytest.raises(ValueError, match="autoencoder encodes vectors of"):
        PDiffPipeline(pipe.target, ae, pipe.denoiser, pipe.scheduler)
    den = LatentDenoiser(latent_dim=8, channels=(1, 8, 1))
    with pytest.raises(ValueError, match="latents of 8"):
        PDiffPipeline(pipe.target, pipe.autoencoder, den, pipe.scheduler)


def test_save_records_checksums_and_provenance_that_loading_reads_back(tmp_path):
    pipe = tiny_pipeline()
    pipe.register_provenance(param_dataset_fingerprint="f" * 64, recipe_hash="r" * 64, seed=3)
    pipe.save_pretrained(tmp_path / "a")
    record = json.loads((tmp_path / "a" / "pdiff_hub.json").read_text())
    assert set(record["checksums"]) == {"target", "autoencoder", "denoiser"}
    loaded = PDiffPipeline.from_pretrained(tmp_path / "a")
    assert loaded.provenance == {"param_dataset_fingerprint": "f" * 64, "recipe_hash": "r" * 64, "seed": 3}
    loaded.save_pretrained(tmp_path / "b")  # a loaded pipeline saved again keeps its identity
    assert json.loads((tmp_path / "b" / "pdiff_hub.json").read_text()) == record


def test_save_pretrained_pushes_through_push_to_hub_with_the_record(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(PDiffPipeline, "push_to_hub", lambda self, repo_id, **kwargs: calls.append((repo_id, kwargs)))
    tiny_pipeline().save_pretrained(tmp_path / "p", push_to_hub=True, repo_id="org/p", token="secret")
    assert calls == [("org/p", {"token": "secret"})]
    assert (tmp_path / "p" / "pdiff_hub.json").is_file()


CODES = [[0, 1, 1, 0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]]


def conditional_pipeline(mode="both"):
    """The tiny pipeline with a denoiser conditioned on 10-bit codes, its weights moved off their initial values (the
    zero-initialized attention output and null embedding included) as training would."""
    pipe = tiny_pipeline()
    torch.manual_seed(0)
    denoiser = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16, condition_dim=10,
                              condition_mode=mode)
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pipe = PDiffPipeline(pipe.target, pipe.autoencoder, denoiser, pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def conditional():
    return conditional_pipeline()


def test_models_for_each_condition_condition_major_in_one_batch(conditional):
    generators = [torch.Generator().manual_seed(s) for s in range(6)]
    out = conditional(num_models=2, num_inference_steps=3, generator=generators, output_type="pt", condition=CODES)
    assert out.parameters.shape == (6, conditional.target.layout.num_params)
    assert torch.equal(out.conditions, torch.tensor(CODES, dtype=torch.float32).repeat_interleave(2, dim=0))
    # row i is made from generator i for its own condition: the same as a call for that condition alone
    for k, code in enumerate(CODES):
        alone = conditional(num_models=2, num_inference_steps=3, output_type="pt", condition=[code],
                            generator=[torch.Generator().manual_seed(s) for s in (2 * k, 2 * k + 1)])
        torch.testing.assert_close(out.parameters[2 * k : 2 * k + 2], alone.parameters)
    assert not torch.allclose(out.parameters[0:2], out.parameters[2:4], atol=1e-3)


def test_guidance_scale_zero_is_unconditional_generation_and_other_scales_differ(conditional):
    none = generate(conditional, n=2, output_type="pt")
    assert none.conditions is None
    assert len(generate(conditional, n=2, output_type="pt", return_dict=False)) == 2
    zero = generate(conditional, n=2, output_type="pt", condition=CODES[:1], guidance_scale=0.0)
    assert torch.equal(zero.parameters, none.parameters)
    one = generate(conditional, n=2, output_type="pt", condition=CODES[:1])
    two = generate(conditional, n=2, output_type="pt", condition=CODES[:1], guidance_scale=2.0)
    assert not torch.allclose(one.parameters, none.parameters) and not torch.allclose(two.parameters, one.parameters)
    models, params, conditions = generate(conditional, n=2, condition=CODES[:1], guidance_scale=2.0, return_dict=False)
    assert len(models) == 2 and torch.equal(params, two.parameters) and conditions.shape == (2, 10)


def test_a_wrong_condition_is_refused(conditional):
    with pytest.raises(ValueError, match=r"\(C, 10\)"):
        generate(conditional, condition=[[0, 1, 1]])
    with pytest.raises(ValueError, match="needs a condition"):
        generate(conditional, guidance_scale=3.0)


def test_an_unconditional_pipeline_refuses_a_condition(pipe):
    for kwargs in ({"condition": CODES}, {"guidance_scale": 2.0}):
        with pytest.raises(ValueError, match="This pipeline is unconditional"):
            generate(pipe, **kwargs)
    with pytest.raises(ValueError, match="unconditional"):
        pipe.register_condition_info(description="nothing")


def test_conditional_round_trip_keeps_the_condition_info_and_the_generated_vectors(tmp_path):
    pipe = conditional_pipeline("cross_attention")
    info = {"description": "bit i = 1: class i is positive", "held_out_conditions": CODES[2:], "split_seed": 0}
    pipe.register_condition_info(**info)
    with pytest.raises(ValueError, match="JSON values only"):
        pipe.register_condition_info(codes=torch.ones(3))
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "pdiff_hub.json").read_text())["condition_info"] == info
    loaded = PDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.condition_info == info
    assert (loaded.denoiser.config.condition_dim, loaded.denoiser.config.condition_mode) == (10, "cross_attention")
    expected = generate(pipe, n=2, output_type="pt", condition=CODES, guidance_scale=1.5).parameters
    assert_same_up_to_rounding(generate(loaded, n=2, output_type="pt", condition=CODES, guidance_scale=1.5).parameters,
                               expected)
