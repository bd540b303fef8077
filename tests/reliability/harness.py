"""Running a script in process as a user would, and proving that a refused run changed nothing.

``call(name, *argv)`` imports ``scripts/<name>.py`` and runs it through :func:`pdiff_hub.core.cli.run_script`, so a
bad-input case costs what its checks cost (no interpreter start-up); it returns the exit status and stderr.
``snapshot(*paths)`` records every file's bytes (and which files and folders exist) under the given paths, hidden
temporary folders included, so ``snapshot(...) == before`` proves that nothing was written, changed or left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
from pathlib import Path

from pdiff_hub.core.cli import run_script

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"pdiff_hub_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(name: str, *argv: str) -> tuple[int, str]:
    """Run ``scripts/<name>.py argv`` in process; return (exit status, stderr)."""
    module = load_script(name)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            run_script(module.main, module.parse_args, list(argv))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, stderr.getvalue()


def error_line(stderr: str) -> str:
    """The ``error: ...`` line a refused run printed (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def snapshot(*paths: str | Path) -> dict[str, str]:
    """Path -> sha256 of every file (and '<dir>' for every folder) under ``paths``."""
    state: dict[str, str] = {}
    for root in map(Path, paths):
        if not root.exists():
            state[str(root)] = "<absent>"
            continue
        for item in sorted([root, *root.rglob("*")]):
            state[str(item)] = "<dir>" if item.is_dir() else hashlib.sha256(item.read_bytes()).hexdigest()
    return state
