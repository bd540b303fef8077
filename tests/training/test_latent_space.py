"""The latent space the denoiser is trained on: with ``autoencoder.standardize_latents`` the statistics are fitted
when stage 2 begins, stage 2 trains on the standardized latents, and the pipeline decodes them; a resumed run fits
the same statistics."""

import shutil

import torch

from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training import trainer as trainer_module
from pdiff_hub.training.train_run import run_metrics
from pdiff_hub.training.trainer import PDiffTrainer

from .synthetic import digits_parameter_dataset


def latent_recipe(**autoencoder):
    values = load_recipe("digits-mlp").to_dict()
    values["autoencoder"].update(latent_dim=16, channels=[8, 16], **autoencoder)
    values["train"].update(autoencoder_steps=4, diffusion_steps=4, autoencoder_batch_size=4, diffusion_batch_size=4)
    return recipe_from_dict(values)


def test_stage_two_trains_on_standardized_normalized_latents_that_the_pipeline_decodes(tmp_path, monkeypatch):
    recipe = latent_recipe(bound_latent=False, latent_norm="layer", standardize_latents=True)
    params = ParameterDataset.load(digits_parameter_dataset(tmp_path / "params", num_checkpoints=12))
    batches = []

    def recording(denoiser, scheduler, latents, conditions=None, condition_dropout=0.0):
        batches.append(latents.detach().clone())
        return diffusion_loss(denoiser, scheduler, latents, conditions, condition_dropout)

    diffusion_loss = trainer_module.diffusion_loss
    monkeypatch.setattr(trainer_module, "diffusion_loss", recording)
    result = PDiffTrainer(recipe, params, tmp_path / "run", report_to="none").train()
    autoencoder = result.pipeline.autoencoder
    with torch.no_grad():
        raw = autoencoder.encoder_latents(params.vectors)
        latents = autoencoder.encode(params.vectors)
    torch.testing.assert_close(autoencoder.latent_mean, raw.mean(dim=0))
    torch.testing.assert_close(autoencoder.latent_std, raw.std(dim=0))
    torch.testing.assert_close(latents.std(dim=0), torch.ones(16), atol=1e-4, rtol=0)
    for batch in batches:  # every row of every batch is a standardized latent of a checkpoint
        assert all(any(torch.equal(row, z) for z in latents) for row in batch)
    torch.testing.assert_close(raw.pow(2).mean(dim=1), torch.ones(12), atol=1e-3, rtol=0)  # normalized per model
    metrics = run_metrics(recipe, params, result, evaluate=False)
    assert metrics["saturated_latent_fraction"] == autoencoder.saturated_fraction(raw) == 0.0


def test_stage_one_of_a_variational_latent_trains_the_kl_term(tmp_path, monkeypatch):
    recipe = latent_recipe(bound_latent=False, latent_kl=0.1, latent_noise=0.0, standardize_latents=True)
    params = ParameterDataset.load(digits_parameter_dataset(tmp_path / "params", num_checkpoints=12))
    terms = []

    def recording(autoencoder, vectors):
        reconstruction, kl = autoencoder(vectors, return_kl=True)
        terms.append(kl.item())
        return autoencoder_loss(autoencoder, vectors)

    autoencoder_loss = trainer_module.autoencoder_loss
    monkeypatch.setattr(trainer_module, "autoencoder_loss", recording)
    result = PDiffTrainer(recipe, params, tmp_path / "run", report_to="none").train()
    assert len(terms) == 4 and all(kl > 0 for kl in terms)
    autoencoder = result.pipeline.autoencoder
    assert autoencoder.config.latent_kl == 0.1 and "to_log_var.weight" in autoencoder.state_dict()
    with torch.no_grad():
        latents = autoencoder.encode(params.vectors)
    torch.testing.assert_close(latents.std(dim=0), torch.ones(16), atol=1e-4, rtol=0)


def test_a_run_resumed_in_stage_two_fits_the_same_latent_statistics(tmp_path):
    recipe = latent_recipe(standardize_latents=True)
    params = ParameterDataset.load(digits_parameter_dataset(tmp_path / "params", num_checkpoints=12))
    straight = PDiffTrainer(recipe, params, tmp_path / "straight", checkpointing_steps=6, report_to="none")
    whole = straight.train().pipeline
    checkpoint = tmp_path / "straight" / "checkpoints" / "checkpoint-6"  # two steps into stage 2
    shutil.copytree(checkpoint, tmp_path / "resumed" / "checkpoints" / checkpoint.name)
    resumed = PDiffTrainer(recipe, params, tmp_path / "resumed", report_to="none",
                           resume_from_checkpoint="latest").train().pipeline
    for name in ("autoencoder", "denoiser"):
        a, b = getattr(whole, name).state_dict(), getattr(resumed, name).state_dict()
        assert "latent_mean" in whole.autoencoder.state_dict() and a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key}"
