"""Base training throughput: images per second of the recipe's base model, against this machine's matmul peak, with
what the ecosystem offers on CPUs.

    .venv/bin/python benchmarks/base_training.py [--recipe fashion-mnist-resnet18] [--steps 8] [--compile]

One training step is ``collect.base_batch_size`` images through the recipe's timm model (random images: the time
does not depend on the data), cross-entropy, backward, AdamW, as ``train_base_model`` does it. Variants, each timed
after two warm-up steps in the same process (median step time):

- ``float32``: what the recipe runs;
- ``channels_last``: the model and the images in NHWC memory format;
- ``bf16 autocast``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward pass;
- ``channels_last + bf16``;
- ``batch x2`` (also with channels_last), ``batch x4 + channels_last``: more images per step (fewer but larger
  steps: the same work per epoch);
- ``torch.compile`` (``--compile``; its compilation time is printed apart).

The floating-point operations of one step are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
(forward and backward), which gives the achieved GFLOP/s; the peak is a 2048x2048 ``torch.mm`` in float32 and in
bfloat16, timed in the same run (best of 10). The last line is the process's peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from resources import matmul_peak, print_peak_memory
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pdiff_hub.recipes.config import load_recipe
from pdiff_hub.training.collect_run import build_target


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_function(recipe, batch_size: int, channels_last: bool, bf16: bool, compile_model: bool):
    """One training step of a fresh base model on fixed random images, and the model."""
    torch.manual_seed(0)
    model = build_target(recipe).model.train().requires_grad_(True)  # as train_base_model sets it
    io = recipe.target.image_kwargs()  # timm's or transformers' class and channel counts
    size, chans = recipe.data.image_size, io["in_chans"]
    images = torch.randn(batch_size, chans, size, size)
    labels = torch.randint(io["num_classes"], (batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.collect.base_lr)
    forward = torch.compile(model) if compile_model else model

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_flops(recipe, batch_size: int) -> int:
    """Floating-point operations of one float32 training step (forward + backward)."""
    step = step_function(recipe, batch_size, channels_last=False, bf16=False, compile_model=False)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--recipe", default="fashion-mnist-resnet18")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    batch = recipe.collect.base_batch_size
    images_per_epoch = 60000 - recipe.data.val_size  # the training split of Fashion-MNIST and MNIST
    peak32, peak16 = matmul_peak(dtype=torch.float32), matmul_peak(dtype=torch.bfloat16)
    flops_per_image = step_flops(recipe, batch) / batch
    print(f"{recipe.target.model_name} ({args.recipe}), batch {batch}, {torch.get_num_threads()} threads; "
          f"{flops_per_image / 1e6:.0f} MFLOP per training image (forward + backward)")
    print(f"matmul peak: float32 {peak32:.0f} GFLOP/s, bfloat16 {peak16:.0f} GFLOP/s\n")
    variants = [("float32", batch, False, False), ("channels_last", batch, True, False),
                ("bf16 autocast", batch, False, True), ("channels_last + bf16", batch, True, True),
                ("batch x2", 2 * batch, False, False), ("batch x2 + channels_last", 2 * batch, True, False),
                ("batch x4 + channels_last", 4 * batch, True, False)]
    if args.compile:
        variants.append(("torch.compile", batch, False, False))
    print("| variant | images/s | ms per step | GFLOP/s | of float32 peak | epoch (s) | vs float32 |")
    print("|---|---|---|---|---|---|---|")
    base_rate = None
    for name, size, channels_last, bf16 in variants:
        step = step_function(recipe, size, channels_last, bf16, compile_model=name == "torch.compile")
        warm = _timed(step) + _timed(step)
        seconds = statistics.median(_timed(step) for _ in range(args.steps))
        rate = size / seconds
        base_rate = base_rate or rate
        gflops = rate * flops_per_image / 1e9
        extra = f" (compiling and 2 warm-up steps: {warm:.0f} s)" if name == "torch.compile" else ""
        print(f"| {name} | {rate:.0f} | {seconds * 1000:.0f} | {gflops:.0f} | {gflops / peak32:.0%} | "
              f"{images_per_epoch / rate:.0f} | {rate / base_rate:.2f}x |{extra}", flush=True)
    print_peak_memory()


if __name__ == "__main__":
    main()
