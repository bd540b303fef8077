"""scripts/collect.py under ``accelerate launch`` with 2 CPU processes (gloo) against 1 process (slow).

Each seed is collected from ``set_seed(seed)`` wherever it runs, and on the CPU each checkpoint is evaluated on its
own, so the 2-process dataset equals the 1-process one bit for bit: the Arrow table (row order included, vectors and
accuracies), the frozen target, metrics.json (timings apart) and the card (its timing and command lines apart).
"""

import json
import re
from pathlib import Path

import pytest

from ..scripts import run_script
from .launch import launch_script

pytestmark = pytest.mark.slow  # every case starts processes

QUICK = ["--recipe", "digits-mlp", "--collect.base_epochs", "2", "--collect.num_checkpoints", "12"]
TIMINGS = ("base_training_seconds", "collect_seconds")


def contents(folder: Path) -> dict[str, bytes]:
    """Every file of a collected folder, with the lines that may differ between runs (timings, command) removed."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    metrics = json.loads(files.pop("metrics.json"))
    files["metrics.json"] = json.dumps({k: v for k, v in metrics.items() if k not in TIMINGS}).encode()
    files["README.md"] = re.sub(rb".*(Command:|ParameterDataset.load|Collection took).*\n", b"", files["README.md"])
    files.pop("args.yaml")  # records the command line, whose --output_dir differs
    return files


@pytest.mark.parametrize(
    "seeds",
    [pytest.param("[0, 1]", id="two seeds, one per process"),
     pytest.param("[0]", id="one seed, its checkpoints split")],
)
def test_two_processes_collect_the_dataset_of_one(tmp_path, seeds):
    run_script("collect", *QUICK, "--collect.seeds", seeds, "--output_dir", str(tmp_path / "one"))
    result = launch_script("collect", *QUICK, "--collect.seeds", seeds, "--output_dir", str(tmp_path / "two"))
    one, two = contents(tmp_path / "one"), contents(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        assert one[name] == two[name], name
    assert result.stdout.count("12 checkpoints of 2410 values") == 1  # the main process alone writes and reports
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_failure_mid_way_ends_every_process_with_its_sentence(tmp_path):
    out = tmp_path / "out"
    result = launch_script("collect", *QUICK, "--collect.seeds", "[0, 1]", "--collect.lr", "1e30", "--output_dir",
                           str(out), check=False, timeout=300)
    assert result.returncode != 0
    # each process found it (one seed each) and said so; none was left waiting for a dead one
    assert result.stderr.count("error: checkpoint collection diverged") == 2, result.stderr[-3000:]
    assert "Connection closed by peer" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_output_folder_refused_by_the_main_process_ends_every_process(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = launch_script("collect", *QUICK, "--collect.seeds", "[0, 1]", "--output_dir", str(out), check=False,
                           timeout=300)
    assert result.returncode != 0
    assert result.stderr.count("exists and is not empty; pass --overwrite") == 2, result.stderr[-3000:]
    assert "Connection closed by peer" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "keep.txt").read_text() == "mine"
