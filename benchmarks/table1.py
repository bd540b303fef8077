"""Table 1 across model families and datasets: every recipe through collect -> train -> evaluate, one table.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/table1.py                       # all recipes, runs/table1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/table1.py --recipes mnist-mlp mnist-convnet3
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/table1.py --quick               # tiny smoke run, runs/table1-quick
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/table1.py --reuse fashion-mnist-resnet18=runs/fmnist
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/table1.py --quick --data.dataset digits --data.val_size 200

Each recipe runs as three subprocesses of the project's scripts (``scripts/collect.py``, ``scripts/train.py``,
``scripts/evaluate.py``) into ``OUT/<recipe>/{params,pipeline,eval}``, with each step's output in
``OUT/<recipe>/<step>.log``. A step whose output already exists is reused, not rerun (delete its folder to rerun it);
an interrupted training step resumes from its last checkpoint.
``--reuse NAME=DIR`` takes a recipe's results from another run folder holding ``params/``, ``pipeline/`` and
``eval/`` (the README's layout) and runs nothing for it: while ``DIR/eval/metrics.json`` does not exist yet (someone
else's run in progress), the recipe is listed as missing under the table.

For every step the command, its seed(s), its wall time, its peak resident memory (of the step's processes, as
``/usr/bin/time`` reports it) and whether it ran or was reused are recorded in
``OUT/<recipe>/steps.json``. At the end ``OUT/table1.json`` (every row's numbers and steps) and ``OUT/table1.md``
(the combined table) are written and the table is printed. Columns, all test accuracy in percent: original /
ensemble / p-diff best (the model chosen on validation) and mean; the mean of each of the critique's baselines
(average of 16 random checkpoints, per-coordinate Gaussian, noise-added checkpoints); the mean max-IoU of wrong
predictions to the originals for p-diff and for the originals among themselves; whether p-diff's mean is within 0.3
points of the originals' mean (or above it); and which baselines p-diff beats by mean accuracy, as the evaluation
decided and stored it in ``metrics.json``'s ``verdict`` section (a higher mean beyond two standard errors of the
difference), so that the table and the evaluation's report never disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pdiff_hub.recipes.config import add_recipe_arguments, load_recipe, recipe_from_dict, recipe_overrides

# The benchmarks' shared helpers lie next to this file; the tests load it by its path, without benchmarks/ on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from resources import print_peak_memory, run_with_peak_rss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

DEFAULT_RECIPES = [
    "mnist-mlp",
    "mnist-convnet3",
    "mnist-resnet18",
    "fashion-mnist-convnext-atto",
    "fashion-mnist-vit-tiny",
    "mnist-convnext-atto",
    "mnist-vit-tiny",
    "fashion-mnist-resnet18",
]

QUICK_OVERRIDES = {
    "collect.base_epochs": 1,
    "collect.num_checkpoints": 20,
    "train.autoencoder_steps": 30,
    "train.diffusion_steps": 30,
    "evaluate.num_models": 10,
    "evaluate.num_inference_steps": 10,
}
"""``--quick``: every recipe shrunk to a smoke run (the base model still trains one full epoch)."""

TOLERANCE = 0.3
"""p-diff "matches" the originals when its mean test accuracy is at least the originals' mean minus this."""

STEPS = ("collect", "train", "evaluate")
STEP_FOLDERS = {"collect": "params", "train": "pipeline", "evaluate": "eval"}
MAIN_ROWS = ("original", "ensemble", "p-diff")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES, help="recipe names or paths, in order")
    parser.add_argument("--output_dir", default=None, help="default: runs/table1 (runs/table1-quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run: " + ", ".join(
        f"{k}={v}" for k, v in QUICK_OVERRIDES.items()))
    parser.add_argument("--reuse", nargs="*", default=[], metavar="NAME=DIR",
                        help="tabulate a recipe from DIR/{params,pipeline,eval} (someone else's run); run nothing")
    parser.add_argument("--only_table", action="store_true", help="run nothing; tabulate the finished evaluations")
    # The same --section.key VALUE overrides as the scripts, for every recipe and step (after --quick's).
    add_recipe_arguments(parser, recipe_flag=False)
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = "runs/table1-quick" if args.quick else "runs/table1"
    return args


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    """``["a=b", ...]`` as a dict.

    Raises:
        ValueError: on an item without ``=``.
    """
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} expects KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


def effective_recipe(recipe: str, overrides: dict[str, object]) -> dict:
    """The recipe's values with the overrides applied (checked: unknown keys raise ``ValueError``)."""
    values = load_recipe(recipe).to_dict()
    for dest, value in overrides.items():
        section, key = dest.split(".", 1)
        values[section][key] = yaml.safe_load(value) if isinstance(value, str) else value
    return recipe_from_dict(values, source="table1 overrides").to_dict()


def step_dirs(run_dir: Path, reuse_dir: Path | None) -> dict[str, Path]:
    """Where each step's output lives: the reused folder's when it is finished there, else under ``run_dir``."""
    dirs = {step: run_dir / name for step, name in STEP_FOLDERS.items()}
    if reuse_dir is not None:
        for step, name in STEP_FOLDERS.items():
            if is_finished(step, reuse_dir / name):
                dirs[step] = reuse_dir / name
    return dirs


def is_finished(step: str, folder: Path) -> bool:
    """Whether a step's output is complete (collect and evaluate write atomically; train writes metrics.json last)."""
    marker = {"collect": "args.yaml", "train": "metrics.json", "evaluate": "metrics.json"}[step]
    return (folder / marker).is_file()


def step_command(step: str, recipe: str, dirs: dict[str, Path], overrides: dict[str, object]) -> list[str]:
    """The subprocess command of one step."""
    command = [sys.executable, str(REPO / "scripts" / f"{step}.py"), "--recipe", recipe]
    if step == "collect":
        command += ["--output_dir", str(dirs["collect"])]
    elif step == "train":
        command += ["--param_dataset", str(dirs["collect"]), "--output_dir", str(dirs["train"]), "--report_to", "none",
                    "--resume_from_checkpoint", "latest"]
    else:
        command += ["--pipeline", str(dirs["train"]), "--param_dataset", str(dirs["collect"]),
                    "--output_dir", str(dirs["evaluate"])]
    for dest, value in overrides.items():
        command += [f"--{dest}", str(value)]
    return command


def step_seed(step: str, values: dict) -> object:
    """The seed(s) a step runs with, as recorded in the recipe."""
    return {"collect": values["collect"]["seeds"], "train": values["train"]["seed"],
            "evaluate": values["evaluate"]["seed"]}[step]


def run_recipe(recipe: str, out: Path, reuse_dir: Path | None, overrides: dict[str, object]) -> dict:
    """Run (or reuse) the three steps of one recipe; return its record (also written to ``steps.json``).

    Raises:
        RuntimeError: when a step fails; its log file is named.
    """
    values = effective_recipe(recipe, overrides)
    name = values["name"]
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    record_path = run_dir / "steps.json"
    previous = json.loads(record_path.read_text()).get("steps", {}) if record_path.is_file() else {}
    dirs = step_dirs(run_dir, reuse_dir)
    record = {"recipe": name, "recipe_file": str(recipe), "overrides": {k: str(v) for k, v in overrides.items()},
              "dirs": {step: str(d) for step, d in dirs.items()}, "steps": {}}
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TQDM_DISABLE"] = "1"
    for step in STEPS:
        command = step_command(step, recipe, dirs, overrides)
        entry = {"command": shlex.join(command), "seed": step_seed(step, values), "output": str(dirs[step])}
        if is_finished(step, dirs[step]):
            old = previous.get(step, {})
            entry.update(status="reused", wall_s=old.get("wall_s"), ran_command=old.get("command"))
            print(f"[{name}] {step}: reusing {dirs[step]}", flush=True)
        else:
            log = run_dir / f"{step}.log"
            print(f"[{name}] {step}: {entry['command']}", flush=True)
            start = time.perf_counter()
            with log.open("w") as f:
                returncode, peak_gb = run_with_peak_rss(command, cwd=REPO, env=env, stdout=f,
                                                        stderr=subprocess.STDOUT)
            entry.update(status="ran", wall_s=round(time.perf_counter() - start, 1), returncode=returncode,
                         peak_rss_gb=round(peak_gb, 2), log=str(log))
            print(f"[{name}] {step}: {entry['wall_s']} s, peak RSS {peak_gb:.2f} GB, exit {returncode}", flush=True)
        record["steps"][step] = entry
        record_path.write_text(json.dumps(record, indent=1))
        if entry.get("returncode", 0) != 0:
            raise RuntimeError(f"{name}: {step} failed (exit {entry['returncode']}); see {entry['log']}")
    return record


def table_row(record: dict) -> dict:
    """One line of the combined table from a recipe's ``eval/metrics.json`` (and its collection metrics).

    Which baselines p-diff beats is read from the evaluation's stored verdicts, never judged again here.

    Raises:
        ValueError: when ``metrics.json`` has no verdict for a baseline (written by an older evaluation).
    """
    metrics_file = Path(record["dirs"]["evaluate"]) / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    table, similarity = metrics["table"], metrics["similarity"]["rows"]
    baselines = {row: table[row]["mean"] for row in table if row not in MAIN_ROWS}
    verdicts = metrics.get("verdict") or {}
    missing = [row for row in baselines if row not in verdicts]
    if missing:
        raise ValueError(f"{metrics_file} stores no verdict for {missing}; evaluate again to tabulate it")
    pdiff_mean, original_mean = table["p-diff"]["mean"], table["original"]["mean"]
    collect_metrics = Path(record["dirs"]["collect"]) / "metrics.json"
    base_acc = json.loads(collect_metrics.read_text()).get("base_test_accuracy") if collect_metrics.is_file() else None
    return {
        "recipe": record["recipe"],
        "model": metrics["setup"]["model_name"],
        "num_params": metrics["setup"]["num_params"],
        "num_originals": metrics["setup"]["num_originals"],
        "num_models": metrics["setup"]["num_models"],
        "base_test_accuracy": base_acc,
        "original": {"best": table["original"]["best"], "mean": original_mean, "std": table["original"]["std"]},
        "ensemble": table["ensemble"]["mean"],
        "p-diff": {"best": table["p-diff"]["best"], "mean": pdiff_mean, "std": table["p-diff"]["std"],
                   "min": table["p-diff"]["min"]},
        "baseline_means": baselines,
        "max_iou_pdiff": similarity["p-diff"]["max_iou"]["mean"],
        "max_iou_originals": similarity["original"]["max_iou"]["mean"],
        "pdiff_matches_originals": pdiff_mean >= original_mean - TOLERANCE,
        "beats_baselines": [row for row in baselines if verdicts[row]["mean_beats"]],
        "split_sizes": metrics["setup"]["split_sizes"],
        "full_split_sizes": metrics["setup"].get("full_split_sizes", metrics["setup"]["split_sizes"]),
        "checks": metrics.get("checks", {}),
        "wall_s": {step: entry.get("wall_s") for step, entry in record["steps"].items()},
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(rows: list[dict], failures: dict[str, str], quick: bool) -> str:
    """The combined Table 1 as markdown, with the baselines' columns taken from the rows."""
    baseline_names = list(dict.fromkeys(name for row in rows for name in row["baseline_means"]))
    header = (["recipe", "model", "D", "K", "original best", "original mean", "ensemble", "p-diff best",
               "p-diff mean"] + [f"{name} mean" for name in baseline_names]
              + ["max-IoU p-diff", "max-IoU originals", f"p-diff mean ≥ originals' mean − {TOLERANCE}?",
                 "beats which baselines (mean, beyond 2 SE)", "wall s (collect/train/eval)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        walls = "/".join(_fmt(row["wall_s"].get(step), 0) for step in STEPS)
        cells = [row["recipe"], row["model"], str(row["num_params"]), str(row["num_originals"]),
                 _fmt(row["original"]["best"]), _fmt(row["original"]["mean"]), _fmt(row["ensemble"]),
                 _fmt(row["p-diff"]["best"]), _fmt(row["p-diff"]["mean"])]
        cells += [_fmt(row["baseline_means"].get(name)) for name in baseline_names]
        cells += [_fmt(row["max_iou_pdiff"], 3), _fmt(row["max_iou_originals"], 3),
                  "yes" if row["pdiff_matches_originals"] else "no",
                  ", ".join(row["beats_baselines"]) or "none", walls]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Test accuracy (%). best = the model with the highest validation accuracy; ensemble = the weight "
             "average of the collected checkpoints; baselines have as many models as p-diff. max-IoU = mean over a "
             "row's models of the largest IoU of wrong test predictions with any original (originals: excluding "
             "themselves). Wall times: '–' = reused without a record."]
    for row in rows:
        cut = {split: n for split, n in row["split_sizes"].items() if n != row["full_split_sizes"][split]}
        if cut:
            sizes = ", ".join(f"{split} {n:,} of {row['full_split_sizes'][split]:,}" for split, n in cut.items())
            notes.append(f"- {row['recipe']}: evaluated on random subsets of the splits ({sizes} images).")
    if quick:
        notes.append("**--quick smoke run: tiny settings, the numbers mean nothing.**")
    for name, error in failures.items():
        notes.append(f"- {name}: not in the table ({error})")
    return "\n".join(lines + notes) + "\n"


def main(args: argparse.Namespace) -> None:
    """Run every recipe, then write and print the table."""
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, object] = dict(QUICK_OVERRIDES) if args.quick else {}
    overrides.update(recipe_overrides(args))
    reuse = {name: Path(folder) for name, folder in parse_pairs(args.reuse, "--reuse").items()}
    rows, records, failures = [], {}, {}
    for recipe in args.recipes:
        name = load_recipe(recipe).name
        reuse_dir = reuse.get(name)
        if reuse_dir is not None and not reuse_dir.is_dir():
            failures[name] = f"--reuse folder {reuse_dir} does not exist"
            print(f"[{name}] skipped: {failures[name]}", flush=True)
            continue
        try:
            if args.only_table or reuse_dir is not None:
                record_path = out / name / "steps.json"
                dirs = step_dirs(out / name, None)
                if reuse_dir is not None:
                    dirs = {step: reuse_dir / STEP_FOLDERS[step] for step in STEPS}
                record = (json.loads(record_path.read_text()) if record_path.is_file()
                          else {"recipe": name, "steps": {}})
                record["dirs"] = {step: str(d) for step, d in dirs.items()}
                if not is_finished("evaluate", dirs["evaluate"]):
                    raise FileNotFoundError(f"no finished evaluation in {dirs['evaluate']} yet")
                for step in STEPS:
                    record["steps"].setdefault(step, {"status": "reused", "output": record["dirs"][step],
                                                      "wall_s": None})
            else:
                record = run_recipe(recipe, out, reuse_dir, overrides)
            records[name] = record
            rows.append(table_row(record))
        except (RuntimeError, FileNotFoundError, ValueError) as err:
            failures[name] = str(err)
            print(f"[{name}] skipped: {err}", flush=True)
    markdown = render_markdown(rows, failures, args.quick)
    (out / "table1.md").write_text(markdown)
    (out / "table1.json").write_text(json.dumps({"quick": args.quick, "overrides": {k: str(v) for k, v in
                                                 overrides.items()}, "tolerance": TOLERANCE, "rows": rows,
                                                 "records": records, "failures": failures}, indent=1))
    print(markdown)
    print(f"-> {out / 'table1.md'}, {out / 'table1.json'}")
    print_peak_memory()


if __name__ == "__main__":
    main(parse_args())
