"""What the scripts share: one sentence instead of a traceback for a user's mistake, and checks of output folders
made before any expensive work starts.

Every script ends with ``run_script(main, parse_args)``. A user's mistake (a bad recipe value, a missing or corrupt
file, an output folder that would be overwritten, a diverged run) is raised as :class:`UsageError` (or one of the
standard exceptions listed in :data:`USER_ERRORS`) with one sentence that names the key or path, the value and what
is allowed; the script prints ``error: <sentence>`` to stderr and exits with status 2. ``--debug`` on the command
line or ``PDIFF_HUB_DEBUG=1`` in the environment shows the traceback instead. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["USER_ERRORS", "UsageError", "check_output_dir", "debug_requested", "leave_process_group", "run_script"]


class UsageError(ValueError):
    """A mistake in what the user asked for; its message is one sentence that says what to do."""


# Errors whose message is meant for the user. FileNotFoundError/FileExistsError/PermissionError are OSErrors.
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ValueError, OSError, FloatingPointError)

EXIT_USAGE = 2


def debug_requested(argv: Iterable[str] | None = None) -> bool:
    """True when ``--debug`` is on the command line or ``PDIFF_HUB_DEBUG`` is set to a true value."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return "--debug" in argv or os.environ.get("PDIFF_HUB_DEBUG", "").lower() in ("1", "true", "yes")


def error_sentence(err: BaseException) -> str:
    """The one line printed for ``err``: its message, with the cause of an OSError spelled out."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = f" while writing {err.filename}" if err.filename else ""
        return f"the disk is full{where}; free some space and run the command again (nothing was replaced)"
    if isinstance(err, OSError) and not str(err.args[-1] if err.args else "").strip():
        return f"{type(err).__name__}: {err.filename}"
    text = str(err).strip() or type(err).__name__
    return " ".join(text.split())  # one line, whatever the library wrote


def run_script(main: Callable[[Any], Any], parse_args: Callable[[list[str] | None], Any],
               argv: list[str] | None = None) -> Any:
    """Parse ``argv``, run ``main`` and turn a user's mistake into ``error: <sentence>`` and exit status 2.

    ``--debug`` is removed from ``argv`` before parsing, so every script accepts it.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        return main(parse_args(argv))
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {error_sentence(err)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    finally:
        leave_process_group()


def leave_process_group() -> None:
    """Destroy this process's ``torch.distributed`` group, if it joined one (under ``accelerate launch``).

    A process that exits with its group alive can abort in the teardown of the communication threads ("terminate
    called without an active exception", exit status -6), seen on 2 CPU processes when a non-main process finished
    before the main one had written the output.
    """
    import torch.distributed as dist  # here: only scripts that ran under a launcher have anything to destroy

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_output_dir(output_dir: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike] = (),
                     flag: str = "--output_dir") -> Path:
    """Refuse an output folder that the run could not or should not write, before any work is done.

    Refused: a path that is a file; the current directory or one of its parents; a folder that is, contains or lies
    inside one of ``inputs``; a non-empty folder without ``overwrite``; a folder whose parent cannot be written.

    Raises:
        UsageError: one sentence naming ``flag``, the path and what is allowed.
    """
    path = Path(output_dir)
    resolved = path.resolve()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {output_dir} is a file; give a folder (it is created if missing)")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UsageError(f"{flag} {output_dir} is the current folder or one above it; give a new folder such as "
                         f"runs/<name>")
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        if not source.exists():
            continue
        source = source.resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise UsageError(f"{flag} {output_dir} overlaps the input {item}; write the output to another folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"{flag} {output_dir} exists and is not empty; pass --overwrite to replace it")
    parent = next((p for p in [resolved, *resolved.parents] if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {output_dir} cannot be written: {parent} is not writable")
    return path
