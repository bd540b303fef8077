"""evaluate.py and generate.py under ``accelerate launch`` with 2 CPU processes (gloo) against 1 process (slow).

The models are sharded over the processes and their predictions gathered in order; on the CPU each vector is
evaluated on its own, so the predictions, and with them every number of metrics.json and generation.json, are equal
bit for bit (the timings and the recorded command apart). Both scripts run on one digits-mlp chain built once.
"""

import json
import re
from pathlib import Path

import pytest

from ..scripts import run_script
from ..training.launch import launch_script

EVALUATE = ["--num_models", "8", "--evaluate.num_inference_steps", "5"]
GENERATE = ["--num_models", "8", "--num_inference_steps", "5", "--select", "3"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """A collected parameter dataset (20 checkpoints) and a pipeline trained 20+20 steps on it."""
    root = tmp_path_factory.mktemp("chain")
    run_script("collect", "--recipe", "digits-mlp", "--collect.base_epochs", "3", "--collect.num_checkpoints", "20",
               "--output_dir", str(root / "params"))
    run_script("train", "--recipe", "digits-mlp", "--param_dataset", str(root / "params"), "--output_dir",
               str(root / "pipe"), "--train.autoencoder_steps", "20", "--train.diffusion_steps", "20", "--skip_eval")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.pop("timings")
    return metrics


@pytest.mark.slow
def test_evaluate_on_two_processes_writes_the_metrics_of_one(chain, tmp_path):
    inputs = ["--pipeline", str(chain / "pipe"), "--param_dataset", str(chain / "params"), *EVALUATE]
    run_script("evaluate", *inputs, "--output_dir", str(tmp_path / "one"))
    two = launch_script("evaluate", *inputs, "--output_dir", str(tmp_path / "two"))
    assert _metrics(tmp_path / "two") == _metrics(tmp_path / "one")
    assert _metrics(tmp_path / "one")["setup"]["num_models"] == 8
    one_files, two_files = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one_files.keys() == two_files.keys()
    # The figures are drawn from the same numbers; the report differs only in its timings line.
    for name in one_files.keys() - {"metrics.json", "report.md", "args.yaml"}:
        assert one_files[name] == two_files[name], name
    untimed = [re.sub(rb"- Timings \(s\):.*", b"", files["report.md"]) for files in (one_files, two_files)]
    assert untimed[0] == untimed[1]
    assert two.stdout.count("report:") == 1  # the main process alone reports


@pytest.mark.slow
def test_generate_on_two_processes_exports_what_one_does(chain, tmp_path):
    inputs = ["--pipeline", str(chain / "pipe"), *GENERATE]
    run_script("generate", *inputs, "--export_dir", str(tmp_path / "one"))
    launch_script("generate", *inputs, "--export_dir", str(tmp_path / "two"))
    one, two = (json.loads((tmp_path / name / "generation.json").read_text()) for name in ("one", "two"))
    assert one.pop("command") != two.pop("command") and one == two
    assert len(one["val_accuracy"]) == 8 and len(one["samples"]) == 3
    one_files, two_files = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one_files.keys() == two_files.keys()
    assert all(one_files[name] == two_files[name] for name in one_files if name != "generation.json")


@pytest.mark.slow
def test_a_refusal_ends_every_process_before_they_meet(chain, tmp_path):
    """Each process checks the output folder before the first collective: all refuse, none is left waiting."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = launch_script("evaluate", "--pipeline", str(chain / "pipe"), "--param_dataset", str(chain / "params"),
                           *EVALUATE, "--output_dir", str(out), check=False, timeout=300)
    assert result.returncode != 0
    assert f"error: --output_dir {out} exists and is not empty; pass --overwrite" in result.stderr
    assert _files(out) == {"keep.txt": b"mine"}
