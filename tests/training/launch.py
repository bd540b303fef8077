"""Running a script under ``accelerate launch`` with several CPU processes (gloo), as a user of one machine would.

``accelerate launch --cpu`` starts one process (several only through MPI); torchrun's launcher, which ``--multi_gpu``
selects, starts N, and ``ACCELERATE_USE_CPU=true`` makes them CPU processes that talk over gloo. Each process gets
one thread, and a free port, so that runs started at the same time on one machine do not meet.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil

from ..scripts import REPO, script_env


def free_port() -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(script: str | Path, *args: str, num_processes: int = 2) -> list[str]:
    """The command that runs ``script`` (a bare name: ``scripts/<name>.py``) with ``num_processes`` CPU processes."""
    path = REPO / "scripts" / f"{script}.py" if isinstance(script, str) else script
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(free_port()), str(path), *args]


def launch_env() -> dict[str, str]:
    env = script_env()
    env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    return env


def launch_script(script: str | Path, *args: str, num_processes: int = 2, check: bool = True, timeout: int = 600):
    """Run ``script`` (a bare name: ``scripts/<name>.py``) under ``accelerate launch`` with ``num_processes`` CPU
    processes; return the CompletedProcess."""
    result = subprocess.run(launch_command(script, *args, num_processes=num_processes), cwd=REPO, env=launch_env(),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} on {num_processes} processes failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def popen_launch(script: str | Path, *args: str, log: Path, num_processes: int = 2) -> subprocess.Popen:
    """Start ``script`` on ``num_processes`` CPU processes, its output to the file ``log`` (a pipe nobody reads
    would fill and stop it); stop them all with :func:`kill_launch`."""
    with open(log, "w") as out:
        return subprocess.Popen(launch_command(script, *args, num_processes=num_processes), cwd=REPO,
                                env=launch_env(), stdout=out, stderr=subprocess.STDOUT)


def kill_launch(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process it started, as a lost machine would.

    torchrun starts each worker in a session of its own, so they are found as the launcher's descendants (by pid),
    not by its process group; the workers go first, so that none is left running when the launcher has gone.
    """
    launcher = psutil.Process(process.pid)
    workers = launcher.children(recursive=True)
    for proc in [*workers, launcher]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(workers, timeout=60)
    process.wait()
