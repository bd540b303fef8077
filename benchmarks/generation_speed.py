"""Generation speed: all models in one batch with DDIM (50 steps) against the authors' way, one model at a time
through the full 1,000-step DDPM chain, with the test accuracy of both sets.

    .venv/bin/python benchmarks/generation_speed.py --run runs/fashion-mnist-resnet18 [--naive_models 10]

``--run`` is a main-job output folder (``pipeline/`` and ``params/``). The naive way costs the same per model
whatever N is, so it is timed on ``--naive_models`` models and its time for N models is that per-model time times N
(printed as such). Accuracies are on the test split of the recipe's dataset.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pdiff_hub import PDiffPipeline
from pdiff_hub.data.images import load_recipe_splits
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.engine.evaluator import ParameterEvaluator, summarize
from pdiff_hub.recipes.config import recorded_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--run", default="runs/fashion-mnist-resnet18")
    parser.add_argument("--num_models", type=int, default=100)
    parser.add_argument("--naive_models", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = PDiffPipeline.from_pretrained(f"{args.run}/pipeline")
    pipe.set_progress_bar_config(disable=True)
    params = ParameterDataset.load(f"{args.run}/params")
    recipe = recorded_recipe(f"{args.run}/pipeline")
    splits = load_recipe_splits(recipe.data, recipe.target.model_kwargs)
    evaluator = ParameterEvaluator(params.target.model, params.target.layout, *splits["test"])

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    start = time.perf_counter()
    batched = pipe(num_models=args.num_models, num_inference_steps=50, output_type="pt",
                   generator=torch.Generator().manual_seed(args.seed)).parameters
    batched_seconds = time.perf_counter() - start

    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    naive, start = [], time.perf_counter()
    for i in range(args.naive_models):
        naive.append(pipe(num_models=1, num_inference_steps=1000, output_type="pt",
                          generator=torch.Generator().manual_seed(args.seed + i)).parameters)
    per_model = (time.perf_counter() - start) / args.naive_models

    batched_acc, naive_acc = evaluator.accuracy(batched), evaluator.accuracy(torch.cat(naive))
    originals = summarize(evaluator.accuracy(params.vectors).double().numpy())
    print(f"threads: {torch.get_num_threads()}")
    print(f"batched DDIM-50, {args.num_models} models: {batched_seconds:.2f} s "
          f"({1000 * batched_seconds / args.num_models:.1f} ms per model)")
    print(f"one at a time DDPM-1000: {per_model:.2f} s per model (timed on {args.naive_models}); "
          f"{per_model * args.num_models:.1f} s for {args.num_models} models")
    print(f"speed-up: {per_model * args.num_models / batched_seconds:.0f}x")
    for name, acc in (("batched DDIM-50", batched_acc), ("one at a time DDPM-1000", naive_acc)):
        s = summarize(acc.double().numpy())
        print(f"test accuracy, {name:24s}: mean {s['mean']:.2f} median {s['median']:.2f} std {s['std']:.2f} "
              f"min {s['min']:.2f} max {s['max']:.2f} (n={s['n']})")
    print(f"test accuracy, originals               : mean {originals['mean']:.2f} max {originals['max']:.2f}")


if __name__ == "__main__":
    main()
