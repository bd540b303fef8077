"""Files: atomic writes, and the one rule that tells a local folder from a Hub repo id.

Every artifact of pdiff_hub (parameter datasets, pipelines, evaluations, exports, ``args.yaml``) is written through
:func:`atomic_output_dir` or :func:`write_text_atomic`: a reader, or a run killed half way, sees the previous
complete result or the new complete result, never a mixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output_dir", "is_hub_id", "resolve_folder", "write_text_atomic"]

TMP_MARK = ".tmp-"


@contextmanager
def atomic_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``output_dir`` that replaces it only if the block finishes.

    A failed or killed run leaves ``output_dir`` as it was (absent, or the previous complete result); the temporary
    folder is removed on error.

    Raises:
        FileExistsError: if ``output_dir`` exists, is not empty and ``overwrite`` is False.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty; pass --overwrite to replace it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}{TMP_MARK}"))
    tmp.chmod(0o755)  # mkdtemp's 0700 would otherwise become the output's permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if output_dir.exists():
        old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        os.replace(output_dir, old)
        os.replace(tmp, output_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, output_dir)


def write_text_atomic(path: str | os.PathLike, text: str | Callable[[object], None]) -> None:
    """Write ``text`` to ``path``; the file appears whole or not at all.

    ``text`` is a string, or a function that writes into the open file (``lambda f: yaml.safe_dump(x, f)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}")
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
        FileNotFoundError: naming ``what`` when ``name_or_path`` is neither a folder nor a Hub repo id.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if not is_hub_id(name_or_path):
        reason = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"No {what} at {name_or_path}: the path {reason}, and it is not a Hub repo id "
                                "('org/name')")
    return Path(download(str(name_or_path)))
