"""train.accuracy_prompt: a denoiser conditioned on each checkpoint's standardized validation accuracy, the
pipeline's condition_info, and pipe(accuracy=...) on the trained pipeline. The parameter dataset is made in a second
(the digits MLP plus noise, with varied validation accuracies), not collected."""

import pytest
import torch

from pdiff_hub import PDiffPipeline, TargetModel
from pdiff_hub.core.cli import UsageError
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training import trainer as trainer_module
from pdiff_hub.training.conditions import accuracy_conditions, training_conditions
from pdiff_hub.training.trainer import PDiffTrainer

ACCURACY = [80.0, 82.0, 81.0, 85.0, 79.0, 83.0]


def accuracy_recipe(**train):
    """digits-mlp with a small autoencoder and a few steps of each stage; ``train`` overrides train keys."""
    values = load_recipe("digits-mlp").to_dict()
    values["autoencoder"] = {"latent_dim": 16, "channels": [8, 16]}
    values["denoiser"] = {"channels": [1, 8, 16, 8, 1], "time_embed_dim": 16, "condition_mode": "input"}
    values["train"].update(autoencoder_steps=3, diffusion_steps=5, autoencoder_batch_size=4, diffusion_batch_size=4,
                           **train)
    return recipe_from_dict(values)


def accuracy_params(recipe, accuracy=ACCURACY) -> ParameterDataset:
    torch.manual_seed(0)
    target = TargetModel(recipe.target.model_name, recipe.target.model_kwargs, recipe.target.param_patterns,
                         image_size=recipe.data.image_size)
    vectors = target.base_vector() + 0.01 * torch.randn(len(accuracy), target.layout.num_params)
    rows = [{"step": i, "seed": 0, "lr": 1e-3, "val_accuracy": a, "test_accuracy": a} for i, a in enumerate(accuracy)]
    return ParameterDataset(build_parameter_table(vectors, rows), target)


def record_batches(monkeypatch) -> list:
    batches = []
    diffusion_loss = trainer_module.diffusion_loss

    def recording(denoiser, scheduler, latents, conditions=None, condition_dropout=0.0):
        batches.append((latents.detach().clone(), conditions, condition_dropout))
        return diffusion_loss(denoiser, scheduler, latents, conditions, condition_dropout)

    monkeypatch.setattr(trainer_module, "diffusion_loss", recording)
    return batches


def test_the_conditions_are_the_standardized_validation_accuracies():
    params = accuracy_params(accuracy_recipe())
    accuracy = torch.tensor(ACCURACY, dtype=torch.float64)
    expected = ((accuracy - accuracy.mean()) / accuracy.std(correction=0)).float().unsqueeze(1)
    conditions = accuracy_conditions(params)
    assert conditions.dtype == torch.float32 and torch.equal(conditions, expected)
    assert conditions.mean().abs() < 1e-6 and conditions.std(correction=0).item() == pytest.approx(1, abs=1e-6)
    assert training_conditions(accuracy_recipe(accuracy_prompt=True), params).shape == (6, 1)
    assert training_conditions(accuracy_recipe(), params) is None


def test_an_accuracy_prompt_trains_on_each_checkpoints_own_accuracy_and_generates_for_prompts(tmp_path, monkeypatch):
    recipe = accuracy_recipe(accuracy_prompt=True, condition_dropout=0.25)
    params = accuracy_params(recipe)
    batches = record_batches(monkeypatch)
    pipe = PDiffTrainer(recipe, params, tmp_path / "run", checkpointing_steps=100, report_to="none").train().pipeline

    assert (pipe.denoiser.config.condition_dim, pipe.denoiser.config.condition_mode) == (1, "input")
    accuracy = torch.tensor(ACCURACY, dtype=torch.float64)
    mean, std = accuracy.mean().item(), accuracy.std(correction=0).item()
    assert pipe.condition_info == {
        "description": "validation accuracy (%) of the checkpoint, standardized with accuracy_mean and accuracy_std",
        "kind": "accuracy", "accuracy_mean": mean, "accuracy_std": std, "accuracy_min": 79.0, "accuracy_max": 85.0,
        "split": "validation"}
    # Every latent of every batch came with its own checkpoint's standardized accuracy.
    with torch.no_grad():
        latents = pipe.autoencoder.encode(params.vectors)
    assert len(batches) == 5
    for batch, conditions, dropout in batches:
        assert dropout == 0.25 and conditions.shape == (4, 1) and conditions.dtype == torch.float32
        for latent, condition in zip(batch, conditions):
            row = [i for i in range(len(latents)) if torch.equal(latents[i], latent)]
            assert len(row) == 1 and condition.item() == pytest.approx((ACCURACY[row[0]] - mean) / std, abs=1e-6)

    pipe.save_pretrained(tmp_path / "pipeline")
    loaded = PDiffPipeline.from_pretrained(tmp_path / "pipeline")
    assert loaded.condition_info == pipe.condition_info
    loaded.set_progress_bar_config(disable=True)

    def generate(**kwargs):
        return loaded(num_models=3, num_inference_steps=3, output_type="pt", guidance_scale=2.0,
                      generator=torch.Generator().manual_seed(0), **kwargs)

    prompted = generate(accuracy=[84.0, 80.5])
    assert prompted.parameters.shape == (6, params.target.layout.num_params)
    assert torch.isfinite(prompted.parameters).all()
    same = generate(condition=[[(84.0 - mean) / std], [(80.5 - mean) / std]])
    assert torch.equal(prompted.parameters, same.parameters) and torch.equal(prompted.conditions, same.conditions)
    assert prompted.conditions[:3].eq(prompted.conditions[0]).all()  # condition-major: 3 models per prompt


def test_an_unconditional_recipe_trains_an_unconditional_denoiser(tmp_path, monkeypatch):
    recipe = accuracy_recipe()
    assert recipe.train.accuracy_prompt is False
    batches = record_batches(monkeypatch)
    pipe = PDiffTrainer(recipe, accuracy_params(recipe), tmp_path / "run", checkpointing_steps=100,
                        report_to="none").train().pipeline
    assert pipe.denoiser.config.condition_dim == 0 and pipe.condition_info == {}
    assert [conditions for _, conditions, _ in batches] == [None] * 5
    with pytest.raises(ValueError, match="accuracy= needs a pipeline trained with train.accuracy_prompt"):
        pipe(num_models=1, num_inference_steps=2, output_type="pt", accuracy=80.0)


def test_checkpoints_of_one_accuracy_are_refused_before_anything_is_written(tmp_path):
    recipe = accuracy_recipe(accuracy_prompt=True)
    with pytest.raises(UsageError, match="needs checkpoints of different validation accuracies, but all 6 have 80%; "
                                         "set train.accuracy_prompt to false"):
        PDiffTrainer(recipe, accuracy_params(recipe, [80.0] * 6), tmp_path / "run", report_to="none")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match="some are not finite"):
        PDiffTrainer(recipe, accuracy_params(recipe, [80.0, float("nan")] * 3), tmp_path / "run", report_to="none")


def test_an_accuracy_prompt_with_a_task_family_is_refused():
    values = load_recipe("digits-mlp-tasks").to_dict()
    values["train"]["accuracy_prompt"] = True
    with pytest.raises(UsageError, match=r"train.accuracy_prompt must be false when tasks.num_train_tasks > 0, but "
                                         r"train.accuracy_prompt is True and tasks.num_train_tasks is \d+"):
        recipe_from_dict(values)
    values["train"]["accuracy_prompt"] = "yes"
    with pytest.raises(UsageError, match="train.accuracy_prompt"):
        recipe_from_dict(values)
