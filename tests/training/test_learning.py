"""Training really learns, on real labels: scikit-learn's digits, the digits-mlp recipe with short stages.

Tolerances: the checkpoints' reconstructions keep the originals' mean test accuracy within 1 point, and the
generated MLPs reach at least 80% mean test accuracy (chance is 10%; an autoencoder collapsed onto the mean checkpoint,
the failure this guards against, generated 51%).
"""

import pytest
import torch

from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training.trainer import PDiffTrainer, reconstruction_accuracy

from ..scripts import run_script

pytestmark = pytest.mark.slow  # the parameter dataset is collected by scripts/collect.py in a subprocess


def test_digits_reconstructions_keep_their_accuracy_and_generated_models_beat_chance(tmp_path):
    params_dir = tmp_path / "params"
    run_script("collect", "--recipe", "digits-mlp", "--collect.num_checkpoints", "50", "--output_dir", str(params_dir))
    values = load_recipe("digits-mlp").to_dict()
    values["train"].update(autoencoder_steps=300, diffusion_steps=600)
    recipe = recipe_from_dict(values)
    params = ParameterDataset.load(params_dir)
    result = PDiffTrainer(recipe, params, tmp_path / "pipeline", checkpointing_steps=10_000,
                          report_to="none").train()

    test = load_recipe_splits(recipe.data, recipe.target.model_kwargs)["test"]
    evaluator = ParameterEvaluator(params.target.model, params.target.layout, *test)
    pipeline = result.pipeline
    kept = reconstruction_accuracy(pipeline.autoencoder, params.vectors, evaluator)
    assert abs(kept["reconstructed_mean_test_accuracy"] - kept["original_mean_test_accuracy"]) <= 1.0, kept

    pipeline.set_progress_bar_config(disable=True)
    generated = pipeline(num_models=20, num_inference_steps=50, generator=torch.Generator().manual_seed(0),
                         output_type="pt").parameters
    accuracy = evaluator.accuracy(generated)
    assert accuracy.mean() >= 80, accuracy
