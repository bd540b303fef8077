"""Evaluation at the FLOP floor: ParameterEvaluator's speed against the multiply-adds it must do and the matmul peak.

For each family's Fashion-MNIST recipe (``fashion-mnist-resnet18``, ``-convnext-atto``, ``-vit-tiny``: the recipe's
timm model, random-init, at 32x32, with its generated parameters; FLOPs and speed do not depend on training), on
``--images`` random images and ``--vectors`` parameter vectors (the model's own plus noise), it prints:

* the multiply-adds per image per vector of the part that must be recomputed (the split's suffix, counted with
  :class:`torch.utils.flop_counter.FlopCounterMode` for one vector on one image: matrix products and convolutions;
  norms and activations are not counted), before the simplifications (``simplify=False``) and after them (the
  default: one-pixel convolutions as matrix products, only the class token through a ViT's last MLP), and of the
  whole network (what the naive way recomputes);
* the time of ``ParameterEvaluator.predictions`` (prefix cached beforehand, best of ``--repeats``; the exact one
  once), its GFLOP/s, and this machine's float32 matmul peak measured in the same process (a 2048x2048 ``torch.mm``,
  best of 10, before and after each family); "floor x" is time / (FLOPs / peak): at most 2 is "within 2x
  of the floor";
* the time of the loop and of vmap over all vectors (``predict_many``'s two methods) on the simplified split;
* the naive way (the recipe's timm model with each vector loaded, a full forward on every image; ``--naive-vectors``
  of them) and the ratio per vector;
* how many predictions the simplified evaluation shares with the exact one, and each family's peak RSS (every family
  runs in its own process; the figure includes model building and the naive run).

``--agreement`` instead measures, on the real data, what the simplifications change: predictions of the exact and the
simplified evaluator on the whole Fashion-MNIST validation and test splits (15,000 images, loaded offline), for the
collected checkpoints of ``--params`` (the resnet18 recipe's parameter dataset) and, for the other families, a base
model trained briefly (``--train-images`` images, one epoch) with ``--vectors`` noisy copies of its generated
parameters. The issue accepts identical predictions on >= 99.99% of images and an accuracy difference <= 0.01 points.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flop_floor.py [--images 2000] [--vectors 20]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flop_floor.py --agreement [--vectors 20]

The figures of record, with the command and date, are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from resources import matmul_peak
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.models.target import TargetModel
from pdiff_hub.recipes.config import load_recipe
from pdiff_hub.training.collection import train_base_model

FAMILIES = {
    "resnet18": "fashion-mnist-resnet18",
    "convnext_atto": "fashion-mnist-convnext-atto",
    "vit_tiny": "fashion-mnist-vit-tiny",
}


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls (the machine is shared: the best is the least disturbed) and the result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def macs_per_image(module: torch.nn.Module, params: dict[str, torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> int:
    """Multiply-adds of one forward of ``module`` with ``params`` on one input (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        functional_call(module, params, tuple(t[:1] for t in inputs))
    return counter.get_total_flops() // 2


def build(recipe_name: str) -> TargetModel:
    """The recipe's network, random-init (seed 0)."""
    recipe = load_recipe(recipe_name)
    torch.manual_seed(0)
    return TargetModel(**recipe.target_kwargs(dict(recipe.target.model_kwargs)))


def noisy_vectors(target: TargetModel, count: int, amplitude: float = 0.1, seed: int = 1) -> torch.Tensor:
    """The model's generated parameters plus Gaussian noise, ``count`` times."""
    base = target.layout.flatten(dict(target.model.named_parameters()))
    noise = torch.randn(count, base.numel(), generator=torch.Generator().manual_seed(seed))
    return base + amplitude * base.abs().mean() * noise


def naive_predictions(target: TargetModel, vectors: torch.Tensor, images: torch.Tensor, batch_size: int
                      ) -> torch.Tensor:
    """(M, N) labels of the whole network with each vector loaded in turn (the model is restored afterwards)."""
    model, layout = target.model, target.layout
    saved = {n: model.get_parameter(n).detach().clone() for n in layout.names}
    out = torch.empty(len(vectors), len(images), dtype=torch.int64)
    with torch.no_grad():
        for i, vector in enumerate(vectors):
            for name, value in layout.unflatten(vector).items():
                model.get_parameter(name).copy_(value)
            for start in range(0, len(images), batch_size):
                out[i, start : start + batch_size] = model(images[start : start + batch_size]).argmax(-1)
        for name, value in saved.items():
            model.get_parameter(name).copy_(value)
    return out


def measure_family(recipe_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one family (run in its own process)."""
    target = build(recipe_name)
    model, layout = target.model.eval(), target.layout
    in_chans = target.classes_and_channels()[1]
    images = torch.randn(args.images, in_chans, target.config.image_size, target.config.image_size,
                         generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (args.images,), generator=torch.Generator().manual_seed(0))
    vectors = noisy_vectors(target, args.vectors)
    one = layout.unflatten(vectors[0])
    peak = matmul_peak(max(10, args.repeats))

    split = FrozenPrefixSplit.from_model(model, layout.names, example_input=images[:3])
    row: dict[str, Any] = {"family": recipe_name, "threads": torch.get_num_threads(), "peak_gflops": peak}
    evaluators = {}
    for name, simplify in (("exact", False), ("simplified", True)):
        prefix_s, evaluator = best_time(lambda s=simplify: ParameterEvaluator(model, layout, images, labels,
                                                                              batch_size=args.batch_size, split=split,
                                                                              simplify=s), 1)
        evaluators[name] = evaluator
        row[f"{name}_macs"] = macs_per_image(evaluator.split.suffix, one, evaluator.frontier)
        evaluator.predictions(vectors[:2])  # warm-up
        repeats = args.repeats if simplify else 1  # the exact way is the slow comparison: once
        row[f"{name}_s"], row[f"{name}_pred"] = best_time(lambda e=evaluator: e.predictions(vectors), repeats)
        row[f"{name}_prefix_s"] = prefix_s
    fast = evaluators["simplified"]
    row["one_pixel_convs"], row["kept_tokens"] = list(fast.split.one_pixel_convs), fast.split.kept_tokens
    row["frontier_floats"] = [t[0].numel() for t in evaluators["exact"].frontier], [t[0].numel() for t in fast.frontier]
    params = layout.unflatten(vectors)
    for method in ("loop", "vmap"):
        fast.split.predict_many(fast.frontier, layout.unflatten(vectors[:2]), method=method)  # warm-up
        row[f"{method}_s"], _ = best_time(lambda m=method: fast.split.predict_many(
            fast.frontier, params, method=m, batch_size=args.batch_size), args.repeats)
    row["vmap_error"] = fast.split.vmap_error

    row["full_macs"] = macs_per_image(model, one, (images,))
    naive = vectors[: args.naive_vectors]
    naive_predictions(target, naive[:1], images[: args.batch_size], args.batch_size)  # warm-up
    naive_s, naive_pred = best_time(lambda: naive_predictions(target, naive, images, args.batch_size), 1)
    row["naive_s_per_vector"] = naive_s / len(naive)
    row["naive_identical"] = (naive_pred == row["simplified_pred"][: len(naive)]).float().mean().item()
    row["identical"] = (row.pop("simplified_pred") == row.pop("exact_pred")).float().mean().item()
    row["peak_gflops"] = max(peak, matmul_peak(max(10, args.repeats)))  # once more after the family: the best of both
    return row


def run_family_process(name: str, argv: list[str]) -> dict[str, Any]:
    """Run one family in a child process; its figures and its peak RSS in GB (from the kernel, ``wait4``)."""
    process = subprocess.Popen([sys.executable, __file__, "--one", name, *argv], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)})")
    row = json.loads(output.strip().splitlines()[-1])
    row["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # Linux: kilobytes
    return row


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    work = args.images * args.vectors
    print(f"\n{args.vectors} vectors x {args.images} images, {rows[0]['threads']} thread(s), best of {args.repeats}; "
          "MACs per image per vector of what is recomputed; floor x = time / (FLOPs / matmul peak)\n")
    print("| family | MACs exact | MACs simplified | MACs whole net | evaluator s | GFLOP/s | peak GFLOP/s | floor x "
          "| exact s (floor x) | loop s | vmap s | naive ms/vector | x naive | identical to exact | peak RSS GB |")
    print("|" + "---|" * 15)
    for r in rows:
        flops = 2 * r["simplified_macs"] * work
        achieved = flops / r["simplified_s"] / 1e9
        exact_floor = r["exact_s"] / (2 * r["exact_macs"] * work / r["peak_gflops"] / 1e9)
        speedup = r["naive_s_per_vector"] / (r["simplified_s"] / args.vectors)
        print(f"| {r['family']} | {r['exact_macs'] / 1e6:.2f} M | {r['simplified_macs'] / 1e6:.3f} M "
              f"| {r['full_macs'] / 1e6:.1f} M | {r['simplified_s']:.3f} | {achieved:.1f} | {r['peak_gflops']:.1f} "
              f"| {r['peak_gflops'] / achieved:.2f} | {r['exact_s']:.2f} ({exact_floor:.2f}) | {r['loop_s']:.3f} "
              f"| {r['vmap_s']:.3f} | {r['naive_s_per_vector'] * 1e3:.0f} | {speedup:.0f} "
              f"| {100 * r['identical']:.3f}% | {r['peak_rss_gb']:.2f} |")
    for r in rows:
        print(f"{r['family']}: one-pixel convs {r['one_pixel_convs']}, kept tokens {r['kept_tokens']}, frontier "
              f"floats per image {r['frontier_floats'][0]} -> {r['frontier_floats'][1]}, prefix once "
              f"{r['simplified_prefix_s']:.2f} s, naive vs simplified identical {100 * r['naive_identical']:.2f}%"
              + (f", vmap failed: {r['vmap_error']}" if r["vmap_error"] else ""))


def agreement_targets(args: argparse.Namespace, train: tuple[torch.Tensor, torch.Tensor]):
    """(family, trained network, vectors) for each family: resnet18's collected checkpoints, the others' briefly
    trained base model with noisy copies of its generated parameters."""
    for family, recipe_name in FAMILIES.items():
        if family not in args.families.split(","):
            continue
        if family == "resnet18":
            params = ParameterDataset.load(args.params)
            rows = torch.linspace(0, len(params.dataset) - 1, args.vectors).round().long()
            yield family, params.target, params.vectors[rows]
            continue
        recipe, target = load_recipe(recipe_name), build(recipe_name)
        start = time.perf_counter()
        n = args.train_images
        train_base_model(target.model, (train[0][:n], train[1][:n]), epochs=1, lr=recipe.collect.base_lr,
                         weight_decay=recipe.collect.base_weight_decay, batch_size=recipe.collect.base_batch_size,
                         seed=0, device="cpu", progress=False)
        print(f"{family}: base model trained on {n} images in {time.perf_counter() - start:.0f} s", flush=True)
        target.model.eval()
        yield family, target, noisy_vectors(target, args.vectors)


def run_agreement(args: argparse.Namespace) -> None:
    """Exact vs simplified predictions on the whole validation and test splits of Fashion-MNIST."""
    recipe = load_recipe(FAMILIES["resnet18"])
    splits = load_recipe_splits(recipe.data, recipe.target.image_kwargs())
    print("| family | vectors | predictions compared | identical | differing | max accuracy difference (points) "
          "| base/mean accuracy (test) |")
    lines = []
    for family, target, vectors in agreement_targets(args, splits["train"]):
        model, layout = target.model.eval(), target.layout
        split = FrozenPrefixSplit.from_model(model, layout.names)
        same = total = 0
        worst = 0.0
        for name in ("validation", "test"):
            images, labels = splits[name]
            start = time.perf_counter()
            exact = ParameterEvaluator(model, layout, images, labels, split=split, simplify=False).predictions(vectors)
            fast = ParameterEvaluator(model, layout, images, labels, split=split).predictions(vectors)
            same += (exact == fast).sum().item()
            total += exact.numel()
            gap = 100.0 * ((exact == labels).double().mean(1) - (fast == labels).double().mean(1)).abs().max()
            worst = max(worst, gap.item())
            if name == "test":
                test_acc = 100.0 * (fast == labels).double().mean().item()
            print(f"{family} {name}: {time.perf_counter() - start:.0f} s", flush=True)
        lines.append(f"| {family} | {len(vectors)} | {total} | {100 * same / total:.4f}% | {total - same} "
                     f"| {worst:.4f} | {test_acc:.2f}% |")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--vectors", type=int, default=20)
    parser.add_argument("--naive-vectors", type=int, default=2, help="vectors the naive way is timed on")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {list(FAMILIES)}")
    parser.add_argument("--agreement", action="store_true", help="measure the simplifications on the real data")
    parser.add_argument("--params", default="runs/fashion-mnist-resnet18/params", help="(--agreement) resnet18's")
    parser.add_argument("--train-images", type=int, default=6400, help="(--agreement) brief base training")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.agreement:
        run_agreement(args)
    elif args.one:
        print(json.dumps(measure_family(FAMILIES[args.one], args)))
    else:
        rows = [run_family_process(name, sys.argv[1:]) for name in args.families.split(",")]
        print_table(rows, args)
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
