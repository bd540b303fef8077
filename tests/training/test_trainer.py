"""PDiffTrainer on a task family: a conditional denoiser, conditions batched with their latents, the pipeline's
condition_info, and the per-task reconstruction accuracy. The parameter dataset is made in a second (the 2-way
digits head plus noise), not collected."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState

from pdiff_hub import PDiffPipeline, TargetModel
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict, write_yaml_atomic
from pdiff_hub.training import trainer as trainer_module
from pdiff_hub.training.train_run import run_metrics
from pdiff_hub.training.trainer import PDiffTrainer, check_task_family, reconstruction_accuracy

from .launch import launch_script
from .synthetic import TINY_TRAIN, digits_parameter_dataset

TRAIN = ["0110010010", "1000000001", "0000011111"]
HELDOUT = ["1100000000"]
ROWS_PER_TASK = 3


def family_recipe(**train):
    """digits-mlp generating its 2-way head for a family of 3 training tasks, with a few steps of each stage."""
    values = load_recipe("digits-mlp").to_dict()
    values["target"]["param_patterns"] = ["3"]
    values["tasks"] = {"num_train_tasks": len(TRAIN), "num_heldout_tasks": len(HELDOUT)}
    values["autoencoder"] = {"latent_dim": 32, "channels": [16, 32]}
    values["train"].update(autoencoder_steps=4, diffusion_steps=6, autoencoder_batch_size=4, diffusion_batch_size=4,
                           **train)
    return recipe_from_dict(values)


def family_params(recipe) -> ParameterDataset:
    torch.manual_seed(0)
    target = TargetModel(recipe.target.model_name, recipe.generated_model_kwargs(), recipe.target.param_patterns,
                         image_size=recipe.data.image_size)
    tasks = [code for code in TRAIN for _ in range(ROWS_PER_TASK)]
    vectors = target.base_vector() + 0.01 * torch.randn(len(tasks), target.layout.num_params)
    rows = [{"step": i, "seed": 0, "lr": 0.05, "val_accuracy": 80.0, "test_accuracy": 80.0} for i in range(len(tasks))]
    info = {"num_classes": 10, "train": TRAIN, "heldout": HELDOUT, "seed": 4, "class_names": list("0123456789")}
    return ParameterDataset(build_parameter_table(vectors, rows, tasks), target, task_info=info)


def test_a_task_family_trains_a_conditional_pipeline_on_each_latents_own_condition(tmp_path, monkeypatch):
    recipe = family_recipe(condition_dropout=0.25)
    params = family_params(recipe)
    batches = []

    def recording(denoiser, scheduler, latents, conditions=None, condition_dropout=0.0):
        batches.append((latents.detach().clone(), conditions, condition_dropout))
        return diffusion_loss(denoiser, scheduler, latents, conditions, condition_dropout)

    diffusion_loss = trainer_module.diffusion_loss
    monkeypatch.setattr(trainer_module, "diffusion_loss", recording)
    result = PDiffTrainer(recipe, params, tmp_path / "run", checkpointing_steps=100, report_to="none").train()
    pipe = result.pipeline

    assert (pipe.denoiser.config.condition_dim, pipe.denoiser.config.condition_mode) == (10, "add")
    assert pipe.condition_info == {
        "description": "bit i = 1: class i is a positive class of the binary task", "num_classes": 10,
        "class_names": list("0123456789"), "train_conditions": TRAIN, "held_out_conditions": HELDOUT,
        "split_seed": 4}
    # Every latent of every batch came with the condition of its own row (the latents are those of the frozen
    # autoencoder, in eval mode: each batch row is found among them exactly).
    with torch.no_grad():
        latents = pipe.autoencoder.encode(params.vectors)
    assert len(batches) == 6
    for batch, conditions, dropout in batches:
        assert dropout == 0.25 and conditions.shape == (4, 10)
        for latent, condition in zip(batch, conditions):
            row = [i for i in range(len(latents)) if torch.equal(latents[i], latent)]
            assert len(row) == 1 and torch.equal(condition, params.conditions[row[0]])

    pipe.set_progress_bar_config(disable=True)
    out = pipe(num_models=2, num_inference_steps=3, condition=[[1, 1] + [0] * 8, [0] * 9 + [1]], output_type="pt",
               generator=torch.Generator().manual_seed(0), guidance_scale=2.0)
    assert out.parameters.shape == (4, params.target.layout.num_params) and torch.isfinite(out.parameters).all()

    metrics = run_metrics(recipe, params, result, evaluate=True)
    assert metrics["reconstruction_accuracy_kind"] == "per_task" and metrics["num_checkpoints"] == 9
    assert 0 <= metrics["original_mean_test_accuracy"] <= 100


class _Identity(torch.nn.Module):
    def encode(self, vectors):
        return vectors

    def decode(self, latents):
        return latents


def test_a_task_familys_reconstruction_accuracy_is_each_checkpoint_on_its_own_task():
    recipe = family_recipe()
    target = family_params(recipe).target
    torch.manual_seed(0)
    labels = torch.arange(50) % 10
    evaluator = ParameterEvaluator(target.model.eval(), target.layout, torch.randn(50, 1, 8, 8), labels)
    # A head of zero weights answers by its bias alone: always positive (1) or always negative (0).
    def head(bias):
        return target.layout.flatten({"3.weight": torch.zeros(2, 32), "3.bias": torch.tensor(bias)})

    vectors = torch.stack([head([0.0, 5.0]), head([0.0, 5.0]), head([5.0, 0.0]), head([5.0, 0.0])])
    tasks = ["0110010010", "1000000001", "0110010010", "1000000001"]
    kept = reconstruction_accuracy(_Identity(), vectors, evaluator, tasks)
    # Always positive: right on the positive classes' images (4 of 10 classes, 2 of 10); always negative: the rest.
    assert kept["original_mean_test_accuracy"] == pytest.approx((40 + 20 + 60 + 80) / 4)
    assert kept["reconstructed_mean_test_accuracy"] == kept["original_mean_test_accuracy"]
    assert kept["reconstruction_max_abs_accuracy_change"] == 0
    plain = reconstruction_accuracy(_Identity(), vectors, evaluator)  # without tasks: against the 10 class labels
    assert plain["original_mean_test_accuracy"] == pytest.approx((10 + 10 + 10 + 10) / 4)


def test_a_recipe_and_a_parameter_dataset_that_disagree_on_tasks_are_refused(tmp_path):
    recipe = family_recipe()
    with pytest.raises(ValueError, match="holds the checkpoints of one task, but the recipe's tasks.num_train_tasks "
                                         "is 3"):
        check_task_family(recipe, ParameterDataset.load(digits_parameter_dataset(tmp_path / "params")))
    with pytest.raises(ValueError, match="is a task family .*tasks.num_train_tasks is 0"):
        check_task_family(load_recipe("digits-mlp"), family_params(recipe))


@pytest.mark.slow  # scripts/train.py under accelerate launch, 2 CPU processes
def test_a_task_family_trains_on_two_processes(tmp_path):
    recipe = family_recipe()
    family_params(recipe).save(tmp_path / "params")
    write_yaml_atomic(tmp_path / "recipe.yaml", recipe.to_dict())
    launch_script("train", "--recipe", str(tmp_path / "recipe.yaml"), "--param_dataset", str(tmp_path / "params"),
                  "--output_dir", str(tmp_path / "out"), *TINY_TRAIN)
    pipe = PDiffPipeline.from_pretrained(tmp_path / "out")
    assert pipe.denoiser.config.condition_dim == 10 and pipe.condition_info["held_out_conditions"] == HELDOUT
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["num_processes"] == 2


@pytest.fixture
def fresh_accelerator_state():
    """accelerate's state is a process-wide singleton: start from the test's launch settings and leave none behind."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_the_launch_mixed_precision_is_used_and_recorded(tmp_path, monkeypatch, mixed_precision,
                                                         fresh_accelerator_state):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", mixed_precision)  # what `accelerate launch --mixed_precision` sets
    recipe = family_recipe()
    trainer = PDiffTrainer(recipe, family_params(recipe), tmp_path / "out", report_to="none")
    result = trainer.train()
    assert result.mixed_precision == mixed_precision
    assert trainer.accelerator.native_amp == (mixed_precision == "bf16")  # the models' forward runs under autocast
    metrics = run_metrics(recipe, family_params(recipe), result, evaluate=False)
    assert metrics.get("mixed_precision", "no") == mixed_precision
