"""scripts/evaluate.py end to end on the digits recipe (slow: collect, train and evaluate in subprocesses)."""

import json

import pytest

from pdiff_hub.evaluation.figures import FIGURES
from pdiff_hub.evaluation.result import EvaluationResult

from ..scripts import run_script


@pytest.mark.slow
def test_evaluate_script_end_to_end_on_digits(tmp_path):
    params = tmp_path / "params"
    run_script("collect", "--recipe", "digits-mlp", "--collect.base_epochs", "3", "--collect.num_checkpoints", "20",
               "--output_dir", str(params))
    pipe = tmp_path / "pipe"
    run_script("train", "--recipe", "digits-mlp", "--param_dataset", str(params), "--output_dir", str(pipe),
               "--train.autoencoder_steps", "30", "--train.diffusion_steps", "30", "--skip_eval")
    out = tmp_path / "eval"
    result = run_script("evaluate", "--pipeline", str(pipe), "--param_dataset", str(params), "--num_models", "8",
                        "--evaluate.num_inference_steps", "5", "--output_dir", str(out))
    assert {"metrics.json", "report.md", "args.yaml", *FIGURES.values()} <= {p.name for p in out.iterdir()}
    metrics = EvaluationResult.from_dict(json.loads((out / "metrics.json").read_text()))
    assert metrics.setup.num_models == 8 and metrics.table["p-diff"].n == 8
    assert metrics.checks.max_recorded_vs_recomputed_test_accuracy < 1e-3  # same splits as the collection
    assert "p-diff" in result.stdout and "report.md" in result.stdout
    again = run_script("evaluate", "--pipeline", str(pipe), "--param_dataset", str(params), "--output_dir", str(out),
                       check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr
