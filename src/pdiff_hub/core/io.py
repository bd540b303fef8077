"""Files: atomic writes, and the one rule that tells a local folder from a Hub repo id.

Every artifact of pdiff_hub (parameter datasets, pipelines, evaluations, exports, ``args.yaml``) is written through
:func:`atomic_output_dir` or :func:`write_text_atomic`: a reader, or a run killed half way, sees the previous
complete result or the new complete result, never a mixture. Their temporary files and folders are named
``.<name>.tmp-<pid>-...`` beside the result; one left by a killed process (its pid is gone) is removed by the next
write of the same name (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output_dir", "is_hub_id", "is_temporary", "remove_stale_temporaries", "resolve_folder",
           "temporary_prefix", "write_text_atomic"]

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"
# ".<name>.tmp-<pid>-<random>" (a result being written) or ".<name>.old-<pid>" (the result it replaces)
_TEMPORARY = re.compile(rf"^\.(?P<name>.+?)(?:{re.escape(TMP_MARK)}(?P<tmp_pid>\d+)-"
                        rf"|{re.escape(OLD_MARK)}(?P<old_pid>\d+)$)")


@contextmanager
def atomic_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``output_dir`` that replaces it only if the block finishes.

    A failed or killed run leaves ``output_dir`` as it was (absent, or the previous complete result); the temporary
    folder is removed on error, or, after a kill, by the next call for the same ``output_dir``.

    Raises:
        FileExistsError: if ``output_dir`` exists, is not empty and ``overwrite`` is False.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty; pass --overwrite to replace it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir.parent, output_dir.name)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=temporary_prefix(output_dir.name)))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would otherwise become the output's permissions
        yield tmp
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}{OLD_MARK}{os.getpid()}")
            os.replace(output_dir, old)
            try:
                os.replace(tmp, output_dir)
            except BaseException:
                os.replace(old, output_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already unless the block or the swap failed


def write_text_atomic(path: str | os.PathLike, text: str | Callable[[object], None]) -> None:
    """Write ``text`` to ``path``; the file appears whole or not at all.

    ``text`` is a string, or a function that writes into the open file (``lambda f: yaml.safe_dump(x, f)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name))
    try:
        with os.fdopen(fd, "w") as f:
            if callable(text):
                text(f)
            else:
                f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temporary_prefix(name: str) -> str:
    """The prefix of this process's temporary files and folders for the result ``name``: ``.<name>.tmp-<pid>-``."""
    return f".{name}{TMP_MARK}{os.getpid()}-"


def is_temporary(name: str) -> bool:
    """True if ``name`` is a temporary file or folder of an atomic write (of any process)."""
    return _TEMPORARY.match(name) is not None


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries that killed processes left in ``folder`` (for the result ``name``, or for any).

    A temporary is stale when the process that made it is gone; this process's own count as stale too, since it
    calls this before it makes new ones (and a restarted container reuses pids). A ``.<name>.old-<pid>`` folder is
    the previous complete result of a process killed between its two renames: it is put back when ``<name>`` is
    missing, else removed.

    Returns:
        The paths removed or put back.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cleaned = []
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        pid = int(match["tmp_pid"] or match["old_pid"])
        if pid != os.getpid() and _alive(pid):
            continue
        result = folder / match["name"]
        if match["old_pid"] and not result.exists():
            os.replace(entry, result)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        cleaned.append(entry)
    return cleaned


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_hub_id(name: str | os.PathLike) -> bool:
    """True if ``name`` can only mean a Hub repo id (``org/name``): not an existing path, not path-like."""
    text = str(name)
    if Path(text).exists() or os.path.isabs(text) or text.startswith((".", "~", "\\")):
        return False
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and ".." not in parts


def resolve_folder(name_or_path: str | os.PathLike, what: str, download: Callable[[str], str]) -> Path:
    """A local folder as it is, else a Hub repo id fetched with ``download`` (e.g. ``snapshot_download``).

    Raises:
        FileNotFoundError: naming ``what`` when ``name_or_path`` is neither a folder nor a Hub repo id, or the
            repo cannot be fetched.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if not is_hub_id(name_or_path):
        reason = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"No {what} at {name_or_path}: the path {reason}, and it is not a Hub repo id "
                                "('org/name')")
    try:
        return Path(download(str(name_or_path)))
    except OSError as err:  # huggingface_hub's network and "not found" errors are OSErrors
        reason = " ".join(str(err).split()) or type(err).__name__
        raise FileNotFoundError(f"No {what} at {name_or_path}: there is no such folder, and as a Hub repo id it could "
                                f"not be fetched ({reason[:200]})") from err
