"""What the benchmarks measure of the machine: peak memory (the process's own, and that of the subprocesses it runs,
one call per subprocess) and the matmul peak that achieved GFLOP/s are compared with.

The issue's limit is 3 GB per main-job step; ``scripts/main_job.sh`` records each step's through ``/usr/bin/time``
(``runs/<recipe>/resources.txt``), the benchmarks print theirs with :func:`print_peak_memory`.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import torch

__all__ = ["matmul_peak", "peak_memory_line", "print_peak_memory", "run_with_peak_rss"]

GB = 1e9
LIMIT_GB = 3.0
"""The issue's limit on a main-job step's peak resident memory."""


def peak_memory_line() -> str:
    """This process's peak resident memory so far and, when CUDA was used, the peak tensor memory allocated on it."""
    line = f"peak memory: {_maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / GB:.2f} GB RSS"
    torch = sys.modules.get("torch")  # only when the benchmark imported it: reading CUDA's figure must not load it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        line += f", CUDA {torch.cuda.max_memory_allocated() / GB:.2f} GB allocated"
    return line + f" (this process; main-job steps must stay under {LIMIT_GB:g} GB)"


def print_peak_memory() -> None:
    """Print :func:`peak_memory_line`; every benchmark calls it last."""
    print(peak_memory_line(), flush=True)


def run_with_peak_rss(command: list[str], **popen_kwargs) -> tuple[int, float]:
    """Run ``command`` to its end; return its exit code and its peak resident memory in GB.

    The figure is the kernel's, from ``os.wait4``: the largest of the child's and of every descendant it waited for
    (an ``accelerate launch`` and its worker), as ``/usr/bin/time`` reports it.
    """
    process = subprocess.Popen(command, **popen_kwargs)
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        process.wait()
        raise
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, _maxrss_bytes(usage.ru_maxrss) / GB


def _maxrss_bytes(maxrss: int) -> int:
    # Linux reports kilobytes, macOS bytes.
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def matmul_peak(repeats: int = 10, size: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul speed in GFLOP/s at the current thread count: a square ``torch.mm`` in ``dtype``, the
    best of ``repeats`` after a warm-up (on a shared machine the best is the least disturbed)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
