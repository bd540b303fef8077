"""Collecting parameters: train a base model, then save one checkpoint of the generated subset per iteration.

This follows the authors' v2 protocol (SPEC.md): after base training, everything but the generated parameters is
frozen (normalization layers in eval mode), and only the subset keeps training with AdamW at a constant learning
rate; every iteration's subset is one checkpoint. Because the frozen part is the same for every checkpoint, the
activations that feed the subset are computed once (:class:`~pdiff_hub.engine.split.FrozenPrefixSplit`), which makes
collection and the per-checkpoint evaluation cost what the changed layers cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.layout import ParameterLayout
from ..engine.evaluator import ParameterEvaluator
from ..engine.fitting import drawn_rows, fit_generated_parameters
from ..engine.split import FrozenPrefixSplit

__all__ = ["CollectionResult", "accuracy", "collect_checkpoints", "train_base_model"]

Split = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent of ``model`` (put in eval mode) on ``images``."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += (logits.argmax(-1) == labels[start : start + batch_size]).sum().item()
    return 100.0 * correct / len(images)


def train_base_model(
    model: nn.Module,
    train: Split,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` from scratch with AdamW and a one-cycle schedule; return the mean loss of each epoch.

    The loop is plain PyTorch on ``device`` (default: the GPU if there is one), never wrapped for several processes:
    under ``accelerate launch`` each process trains the base models of its own seeds, which must not average gradients
    or share the shuffling of another process's model. Its batches are those of a seeded ``DataLoader``.

    Raises:
        FloatingPointError: on a NaN or infinite loss, naming the epoch and step.
    """
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*train), batch_size=batch_size, shuffle=True, generator=generator, drop_last=True
    )
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(1, epochs * len(loader)))
    losses = []
    for epoch in range(epochs):
        model.train()
        # The bar must not wrap the loader: tqdm.auto starts an iterator of what it wraps, which draws from the
        # generator and would change the shuffling. As a context it is closed (its line ended) on an error too.
        total = 0.0
        with tqdm(total=len(loader), desc=f"base training, epoch {epoch + 1}/{epochs}", disable=not progress) as bar:
            for step, (images, labels) in enumerate(loader):
                loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"base training diverged (loss {loss.item()} at epoch {epoch + 1}, step "
                                             f"{step}) with collect.base_lr {lr:g}; lower collect.base_lr and run "
                                             f"again")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                bar.update()
        losses.append(total / max(1, len(loader)))
    model.eval()
    return losses


@dataclass
class CollectionResult:
    """The collected checkpoints (K, D) and, per checkpoint, its step, validation and test accuracy (percent).

    ``losses`` holds the loss of every iteration run, including those before the first kept checkpoint.
    """

    vectors: torch.Tensor
    steps: list[int]
    val_accuracy: list[float]
    test_accuracy: list[float]
    losses: list[float]
    prefix_cached: bool


def collect_checkpoints(
    model: nn.Module,
    layout: ParameterLayout,
    train: Split,
    validation: Split,
    test: Split,
    *,
    num_checkpoints: int,
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    eval_batch_size: int = 1024,
    progress: bool = True,
    rows: range | None = None,
    burn_in: int = 0,
) -> CollectionResult:
    """Keep training only the generated parameters (``layout``) of ``model`` and save one checkpoint per iteration.

    ``model`` must be the trained base model, in eval mode. It is not modified: the subset is trained on a copy.
    ``rows`` (default: all ``num_checkpoints``) are the checkpoints to keep and evaluate, a contiguous block: the
    subset trains for ``rows.stop`` iterations, so each kept checkpoint is the one a whole run saves at that step.
    ``burn_in`` iterations run before the first checkpoint (an adapter's adaptation); the steps recorded count them.

    Raises:
        ValueError: if ``num_checkpoints < 2`` or ``rows`` is empty or not inside ``range(num_checkpoints)``.
        FloatingPointError: on a NaN or infinite loss.
    """
    if num_checkpoints < 2:
        raise ValueError(f"collect.num_checkpoints must be at least 2 per base-model seed; got {num_checkpoints}")
    rows = range(num_checkpoints) if rows is None else rows
    if not rows or rows.step != 1 or rows.start < 0 or rows.stop > num_checkpoints:
        raise ValueError(f"rows {rows} is not a contiguous block of range({num_checkpoints})")
    split = FrozenPrefixSplit.from_model(model, layout.names)
    generator = torch.Generator().manual_seed(seed)
    # The frozen prefix only of the training images the iterations draw (200 batches of 128 draw ~37% of 55,000).
    keep = range(burn_in + rows.start, burn_in + rows.stop)
    drawn = drawn_rows(len(train[1]), keep.stop, batch_size, generator)
    train_features = split.compute_prefix(train[0][drawn.to(train[0].device)], batch_size=eval_batch_size)
    fit = fit_generated_parameters(split, train_features, train[1], dict(model.named_parameters()), keep=keep, lr=lr,
                                   weight_decay=weight_decay, batch_size=batch_size, generator=generator,
                                   lr_key="collect.lr", progress=progress, desc="checkpoint collection", rows=drawn)
    vectors, losses = fit.vectors, fit.losses
    val_acc, test_acc = (
        ParameterEvaluator(model, layout, *data, batch_size=eval_batch_size, split=split).accuracy(vectors).tolist()
        for data in (validation, test)
    )
    return CollectionResult(vectors, list(keep), val_acc, test_acc, losses, split.is_split)


def checkpoints_per_seed(num_checkpoints: int, seeds: list[int]) -> list[int]:
    """Split K checkpoints as evenly as possible over the base-model seeds."""
    per = math.ceil(num_checkpoints / len(seeds))
    counts = [min(per, num_checkpoints - i * per) for i in range(len(seeds))]
    if min(counts) < 1:
        raise ValueError(f"collect.num_checkpoints {num_checkpoints} cannot be spread over the {len(seeds)} seeds "
                         f"of collect.seeds; raise it or use fewer seeds")
    return counts
