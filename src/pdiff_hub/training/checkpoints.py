"""Training checkpoints of one run: written whole, rotated, checked before they are resumed; the saved pipeline.

A checkpoint is ``accelerator.save_state`` in ``checkpoints/checkpoint-<step>/``, the identity of the run that wrote
it (``run.json``, see :mod:`.identity`) and, when the recipe uses EMA, the EMA weights in ``denoiser_ema/``
(safetensors, written and read by accelerate's save and load hooks as diffusers' training examples do). It is written
under a temporary name and renamed when complete, so a run killed while saving leaves only whole checkpoints.

Under N processes every process saves and loads the state (accelerate writes the weights, optimizers and schedulers
from the main process and one ``random_states_<rank>.pkl`` per process); the main process alone makes the temporary
folder, writes the identity, renames it into place and rotates, between barriers. The checkpoints folder must be one
that every process sees (a shared file system across machines).

A run resumes, rotates and replaces only its own checkpoints; another run's are refused, or with ``overwrite``
removed once this run has saved its own. Nothing in a checkpoint is unpickled with code: a folder holding a pickle
that accelerate would load with ``weights_only=False`` (``custom_checkpoint_*``, any ``*.pkl`` but its RNG states) is
refused, and the RNG states, which accelerate reads with ``weights_only=True`` but skips silently when they do not
load, are read the same way first, so a bad one is an error instead of a resumed run with other random numbers.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from accelerate.utils import load as accelerate_load
from diffusers.training_utils import EMAModel

from ..core.cli import UsageError
from ..core.io import temporary_prefix
from ..pipeline import PDiffPipeline
from .identity import identity_difference, read_identity, write_identity

__all__ = ["EMA_FOLDER", "RunCheckpoints", "check_checkpoint_files", "checkpoint_step", "list_checkpoints",
           "load_state", "register_ema_checkpointing", "save_pipeline"]

EMA_FOLDER = "denoiser_ema"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_RNG_STATE = re.compile(r"^random_states_\d+\.pkl$")


def checkpoint_step(checkpoint: Path) -> int:
    """The training step a ``checkpoint-<step>`` folder was saved at."""
    match = _CHECKPOINT.match(Path(checkpoint).name)
    if match is None:
        raise UsageError(f"{checkpoint} is not a checkpoint folder: its name is not checkpoint-<step>")
    return int(match[1])


def list_checkpoints(folder: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``folder``, by step (10 after 9)."""
    if not Path(folder).is_dir():
        return []
    return sorted((p for p in Path(folder).iterdir() if _CHECKPOINT.match(p.name) and p.is_dir()), key=checkpoint_step)


class RunCheckpoints:
    """The checkpoints of one run in ``folder``.

    Args:
        folder: the checkpoints folder (``OUTPUT_DIR/checkpoints``).
        identity: this run's identity (:func:`.identity.run_identity`).
        limit: keep at most this many of this run's checkpoints.
    """

    def __init__(self, folder: Path, identity: dict, limit: int):
        self.folder, self.identity, self.limit = Path(folder), identity, limit
        self.replaced: list[Path] = []

    def start(self, resume: str | None, overwrite: bool = False) -> Path | None:
        """Check the folder before anything is written; the checkpoint to resume from (None: start at step 0).

        Args:
            resume: a checkpoint folder, ``"latest"`` (this run's newest; none yet starts a new run) or None.
            overwrite: replace the checkpoints of another run (and without ``resume`` this run's own) once this run
                has saved its first checkpoint.

        Raises:
            UsageError: for a checkpoint of another run, one holding pickled code, a path that is no checkpoint, or,
                without ``overwrite``, a folder holding checkpoints this run would replace.
        """
        found = list_checkpoints(self.folder)
        foreign = {c: d for c in found if (d := identity_difference(read_identity(c), self.identity)) is not None}
        checkpoint = self._resumable(resume, found) if resume else None
        if checkpoint is not None:
            difference = identity_difference(read_identity(checkpoint), self.identity)
            if difference is not None:
                raise UsageError(f"checkpoint {checkpoint} belongs to another run ({difference}); resume it with its "
                                 "own recipe and parameter dataset, or start a new run in another --output_dir")
            check_checkpoint_files(checkpoint)
        if foreign and not overwrite:
            first = next(iter(foreign))
            raise UsageError(f"{self.folder} holds checkpoints of another run ({first.name}: {foreign[first]}); "
                             "choose another --output_dir, or pass --overwrite to replace them once this run has "
                             "saved its own")
        own = [c for c in found if c not in foreign]
        if own and not resume and not overwrite:
            raise UsageError(f"{self.folder} holds checkpoints of this run (up to {own[-1].name}); pass "
                             "--resume_from_checkpoint latest to continue it, or --overwrite to start it again")
        self.replaced = list(foreign) + ([] if resume else own)
        return checkpoint

    def _resumable(self, resume: str, found: list[Path]) -> Path | None:
        if resume == "latest":
            return found[-1] if found else None
        checkpoint = Path(resume)
        if not checkpoint.is_dir():
            raise UsageError(f"--resume_from_checkpoint {resume} is not a folder; give a checkpoint-<step> folder of "
                             "this run, or 'latest'")
        if not _CHECKPOINT.match(checkpoint.name):
            raise UsageError(f"--resume_from_checkpoint {resume} is not a checkpoint-<step> folder; give one of this "
                             "run, or 'latest'")
        return checkpoint

    def save(self, accelerator: Accelerator, step: int) -> Path:
        """``accelerator.save_state`` and this run's identity, renamed into place when whole; then rotate.

        Call it on every process: each saves its own random state into the main process's temporary folder, and
        the main process renames it into place once all have saved. Only this run's checkpoints are rotated; the
        replaced ones of an earlier run are removed once this one is in place.
        """
        final = self.folder / f"checkpoint-{step}"
        tmp = None
        if accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_identity(self.folder, self.identity)
            tmp = tempfile.mkdtemp(dir=self.folder, prefix=temporary_prefix(final.name))
        tmp = Path(broadcast_object_list([tmp])[0])  # the main process's folder: its pid names it
        try:
            accelerator.save_state(str(tmp))
            accelerator.wait_for_everyone()  # every rank's random state is written
            if accelerator.is_main_process:
                write_identity(tmp, self.identity)
                if final.is_dir():  # this run's own, of an attempt resumed from an earlier step, or a replaced one
                    shutil.rmtree(final)
                os.replace(tmp, final)
        finally:
            if accelerator.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
        if accelerator.is_main_process:
            self._rotate(final)
        accelerator.wait_for_everyone()  # no process runs ahead of a checkpoint that is not in place yet
        return final

    def _rotate(self, final: Path) -> None:
        self.replaced = [c for c in self.replaced if c != final]  # that name is this run's checkpoint now
        self.discard_replaced()
        own = [c for c in list_checkpoints(self.folder)
               if identity_difference(read_identity(c), self.identity) is None]
        for old in own[: max(0, len(own) - self.limit)]:
            shutil.rmtree(old, ignore_errors=True)

    def discard_replaced(self) -> None:
        """Remove the checkpoints this run replaces (see :meth:`start`): call it once the run has saved its own."""
        for old in self.replaced:
            shutil.rmtree(old, ignore_errors=True)
        self.replaced = []


def check_checkpoint_files(checkpoint: Path) -> None:
    """Refuse a checkpoint that loading would run code from; read its RNG states as accelerate does.

    Raises:
        UsageError: naming the file: a ``custom_checkpoint_*`` or ``*.pkl`` file other than accelerate's RNG states,
            or an RNG state that is not plain data.
    """
    for path in sorted(Path(checkpoint).rglob("*")):
        if path.name.startswith("custom_checkpoint_") or (path.suffix == ".pkl" and not _RNG_STATE.match(path.name)):
            raise UsageError(f"checkpoint {checkpoint} holds {path.relative_to(checkpoint)}, a pickle that loading "
                             "would run code from; it is refused (resume only checkpoints written by pdiff_hub)")
    for path in sorted(Path(checkpoint).glob("random_states_*.pkl")):
        try:
            accelerate_load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - whatever the pickle holds, the sentence is the same
            raise UsageError(f"checkpoint {checkpoint} holds {path.name}, which is not a plain random state "
                             f"({type(err).__name__}); it is refused, and nothing in it was run") from err


def load_state(accelerator: Accelerator, checkpoint: Path) -> None:
    """``accelerator.load_state`` after :func:`check_checkpoint_files`, with a refused pickle named in one sentence.

    Call it on every process: each loads the shared state and its own random state, which must be there (accelerate
    would go on silently without it, with other random numbers than the interrupted run).
    """
    check_checkpoint_files(checkpoint)
    own_state = Path(checkpoint) / f"random_states_{accelerator.process_index}.pkl"
    if not own_state.is_file():
        raise UsageError(f"checkpoint {checkpoint} has no {own_state.name}, the random state of process "
                         f"{accelerator.process_index}; resume it with as many processes as the run that wrote it")
    try:
        accelerator.load_state(str(checkpoint))
    except pickle.UnpicklingError as err:  # an optimizer or scheduler file that weights_only=True refused
        raise UsageError(f"checkpoint {checkpoint} holds a file that is not plain tensors and numbers; it is "
                         "refused, and nothing in it was run") from err


def register_ema_checkpointing(accelerator: Accelerator, ema: EMAModel, model_cls: type) -> None:
    """Save and load ``ema`` with every checkpoint, in ``denoiser_ema/`` as safetensors (never a pickle)."""

    def save_ema(models, weights, output_dir):
        if not accelerator.is_main_process:  # the EMA weights are the same on every process: one writer
            return
        # save_pretrained builds a fresh model (random initial weights) to copy the EMA weights into: keep the
        # run's random stream as it was, so a run with checkpoints draws what one without them draws.
        with torch.random.fork_rng(devices=[]):
            ema.save_pretrained(os.path.join(output_dir, EMA_FOLDER))

    def load_ema(models, input_dir):
        loaded = EMAModel.from_pretrained(os.path.join(input_dir, EMA_FOLDER), model_cls=model_cls)
        ema.load_state_dict(loaded.state_dict())
        ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_ema)
    accelerator.register_load_state_pre_hook(load_ema)


def save_pipeline(pipeline: PDiffPipeline, output_dir: Path, extra_files: dict[str, str]) -> None:
    """Write the pipeline and ``extra_files`` (name -> text) into ``output_dir`` so it is never seen half written.

    Everything is saved to a temporary folder first (removed if anything fails); the old ``model_index.json`` (what
    makes the folder a pipeline) is removed before the components are swapped in and the new one is moved in last.
    The folder's other content (the training checkpoints) stays.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir, prefix=temporary_prefix("pipeline")))
    try:
        tmp.chmod(0o755)
        pipeline.save_pretrained(tmp)
        for name, text in extra_files.items():
            (tmp / name).write_text(text)
        (output_dir / "model_index.json").unlink(missing_ok=True)
        for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "model_index.json"):
            dest = output_dir / entry.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
