"""benchmarks/table1.py tabulates the evaluation's stored verdicts and never judges again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_table1():
    spec = importlib.util.spec_from_file_location("table1_benchmark", REPO / "benchmarks" / "table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_metrics(folder: Path, verdict: dict) -> dict:
    """A metrics.json where p-diff's mean is above every baseline's, with the given stored verdicts."""
    rows = {"original": 90.0, "ensemble": 90.5, "p-diff": 89.0, "noise 0.01": 88.9, "gaussian": 60.0}
    stats = {row: {"best": mean, "mean": mean, "median": mean, "std": 1.0, "min": mean, "max": mean, "n": 10}
             for row, mean in rows.items()}
    iou = {row: {"max_iou": {"mean": 0.5}} for row in rows}
    setup = {"model_name": "pdiff_mlp", "num_params": 10, "num_originals": 10, "num_models": 10,
             "split_sizes": {"test": 100}}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"setup": setup, "table": stats, "similarity": {"rows": iou},
                                                     "verdict": verdict}))
    return {"recipe": "tiny", "dirs": {"evaluate": str(folder), "collect": str(folder / "none")}, "steps": {}}


def test_beaten_baselines_are_the_stored_verdicts(tmp_path):
    # p-diff's mean is higher than both baselines, but only the gaussian is beaten beyond two standard errors
    verdict = {"original": {"mean_beats": False}, "ensemble": {"mean_beats": False},
               "noise 0.01": {"mean_beats": False}, "gaussian": {"mean_beats": True}}
    row = load_table1().table_row(write_metrics(tmp_path / "eval", verdict))
    assert row["beats_baselines"] == ["gaussian"]


def test_a_metrics_file_without_verdicts_is_refused(tmp_path):
    record = write_metrics(tmp_path / "eval", {"gaussian": {"mean_beats": True}})
    with pytest.raises(ValueError, match=r"no verdict for \['noise 0.01'\]"):
        load_table1().table_row(record)
