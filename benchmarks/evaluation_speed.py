"""Speed of ParameterEvaluator against the naive evaluation of many generated parameter vectors, on real data.

Setup: timm ``resnet18`` (``in_chans=1``, ``num_classes=10``) at 32x32 with generated ``layer4.1.bn1`` and
``layer4.1.bn2`` (2,048 values), the Fashion-MNIST test split (10,000 images), and ``--vectors`` parameter vectors:
the base model's own plus Gaussian perturbations of amplitude ``--noise``. The base model is *lightly* trained:
``--train_images`` training images for one epoch from scratch (AdamW one-cycle, batch 128), enough for the vectors'
accuracies to differ; ``--train_images 0`` leaves it untrained. Its accuracy is printed.

Naive: for each vector, build a full timm model, load the state dict with the vector written in, and run the whole
network on every test image. ParameterEvaluator: run the frozen prefix once on the test images, then only the layers
that the vector changes, for all vectors. Prints both times, the ratio and the largest accuracy difference (it must
be 0: both compute the same predictions).

``--whole RUN_DIR`` (a main job's folder, with ``pipeline/`` and ``params/``) times ``scripts/evaluate.py`` as a whole
instead: the command a user runs, with the recipe recorded with the pipeline, as a subprocess (wall time with
start-up, data, generation, every row, similarity, latents, figures and t-SNE; its peak memory). From its
metrics.json it reads how many parameter vectors it evaluated on how many images (every row, validation and test)
and its own timings; then it times the naive way in this process on the same images (the recipe's timm model built
with one vector loaded, a full forward pass on every validation and test image; ``--naive_vectors`` vectors, the
median per vector) and prints evaluate.py's time, the naive time per vector times evaluate.py's number of vectors
(extrapolated), their ratio and a breakdown of evaluate.py's time.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluation_speed.py [--vectors 20] [--device cpu]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluation_speed.py --whole runs/fashion-mnist-resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
from resources import LIMIT_GB, print_peak_memory, run_with_peak_rss

from pdiff_hub.data.images import dataset_to_tensors, load_image_dataset, load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.data.subsets import subsample_splits
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.evaluation.figures import write_figures
from pdiff_hub.evaluation.result import ORIGINAL, EvaluationResult
from pdiff_hub.models.target import TargetModel
from pdiff_hub.recipes.config import load_recipe
from pdiff_hub.training.collection import accuracy, train_base_model

REPO = Path(__file__).resolve().parents[1]
GOAL_RATIO = 100.0
"""The issue's goal: evaluate.py as a whole at least this many times faster than the naive way."""

MODEL_KWARGS = {"num_classes": 10, "in_chans": 1}
PATTERNS = ["layer4.1.bn1", "layer4.1.bn2"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_accuracy(target: TargetModel, vectors: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                   batch_size: int, device: torch.device) -> torch.Tensor:
    """One full timm model per vector, run on every image."""
    accs = []
    for vector in vectors:
        model = timm.create_model("resnet18", pretrained=False, **MODEL_KWARGS)
        model.load_state_dict(target.build_state_dict(vector))
        accs.append(accuracy(model.to(device).eval(), images, labels, batch_size=batch_size))
    return torch.tensor(accs, dtype=torch.float64)


def benchmark_whole(run_dir: Path, naive_vectors: int, device: torch.device) -> None:
    """Time ``scripts/evaluate.py`` on ``run_dir``'s pipeline against the naive way extrapolated to its vectors."""
    pipeline, params_dir, recipe_file = run_dir / "pipeline", run_dir / "params", run_dir / "pipeline" / "args.yaml"
    if not recipe_file.is_file() or not params_dir.is_dir():
        raise SystemExit(f"--whole {run_dir} needs a main job's folder with pipeline/ (and its args.yaml) and "
                         "params/; run scripts/main_job.sh first or pass that folder")
    print(f"threads={torch.get_num_threads()} device={device}; evaluate.py on {pipeline} with --recipe {recipe_file}")
    with tempfile.TemporaryDirectory(prefix="evaluate-whole-") as tmp:
        wall_s, peak_gb, metrics = run_evaluate(pipeline, params_dir, recipe_file, Path(tmp), device)
        result = EvaluationResult.from_dict(metrics)
        start = time.perf_counter()
        write_figures(result, Path(tmp) / "figures")  # the same figures from the same metrics, t-SNE included
        figures_s = time.perf_counter() - start
    startup_s = startup_seconds()  # after evaluate.py, so that both find the files it imports in the page cache
    rows = {row: len(m["test_accuracy"]) for row, m in metrics["per_model"].items()}
    num_vectors, sizes = sum(rows.values()), metrics["setup"]["split_sizes"]
    print(f"evaluate.py evaluated {num_vectors:,} parameter vectors ("
          + ", ".join(f"{row} {n}" for row, n in rows.items()) + ") on "
          + " + ".join(f"{n:,} {split}" for split, n in sizes.items()) + f" = {sum(sizes.values()):,} images each")

    recipe = load_recipe(recipe_file)
    start = time.perf_counter()
    splits = load_recipe_splits(recipe.data, recipe.target.image_kwargs())
    data_s = time.perf_counter() - start
    config = recipe.evaluate
    splits = subsample_splits(splits, {"validation": config.val_images, "test": config.test_images}, config.seed)
    splits = {split: (images.to(device), labels.to(device)) for split, (images, labels) in splits.items()
              if split in sizes}
    if {split: len(labels) for split, (_, labels) in splits.items()} != sizes:
        raise SystemExit(f"the recipe's splits here differ from those evaluate.py reports ({sizes}); pass the run "
                         "folder whose pipeline/args.yaml holds the recipe it was evaluated with")
    params = ParameterDataset.load(params_dir)
    target = params.target.to(device)
    prefix_s = prefix_seconds(target, splits, config.batch_size)
    originals = params.vectors[:naive_vectors]
    per_vector, accs = naive_seconds(target, originals, splits, config.batch_size, device)
    naive_s = per_vector * num_vectors

    load = os.getloadavg()
    print(f"naive (timm {target.config.model_name} built per vector, one full forward pass on every image): "
          f"median {per_vector:.2f} s per vector over {len(originals)} vectors")
    reported = metrics["per_model"][ORIGINAL]
    for i, acc in enumerate(accs):
        print(f"  original {i}: naive accuracy validation/test {acc.get('validation', float('nan')):.2f}/"
              f"{acc['test']:.2f}% vs evaluate.py {_get(reported['val_accuracy'], i):.2f}/"
              f"{reported['test_accuracy'][i]:.2f}%")
    print(f"evaluate.py as a whole (wall, with start-up, data, figures and t-SNE): {wall_s:8.1f} s; peak RSS "
          f"{peak_gb:.2f} GB (limit {LIMIT_GB:g} GB)")
    print(f"naive, {per_vector:.2f} s x {num_vectors:,} vectors (extrapolated):       {naive_s:8.1f} s")
    ratio = naive_s / wall_s
    print(f"ratio: {ratio:.1f}x (goal >= {GOAL_RATIO:g}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'}); "
          f"load average {load[0]:.1f} (1 min) at the end")
    print_breakdown(wall_s, startup_s, data_s, prefix_s, figures_s, metrics["timings"])


def startup_seconds() -> float:
    """Wall time of a fresh interpreter importing scripts/evaluate.py and everything it imports (no work)."""
    code = "import sys; sys.path.insert(0, 'scripts'); import evaluate"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - start


def run_evaluate(pipeline: Path, params_dir: Path, recipe_file: Path, tmp: Path,
                 device: torch.device) -> tuple[float, float, dict]:
    """Run scripts/evaluate.py as a user would; its wall time, peak RSS (GB) and metrics.json."""
    out = tmp / "eval"
    command = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--recipe", str(recipe_file), "--pipeline",
               str(pipeline), "--param_dataset", str(params_dir), "--output_dir", str(out), "--overwrite",
               "--device", str(device)]
    log = tmp / "evaluate.log"
    with log.open("w") as stream:
        start = time.perf_counter()
        code, peak_gb = run_with_peak_rss(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                                          env=dict(os.environ, TQDM_DISABLE="1"))
        wall_s = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"scripts/evaluate.py failed (exit code {code}):\n{log.read_text()[-4000:]}")
    return wall_s, peak_gb, json.loads((out / "metrics.json").read_text())


def prefix_seconds(target: TargetModel, splits: dict, batch_size: int) -> float:
    """Time to compute the frozen prefix on every split, as evaluate.py does before its predictions."""
    start = time.perf_counter()
    split = FrozenPrefixSplit.from_model(target.model, target.layout.names)
    for images, labels in splits.values():
        ParameterEvaluator(target.model, target.layout, images, labels, batch_size=batch_size, split=split)
    return time.perf_counter() - start


def naive_seconds(target: TargetModel, vectors: torch.Tensor, splits: dict, batch_size: int,
                  device: torch.device) -> tuple[float, list[dict[str, float]]]:
    """The median time per vector of the naive way on every split, and each vector's accuracies."""
    name, kwargs = target.config.model_name, target.config.model_kwargs or {}
    times, accs = [], []
    with torch.inference_mode():  # no autograd bookkeeping: the naive way at its fastest
        warm = timm.create_model(name, pretrained=False, **kwargs).to(device).eval()
        images, labels = splits["test"]
        accuracy(warm, images[:batch_size], labels[:batch_size], batch_size)
        for vector in vectors:
            synchronize(device)
            start = time.perf_counter()
            model = timm.create_model(name, pretrained=False, **kwargs)
            model.load_state_dict(target.build_state_dict(vector.to(device)))
            model.to(device).eval()
            accs.append({split: accuracy(model, *data, batch_size=batch_size) for split, data in splits.items()})
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times), accs


def print_breakdown(wall_s: float, startup_s: float, data_s: float, prefix_s: float, figures_s: float,
                    timings: dict[str, float]) -> None:
    """evaluate.py's time by stage: its own timings (metrics.json) and what this script re-measured."""
    evaluate_s = sum(v for k, v in timings.items() if k.startswith("evaluate_"))
    stages = {
        "start-up (fresh interpreter + imports, re-measured)": startup_s,
        "data (load_recipe_splits, re-measured)": data_s,
        "generation (p-diff sampling + baselines, metrics.json)": timings.get("generation_s", 0.0),
        "frozen prefix, validation + test (re-measured)": prefix_s,
        "predictions of every vector (metrics.json minus prefix)": evaluate_s - prefix_s,
        "similarity (metrics.json)": timings.get("similarity_s", 0.0),
        "latents (metrics.json)": timings.get("latents_s", 0.0),
        "checks and tables (metrics.json total minus the above)": timings.get("total_s", 0.0) - sum(
            timings.get(k, 0.0) for k in ("generation_s", "similarity_s", "latents_s")) - evaluate_s,
        "figures incl. t-SNE (re-measured from metrics.json)": figures_s,
    }
    stages["other: loading pipeline and dataset, checks, writing (remainder)"] = wall_s - sum(stages.values())
    print(f"breakdown of evaluate.py's {wall_s:.1f} s (re-measured stages ran again in this process or a fresh one; "
          "on a loaded machine they can take longer than inside evaluate.py, and the remainder can go negative):")
    for label, seconds in stages.items():
        print(f"  {label:<68}{seconds:7.2f} s  {100 * seconds / wall_s:5.1f}%")


def _get(values: list[float] | None, i: int) -> float:
    return float("nan") if values is None else values[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=20, help="parameter vectors to evaluate")
    parser.add_argument("--noise", type=float, default=0.05, help="perturbation amplitude of the vectors")
    parser.add_argument("--train_images", type=int, default=6400, help="images of light base training (0: none)")
    parser.add_argument("--batch_size", type=int, default=1024, help="images per forward pass, both methods")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--whole", type=Path, default=None, metavar="RUN_DIR",
                        help="time scripts/evaluate.py as a whole on RUN_DIR/pipeline and RUN_DIR/params instead")
    parser.add_argument("--naive_vectors", type=int, default=3,
                        help="with --whole: vectors the naive way is timed on (the median per vector is used)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.whole is not None:
        benchmark_whole(args.whole, args.naive_vectors, device)
        print_peak_memory()
        return

    start = time.perf_counter()
    data = load_image_dataset("fashion_mnist", val_size=0)
    images, labels = dataset_to_tensors(data["test"], image_size=32, in_chans=1)
    print(f"Fashion-MNIST test: {len(labels):,} images, loaded in {time.perf_counter() - start:.1f} s; "
          f"threads={torch.get_num_threads()} device={device}")

    torch.manual_seed(0)
    target = TargetModel("resnet18", MODEL_KWARGS, PATTERNS, image_size=32)
    if args.train_images:
        train = dataset_to_tensors(data["train"].select(range(args.train_images)), image_size=32, in_chans=1)
        start = time.perf_counter()
        train_base_model(target.model, train, epochs=1, lr=2e-3, weight_decay=0.05, batch_size=128, seed=0)
        target.model.requires_grad_(False)
        print(f"base model: trained on {args.train_images:,} images for one epoch in "
              f"{time.perf_counter() - start:.1f} s")
    else:
        print("base model: untrained (random initialisation)")
    target.to(device)
    images_dev, labels_dev = images.to(device), labels.to(device)
    print(f"base model test accuracy: {accuracy(target.model, images_dev, labels_dev, args.batch_size):.2f}%")

    base = target.base_vector()
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(args.vectors - 1, base.numel(), generator=generator)
    vectors = torch.cat([base[None], base + args.noise * noise])

    naive_accuracy(target, vectors[:1], images_dev[:args.batch_size], labels_dev[:args.batch_size],
                   args.batch_size, device)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    acc_naive = naive_accuracy(target, vectors, images_dev, labels_dev, args.batch_size, device)
    synchronize(device)
    t_naive = time.perf_counter() - start

    start = time.perf_counter()
    evaluator = ParameterEvaluator(target.model, target.layout, images_dev, labels, batch_size=args.batch_size)
    synchronize(device)
    t_prefix = time.perf_counter() - start
    start = time.perf_counter()
    acc_fast = 100.0 * (~evaluator.wrong(vectors)).double().mean(dim=1)
    synchronize(device)
    t_vectors = time.perf_counter() - start
    t_fast = t_prefix + t_vectors

    diff = (acc_naive - acc_fast).abs().max().item()
    print(f"vectors: {args.vectors} (base + N(0, {args.noise:g}^2) perturbations), test accuracy "
          f"{acc_naive.min():.2f}-{acc_naive.max():.2f}%; prefix split: {evaluator.split.is_split}")
    print(f"naive (full timm model per vector): {t_naive:8.2f} s  ({t_naive / args.vectors:.3f} s per vector)")
    print(f"ParameterEvaluator:                 {t_fast:8.2f} s  (prefix once {t_prefix:.2f} s + "
          f"{args.vectors} vectors {t_vectors:.2f} s)")
    print(f"speed-up: {t_naive / t_fast:.1f}x (excluding the one-off prefix: {t_naive / t_vectors:.1f}x)")
    print(f"largest accuracy difference: {diff:.6f} points")
    print_peak_memory()


if __name__ == "__main__":
    main()
