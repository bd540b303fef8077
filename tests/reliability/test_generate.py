"""scripts/generate.py refuses bad input with one sentence and exit status 2, before any model is generated, and
leaves the pipeline, the dataset and earlier exports as they were."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from pdiff_hub.recipes.config import recipe_from_dict, write_run_args

from ..components import tiny_pipeline
from .harness import call, error_line, snapshot

DATA = {"dataset": "digits", "image_size": 32, "val_size": 200, "split_seed": 0}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A tiny pipeline as train.py leaves it (with args.yaml), one without args.yaml, and a 3-class dataset."""
    root = tmp_path_factory.mktemp("generate")
    pipe = tiny_pipeline()
    pipe.save_pretrained(root / "pipeline")
    write_run_args(root / "pipeline", recipe_from_dict({"name": "tiny", "data": DATA}), command="python train.py")
    pipe.save_pretrained(root / "bare")
    # ClassLabel labels: integer labels would be cast on load, and datasets writes that cast's cache files into
    # the dataset's folder (an input that would then change)
    features = datasets.Features({"image": datasets.Array2D((8, 8), "uint8"),
                                  "label": datasets.ClassLabel(names=["a", "b", "c"])})
    split = datasets.Dataset.from_dict({"image": [[[0] * 8] * 8] * 6, "label": [0, 1, 2] * 2}, features=features)
    datasets.DatasetDict({"train": split, "validation": split, "test": split}).save_to_disk(root / "three")
    (root / "file.txt").write_text("not a folder\n")
    return root


def prepare_full(out: Path) -> None:
    out.mkdir()
    (out / "generation.json").write_text("{}")


# (id, argv with {work} and {out} placeholders, setup of the output, words the one sentence must hold)
CASES = [
    ("export-is-a-file", ["--export_dir", "{work}/file.txt"], None, ["--export_dir", "file.txt", "is a file"]),
    ("export-is-the-pipeline", ["--export_dir", "{work}/pipeline"], None, ["--export_dir", "overlaps the input"]),
    ("export-inside-the-pipeline", ["--export_dir", "{work}/pipeline/generated"], None, ["overlaps the input"]),
    ("export-is-the-current-folder", ["--export_dir", "."], None, ["--export_dir", "current folder"]),
    ("export-not-empty", [], prepare_full, ["--export_dir", "not empty", "--overwrite"]),
    ("select-more-than-generated", ["--num_models", "3", "--select", "5"], None,
     ["--select 5", "--num_models 3"]),
    ("select-zero", ["--select", "0"], None, ["--select '0'", "'best', 'all' or a positive count"]),
    ("select-unknown", ["--select", "top"], None, ["--select 'top'"]),
    ("no-models", ["--num_models", "0"], None, ["--num_models 0", "at least 1"]),
    ("no-steps", ["--num_inference_steps", "0"], None, ["--num_inference_steps 0", "at least 1"]),
    ("push-without-repo", ["--push_to_hub"], None, ["--push_to_hub", "--hub_model_id"]),
    ("missing-pipeline", ["--pipeline", "{work}/no/such/pipeline"], None,
     ["--pipeline", "no/such/pipeline", "does not exist"]),
    ("pipeline-is-a-file", ["--pipeline", "{work}/file.txt"], None, ["--pipeline", "file.txt", "is a file"]),
    ("not-a-pipeline", ["--pipeline", "{work}/three", "--recipe", "digits-mlp"], None, ["three", "model_index.json"]),
    ("no-recorded-recipe", ["--pipeline", "{work}/bare"], None, ["bare", "no args.yaml", "--recipe"]),
    ("override-of-another-section", ["--train.seed", "3"], None, ["--train.seed", "data section"]),
    ("wrong-class-count", ["--data.dataset", "{work}/three"], None, ["three", "3 classes", "has 10"]),
    ("no-validation-split", ["--data.val_size", "0"], None, ["data.val_size 0", "validation"]),
    ("missing-dataset", ["--data.dataset", "{work}/no-such-data"], None, ["no-such-data"]),
]


@pytest.mark.parametrize(("argv", "setup", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_generating(work, tmp_path, argv, setup, words):
    out = tmp_path / "export"
    if setup is not None:
        setup(out)
    base = {"--pipeline": str(work / "pipeline"), "--export_dir": str(out), "--num_models": "2",
            "--num_inference_steps": "2"}
    given = [a.format(work=work, out=out) for a in argv]
    flags = [part for flag, value in base.items() if flag not in given for part in (flag, value)]
    before = snapshot(work, tmp_path)
    code, stderr = call("generate", *flags, *given)
    line = error_line(stderr)
    assert code == 2
    assert all(word in line for word in words), line
    assert snapshot(work, tmp_path) == before


def test_overwrite_replaces_an_earlier_export_and_leaves_the_pipeline(work, tmp_path):
    out = tmp_path / "export"
    prepare_full(out)
    pipeline = snapshot(work / "pipeline")
    code, stderr = call("generate", "--pipeline", str(work / "pipeline"), "--export_dir", str(out), "--num_models", "2",
                        "--num_inference_steps", "2", "--overwrite")
    assert code == 0, stderr
    assert len(list(out.glob("sample-*/model.safetensors"))) == 1  # --select best: one model replaces the old files
    assert json.loads((out / "generation.json").read_text())["num_models"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder left beside it
    assert snapshot(work / "pipeline") == pipeline
