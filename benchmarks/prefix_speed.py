"""Speed of frozen-prefix caching versus naive full-model evaluation of many generated parameter sets.

Setup: timm ``resnet18`` (random init, ``in_chans=1``, ``num_classes=10``), random 32x32 images and labels, random
perturbations of the generated ``layer4.1.bn1`` / ``layer4.1.bn2`` weights and biases. Prints the time of a naive
full-model evaluation per parameter set, of :meth:`FrozenPrefixSplit.compute_prefix` once, of
:meth:`FrozenPrefixSplit.predict_many` with vmap and with a loop, the speed-up, and the largest accuracy difference
between naive and split evaluation (must be 0).

Usage::

    .venv/bin/python benchmarks/prefix_speed.py [--images 2000] [--sets 20] [--device cpu]

Measured (2026-11, default settings: 2,000 images, 20 sets; per parameter set unless said):

* CPU, 2 threads (shared machine, +-30%): naive 1,374 ms; compute_prefix once 837 ms; loop 22.0 ms (62x);
  vmap 23-37 ms depending on chunk size; 20.0-21.5x including the prefix; 0 differing predictions.
* CPU, 16 threads: naive 198 ms; prefix 180 ms; loop 5.0 ms (40x); vmap 5.4-8.2 ms; 0 differing predictions.
* H200: naive 16.3 ms; prefix 79 ms; loop 2.7 ms (6x); vmap over all 20 sets 0.91 ms (18x); 0 differing.
  With 10,000 images and 100 sets: naive 57.6 ms, loop 12.0 ms, vmap 3.6 ms (16x; 12x with the prefix). With
  PyTorch's default TF32 convolutions 2 of 1,000,000 near-tie predictions differed from the naive run (batch sizes
  differ, so cuDNN picks different algorithms); with ``--strict-fp32`` none did.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import timm
import torch
from resources import print_peak_memory

from pdiff_hub.core.layout import ParameterLayout
from pdiff_hub.engine.batching import auto_method
from pdiff_hub.engine.split import FrozenPrefixSplit

PATTERNS = ["layer4.1.bn1", "layer4.1.bn2"]


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Run ``fn`` once and return (seconds, result), synchronizing CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=500, help="batch size of the naive evaluation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk-sizes", default="1,5,20", help="vmap parameter-set chunk sizes to try")
    parser.add_argument(
        "--strict-fp32",
        action="store_true",
        help="disable TF32 on CUDA (PyTorch allows it for convolutions by default, so near-tie predictions of the "
        "naive and the split evaluation, run with different batch sizes, can differ)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.strict_fp32:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1).to(device).eval()
    images = torch.randn(args.images, 1, 32, 32)
    labels = torch.randint(0, 10, (args.images,))
    layout = ParameterLayout.from_model(model, PATTERNS)
    split = FrozenPrefixSplit.from_model(model, layout.names, example_input=images[:3])
    base = layout.flatten(dict(model.named_parameters()))
    vectors = base + 0.1 * torch.randn(args.sets, base.numel())
    param_sets = layout.unflatten(vectors)
    print(
        f"threads={torch.get_num_threads()} device={device} cudnn_tf32={torch.backends.cudnn.allow_tf32}"
        f" images={args.images} sets={args.sets}"
    )
    print(f"split={split.is_split} tracer={split.tracer} frontier={split.frontier_names}")
    if not split.is_split:
        print(f"no split: {split.fallback_reason}")

    # Naive: load each parameter set into the model and run the whole network on every image.
    def naive() -> torch.Tensor:
        out = torch.empty(args.sets, args.images, dtype=torch.int64)
        with torch.no_grad():
            for i in range(args.sets):
                for name, value in layout.unflatten(vectors[i]).items():
                    model.get_parameter(name).copy_(value)
                for start in range(0, args.images, args.batch_size):
                    batch = images[start : start + args.batch_size].to(device)
                    out[i, start : start + args.batch_size] = model(batch).argmax(-1).cpu()
            for name, value in layout.unflatten(base).items():  # restore
                model.get_parameter(name).copy_(value)
        return out

    naive()  # warm-up (allocator, kernels)
    t_naive, pred_naive = timed(naive, device)
    t_prefix, frontier = timed(lambda: split.compute_prefix(images), device)
    mib = sum(t.numel() * t.element_size() for t in frontier) / 2**20
    print(f"frontier: {[tuple(t.shape) for t in frontier]} float32 on CPU = {mib:.2f} MiB")

    results: dict[str, tuple[float, torch.Tensor]] = {}
    split.predict_many(frontier, layout.unflatten(vectors[:2]), method="loop")  # warm-up
    results["loop"] = timed(lambda: split.predict_many(frontier, param_sets, method="loop"), device)
    for chunk in (int(c) for c in args.chunk_sizes.split(",")):
        split.predict_many(frontier, layout.unflatten(vectors[:chunk]), method="vmap", chunk_size=chunk)  # warm-up
        results[f"vmap(chunk={chunk})"] = timed(
            lambda c=chunk: split.predict_many(frontier, param_sets, method="vmap", chunk_size=c), device
        )
    t_default, pred_default = timed(lambda: split.predict_many(frontier, param_sets), device)
    results[f"auto={auto_method(device)}"] = (t_default, pred_default)
    if split.vmap_error:
        print(f"vmap failed: {split.vmap_error}")

    print(f"naive full model:      {t_naive / args.sets * 1e3:9.2f} ms per parameter set ({t_naive:.3f} s total)")
    print(f"compute_prefix once:   {t_prefix * 1e3:9.2f} ms")
    acc_naive = (pred_naive == labels).float().mean(1)
    for name, (seconds, pred) in results.items():
        acc = (pred == labels).float().mean(1)
        print(
            f"predict_many {name:14s} {seconds / args.sets * 1e3:9.2f} ms per parameter set"
            f" | speed-up vs naive {t_naive / seconds:7.1f}x (with prefix {t_naive / (seconds + t_prefix):6.1f}x)"
            f" | max |acc diff| {(acc - acc_naive).abs().max().item():.6f}"
            f" | differing predictions {(pred != pred_naive).sum().item()}"
        )
    print_peak_memory()


if __name__ == "__main__":
    main()
