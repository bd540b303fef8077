"""Cards rendered from the templates that ship with the package."""

from __future__ import annotations

import jinja2
import pytest
from huggingface_hub import RepoCard

from pdiff_hub.hub import render_card


def test_a_forgotten_value_fails_instead_of_leaving_a_blank_in_the_card():
    with pytest.raises(jinja2.UndefinedError, match="name"):
        render_card("pipeline", {"library_name": "pdiff_hub"})


def test_metadata_header_leaves_out_empty_entries():
    card = render_card("generated_model", {"library_name": "timm", "datasets": None}, **_generated_values())
    parsed = RepoCard(card)
    assert parsed.data.to_dict() == {"library_name": "timm"}
    assert parsed.text.startswith("\n# a title")


def test_an_unknown_template_is_named():
    with pytest.raises(FileNotFoundError, match="'no_such_card'"):
        render_card("no_such_card", {})


def _generated_values() -> dict:
    record = {"pipeline": "org/p", "revision": None, "seed": 0, "num_models": 1, "index": 0, "num_inference_steps": 2,
              "scheduler": "DDIMScheduler", "dataset": "digits", "val_accuracy": 1.0, "test_accuracy": 1.0,
              "val_size": 1, "test_size": 1, "rank": 1, "repo_id": None}
    return {"title": "a title", "model_name": "m", "model_kwargs": {}, "stock_timm": True, "repo_id": None,
            "num_params": 1, "num_tensors": 1, "param_patterns": "*", "generated_all": True, "image_size": 8,
            "in_chans": 1, "mean": 0.5, "std": 0.5, "record": record, "task": None, "task_condition": None,
            "prompt": None, "pdiff_hub_version": "0", "timm_version": "0"}
