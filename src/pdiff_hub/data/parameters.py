"""The parameter dataset: K collected checkpoints of the generated subset, with the network they belong to.

On disk (and in a Hub dataset repo) it is one folder::

    README.md          the dataset card
    dataset/           a ``datasets.Dataset`` (``save_to_disk``): one row per checkpoint
    target/            the TargetModel: timm model name and arguments, generated layout, frozen weights
    tasks.json         a task family only: its classes, the training and held-out task codes, how they were drawn
    args.yaml          the arguments of the collection run

Each row holds ``parameters`` (a float32 vector of fixed length D) and ``step``, ``seed``, ``lr``,
``val_accuracy``, ``test_accuracy``. :attr:`ParameterDataset.fingerprint` identifies the vectors a pipeline was
trained on, so that evaluation can tell a pipeline's own parameter dataset from another one.

The checkpoints of a family of binary tasks (:mod:`pdiff_hub.data.tasks`) also hold ``task`` (the task's code, a
string) and ``condition`` (the code as float32 values), and their accuracies are those of each row's own task;
``tasks.json`` records the split into training tasks (the rows) and held-out tasks (never collected).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from huggingface_hub import snapshot_download

from ..core.io import atomic_output_dir, resolve_folder
from ..models.target import TargetModel
from .tasks import TaskSplit, check_code, task_conditions

__all__ = ["TASKS_FILE", "ParameterDataset", "atomic_output_dir", "build_parameter_table"]

METADATA_COLUMNS = ("step", "seed", "lr", "val_accuracy", "test_accuracy")
TASKS_FILE = "tasks.json"


def build_parameter_table(vectors: torch.Tensor, rows: Sequence[dict],
                          tasks: Sequence[str] | None = None) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one row per checkpoint: ``parameters`` plus the metadata columns, and for a task
    family each row's ``task`` code and its ``condition`` (the code as floats)."""
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
    if tasks is not None:
        if len(tasks) != len(rows):
            raise ValueError(f"Expected one task code per row, got {len(tasks)} codes for {len(rows)} rows")
        conditions = task_conditions(list(tasks))
        features["task"] = datasets.Value("string")
        features["condition"] = datasets.Sequence(datasets.Value("float32"), length=conditions.shape[1])
        columns.update(task=list(tasks), condition=conditions.numpy())
    return datasets.Dataset.from_dict(columns, features=features)


@dataclass
class ParameterDataset:
    """Collected checkpoints (``dataset``) and the network they belong to (``target``).

    Args:
        dataset: one row per checkpoint (see the module docstring).
        target: the network, its frozen weights and the layout of ``parameters``.
        source: where it was loaded from (a folder or a Hub id), for messages; None when built in memory.
        task_info: a task family's record (``tasks.json``): ``num_classes``, ``train`` and ``heldout`` (the codes),
            ``seed`` (of the draw and split) and whatever else the collection recorded (how the backbone was
            trained); None for the checkpoints of one task.
    """

    dataset: datasets.Dataset
    target: TargetModel
    source: str | None = None
    task_info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if "parameters" not in self.dataset.column_names:
            raise ValueError(f"A parameter dataset needs a 'parameters' column; it has {self.dataset.column_names}")
        if len(self.dataset) < 2:
            raise ValueError(f"A parameter dataset needs at least 2 checkpoints, this one has {len(self.dataset)}")
        length = len(self.dataset[0]["parameters"])
        if length != self.target.layout.num_params:
            raise ValueError(f"The checkpoints have {length} values, but the target {self.target.config.model_name!r} "
                             f"generates {self.target.layout.num_params} ({list(self.target.layout.names)})")
        self._check_tasks()

    def _check_tasks(self) -> None:
        """A task family's rows and its record must agree: every row's task is a training task, none is held out."""
        has_column = "task" in self.dataset.column_names
        if not has_column and self.task_info is None:
            return
        where = f"The parameter dataset{f' at {self.source}' if self.source else ''}"
        if not has_column or self.task_info is None:
            raise ValueError(f"{where} has {'a task column but no' if has_column else 'no task column but a'} "
                             f"{TASKS_FILE}; a task family needs both (re-collect it with scripts/collect.py)")
        split = self.task_split
        codes = set(self.dataset.unique("task"))
        if codes != set(split.train) or codes & set(split.heldout):
            raise ValueError(f"{where}: its rows' tasks are not the training tasks {TASKS_FILE} records "
                             f"({len(codes)} codes in the rows, {len(split.train)} recorded)")

    @property
    def is_task_family(self) -> bool:
        """Whether the rows are the checkpoints of a family of tasks (each row with its ``task`` and ``condition``)."""
        return self.task_info is not None

    @property
    def tasks(self) -> list[str] | None:
        """Each row's task code; None for the checkpoints of one task."""
        return list(self.dataset["task"]) if self.is_task_family else None

    @property
    def conditions(self) -> torch.Tensor | None:
        """Each row's condition, (K, num_classes) float32; None for the checkpoints of one task."""
        return self.column("condition").float() if self.is_task_family else None

    @property
    def task_split(self) -> TaskSplit | None:
        """The training tasks (the rows') and the held-out ones (never collected); None for one task."""
        if self.task_info is None:
            return None
        n = self.task_info.get("num_classes")
        return TaskSplit([check_code(c, n) for c in self.task_info["train"]],
                         [check_code(c, n) for c in self.task_info["heldout"]])

    @property
    def vectors(self) -> torch.Tensor:
        """All checkpoints as a (K, D) float32 tensor."""
        return torch.from_numpy(np.asarray(self.dataset.with_format("numpy")[:]["parameters"]).astype(np.float32))

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the vectors (little-endian float32, in row order) and of the layout they fill.

        Two parameter datasets share it only if a pipeline trained on one was trained on the other's exact data;
        the metadata columns (accuracies, steps) do not enter it.
        """
        layout = self.target.layout
        digest = hashlib.sha256(json.dumps({"model_name": self.target.config.model_name, "names": list(layout.names),
                                            "shapes": [list(s) for s in layout.shapes]}).encode())
        digest.update(np.ascontiguousarray(self.vectors.numpy(), dtype="<f4").tobytes())
        if self.is_task_family:  # the same vectors under other task codes are other training data
            digest.update(json.dumps(self.tasks).encode())
        return digest.hexdigest()

    def column(self, name: str) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.dataset.with_format("numpy")[:][name]))

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``dataset/``, ``target/`` and a task family's ``tasks.json`` into ``folder`` (see the module
        docstring)."""
        folder = Path(folder)
        self.dataset.save_to_disk(str(folder / "dataset"))
        self.target.save_pretrained(folder / "target")
        if self.task_info is not None:
            (folder / TASKS_FILE).write_text(json.dumps(self.task_info, indent=1))

    @classmethod
    def load(cls, path_or_repo_id: str | os.PathLike, revision: str | None = None,
             token: str | None = None) -> ParameterDataset:
        """Load from a local folder or a Hub dataset repo id (downloaded with ``snapshot_download``).

        Raises:
            FileNotFoundError: when the folder lacks ``dataset/`` or ``target/``.
            OSError: when either cannot be read (damaged, truncated, or not what pdiff_hub writes).
            ValueError: when rows hold NaN or infinite values, or the vectors do not fit the target's layout.
        """
        folder = resolve_folder(path_or_repo_id, "parameter dataset (create one with scripts/collect.py)",
                                lambda repo_id: snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                                                  token=token))
        for part in ("dataset", "target"):
            if not (folder / part).is_dir():
                raise FileNotFoundError(f"{folder} is not a parameter dataset: it has no {part}/ folder")
        try:
            dataset = datasets.load_from_disk(str(folder / "dataset"))
            target = TargetModel.from_pretrained(folder / "target")
            task_info = json.loads((folder / TASKS_FILE).read_text()) if (folder / TASKS_FILE).exists() else None
        except Exception as err:  # datasets, pyarrow and diffusers raise many types for a damaged folder
            raise OSError(f"The parameter dataset at {path_or_repo_id} cannot be read ({_first_line(err)}); "
                          "re-collect it with scripts/collect.py or download it again") from err
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"{folder / 'dataset'} holds a DatasetDict, not the single table of checkpoints that "
                             "scripts/collect.py writes")
        params = cls(dataset=dataset, target=target, source=str(path_or_repo_id), task_info=task_info)
        _check_finite(params.vectors, params.source)
        return params


def _check_finite(vectors: torch.Tensor, source: str) -> None:
    """NaN or infinite checkpoints come from a diverged collection; training on them fails far from the cause."""
    bad = (~torch.isfinite(vectors).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        rows, hold = ("Row", "holds") if len(bad) == 1 else ("Rows", "hold")
        raise ValueError(f"{rows} {shown} of the parameter dataset at {source} {hold} NaN or infinite values; "
                         "re-collect it (a lower collect.lr keeps the collection from diverging)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
