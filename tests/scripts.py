"""Running the project's scripts as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ACCELERATE_CPU = ["--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                  "--dynamo_backend", "no"]


def script_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TQDM_DISABLE"] = "1"
    return env


def run_script(name: str, *args: str, accelerate: bool = False, check: bool = True, timeout: int = 600):
    """Run ``scripts/<name>.py`` (under ``accelerate launch`` on the CPU if asked); return the CompletedProcess."""
    script = str(REPO / "scripts" / f"{name}.py")
    if accelerate:
        command = [sys.executable, "-m", "accelerate.commands.launch", *ACCELERATE_CPU, script, *args]
    else:
        command = [sys.executable, script, *args]
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        raise AssertionError(f"{name}.py failed ({result.returncode}):\n{output}")
    return result


def popen_script(name: str, *args: str) -> subprocess.Popen:
    script = str(REPO / "scripts" / f"{name}.py")
    return subprocess.Popen([sys.executable, script, *args], cwd=REPO, env=script_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
