"""scripts/evaluate.py on an accuracy-prompted pipeline (scikit-learn's digits, in process): the Table 1 evaluation
with a row per prompt, the calibration figure and the goal in the report; a task family or --guidance_scale refused
in one sentence."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pdiff_hub import PDiffPipeline, TargetModel
from pdiff_hub.core.cli import UsageError
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.evaluation.figures import CALIBRATION_FIGURE, FIGURES
from pdiff_hub.evaluation.result import EvaluationResult
from pdiff_hub.recipes.config import recipe_from_dict, write_run_args

from ..reliability.harness import call, error_line, load_script
from .accuracy_chain import accuracy_params, accuracy_pipeline

RECIPE = {
    "data": {"dataset": "digits", "image_size": 8, "val_size": 100},
    "target": {"model_name": "pdiff_mlp", "model_kwargs": {"num_classes": 10, "in_chans": 1, "img_size": 8,
                                                           "hidden": 8}, "param_patterns": ["*"]},
    "evaluate": {"num_models": 2, "num_inference_steps": 2, "val_images": 50, "test_images": 60,
                 "noise_amplitudes": [0.01], "average_size": 4, "accuracy_prompts": [50.0, 61.25]},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate_accuracy")
    target = TargetModel("pdiff_mlp", RECIPE["target"]["model_kwargs"], ["*"], image_size=8)
    params = accuracy_params(target)
    params.save(root / "params")
    accuracy_pipeline(target, params).save_pretrained(root / "accuracy")
    write_run_args(root / "accuracy", recipe_from_dict(RECIPE))
    return {"root": root, "params": root / "params", "accuracy": root / "accuracy"}


def test_an_accuracy_prompted_pipeline_gets_table_1_with_its_prompts(runs):
    out = runs["root"] / "out"
    code, stderr = call("evaluate", "--pipeline", str(runs["accuracy"]), "--param_dataset", str(runs["params"]),
                        "--output_dir", str(out), "--device", "cpu")
    assert code == 0, stderr
    assert {"metrics.json", "report.md", "args.yaml", *FIGURES.values(), *CALIBRATION_FIGURE.values()} <= {
        p.name for p in out.iterdir()}
    result = EvaluationResult.from_dict(json.loads((out / "metrics.json").read_text()))
    assert result.setup.accuracy_prompts == [50.0, 61.25]
    assert result.setup.rows[2:5] == ["p-diff", "p-diff @ 50.00", "p-diff @ 61.25"]
    assert all(result.table[row].n == 2 for row in result.prompts)
    report = (out / "report.md").read_text()
    assert "## Accuracy prompts" in report and "beats the **average of 4** in mean test accuracy" in report


def test_guidance_is_refused_for_an_accuracy_prompted_pipeline(runs):
    out = runs["root"] / "refused"
    code, stderr = call("evaluate", "--pipeline", str(runs["accuracy"]), "--param_dataset", str(runs["params"]),
                        "--output_dir", str(out), "--device", "cpu", "--guidance_scale", "2")
    assert code == 2 and "--guidance_scale applies to task-conditioned pipelines only; an accuracy-prompted" in (
        error_line(stderr))
    assert not out.exists()


def test_check_kind_takes_an_accuracy_prompted_pipeline_to_table_1(runs):
    check_kind = load_script("evaluate").check_kind
    pipe, params = PDiffPipeline.from_pretrained(runs["accuracy"]), ParameterDataset.load(runs["params"])
    assert check_kind(pipe, params, 1.0) is False
    family = SimpleNamespace(is_task_family=True, source="org/family")
    with pytest.raises(UsageError, match="conditioned on accuracy but org/family is a task family; pass the parameter "
                                         "dataset of one task it was trained on to --param_dataset"):
        check_kind(pipe, family, 1.0)
