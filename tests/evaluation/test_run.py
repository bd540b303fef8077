"""run_evaluation on the tiny chain: every row measured by an independent forward pass, best chosen on validation,
splits subsampled reproducibly, and the recorded accuracies checked."""

import pytest
import torch

from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.data.subsets import subsample_splits
from pdiff_hub.evaluation.baselines import weight_average
from pdiff_hub.evaluation.generation import generate_parameters
from pdiff_hub.evaluation.report import render_report
from pdiff_hub.evaluation.run import run_evaluation
from pdiff_hub.recipes.config import EvaluateConfig

from ..components import tiny_target
from .conftest import CONFIG
from .helpers import make_params, plain_accuracy, seeded

ROWS = ["original", "ensemble", "p-diff", "noise 0.01", "noise 0.06", "average of 4", "gaussian"]


def test_every_row_and_its_per_model_values(result):
    assert result.setup.rows == list(result.table) == list(result.per_model) == ROWS
    assert list(result.verdict) == [row for row in ROWS if row != "p-diff"]
    for row in ROWS:
        n = {"original": 12, "ensemble": 1}.get(row, 5)
        assert result.table[row].n == result.val_table[row].n == n
        per_model = result.per_model[row]
        assert [len(v) for v in (per_model.test_accuracy, per_model.val_accuracy, per_model.max_iou,
                                 per_model.nearest_l2)] == [n] * 4
        assert len(result.latents[row]) == n and len(result.latents[row][0]) == 16
        assert 0.0 <= result.similarity.rows[row].max_iou.min <= result.similarity.rows[row].max_iou.max <= 1.0
    assert result.similarity.rows["original"].nearest_l2.min > 0  # each original's distance to itself is skipped
    assert result.setup.best_selected_by == "validation"
    assert result.setup.split_sizes == result.setup.full_split_sizes == {"validation": 40, "test": 40}
    assert {"generation_s", "evaluate_validation_s", "evaluate_test_s", "total_s"} <= set(result.timings)


def test_rows_hold_the_models_they_name(result, chain, splits):
    """Each row's accuracies are those of its own vectors, by a plain forward pass without the engine."""
    pipe, params = chain
    test = splits["test"]
    expected = {
        "original": plain_accuracy(params.target, params.vectors, *test),
        "ensemble": plain_accuracy(params.target, weight_average(params.vectors), *test),
        "p-diff": plain_accuracy(params.target, generate_parameters(
            pipe, CONFIG.num_models, CONFIG.num_inference_steps, CONFIG.scheduler, seeded(CONFIG.seed),
            progress=False), *test),
    }
    for row, accuracy in expected.items():
        assert result.per_model[row].test_accuracy == pytest.approx(accuracy.tolist(), abs=1e-3)
        assert result.table[row].mean == pytest.approx(accuracy.mean().item(), abs=1e-6)


def test_best_is_chosen_on_validation(result):
    for row in ROWS:
        per_model = result.per_model[row]
        chosen = max(range(len(per_model.val_accuracy)), key=per_model.val_accuracy.__getitem__)
        assert result.table[row].best == pytest.approx(per_model.test_accuracy[chosen], abs=1e-3)
    # the tiny chain's originals are a case where this is not simply the highest test accuracy
    assert result.table["original"].best < result.table["original"].max


def test_without_validation_best_is_the_highest_test_accuracy(chain, splits):
    pipe, params = chain
    config = EvaluateConfig(num_models=2, num_inference_steps=2, noise_amplitudes=[0.1], average_size=3)
    result = run_evaluation(pipe, params, {"test": splits["test"]}, config, progress=False)
    assert result.setup.best_selected_by.startswith("test")
    assert result.val_table is None and result.per_model["original"].val_accuracy is None
    assert result.table["original"].best == result.table["original"].max
    assert result.setup.split_sizes == {"test": 40}


def test_latent_distances_are_those_of_the_recorded_latents(result):
    latents = {row: torch.tensor(result.latents[row]) for row in ("original", "p-diff")}
    expected = torch.cdist(latents["p-diff"], latents["original"]).min(dim=1).values.mean()
    assert result.checks.latent_nearest_original["p-diff"] == pytest.approx(expected.item(), rel=1e-3)


def test_a_wrong_record_of_the_originals_accuracy_is_reported(chain, splits):
    pipe, params = chain
    recorded = params.column("test_accuracy").double()
    recorded[0] += 5.0
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 0.0, "test_accuracy": float(a)}
            for i, a in enumerate(recorded)]
    wrong = ParameterDataset(build_parameter_table(params.vectors, rows), params.target)
    config = EvaluateConfig(num_models=2, num_inference_steps=2, noise_amplitudes=[0.1], average_size=3)
    with pytest.warns(UserWarning, match="recorded at collection"):
        result = run_evaluation(pipe, wrong, splits, config, progress=False)
    assert result.checks.max_recorded_vs_recomputed_test_accuracy == pytest.approx(5.0, abs=1e-4)
    assert result.checks.recorded_accuracy_mismatch


def test_run_evaluation_on_a_test_subset(chain, splits):
    pipe, params = chain
    config = EvaluateConfig(num_models=2, num_inference_steps=2, noise_amplitudes=[0.1], average_size=3,
                            val_images=20, test_images=30)
    result = run_evaluation(pipe, params, splits, config, progress=False)
    assert result.setup.split_sizes == {"validation": 20, "test": 30}
    assert result.setup.full_split_sizes == {"validation": 40, "test": 40}
    assert result.checks.max_recorded_vs_recomputed_test_accuracy is None  # recorded on the whole split
    subset = subsample_splits(splits, {"test": 30}, seed=config.seed)["test"]
    expected = plain_accuracy(params.target, params.vectors, *subset)
    assert result.per_model["original"].test_accuracy == pytest.approx(expected.tolist(), abs=1e-3)
    assert "test 30 (a random subset of 40)" in render_report(result, {})


def test_run_evaluation_errors(chain, splits):
    pipe, params = chain
    with pytest.raises(ValueError, match="num_models"):
        run_evaluation(pipe, params, splits, EvaluateConfig(num_models=0), progress=False)
    with pytest.raises(ValueError, match="'test' split"):
        run_evaluation(pipe, params, {"validation": splits["validation"]}, CONFIG, progress=False)
    with pytest.raises(ValueError, match="scheduler"):
        run_evaluation(pipe, params, splits, EvaluateConfig(num_models=2, scheduler="euler"), progress=False)
    with pytest.raises(ValueError, match="layout"):  # another network's checkpoints
        run_evaluation(pipe, make_params(tiny_target(patterns=["layer4.*.bn1"])), splits, CONFIG, progress=False)
