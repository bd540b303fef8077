"""scripts/train.py refuses bad input before it trains: one sentence, exit status 2, nothing written or lost.

Every case runs the script in process on a synthetic parameter dataset of the digits-mlp recipe, beside an earlier
finished run (pipeline and checkpoints) and an unfinished one (checkpoints only, as a killed run leaves them), and
proves with :func:`snapshot` that neither the inputs nor those runs changed. The last tests show what is cleaned up
and replaced when the run is allowed to go ahead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pdiff_hub.core.cli import UsageError
from pdiff_hub.recipes.config import load_recipe
from pdiff_hub.training.trainer import check_steps

from ..training.synthetic import TINY_TRAIN, digits_parameter_dataset
from .harness import call, error_line, snapshot


@dataclass
class Runs:
    params: Path  # a parameter dataset, inside data/
    other_params: Path  # another one of the same layout
    finished: Path  # a finished run on params: pipeline and checkpoints
    tmp: Path  # a fresh folder per case

    @property
    def unfinished(self) -> Path:
        """A run killed after its checkpoints (a copy of the finished run's), made on first use."""
        folder = self.tmp / "unfinished"
        if not folder.exists():
            shutil.copytree(self.finished / "checkpoints", folder / "checkpoints")
        return folder

    def checkpoint(self) -> Path:
        return self.unfinished / "checkpoints" / "checkpoint-6"


@pytest.fixture(scope="module")
def module_runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("train")
    params = digits_parameter_dataset(root / "data" / "params")
    other = digits_parameter_dataset(root / "other_params", seed=1)
    finished = root / "finished"
    code, stderr = call("train", *train_args(params, finished))
    assert code == 0, stderr
    return Runs(params, other, finished, root)


@pytest.fixture
def runs(module_runs: Runs, tmp_path: Path) -> Runs:
    return Runs(module_runs.params, module_runs.other_params, module_runs.finished, tmp_path)


def train_args(params: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["--recipe", "digits-mlp", "--param_dataset", str(params), "--output_dir", str(output_dir), *TINY_TRAIN,
            *extra]


def write_code_pickle(path: Path, marker: Path) -> None:
    """A torch file that, unpickled with code allowed, creates ``marker``."""

    class RunsCode:
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({"random_state": RunsCode()}, path)


# (case, the command's arguments from the runs, words the sentence must hold)
CASES = [
    ("output is the parameter dataset", lambda r: train_args(r.params, r.params), ["--output_dir", "overlaps"]),
    ("output inside the parameter dataset", lambda r: train_args(r.params, r.params / "dataset" / "pipe"),
     ["overlaps the input"]),
    ("output holds the parameter dataset", lambda r: train_args(r.params, r.params.parent), ["overlaps the input"]),
    ("output is a file", lambda r: train_args(r.params, r.finished / "README.md"), ["is a file"]),
    ("existing pipeline without --overwrite", lambda r: train_args(r.params, r.finished),
     ["holds a pipeline", "--overwrite"]),
    ("resume into a finished pipeline without --overwrite",
     lambda r: train_args(r.params, r.finished, "--resume_from_checkpoint", "latest"), ["holds a pipeline"]),
    ("new run over an unfinished run's checkpoints", lambda r: train_args(r.params, r.unfinished),
     ["unfinished run", "--resume_from_checkpoint latest"]),
    ("resume latest of another seed",
     lambda r: train_args(r.params, r.unfinished, "--resume_from_checkpoint", "latest", "--train.seed", "1"),
     ["belongs to another run", "train.seed was 0, is 1"]),
    ("resume latest of another recipe",
     lambda r: train_args(r.params, r.unfinished, "--resume_from_checkpoint", "latest", "--train.diffusion_lr", "0.01"),
     ["belongs to another run", "train.diffusion_lr"]),
    ("resume latest on another parameter dataset",
     lambda r: train_args(r.other_params, r.unfinished, "--resume_from_checkpoint", "latest"),
     ["belongs to another run", "another parameter dataset"]),
    ("resume a checkpoint path that does not exist",
     lambda r: train_args(r.params, r.tmp / "out", "--resume_from_checkpoint", str(r.tmp / "checkpoint-9")),
     ["checkpoint-9 is not a folder", "'latest'"]),
    ("resume a folder that is no checkpoint",
     lambda r: train_args(r.params, r.tmp / "out", "--resume_from_checkpoint", str(r.params)),
     ["--resume_from_checkpoint", "is not a checkpoint-<step> folder"]),
    ("zero autoencoder steps", lambda r: train_args(r.params, r.tmp / "out", "--train.autoencoder_steps", "0"),
     ["autoencoder_steps", "0"]),
    ("negative diffusion steps", lambda r: train_args(r.params, r.tmp / "out", "--train.diffusion_steps", "-3"),
     ["diffusion_steps", "-3"]),
    ("zero checkpointing interval", lambda r: train_args(r.params, r.tmp / "out", "--checkpointing_steps", "0"),
     ["--checkpointing_steps is 0"]),
    ("parameter dataset folder that is not one", lambda r: train_args(r.finished, r.tmp / "out"),
     ["is not a parameter dataset"]),
    ("parameter dataset that does not exist", lambda r: train_args(r.tmp / "absent", r.tmp / "out"),
     ["No parameter dataset", "absent"]),
    ("recipe target that does not match the parameter dataset",
     lambda r: train_args(r.params, r.tmp / "out", "--target.model_kwargs",
                          "{num_classes: 10, in_chans: 1, img_size: 8, hidden: 16}"),
     ["does not match the parameter dataset"]),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_training(runs: Runs, argv, words):
    args = argv(runs)
    watched = [runs.params.parent, runs.other_params, runs.finished, runs.tmp]
    before = snapshot(*watched)
    code, stderr = call("train", *args)
    line = error_line(stderr)
    assert code == 2, stderr
    for word in words:
        assert word in line, line
    assert snapshot(*watched) == before


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "ema.pkl"])
def test_a_checkpoint_holding_code_is_refused_and_nothing_runs(runs: Runs, name):
    marker = runs.tmp / "code-ran"
    write_code_pickle(runs.checkpoint() / name, marker)
    before = snapshot(runs.unfinished, runs.finished)
    code, stderr = call("train", *train_args(runs.params, runs.unfinished, "--resume_from_checkpoint", "latest"))
    line = error_line(stderr)
    assert code == 2 and name in line and "refused" in line, stderr
    assert not marker.exists()
    assert snapshot(runs.unfinished, runs.finished) == before


def test_the_trainer_never_trains_zero_steps_whatever_the_recipe_object_says():
    recipe = load_recipe("digits-mlp")
    recipe.train.diffusion_steps = 0  # set on the object, past the recipe's own validation
    with pytest.raises(UsageError, match="train.diffusion_steps is 0"):
        check_steps(recipe)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_of_a_killed_run_are_removed_when_it_resumes(runs: Runs):
    pid = dead_pid()
    stale = [runs.unfinished / f".pipeline.tmp-{pid}-abc",
             runs.unfinished / "checkpoints" / f".checkpoint-9.tmp-{pid}-x"]
    in_use = runs.unfinished / f".pipeline.tmp-{os.getppid()}-live"  # a live process's: not touched
    for folder in [*stale, in_use]:
        folder.mkdir()
        (folder / "half.safetensors").write_bytes(b"partial")
    code, stderr = call("train", *train_args(runs.params, runs.unfinished, "--resume_from_checkpoint", "latest"))
    assert code == 0, stderr
    assert (runs.unfinished / "model_index.json").exists()
    assert [p for p in runs.unfinished.rglob(".*") if ".tmp-" in p.name] == [in_use]


def test_overwrite_replaces_another_runs_checkpoints_only_after_saving_its_own(runs: Runs):
    out = runs.unfinished
    old = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    code, stderr = call("train", *train_args(runs.params, out, "--train.seed", "1", "--overwrite"))
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == old  # now the new run's own
    recorded = (out / "checkpoints" / "checkpoint-6" / "run.json").read_text()
    assert '"seed": 1' in recorded
    assert (out / "model_index.json").exists()
