"""Scale-out on this machine: the project's scripts with 1 and with 2 processes, each process one thread.

    .venv/bin/python benchmarks/scale_out.py [--steps train] [--workdir DIR] [--train_steps 100]

One function per step (``bench_<step>(workdir, num_processes, args) -> Timing``, registered in ``STEPS``) runs the
script as a user would: ``python scripts/<step>.py`` for 1 process, ``accelerate launch --multi_gpu --num_processes 2``
with ``ACCELERATE_USE_CPU=true`` for 2 (torchrun's launcher, CPU processes over gloo). Each step reports two times:
the command's wall time (with the interpreter, import and launcher startup, paid once per process) and the time of
its work as the script itself measures it (``train_seconds`` for training). The table at the end gives both and the
speed-up of each; a section per step says what limits it (for training, the per-step cost of keeping the processes
in step against the compute each one saves).

The inputs every step needs (a small parameter dataset) are made once, with 1 process, by :func:`prepare`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from resources import print_peak_memory

REPO = Path(__file__).resolve().parents[1]
RECIPE = "digits-mlp"


@dataclass
class Timing:
    """One run of a step: the command's wall time and the time of the work the script reports (None if it reports
    none); ``notes`` are the step's own figures, printed under the table."""

    wall_s: float
    work_s: float | None
    notes: dict


# --- running scripts --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_command(name: str, args: list[str], num_processes: int) -> list[str]:
    """``scripts/<name>.py`` (or a path) with ``num_processes`` CPU processes (plain python for one)."""
    script = name if name.endswith(".py") else str(REPO / "scripts" / f"{name}.py")
    if num_processes == 1:
        return [sys.executable, script, *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(free_port()), script, *args]


def run(name: str, args: list[str], num_processes: int) -> float:
    """Run the script; its wall time in seconds."""
    return run_capturing(name, args, num_processes)[0]


def run_capturing(name: str, args: list[str], num_processes: int) -> tuple[float, str]:
    """Run the script; its wall time in seconds and its standard output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", ACCELERATE_USE_CPU="true")
    start = time.perf_counter()
    result = subprocess.run(script_command(name, args, num_processes), cwd=REPO, env=env, capture_output=True,
                            text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} on {num_processes} process(es) failed:\n{result.stdout[-2000:]}\n"
                         f"{result.stderr[-4000:]}")
    return wall, result.stdout


def allreduce_ms(sizes: list[int]) -> dict[int, float]:
    """Milliseconds one all-reduce of ``size`` float32 values takes between 2 CPU processes (gloo), by size: this
    script run again under ``accelerate launch`` (see :func:`allreduce_probe`)."""
    _, stdout = run_capturing(__file__, ["--allreduce_probe", *map(str, sizes)], 2)
    line = next(line for line in stdout.splitlines() if line.startswith("{"))
    return {int(k): v for k, v in json.loads(line).items()}


def allreduce_probe(sizes: list[int], repeats: int = 20) -> None:
    """Under ``accelerate launch``: time ``repeats`` all-reduces of each size; the main process prints JSON."""
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator()
    times = {}
    for size in sizes:
        tensor = torch.randn(size)
        for i in range(repeats + 5):
            if i == 5:
                accelerator.wait_for_everyone()
                start = time.perf_counter()
            torch.distributed.all_reduce(tensor)
        times[size] = round(1000 * (time.perf_counter() - start) / repeats, 2)
    accelerator.print(json.dumps(times), flush=True)
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()  # gloo aborts at exit when the group is left open


# --- inputs -----------------------------------------------------------------------------------------------------

def prepare(workdir: Path) -> Path:
    """A parameter dataset of the digits MLP (40 checkpoints), collected once with 1 process."""
    params = workdir / "params"
    if not params.is_dir():
        run("collect", ["--recipe", RECIPE, "--collect.base_epochs", "5", "--collect.num_checkpoints", "40",
                        "--output_dir", str(params)], 1)
    return params


# --- steps ------------------------------------------------------------------------------------------------------

def bench_train(workdir: Path, num_processes: int, args: argparse.Namespace) -> Timing:
    """train.py on the parameter dataset: both stages, ``--train_steps`` steps each, the recipe's global batches."""
    out = workdir / f"train-{num_processes}"
    wall = run("train", ["--recipe", RECIPE, "--param_dataset", str(prepare(workdir)), "--output_dir", str(out),
                         "--overwrite", "--train.autoencoder_steps", str(args.train_steps), "--train.diffusion_steps",
                         str(args.train_steps), "--checkpointing_steps", str(10 * args.train_steps), "--skip_eval",
                         "--report_to", "none"], num_processes)
    work = json.loads((out / "metrics.json").read_text())["train_seconds"]
    return Timing(wall, work, {"ms per step": round(1000 * work / (2 * args.train_steps), 1)})


def train_limits(args: argparse.Namespace, runs: dict[int, Timing]) -> list[str]:
    """What bounds training's speed-up: one step's compute (forward, backward, AdamW) on the whole and on half the
    batch, in this process (one thread), the gradients each step all-reduces, and what the 2-process step costs
    beyond its half-batch compute (the all-reduce, the loss's reduce, and waiting for the slower process)."""
    import torch

    from pdiff_hub.data.parameters import ParameterDataset
    from pdiff_hub.recipes.config import load_recipe
    from pdiff_hub.training.objectives import (
        autoencoder_loss,
        build_autoencoder,
        build_denoiser,
        build_scheduler,
        diffusion_loss,
    )

    torch.set_num_threads(1)
    recipe, params = load_recipe(RECIPE), ParameterDataset.load(args.workdir / "params")
    vectors = params.vectors
    autoencoder, denoiser = build_autoencoder(recipe, params.target, vectors), build_denoiser(recipe)
    scheduler = build_scheduler(recipe)
    with torch.no_grad():
        latents = autoencoder.encode(vectors)

    def step_ms(model, loss_fn, batch: torch.Tensor, repeats: int = 20) -> float:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        for i in range(repeats + 3):
            if i == 3:
                start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            optimizer.step()
        return 1000 * (time.perf_counter() - start) / repeats

    lines, wholes, halves, sizes = [], [], [], []
    for stage, model, data, batch_size, loss_fn in (
        ("autoencoder", autoencoder, vectors, recipe.train.autoencoder_batch_size, autoencoder_loss),
        ("diffusion", denoiser, latents, recipe.train.diffusion_batch_size,
         lambda m, b: diffusion_loss(m, scheduler, b)),
    ):
        rows = data[torch.arange(batch_size) % len(data)]
        whole, half = step_ms(model, loss_fn, rows), step_ms(model, loss_fn, rows[: batch_size // 2])
        wholes.append(whole)
        halves.append(half)
        size = sum(p.numel() for p in model.parameters())
        sizes.append(size)
        lines.append(f"{stage} step: {whole:.1f} ms on the batch of {batch_size}, {half:.1f} ms on half of it "
                     f"({100 * half / whole:.0f}%); {size:,} gradients ({4 * size / 2**20:.2f} MiB) all-reduced "
                     "every step")
    compute_one, compute_half = sum(wholes) / 2, sum(halves) / 2  # the stages run equally many steps
    reduce = allreduce_ms([*sizes, 1])
    reduce_step = (reduce[sizes[0]] + reduce[sizes[1]]) / 2 + reduce[1]  # the gradients, and the loss reported
    measured = {n: 1000 * t.work_s / (2 * args.train_steps) for n, t in runs.items()}
    lines.append(f"gloo all-reduce between 2 processes: {reduce[sizes[0]]:.1f} ms for the autoencoder's gradients, "
                 f"{reduce[sizes[1]]:.1f} ms for the denoiser's, {reduce[1]:.2f} ms for the loss")
    lines.append(f"a step, both stages averaged: compute {compute_one:.1f} ms (whole batch), {compute_half:.1f} ms "
                 f"(half), all-reduces {reduce_step:.1f} ms; measured in train.py {measured[1]:.1f} ms on 1 process, "
                 f"{measured[2]:.1f} ms on 2, of which {measured[2] - compute_half - reduce_step:.1f} ms are neither "
                 "compute nor all-reduce (waiting for the slower process, DDP's bucket copies, a core shared)")
    lines.append(f"speed-up bound: {compute_one / compute_half:.2f}x with free communication, "
                 f"{compute_one / (compute_half + reduce_step):.2f}x with these all-reduces")
    return lines


def trained_pipeline(workdir: Path) -> Path:
    """A pipeline trained 50+50 steps on the parameter dataset, once, with 1 process (evaluate's input)."""
    pipe = workdir / "pipeline"
    if not pipe.is_dir():
        run("train", ["--recipe", RECIPE, "--param_dataset", str(prepare(workdir)), "--output_dir", str(pipe),
                      "--train.autoencoder_steps", "50", "--train.diffusion_steps", "50", "--skip_eval",
                      "--report_to", "none"], 1)
    return pipe


def bench_evaluate(workdir: Path, num_processes: int, args: argparse.Namespace) -> Timing:
    """evaluate.py with ``--eval_models`` models per generated row (5 DDIM steps); work = run_evaluation's total."""
    out = workdir / f"evaluate-{num_processes}"
    wall = run("evaluate", ["--pipeline", str(trained_pipeline(workdir)), "--param_dataset", str(prepare(workdir)),
                            "--num_models", str(args.eval_models), "--evaluate.num_inference_steps", "5",
                            "--output_dir", str(out), "--overwrite"], num_processes)
    timings = json.loads((out / "metrics.json").read_text())["timings"]
    sharded = timings["evaluate_validation_s"] + timings["evaluate_test_s"]
    return Timing(wall, timings["total_s"], {"sharded evaluation s": round(sharded, 2), **{
        k: v for k, v in timings.items() if k in ("generation_s", "similarity_s", "latents_s")}})


def evaluate_limits(args: argparse.Namespace, runs: dict[int, Timing]) -> list[str]:
    """What bounds evaluate's speed-up: only the models' predictions are sharded; the sampling (main process), the
    encoding of every row into latents and the similarity measures (each process, whole) and the writing of the
    report and figures (main process) are not."""
    one, two = runs[1].notes, runs[2].notes
    serial = {n: runs[n].work_s - runs[n].notes["sharded evaluation s"] for n in runs}
    return [f"sharded predictions: {one['sharded evaluation s']:.2f} s on 1 process, {two['sharded evaluation s']:.2f}"
            f" s on 2 ({one['sharded evaluation s'] / max(two['sharded evaluation s'], 1e-9):.2f}x)",
            f"unsharded inside run_evaluation: {serial[1]:.2f} s on 1 process, {serial[2]:.2f} s on 2 (sampling, "
            "latents, similarity); outside it: loading, the figures and the report, and each process's startup"]


def bench_collect(workdir: Path, num_processes: int, args: argparse.Namespace) -> Timing:
    """collect.py of ``--collect_recipe`` with the seeds ``--collect_seeds``: each process trains its seeds' base models
    and collects their checkpoints (with fewer seeds than processes, a seed's checkpoints are split); work = base
    training + checkpoints (training the subset, evaluating each), each the slowest process's time."""
    out = workdir / f"collect-{num_processes}"
    extra = ["--collect.base_epochs", str(args.collect_base_epochs)] if args.collect_base_epochs else []
    wall = run("collect", ["--recipe", args.collect_recipe, "--collect.seeds", args.collect_seeds, *extra,
                           "--output_dir", str(out), "--overwrite"], num_processes)
    metrics = json.loads((out / "metrics.json").read_text())
    base, checkpoints = metrics["base_training_seconds"], metrics["collect_seconds"]
    return Timing(wall, base + checkpoints, {"base training s": base, "checkpoints s": checkpoints})


def collect_limits(args: argparse.Namespace, runs: dict[int, Timing]) -> list[str]:
    """What bounds collect's speed-up: the seeds split over the processes (whole seeds: an odd count leaves one
    process a seed more); with one seed, only the evaluation of its checkpoints is split, every process training the
    same base model; and what no process shares: startup, data loading, gathering and the main process's writing."""
    one, two = runs[1].notes, runs[2].notes
    lines = [f"{stage}: {one[key]:.1f} s on 1 process, {two[key]:.1f} s on 2 ({one[key] / max(two[key], 1e-9):.2f}x)"
             for stage, key in (("base training", "base training s"), ("checkpoints", "checkpoints s"))]
    if len(json.loads(args.collect_seeds)) == 1:
        lines.append("one seed: both processes train its base model (not split); the process with the later "
                     "checkpoints trains the subset through all of them; only their evaluation is split")
    lines.append(f"outside the work: {runs[1].wall_s - runs[1].work_s:.1f} s on 1 process, "
                 f"{runs[2].wall_s - runs[2].work_s:.1f} s on 2 (startup, data loading on every process, gathering "
                 "the vectors, the main process writing the dataset)")
    return lines


STEPS = {"train": bench_train, "evaluate": bench_evaluate, "collect": bench_collect}
LIMITS = {"train": train_limits, "evaluate": evaluate_limits, "collect": collect_limits}


# --- report -----------------------------------------------------------------------------------------------------

def table(results: dict[str, dict[int, Timing]]) -> str:
    def speedup(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a and b else "-"

    def seconds(value: float | None) -> str:
        return f"{value:.1f} s" if value is not None else "-"

    rows = ["| step | wall, 1 proc | wall, 2 procs | speed-up | work, 1 proc | work, 2 procs | speed-up |",
            "|---|---|---|---|---|---|---|"]
    for step, runs in results.items():
        one, two = runs[1], runs[2]
        rows.append(f"| {step} | {seconds(one.wall_s)} | {seconds(two.wall_s)} | {speedup(one.wall_s, two.wall_s)} | "
                    f"{seconds(one.work_s)} | {seconds(two.work_s)} | {speedup(one.work_s, two.work_s)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS), help="the steps to time")
    parser.add_argument("--workdir", type=Path, default=None, help="where inputs and outputs go (default: a temp dir)")
    parser.add_argument("--train_steps", type=int, default=100, help="steps of each training stage")
    parser.add_argument("--eval_models", type=int, default=300, help="models per generated row of evaluate.py")
    parser.add_argument("--collect_recipe", default=RECIPE, help="the recipe collect.py runs")
    parser.add_argument("--collect_seeds", default="[0, 1]", help="collect.seeds of collect.py (one per process)")
    parser.add_argument("--collect_base_epochs", type=int, default=None, help="base epochs (default: the recipe's)")
    parser.add_argument("--allreduce_probe", type=int, nargs="+", help=argparse.SUPPRESS)  # see allreduce_ms
    args = parser.parse_args()
    if args.allreduce_probe:
        return allreduce_probe(args.allreduce_probe)
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scale-out-"))
    args.workdir.mkdir(parents=True, exist_ok=True)

    prepare(args.workdir)
    results: dict[str, dict[int, Timing]] = {}
    for step in args.steps:
        results[step] = {}
        for num_processes in (1, 2):
            results[step][num_processes] = STEPS[step](args.workdir, num_processes, args)
            print(f"{step} on {num_processes} process(es): {results[step][num_processes]}", flush=True)

    load = os.getloadavg()
    print(f"\n{os.cpu_count()} cores, load average {load[0]:.1f} (1 min) at the end; every process one thread; "
          f"work = the time the script reports for its work, wall = the whole command\n")
    print(table(results))
    for step in args.steps:
        print(f"\n{step}: " + "; ".join(f"{n} proc: {t.notes}" for n, t in results[step].items()))
        for line in LIMITS.get(step, lambda a, r: [])(args, results[step]):
            print(f"  {line}")
    print_peak_memory()


if __name__ == "__main__":
    main()
