"""The parameter dataset: K collected checkpoints of the generated subset, with the network they belong to.

On disk (and in a Hub dataset repo) it is one folder::

    README.md          the dataset card
    dataset/           a ``datasets.Dataset`` (``save_to_disk``): one row per checkpoint
    target/            the TargetModel: timm model name and arguments, generated layout, frozen weights
    args.yaml          the arguments of the collection run

Each row holds ``parameters`` (a float32 vector of fixed length D) and ``step``, ``seed``, ``lr``,
``val_accuracy``, ``test_accuracy``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from huggingface_hub import snapshot_download

from ..core.io import atomic_output_dir, resolve_folder
from ..models.target import TargetModel

__all__ = ["ParameterDataset", "atomic_output_dir", "build_parameter_table"]

METADATA_COLUMNS = ("step", "seed", "lr", "val_accuracy", "test_accuracy")


def build_parameter_table(vectors: torch.Tensor, rows: Sequence[dict]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one row per checkpoint: ``parameters`` plus the metadata columns."""
    if vectors.ndim != 2 or len(vectors) != len(rows):
        raise ValueError(f"Expected one row of metadata per vector, got {len(rows)} rows for {tuple(vectors.shape)}")
    features = datasets.Features({
        "parameters": datasets.Sequence(datasets.Value("float32"), length=vectors.shape[1]),
        "step": datasets.Value("int64"),
        "seed": datasets.Value("int64"),
        "lr": datasets.Value("float64"),
        "val_accuracy": datasets.Value("float64"),
        "test_accuracy": datasets.Value("float64"),
    })
    columns = {"parameters": vectors.float().numpy()}
    columns.update({key: [row[key] for row in rows] for key in METADATA_COLUMNS})
    return datasets.Dataset.from_dict(columns, features=features)


@dataclass
class ParameterDataset:
    """Collected checkpoints (``dataset``) and the network they belong to (``target``)."""

    dataset: datasets.Dataset
    target: TargetModel

    def __post_init__(self) -> None:
        if "parameters" not in self.dataset.column_names:
            raise ValueError(f"A parameter dataset needs a 'parameters' column; it has {self.dataset.column_names}")
        if len(self.dataset) < 2:
            raise ValueError(f"A parameter dataset needs at least 2 checkpoints, this one has {len(self.dataset)}")
        length = len(self.dataset[0]["parameters"])
        if length != self.target.layout.num_params:
            raise ValueError(f"The checkpoints have {length} values, but the target {self.target.config.model_name!r} "
                             f"generates {self.target.layout.num_params} ({list(self.target.layout.names)})")

    @property
    def vectors(self) -> torch.Tensor:
        """All checkpoints as a (K, D) float32 tensor."""
        return torch.from_numpy(np.asarray(self.dataset.with_format("numpy")[:]["parameters"]).astype(np.float32))

    def column(self, name: str) -> torch.Tensor:
        return torch.as_tensor(self.dataset.with_format("numpy")[:][name])

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``dataset/`` and ``target/`` into ``folder`` (see the module docstring)."""
        folder = Path(folder)
        self.dataset.save_to_disk(str(folder / "dataset"))
        self.target.save_pretrained(folder / "target")

    @classmethod
    def load(cls, path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | None = None):
        """Load from a local folder or a Hub dataset repo id (downloaded with ``snapshot_download``)."""
        folder = resolve_folder(path_or_repo_id, "parameter dataset (create one with scripts/collect.py)",
                                lambda repo_id: snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                                                  token=token))
        for part in ("dataset", "target"):
            if not (folder / part).is_dir():
                raise FileNotFoundError(f"{folder} is not a parameter dataset: it has no {part}/ folder")
        dataset = datasets.load_from_disk(str(folder / "dataset"))
        return cls(dataset=dataset, target=TargetModel.from_pretrained(folder / "target"))
