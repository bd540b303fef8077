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

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluation_speed.py [--vectors 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from resources import print_peak_memory

from pdiff_hub.data.images import dataset_to_tensors, load_image_dataset
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.models.target import TargetModel
from pdiff_hub.training.collection import accuracy, train_base_model

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=20, help="parameter vectors to evaluate")
    parser.add_argument("--noise", type=float, default=0.05, help="perturbation amplitude of the vectors")
    parser.add_argument("--train_images", type=int, default=6400, help="images of light base training (0: none)")
    parser.add_argument("--batch_size", type=int, default=1024, help="images per forward pass, both methods")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

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
