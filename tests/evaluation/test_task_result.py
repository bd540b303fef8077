"""metrics.json of a task evaluation: to_dict is plain JSON and from_dict reads it back unchanged."""

from __future__ import annotations

import json

from pdiff_hub.evaluation.task_result import AVERAGE, GENERATED, TaskEvaluationResult, method_label

from .task_family import task_result


def test_to_dict_round_trips_through_json():
    result = task_result()
    data = json.loads(json.dumps(result.to_dict()))
    assert TaskEvaluationResult.from_dict(data) == result
    assert data["setup"]["guidance_scale"] == 1.5 and len(data["heldout"]) == 4
    assert data["heldout"][0]["methods"][GENERATED]["n"] == 3


def test_method_labels_name_the_average_with_its_k():
    assert method_label(AVERAGE, 7) == "average of the 7 nearest tasks"
    assert method_label("something new") == "something new"
