"""The saved pipeline folder: what must be in it, and the checksums that name a replaced or damaged component.

Checked before diffusers loads anything, so a missing, corrupt, swapped or foreign file is named in one sentence and no
code from the folder runs unless the user trusts it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import safe_open

__all__ = ["COMPONENTS", "RECORD_FILE", "check_pipeline_folder", "check_recorded_checksums", "weight_checksums"]

COMPONENTS = ("target", "autoencoder", "denoiser", "scheduler")
RECORD_FILE = "pdiff_hub.json"
"""Beside model_index.json: the sha256 of every component's weights and the identity of the run that made them."""
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def check_pipeline_folder(path: Path, trust_remote_code: bool = False) -> None:
    """Raise a clear error if ``path`` is not a complete, readable p-diff pipeline folder.

    Unless ``trust_remote_code`` is set, components must be classes of pdiff_hub or diffusers and the folder must
    hold no Python files: nothing downloaded is executed without the user's consent, whatever the diffusers version.
    """
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{path} has no model_index.json: it is not a saved pipeline")
    try:
        index = json.loads(index_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{index_file} is not valid JSON ({err}); re-download or re-save the pipeline") from err
    if not isinstance(index, dict):
        raise ValueError(f"{index_file} is not a pipeline index (a JSON object naming the components)")
    if not trust_remote_code:
        code = sorted(str(p.relative_to(path)) for p in path.rglob("*.py"))
        foreign = {k: v for k, v in index.items() if isinstance(v, list) and v and v[0] is not None
                   and not str(v[0]).startswith(("pdiff_hub", "diffusers"))}
        if code or foreign or "_custom_pipeline" in index:
            raise ValueError(f"{path} asks to run code from outside pdiff_hub and diffusers ({code or foreign}); "
                             "set trust_remote_code to True only if you trust its author")
    for name in COMPONENTS:
        if name not in index:
            raise ValueError(f"{index_file} lists no {name!r} component; a PDiffPipeline needs {list(COMPONENTS)}")
        folder = path / name
        if not (folder / ("scheduler_config.json" if name == "scheduler" else "config.json")).is_file():
            raise FileNotFoundError(f"Component {name!r} is missing: no configuration in {folder}")
        if name == "scheduler":
            continue
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError(f"Component {name!r} has no .safetensors weights in {folder}")
        for file in weights:
            try:
                with safe_open(str(file), framework="pt") as f:
                    for key in f.keys():
                        f.get_slice(key)
            except Exception as err:  # safetensors raises several error types for damaged files
                raise OSError(f"{file} is corrupt or truncated ({err}); re-download or re-save the pipeline") from err


def check_recorded_checksums(path: Path) -> dict | None:
    """Compare every component's weights with the sha256 recorded in ``pdiff_hub.json``; return the record.

    Returns None for a pipeline saved before the record existed (nothing to compare).

    Raises:
        OSError: naming the component whose weights were replaced, damaged, removed or added since saving.
    """
    record_file = path / RECORD_FILE
    if not record_file.is_file():
        return None
    try:
        record = json.loads(record_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OSError(f"{record_file} is damaged ({err}); re-download or re-save the pipeline") from err
    recorded = record.get("checksums") if isinstance(record, dict) else None
    if not isinstance(recorded, dict) or not set(recorded) <= set(COMPONENTS) or not all(
            isinstance(files, dict) for files in recorded.values()):
        raise OSError(f"{record_file} is damaged: its 'checksums' are not the component -> file -> sha256 table "
                      "that save_pretrained writes; re-download or re-save the pipeline")
    for name, files in recorded.items():
        found = weight_checksums(path / name)
        if set(found) != set(files):
            raise OSError(f"The {name}'s weights files {sorted(found)} in {path} are not those recorded when the "
                          f"pipeline was saved ({sorted(files)}): it was replaced or damaged; re-download or re-save "
                          "the pipeline")
        changed = sorted(file for file, digest in files.items() if found[file] != digest)
        if changed:
            raise OSError(f"The {name}'s weights ({', '.join(changed)}) in {path} do not match the checksum "
                          "recorded when the pipeline was saved: it was replaced or damaged; re-download or re-save "
                          "the pipeline")
    return record


def weight_checksums(folder: Path) -> dict[str, str]:
    """File name -> sha256 of each weights file of a component folder."""
    checksums = {}
    for file in sorted(folder.iterdir()) if folder.is_dir() else ():
        if file.is_file() and file.name.endswith(WEIGHT_SUFFIXES):
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            checksums[file.name] = digest.hexdigest()
    return checksums
