"""Which run a training checkpoint belongs to: the recipe's training sections, the parameter dataset and the seed.

A run's identity is recorded as ``run.json`` in its checkpoints folder and in every checkpoint. A checkpoint is
resumed only by the run that wrote it: the same ``target``, ``autoencoder``, ``denoiser`` and ``train`` sections of
the final recipe (the seed among them), the same parameter vectors (``ParameterDataset.fingerprint``) and the same
number of processes (each draws its own share of the batches and keeps its own random state), so a resumed run ends
with the weights of an uninterrupted one. The process count is recorded only when it is more than one: a 1-process
run's ``run.json`` is what it was before runs had several processes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..core.io import write_text_atomic
from ..data.parameters import ParameterDataset
from ..recipes.config import Recipe

__all__ = ["IDENTITY_FILE", "TRAINING_SECTIONS", "identity_difference", "read_identity", "run_identity",
           "write_identity"]

IDENTITY_FILE = "run.json"
# The recipe sections that decide the trained weights (data and collect reach training only through the vectors).
TRAINING_SECTIONS = ("target", "autoencoder", "denoiser", "train")


def run_identity(recipe: Recipe, params: ParameterDataset, num_processes: int = 1) -> dict:
    """The identity of a training run, as it is written to ``run.json`` (JSON types only)."""
    sections = {name: value for name, value in recipe.to_dict().items() if name in TRAINING_SECTIONS}
    sections = json.loads(json.dumps(sections, sort_keys=True, default=str))  # tuples -> lists, as read back
    identity = {
        "recipe_sha256": hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest(),
        "param_dataset_sha256": params.fingerprint,
        "seed": recipe.train.seed,
        "recipe": sections,
    }
    if num_processes > 1:
        identity["num_processes"] = num_processes
    return identity


def identity_difference(recorded: dict | None, current: dict) -> str | None:
    """What differs between the run that wrote a checkpoint and this one, in a few words (None if it is this run)."""
    if recorded is None:
        return f"it has no {IDENTITY_FILE} recording its run"
    if recorded.get("param_dataset_sha256") != current["param_dataset_sha256"]:
        return "it was trained on another parameter dataset"
    recorded_processes, processes = recorded.get("num_processes", 1), current.get("num_processes", 1)
    if recorded_processes != processes:
        return f"it was trained by {recorded_processes} process(es), this run has {processes}"
    if recorded.get("recipe_sha256") == current["recipe_sha256"] and recorded.get("seed") == current["seed"]:
        return None
    old, new = recorded.get("recipe") or {}, current["recipe"]
    changed = [f"{section}.{key} was {old.get(section, {}).get(key)!r}, is {value!r}"
               for section, values in new.items() for key, value in values.items()
               if old.get(section, {}).get(key) != value]
    changed += [f"{section}.{key} was {value!r}, is unset" for section, values in old.items()
                for key, value in values.items() if key not in new.get(section, {})]
    if not changed:
        return "its recipe differs"
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return ", ".join(changed[:3]) + more


def read_identity(folder: Path) -> dict | None:
    """The identity recorded in ``folder/run.json``, or None if there is none or it is not readable JSON."""
    try:
        recorded = json.loads((Path(folder) / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def write_identity(folder: Path, identity: dict) -> None:
    """Write ``folder/run.json``."""
    write_text_atomic(Path(folder) / IDENTITY_FILE, json.dumps(identity, indent=2, sort_keys=True))
