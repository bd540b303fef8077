"""metrics.json is the result, field for field, and reads back into the same result."""

import json

from pdiff_hub.evaluation.result import EvaluationResult


def test_metrics_json_round_trip(result):
    data = json.loads(json.dumps(result.to_dict()))  # JSON-safe
    assert EvaluationResult.from_dict(data) == result


def test_metrics_json_keeps_the_keys_its_readers_use(result):
    data = result.to_dict()
    # benchmarks/table1.py, tests of the scripts and the README's examples read these
    assert set(data) == {"setup", "table", "val_table", "similarity", "verdict", "per_model", "latents", "checks",
                         "timings"}
    assert {"model_name", "num_params", "num_originals", "num_models", "split_sizes", "full_split_sizes",
            "rows"} <= set(data["setup"])
    assert set(data["table"]["p-diff"]) == {"best", "mean", "median", "std", "min", "max", "n"}
    assert set(data["similarity"]["rows"]["original"]["max_iou"]) == {"mean", "median", "std", "min", "max"}
    assert {"mean_beats", "mean_within_2se", "mean_margin", "best_beats", "best_margin", "more_novel",
            "max_iou_margin"} <= set(data["verdict"]["gaussian"])
    assert "max_recorded_vs_recomputed_test_accuracy" in data["checks"]
