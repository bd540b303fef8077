"""Damaged, swapped and foreign artifacts: each load fails with one sentence naming what is wrong, and changes nothing.

A pipeline records the sha256 of every component's weights when it is saved, so a component swapped in from another
run with the same layout, or a weights file damaged in a way safetensors cannot see, is refused by name. A parameter
dataset refuses NaN rows and folders it cannot read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
import torch

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table

from ..components import tiny_pipeline, tiny_target
from .harness import snapshot


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved pipeline, a second one of the same layout with other weights (another run), a parameter dataset."""
    root = tmp_path_factory.mktemp("artifacts")
    pipe = tiny_pipeline()
    pipe.register_provenance(param_dataset_fingerprint="0" * 64, recipe_hash="1" * 64)
    pipe.save_pretrained(root / "pipe")
    other = tiny_pipeline()
    with torch.no_grad():
        for p in [*other.autoencoder.parameters(), *other.denoiser.parameters()]:
            p.add_(0.01)
    other.save_pretrained(root / "other")
    target = tiny_target()
    base = target.base_vector()
    vectors = base + 0.1 * torch.randn(6, base.numel(), generator=torch.Generator().manual_seed(0))
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 50.0, "test_accuracy": 50.0} for i in range(6)]
    ParameterDataset(build_parameter_table(vectors, rows), target).save(root / "params")
    return {"pipe": root / "pipe", "other": root / "other", "params": root / "params"}


# --- pipelines -------------------------------------------------------------------------------------------------


def swap_autoencoder(folder: Path, artifacts: dict[str, Path]) -> None:
    shutil.rmtree(folder / "autoencoder")
    shutil.copytree(artifacts["other"] / "autoencoder", folder / "autoencoder")


def swap_denoiser_weights(folder: Path, artifacts: dict[str, Path]) -> None:
    shutil.copy2(artifacts["other"] / "denoiser" / "diffusion_pytorch_model.safetensors",
                 folder / "denoiser" / "diffusion_pytorch_model.safetensors")


def truncate_weights(folder: Path, artifacts: dict[str, Path]) -> None:
    weights = folder / "autoencoder" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def flip_a_byte(folder: Path, artifacts: dict[str, Path]) -> None:
    # The last byte is inside a tensor's data: safetensors reads the file without complaint.
    weights = folder / "denoiser" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))


def flip_a_frozen_weight(folder: Path, artifacts: dict[str, Path]) -> None:
    weights = folder / "target" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x40
    weights.write_bytes(bytes(data))


def add_weights_file(folder: Path, artifacts: dict[str, Path]) -> None:
    shutil.copy2(folder / "denoiser" / "diffusion_pytorch_model.safetensors",
                 folder / "denoiser" / "diffusion_pytorch_model.fp16.safetensors")


def remove_denoiser(folder: Path, artifacts: dict[str, Path]) -> None:
    shutil.rmtree(folder / "denoiser")


def foreign_class(folder: Path, artifacts: dict[str, Path]) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    index["autoencoder"] = ["evil_package.models", "Payload"]
    (folder / "model_index.json").write_text(json.dumps(index))


def damage_index(folder: Path, artifacts: dict[str, Path]) -> None:
    (folder / "model_index.json").write_text('{"target": ["pdiff_hub.models.target", ')


def damage_record(folder: Path, artifacts: dict[str, Path]) -> None:
    (folder / "pdiff_hub.json").write_text('{"checksums": ["not", "a", "table"]}')


PIPELINE_CASES = {
    "autoencoder swapped from another run": (swap_autoencoder, OSError,
                                             "autoencoder's weights .* do not match the checksum recorded"),
    "denoiser weights copied from another run": (swap_denoiser_weights, OSError, "denoiser's weights"),
    "truncated safetensors": (truncate_weights, OSError, "corrupt or truncated"),
    "flipped byte in the denoiser's weights": (flip_a_byte, OSError, "denoiser's weights .* replaced or damaged"),
    "flipped byte in the frozen weights": (flip_a_frozen_weight, OSError, "target's weights .* replaced or damaged"),
    "weights file added": (add_weights_file, OSError, "denoiser's weights files .* are not those recorded"),
    "missing component folder": (remove_denoiser, FileNotFoundError, "'denoiser' is missing"),
    "class outside pdiff_hub and diffusers": (foreign_class, ValueError, "evil_package.*trust_remote_code"),
    "model_index.json cut short": (damage_index, ValueError, "model_index.json is not valid JSON"),
    "damaged checksum record": (damage_record, OSError, "pdiff_hub.json is damaged"),
}


@pytest.mark.parametrize("case", list(PIPELINE_CASES))
def test_a_damaged_or_swapped_pipeline_is_named(case, artifacts, tmp_path):
    damage, error, sentence = PIPELINE_CASES[case]
    folder = tmp_path / "pipe"
    shutil.copytree(artifacts["pipe"], folder)
    damage(folder, artifacts)
    before = snapshot(folder)
    with pytest.raises(error, match=sentence) as info:
        PDiffPipeline.from_pretrained(folder)
    assert "\n" not in str(info.value)
    assert snapshot(folder) == before


def test_the_intact_pipeline_loads_with_its_provenance(artifacts):
    before = snapshot(artifacts["pipe"])
    pipe = PDiffPipeline.from_pretrained(artifacts["pipe"])
    assert pipe.provenance == {"param_dataset_fingerprint": "0" * 64, "recipe_hash": "1" * 64}
    assert snapshot(artifacts["pipe"]) == before


# --- parameter datasets ----------------------------------------------------------------------------------------


def nan_rows(folder: Path) -> None:
    params = ParameterDataset.load(folder)
    vectors = params.vectors
    vectors[3, 0], vectors[5, 7] = float("nan"), float("-inf")
    shutil.rmtree(folder / "dataset")
    ParameterDataset(build_parameter_table(vectors, params.dataset.to_list()), params.target).save(folder)


def remove_table(folder: Path) -> None:
    shutil.rmtree(folder / "dataset")


def truncate_table(folder: Path) -> None:
    arrow = next((folder / "dataset").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:200])


def foreign_table(folder: Path) -> None:
    shutil.rmtree(folder / "dataset")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"]})}).save_to_disk(
        str(folder / "dataset"))


def damage_target(folder: Path) -> None:
    (folder / "target" / "config.json").write_text("{not json")


PARAMS_CASES = {
    "NaN and infinite rows": (nan_rows, ValueError, r"Rows 3, 5 of the parameter dataset at .* NaN or infinite"),
    "no dataset/ folder": (remove_table, FileNotFoundError, "is not a parameter dataset: it has no dataset/ folder"),
    "truncated Arrow table": (truncate_table, OSError, "cannot be read .*re-collect it"),
    "a DatasetDict of another project": (foreign_table, ValueError, "holds a DatasetDict"),
    "target config not JSON": (damage_target, OSError, "cannot be read"),
}


@pytest.mark.parametrize("case", list(PARAMS_CASES))
def test_a_damaged_or_foreign_parameter_dataset_is_named(case, artifacts, tmp_path):
    damage, error, sentence = PARAMS_CASES[case]
    folder = tmp_path / "params"
    shutil.copytree(artifacts["params"], folder)
    damage(folder)
    before = snapshot(folder)
    with pytest.raises(error, match=sentence) as info:
        ParameterDataset.load(folder)
    assert "\n" not in str(info.value)
    assert snapshot(folder) == before
