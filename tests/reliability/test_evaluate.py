"""scripts/evaluate.py refuses a bad output folder, a foreign or damaged input and a recipe of another network before
any image is loaded: exit status 2, one sentence, nothing written or changed. One valid run at the end shows that
``--allow_other_param_dataset`` lets a deliberate comparison through.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.recipes.config import recipe_from_dict, write_run_args

from ..components import tiny_pipeline, tiny_target
from .harness import call, error_line, snapshot

# The tiny pipeline's network on scikit-learn's digits (offline, 1,797 images), with a few models and steps.
RECIPE = {
    "data": {"dataset": "digits", "image_size": 32, "val_size": 100},
    "target": {"model_name": "test_resnet", "model_kwargs": {"num_classes": 10, "in_chans": 1},
               "param_patterns": ["layer4.*.bn*"]},
    "evaluate": {"num_models": 3, "num_inference_steps": 2, "noise_amplitudes": [0.01], "average_size": 4,
                 "val_images": 40, "test_images": 40},
}


def save_params(folder: Path, target, seed: int, nan_row: int | None = None) -> ParameterDataset:
    base = target.base_vector()
    vectors = base + 0.1 * torch.randn(8, base.numel(), generator=torch.Generator().manual_seed(seed))
    if nan_row is not None:
        vectors[nan_row, 0] = float("nan")
    rows = [{"step": i, "seed": seed, "lr": 0.1, "val_accuracy": 0.0, "test_accuracy": 0.0} for i in range(8)]
    params = ParameterDataset(build_parameter_table(vectors, rows), target)
    params.save(folder)
    return params


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained-looking run (pipeline + its parameter dataset), and the foreign or damaged inputs of the cases."""
    root = tmp_path_factory.mktemp("evaluate")
    target = tiny_target()
    params = save_params(root / "params", target, seed=0)
    save_params(root / "other_params", target, seed=1)
    save_params(root / "nan_params", target, seed=0, nan_row=2)
    save_params(root / "other_network", tiny_target(patterns=["layer4.*.bn1"]), seed=0)
    pipe = tiny_pipeline(target)
    pipe.autoencoder.fit_normalization(params.vectors)
    pipe.register_provenance(param_dataset_fingerprint=params.fingerprint, recipe_hash="0" * 64)
    pipe.save_pretrained(root / "pipe")
    write_run_args(root / "pipe", recipe_from_dict(RECIPE))
    shutil.copytree(root / "pipe", root / "swapped")
    other = tiny_pipeline(target)
    other.autoencoder.fit_normalization(params.vectors + 1.0)  # the same layout, another run's weights
    other.save_pretrained(root / "other_pipe")
    shutil.rmtree(root / "swapped" / "autoencoder")
    shutil.copytree(root / "other_pipe" / "autoencoder", root / "swapped" / "autoencoder")
    shutil.copytree(root / "pipe", root / "no_recipe")
    (root / "no_recipe" / "args.yaml").unlink()
    (root / "earlier_eval").mkdir()
    (root / "earlier_eval" / "report.md").write_text("an earlier evaluation\n")
    (root / "a_file").write_text("not a folder\n")
    return {p.name: p for p in root.iterdir()}


def argv(runs: dict[str, Path], pipeline: str = "pipe", params: str = "params", out: Path | None = None,
         *extra: str) -> list[str]:
    """The command line of a case: inputs by their fixture name (or ``"missing"``), the output folder, flags."""
    root = runs["pipe"].parent
    pipeline_path = root / "nowhere" / "pipe" if pipeline == "missing" else runs[pipeline]
    return ["--pipeline", str(pipeline_path), "--param_dataset", str(runs[params]), "--output_dir",
            str(out if out is not None else root / "eval"), *extra]


CASES = {
    "output is a file": (lambda r: argv(r, out=r["a_file"]), "--output_dir .*a_file is a file"),
    "output holds an earlier evaluation": (lambda r: argv(r, out=r["earlier_eval"]), "not empty; pass --overwrite"),
    "output checked before the inputs are read": (lambda r: argv(r, "missing", out=r["earlier_eval"]),
                                                  "not empty; pass --overwrite"),
    "output inside the pipeline": (lambda r: argv(r, out=r["pipe"] / "eval"), "overlaps the input"),
    "output is the parameter dataset": (lambda r: argv(r, "pipe", "params", r["params"], "--overwrite"),
                                        "overlaps the input"),
    "pipeline folder missing": (lambda r: argv(r, "missing"), "No pipeline folder at .*does not exist"),
    "no recipe recorded, none given": (lambda r: argv(r, "no_recipe"), "has no args.yaml .*pass --recipe"),
    "trained on another parameter dataset": (lambda r: argv(r, "pipe", "other_params"),
                                             "pipe was trained on .*not on .*other_params .*--allow_other_param"),
    "parameter dataset of another network": (lambda r: argv(r, "pipe", "other_network"), "generated layout"),
    "NaN rows in the parameter dataset": (lambda r: argv(r, "pipe", "nan_params"), "Row 2 of .*holds NaN or infinite"),
    "autoencoder swapped from another run": (lambda r: argv(r, "swapped"),
                                             "autoencoder's weights .* replaced or damaged"),
    "recipe of another network": (lambda r: argv(r, "pipe", "params", None, "--recipe", "digits-mlp"),
                                  "target.model_name is 'pdiff_mlp' but the pipeline's network has 'test_resnet'"),
    "image size overridden": (lambda r: argv(r, "pipe", "params", None, "--data.image_size", "28"),
                              "data.image_size is 28"),
    "unknown device": (lambda r: argv(r, "pipe", "params", None, "--device", "tpu7"), "--device 'tpu7'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_evaluation_is_refused_before_the_work(case, runs):
    make_argv, sentence = CASES[case]
    before = snapshot(*runs.values(), runs["pipe"].parent / "eval")
    code, stderr = call("evaluate", *make_argv(runs))
    assert code == 2, stderr
    assert re.search(sentence, error_line(stderr)), error_line(stderr)
    assert snapshot(*runs.values(), runs["pipe"].parent / "eval") == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present here")
def test_a_gpu_asked_for_where_there_is_none(runs):
    code, stderr = call("evaluate", *argv(runs, "pipe", "params", None, "--device", "cuda"))
    assert code == 2 and "torch sees none" in error_line(stderr)


def test_another_parameter_dataset_on_purpose_is_evaluated(runs, tmp_path):
    inputs = [runs["pipe"], runs["other_params"]]
    before = snapshot(*inputs)
    code, stderr = call("evaluate", *argv(runs, "pipe", "other_params", tmp_path / "eval",
                                          "--allow_other_param_dataset", "--device", "cpu"))
    assert code == 0, stderr
    assert {"metrics.json", "report.md", "args.yaml"} <= {p.name for p in (tmp_path / "eval").iterdir()}
    assert snapshot(*inputs) == before
