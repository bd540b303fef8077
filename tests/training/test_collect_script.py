"""scripts/collect.py on real data (scikit-learn digits): outputs, card, and bad input that leaves nothing behind."""

import json

import pytest
import torch

from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.recipes.config import load_recipe

from ..scripts import run_script

pytestmark = pytest.mark.slow  # each case starts the script in a fresh Python process

QUICK = ["--recipe", "digits-mlp", "--collect.base_epochs", "2", "--collect.num_checkpoints", "12"]


def test_collect_writes_a_parameter_dataset(tmp_path):
    out = tmp_path / "params"
    run_script("collect", *QUICK, "--output_dir", str(out))
    params = ParameterDataset.load(out)
    assert params.vectors.shape == (12, 2410) and params.vectors.dtype == torch.float32
    assert params.dataset.column_names == ["parameters", "step", "seed", "lr", "val_accuracy", "test_accuracy"]
    assert params.dataset["step"] == list(range(12))
    assert all(50 < a <= 100 for a in params.dataset["test_accuracy"])
    # consecutive checkpoints differ: one per iteration of the subset's training
    assert (params.vectors[1:] - params.vectors[:-1]).abs().amax(dim=1).min() > 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "{{" not in card and "12\ncheckpoints" in card.replace(" 12\n", "12\n")
    assert load_recipe(out / "args.yaml").collect.num_checkpoints == 12
    assert json.loads((out / "metrics.json").read_text())["num_params"] == 2410
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--collect.num_checkpoints", "1"], "num_checkpoints on the command line must be an integer >= 2"),
        (["--target.param_patterns", "[layer9.*]"], "'layer9.*' matches no parameter"),
        (["--data.dataset", "no_such_dataset_xyz"], "no_such_dataset_xyz"),
        (["--collect.lr", "1e30", "--collect.num_checkpoints", "30"], "checkpoint collection diverged"),
        (["--collect.base_lr", "1e30"], "base training diverged"),
    ],
)
def test_bad_input_stops_clearly_and_leaves_no_output(tmp_path, override, message):
    out = tmp_path / "params"
    result = run_script("collect", *QUICK, *override, "--output_dir", str(out), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "params"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_script("collect", *QUICK, "--output_dir", str(out), check=False)
    assert result.returncode != 0 and "--overwrite" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
