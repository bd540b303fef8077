"""Training checkpoints and the saved pipeline: found, written whole, rotated.

A checkpoint is ``accelerator.save_state`` in ``checkpoint-<step>/``; it is written under a temporary name and
renamed when complete, so a run killed while saving leaves only whole checkpoints to resume from.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..pipeline import PDiffPipeline

__all__ = ["checkpoint_step", "find_checkpoint", "save_checkpoint", "save_pipeline"]


def checkpoint_step(checkpoint: Path) -> int:
    """The training step a ``checkpoint-<step>`` folder was saved at."""
    return int(checkpoint.name.split("-")[1])


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    return sorted(checkpoint_dir.glob("checkpoint-*"), key=checkpoint_step)


def find_checkpoint(checkpoint_dir: Path, which: str) -> Path | None:
    """The checkpoint to resume from: the folder ``which``, or with ``"latest"`` the newest one (None if none).

    Raises:
        FileNotFoundError: when ``which`` names a folder that does not exist.
    """
    if which != "latest":
        path = Path(which)
        if not path.is_dir():
            raise FileNotFoundError(f"No checkpoint folder {path}")
        return path
    found = _checkpoints(checkpoint_dir)
    return found[-1] if found else None


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, step: int, limit: int) -> None:
    """``accelerator.save_state`` into a temporary folder renamed when complete; keep the newest ``limit``."""
    tmp, final = checkpoint_dir / f".tmp-checkpoint-{step}", checkpoint_dir / f"checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp))
    os.replace(tmp, final)
    found = _checkpoints(checkpoint_dir)
    for old in found[: max(0, len(found) - limit)]:
        shutil.rmtree(old, ignore_errors=True)


def save_pipeline(pipeline: PDiffPipeline, output_dir: Path, extra_files: dict[str, str]) -> None:
    """Write the pipeline and ``extra_files`` (name -> text) into ``output_dir`` so it is never seen half written.

    Everything is saved to a temporary folder first; the old ``model_index.json`` (what makes the folder a
    pipeline) is removed before the components are swapped in and the new one is moved in last. The folder's
    other content (the training checkpoints) stays.
    """
    tmp = output_dir / ".tmp-pipeline"
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(tmp)
    for name, text in extra_files.items():
        (tmp / name).write_text(text)
    (output_dir / "model_index.json").unlink(missing_ok=True)
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "model_index.json"):
        dest = output_dir / entry.name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    tmp.rmdir()
