"""scripts/collect.py refuses bad input before it trains: one sentence, exit status 2, nothing written or lost.

Every case runs the script in process on the digits-mlp recipe beside an earlier finished output, and proves with
:func:`snapshot` that the folder holding both is as before (no output, no hidden temporary folder). The refusals
come before base training, except a diverging base training (one step) and a full disk (a two-checkpoint run).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pdiff_hub.data.parameters import ParameterDataset

from .harness import call, error_line, snapshot

QUICK = ["--recipe", "digits-mlp", "--collect.base_epochs", "1", "--collect.num_checkpoints", "2"]
WHOLE = ["--target.param_patterns", "['*']"]  # the recipe's own patterns, spelled out where a case changes seeds


@pytest.fixture
def earlier(tmp_path: Path) -> Path:
    """An earlier output folder that no refused run may touch."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "README.md").write_text("an earlier parameter dataset\n")
    return folder


def refused(tmp_path: Path, *argv: str, output: str | None = None) -> str:
    before = snapshot(tmp_path)
    code, stderr = call("collect", *QUICK, *argv, "--output_dir", output or str(tmp_path / "out"))
    assert code == 2, stderr
    assert snapshot(tmp_path) == before
    return error_line(stderr)


CASES = {
    "empty seed list": (["--collect.seeds", "[]"], "--collect.seeds on the command line must be a non-empty list"),
    "more seeds than checkpoints": ([*WHOLE, "--collect.seeds", "[0, 1, 2]", "--collect.num_checkpoints", "4"],
                                    "collect.num_checkpoints 4 cannot give each of the 3 seeds in collect.seeds "
                                    "[0, 1, 2] at least 2 checkpoints"),
    "several seeds, part of the network": (["--target.param_patterns", "['3.*']", "--collect.seeds", "[0, 1]",
                                            "--collect.num_checkpoints", "4"],
                                           "collect.seeds [0, 1] has several base-model seeds"),
    "pattern matching nothing": (["--target.param_patterns", "['layer9.*']"],
                                 "target.param_patterns ['layer9.*'] do not fit 'pdiff_mlp': Parameter pattern "
                                 "'layer9.*' matches no parameter"),
    "unknown model": (["--target.model_name", "no_such_net"], "timm cannot build target.model_name 'no_such_net'"),
    "unknown model argument": (["--target.model_kwargs", "{num_classes: 10, in_chans: 1, img_size: 8, depth: 3}"],
                               "timm cannot build target.model_name 'pdiff_mlp' with target.model_kwargs"),
    "class count not the model's": (["--target.model_kwargs", "{num_classes: 5, in_chans: 1, img_size: 8, hidden: 32}"],
                                    "digits has 10 classes but the model is built with num_classes=5"),
    "base batch above the training split": (["--collect.base_batch_size", "100000"],
                                            "collect.base_batch_size 100000 is larger than the"),
    "diverging base training": (["--collect.base_lr", "1e30"],
                                "base training diverged (loss nan at epoch 1, step"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_collection_is_refused_before_the_work(tmp_path, earlier, case):
    argv, message = CASES[case]
    assert message in refused(tmp_path, *argv)


def test_an_unknown_dataset_is_refused(tmp_path, earlier):
    absent = tmp_path / "no-such-images"
    assert f"No image dataset '{absent}'" in refused(tmp_path, "--data.dataset", str(absent))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("earlier/README.md", "--output_dir {out} is a file; give a folder"),
        ("earlier", "--output_dir {out} exists and is not empty; pass --overwrite to replace it"),
        (".", "--output_dir . is the current folder or one above it"),
    ],
)
def test_an_output_that_would_be_lost_is_refused_before_the_work(tmp_path, earlier, monkeypatch, output, message):
    monkeypatch.chdir(tmp_path)
    assert message.format(out=output) in refused(tmp_path, output=output)


def test_a_full_disk_keeps_the_earlier_output_and_leaves_no_temporary_folder(tmp_path, earlier, monkeypatch):
    def full(self, folder):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(ParameterDataset, "save", full)
    line = refused(tmp_path, "--overwrite", output=str(earlier))
    assert line.startswith("error: the disk is full while writing ") and "nothing was replaced" in line


def test_a_recipe_inside_the_output_folder_is_not_replaced(tmp_path, earlier):
    recipe = earlier / "recipe.yaml"
    recipe.write_text("name: mine\ndata: {dataset: digits}\n")
    line = refused(tmp_path, "--recipe", str(recipe), "--overwrite", output=str(earlier))
    assert f"--output_dir {earlier} overlaps the input {recipe}" in line
