"""Generation speed: all models in one batch with the recipe's sampler (DDIM, 50 steps) against the authors' way, one
model at a time through the full 1,000-step DDPM chain, side by side in one run, with the test accuracy of the models.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_speed.py --run runs/fashion-mnist-resnet18 \\
        [--num_models 100] [--fewer_steps 20 10] [--naive_models 20] [--paper_models 3] [--no-bf16]

``--run`` is a main-job output folder (``pipeline/`` and ``params/``). Three ways are timed, each after a warm-up
call of the same shape:

- ours: the trained pipeline, ``--num_models`` models in one batch with the recipe's sampler and steps, then with
  ``--fewer_steps``, all again under ``torch.autocast`` to bfloat16 (``--no-bf16`` skips that), each with its accuracy:
  fewer steps or bfloat16 are only a gain where the accuracy holds;
- one at a time through DDPM-1000 with *our* trained networks (``--naive_models`` models): the accuracy of the
  authors' sampling, to compare ours with;
- one at a time through DDPM-1000 with the *authors'* v2 network sizes (``paper_networks.py``), each model decoded
  on its own (``--paper_models`` models). These networks are untrained: the time of a forward pass does not depend on
  the weights, so they give the authors' time and no accuracy.

One at a time costs the same per model whatever the number of models, so those ways are timed on a few models and
their time for ``--num_models`` is the median time per model times that number (printed as such); each batch of
ours is timed ``--repeats`` times, and the median counts. Accuracies are on the test split of the recipe's dataset.
Run it with one thread on a shared machine (``OMP_NUM_THREADS=1``); the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from paper_networks import paper_pipeline
from resources import print_peak_memory
from torch.utils.flop_counter import FlopCounterMode

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.evaluation.generation import generate_parameters
from pdiff_hub.evaluation.metrics import standard_error_of_difference, summarize
from pdiff_hub.recipes.config import recorded_recipe

FULL_CHAIN = 1000
"""The authors' sampling: every step of the DDPM chain (the recipe's ``train.num_train_timesteps``)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--run", default="runs/fashion-mnist-resnet18")
    parser.add_argument("--num_models", type=int, default=100)
    parser.add_argument("--fewer_steps", type=int, nargs="*", default=[20, 10],
                        help="also time ours with these step counts (and measure their accuracy)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="also time ours under torch.autocast(bfloat16), with its accuracy")
    parser.add_argument("--naive_models", type=int, default=20, help="models sampled one at a time, our networks")
    parser.add_argument("--paper_models", type=int, default=3, help="models sampled one at a time, the authors' sizes")
    parser.add_argument("--repeats", type=int, default=3, help="times each batch of ours (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = PDiffPipeline.from_pretrained(f"{args.run}/pipeline")
    params = ParameterDataset.load(f"{args.run}/params")
    recipe = recorded_recipe(f"{args.run}/pipeline")
    splits = load_recipe_splits(recipe.data, recipe.target.image_kwargs())
    evaluator = ParameterEvaluator(params.target.model, params.target.layout, *splits["test"])
    sampler, steps = recipe.evaluate.scheduler, recipe.evaluate.num_inference_steps
    n = args.num_models
    print(f"threads: {torch.get_num_threads()}; {n} models of {params.target.layout.num_params:,} parameters")

    ours = {}
    for bf16 in (False, True) if args.bf16 else (False,):
        for k in dict.fromkeys([steps, *args.fewer_steps]):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                seconds, vectors = timed(
                    lambda k=k: generate_parameters(pipe, n, k, sampler, seed_generator(args.seed), progress=False),
                    warm_up=lambda: generate_parameters(pipe, n, 1, sampler, progress=False), repeats=args.repeats)
            label = f"{sampler.upper()} {k} steps" + (", bfloat16 autocast" if bf16 else "")
            label += " (the recipe's)" if k == steps and not bf16 else ""
            ours[label] = k, seconds, evaluator.accuracy(vectors)
    naive_seconds, naive = one_at_a_time(pipe, args.naive_models, args.seed)
    naive_acc = evaluator.accuracy(naive)
    paper = paper_pipeline(recipe, params)
    paper_seconds, _ = one_at_a_time(paper, args.paper_models, args.seed)

    print(f"ours, the trained pipeline ({sizes(pipe)}), {n} models in one batch:")
    for label, (_, seconds, acc) in ours.items():
        print(f"  {label:36s} {seconds:6.2f} s ({1000 * seconds / n:4.1f} ms per model); {accuracy_line(acc)}")
    print(f"one at a time, DDPM {FULL_CHAIN} steps, our trained networks: {naive_seconds:.2f} s per model (median of "
          f"{args.naive_models}), {naive_seconds * n:.1f} s for {n} models; {accuracy_line(naive_acc)}")
    print(f"one at a time, DDPM {FULL_CHAIN} steps, the authors' v2 sizes ({sizes(paper)}; UNTRAINED, timing only: "
          f"the time does not depend on the weights): {paper_seconds:.2f} s per model (median of {args.paper_models}), "
          f"extrapolated x {n}: {paper_seconds * n:.1f} s for {n} models")
    paper_flops = flops_per_model(paper, FULL_CHAIN)
    print(f"speed-up per {n} models over one at a time with DDPM-{FULL_CHAIN}: with the authors' networks (and the "
          f"ratio of floating-point operations per model, {paper_flops / 1e9:.1f} GFLOP theirs), with our networks; "
          f"mean accuracy minus that of DDPM-{FULL_CHAIN} one at a time with our networks (+- 2 standard errors):")
    naive_stats = summarize(naive_acc)
    for label, (k, seconds, acc) in ours.items():
        stats = summarize(acc)
        se = standard_error_of_difference(stats, naive_stats)
        print(f"  {label:36s} {paper_seconds * n / seconds:6.0f}x (goal >= 1,000x; FLOPs "
              f"{paper_flops / flops_per_model(pipe, k):5.0f}x); {naive_seconds * n / seconds:4.0f}x; accuracy "
              f"{stats.mean - naive_stats.mean:+.2f}" + (f" +- {2 * se:.2f} points" if se else " points"))
    originals = summarize(evaluator.accuracy(params.vectors))
    print(f"test accuracy of the collected originals: mean {originals.mean:.2f} max {originals.max:.2f} "
          f"(n={originals.n})")
    print_peak_memory()


def one_at_a_time(pipe: PDiffPipeline, count: int, seed: int) -> tuple[float, torch.Tensor]:
    """The median seconds per model and the vectors of ``count`` models sampled (and decoded) one by one with
    DDPM-1000."""
    generate_parameters(pipe, 1, 1, "ddpm", progress=False)  # warm-up: see timed()
    seconds, vectors = [], []
    for i in range(count):
        start = time.perf_counter()
        vectors.append(generate_parameters(pipe, 1, FULL_CHAIN, "ddpm", seed_generator(seed + i), progress=False))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), torch.cat(vectors)


def timed(fn: Callable[[], torch.Tensor], warm_up: Callable[[], object], repeats: int) -> tuple[float, torch.Tensor]:
    """The median seconds of ``repeats`` calls of ``fn`` (each gives the same result) and its result, after
    ``warm_up`` (one step of the same shapes): one-off costs (allocations, kernel selection for the shapes) are
    nobody's per-model time, and the median keeps a burst of another process's work out of a figure of seconds."""
    warm_up()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def flops_per_model(pipe: PDiffPipeline, steps: int) -> float:
    """Floating-point operations of sampling one model: ``steps`` denoiser calls and one decoding."""
    latent = torch.zeros(1, 1, pipe.denoiser.config.latent_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.denoiser(latent, torch.tensor(0))
        per_step = counter.get_total_flops()
        pipe.autoencoder.decode(latent)
    return steps * per_step + counter.get_total_flops() - per_step


def seed_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sizes(pipe: PDiffPipeline) -> str:
    count = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("autoencoder", "denoiser")}
    return f"autoencoder {count['autoencoder']:,} parameters, denoiser {count['denoiser']:,}"


def accuracy_line(acc: torch.Tensor) -> str:
    s = summarize(acc)
    return (f"test accuracy mean {s.mean:.2f} median {s.median:.2f} std {s.std:.2f} min {s.min:.2f} max {s.max:.2f} "
            f"(n={s.n})")


if __name__ == "__main__":
    main()
