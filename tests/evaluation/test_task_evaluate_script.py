"""scripts/evaluate.py on a conditional pipeline and its task family (scikit-learn's digits, in process): the task
evaluation's files, and a one-sentence refusal of every mismatched pairing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdiff_hub import TargetModel
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.data.tasks import sample_task_codes, split_tasks
from pdiff_hub.evaluation.task_figures import TASK_FIGURES
from pdiff_hub.evaluation.task_result import TaskEvaluationResult
from pdiff_hub.recipes.config import recipe_from_dict, write_run_args

from ..components import tiny_pipeline
from ..reliability.harness import call, error_line
from .task_family import conditional_pipeline

RECIPE = {
    "data": {"dataset": "digits", "image_size": 8, "val_size": 100},
    "target": {"model_name": "pdiff_mlp", "model_kwargs": {"num_classes": 10, "in_chans": 1, "img_size": 8,
                                                           "hidden": 8}, "param_patterns": ["*"]},
    "tasks": {"num_train_tasks": 8, "num_heldout_tasks": 3, "burn_in_steps": 2, "checkpoints_per_task": 2,
              "checkpoint_every": 2, "lr": 0.05, "batch_size": 32},
    "evaluate": {"num_models": 2, "num_inference_steps": 2, "val_images": 50, "test_images": 60},
}


def _params(target: TargetModel, family: bool) -> ParameterDataset:
    split = split_tasks(sample_task_codes(11, 10, seed=0), 3, seed=0)
    codes = [c for c in split.train for _ in range(2)]
    vectors = target.base_vector() + 0.1 * torch.randn(len(codes), target.layout.num_params,
                                                       generator=torch.Generator().manual_seed(0))
    rows = [{"step": 2 + 2 * (i % 2), "seed": 0, "lr": 0.05, "val_accuracy": 0.0, "test_accuracy": 0.0}
            for i in range(len(codes))]
    if not family:
        return ParameterDataset(build_parameter_table(vectors, rows), target)
    info = {"num_classes": 10, "train": split.train, "heldout": split.heldout, "seed": 0, "kept_steps": [2, 4],
            "backbone_classes": list(range(10)), "backbone_test_accuracy": 90.0}
    return ParameterDataset(build_parameter_table(vectors, rows, tasks=codes), target, task_info=info)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate_tasks")
    torch.manual_seed(0)
    target = TargetModel("pdiff_mlp", {"num_classes": 2, "in_chans": 1, "img_size": 8, "hidden": 8}, ["*"],
                         image_size=8)
    family, plain = _params(target, family=True), _params(target, family=False)
    family.save(root / "family")
    plain.save(root / "plain")
    conditional_pipeline(family, condition_dim=10).save_pretrained(root / "conditional")
    unconditional = tiny_pipeline(target)
    unconditional.autoencoder.fit_normalization(plain.vectors)
    unconditional.save_pretrained(root / "unconditional")
    for name in ("conditional", "unconditional"):
        write_run_args(root / name, recipe_from_dict(RECIPE))
    return {"root": root, **{name: root / name for name in ("family", "plain", "conditional", "unconditional")}}


def test_a_conditional_pipeline_gets_the_task_evaluation(runs):
    out = runs["root"] / "out"
    code, stderr = call("evaluate", "--pipeline", str(runs["conditional"]), "--param_dataset", str(runs["family"]),
                        "--output_dir", str(out), "--guidance_scale", "2", "--device", "cpu")
    assert code == 0, stderr
    assert {"metrics.json", "report.md", "args.yaml", *TASK_FIGURES.values()} <= {p.name for p in out.iterdir()}
    result = TaskEvaluationResult.from_dict(json.loads((out / "metrics.json").read_text()))
    assert result.setup.guidance_scale == 2.0 and result.setup.num_heldout_tasks == 3
    assert result.setup.split_sizes == {"validation": 50, "test": 60}
    assert "guidance scale 2" in (out / "report.md").read_text()
    assert "guidance_scale: 2.0" in (out / "args.yaml").read_text()


@pytest.mark.parametrize(("pipeline", "params", "extra", "flag"), [
    ("conditional", "plain", [], "--param_dataset"),
    ("unconditional", "family", [], "--pipeline"),
    ("unconditional", "plain", ["--guidance_scale", "2"], "--guidance_scale"),
])
def test_mismatched_pairings_are_refused_in_one_sentence(runs, pipeline, params, extra, flag):
    out = runs["root"] / f"refused_{pipeline}_{params}"
    code, stderr = call("evaluate", "--pipeline", str(runs[pipeline]), "--param_dataset", str(runs[params]),
                        "--output_dir", str(out), "--device", "cpu", *extra)
    assert code == 2 and flag in error_line(stderr)
    assert not out.exists()
