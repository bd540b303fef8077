"""One task-family collection run, as ``scripts/collect.py`` drives it for a recipe with a ``tasks`` section.

The frozen backbone is trained once, on ``tasks.backbone_classes`` (all classes when empty) with the recipe's
``collect.base_*`` settings and its first seed, as one would train or download a feature extractor; or it is taken,
already trained, from ``tasks.backbone`` (the ``target/`` of a parameter dataset or pipeline). Its weights, all
but the head, go into the generated network, a 2-way classifier (``Recipe.generated_model_kwargs``) whose generated
parameters (``target.param_patterns``: the head, optionally the last normalization layers) all start from the same
seeded values. The task codes are drawn and split into training and held-out tasks (:mod:`pdiff_hub.data.tasks`);
every training task fits the generated part on frontier features computed once
(:func:`~pdiff_hub.training.tasks.collect_task_checkpoints`), and each kept checkpoint is scored on its own task's
validation and test labels. Held-out tasks are never collected: they stay unseen until evaluation.
"""

from __future__ import annotations

import time

import torch
from accelerate.utils import set_seed
from huggingface_hub import snapshot_download

from ..core.cli import UsageError
from ..core.io import resolve_folder
from ..data.parameters import ParameterDataset, build_parameter_table
from ..data.tasks import TaskSplit, num_tasks_possible, sample_task_codes, split_tasks, task_accuracy
from ..engine.evaluator import ParameterEvaluator
from ..engine.split import FrozenPrefixSplit
from ..models.target import TargetModel
from ..recipes.config import Recipe
from .collect_run import CollectedDataset, build_target, scoring_splits, summarize
from .collection import accuracy, train_base_model
from .tasks import TaskCheckpoints, collect_task_checkpoints

__all__ = ["check_task_plan", "collect_task_family", "draw_tasks", "head_names", "load_backbone", "task_network",
           "train_backbone"]


def check_task_plan(recipe: Recipe, num_processes: int = 1) -> None:
    """Refuse a task-family recipe that would fail or mean nothing later, before any data is read.

    Raises:
        UsageError: naming the key to change.
    """
    t, kwargs = recipe.tasks, recipe.target.model_kwargs
    if num_processes > 1:
        raise UsageError("A task family is collected by one process (its tasks take seconds each); run "
                         "scripts/collect.py without accelerate launch")
    classes = kwargs.get("num_classes")
    if not isinstance(classes, int) or classes < 2:
        raise UsageError("A task family needs target.model_kwargs.num_classes, the dataset's class count (>= 2): "
                         "the backbone is trained on those classes and every task is a subset of them")
    if t.num_train_tasks + t.num_heldout_tasks > num_tasks_possible(classes):
        raise UsageError(f"tasks.num_train_tasks + tasks.num_heldout_tasks = {t.num_train_tasks + t.num_heldout_tasks}"
                         f" distinct tasks cannot be drawn from {classes} classes (there are "
                         f"{num_tasks_possible(classes)}); lower them")
    outside = [c for c in t.backbone_classes if c >= classes]
    if outside or len(t.backbone_classes) == 1:
        raise UsageError(f"tasks.backbone_classes {t.backbone_classes} must list at least 2 classes below {classes} "
                         "(or none: all classes)")
    if len(recipe.collect.seeds) > 1:
        raise UsageError(f"collect.seeds {recipe.collect.seeds}: a task family has one frozen backbone, trained with "
                         "one seed; give one")
    if recipe.tasks.backbone:
        load_backbone(recipe)
    backbone, network = task_networks(recipe)
    missing = [n for n in head_names(backbone.model, network.model) if n not in network.layout.names]
    if missing:
        raise UsageError(f"target.param_patterns {recipe.target.param_patterns} must include the classifier head "
                         f"({', '.join(missing)}): a task family generates each task's 2-way head")


def task_networks(recipe: Recipe) -> tuple[TargetModel, TargetModel]:
    """The backbone network (the recipe's classes) and the generated 2-way network, both freshly initialized.

    Raises:
        UsageError: when timm cannot build the network or the patterns do not fit it.
    """
    return build_target(recipe), build_target(recipe, recipe.generated_model_kwargs())


def head_names(backbone: torch.nn.Module, network: torch.nn.Module) -> list[str]:
    """The classifier head's parameters: those whose shape depends on the number of classes."""
    theirs = dict(backbone.named_parameters())
    return [n for n, p in network.named_parameters() if n not in theirs or theirs[n].shape != p.shape]


def load_backbone(recipe: Recipe) -> TargetModel:
    """The trained backbone ``tasks.backbone`` names: a folder with a ``target/`` (a parameter dataset's, a
    pipeline's) or a target folder itself, or a pipeline's Hub id.

    Raises:
        UsageError: when it is missing, unreadable, or another network than the recipe's ``target``.
    """
    source, t = recipe.tasks.backbone, recipe.target
    try:
        folder = resolve_folder(source, "backbone (tasks.backbone)", lambda repo_id: snapshot_download(repo_id))
        backbone = TargetModel.from_pretrained(folder / "target" if (folder / "target").is_dir() else folder)
    except (OSError, ValueError) as err:
        raise UsageError(f"tasks.backbone {source!r} holds no readable trained network: {err}") from None
    if (backbone.config.model_name, backbone.config.model_kwargs) != (t.model_name, t.model_kwargs):
        raise UsageError(f"tasks.backbone {source!r} is a {backbone.config.model_name!r} with "
                         f"{backbone.config.model_kwargs}, but the recipe's target is {t.model_name!r} with "
                         f"{t.model_kwargs}")
    return backbone.eval()


def train_backbone(recipe: Recipe, splits: dict, *, device: torch.device | str | None = None,
                   progress: bool = True) -> tuple[TargetModel, dict]:
    """Train the frozen backbone on ``tasks.backbone_classes`` (all when empty), or load ``tasks.backbone``; return
    it and what the card says.

    Its images are the training split's of those classes; its labels stay the dataset's, so its head has every
    class and the classes it never saw simply never win. Its test accuracy is measured on those classes' images.
    """
    c, classes = recipe.collect, recipe.tasks.backbone_classes
    images, labels = splits["train"]
    if classes:
        keep = torch.isin(labels, torch.tensor(classes))
        images, labels = images[keep], labels[keep]
    start = time.perf_counter()
    if recipe.tasks.backbone:
        backbone = load_backbone(recipe)
    else:
        set_seed(c.seeds[0])
        backbone = build_target(recipe)
        train_base_model(backbone.model, (images, labels), epochs=c.base_epochs, lr=c.base_lr,
                         weight_decay=c.base_weight_decay, batch_size=c.base_batch_size, seed=c.seeds[0],
                         device=device, progress=progress)
    seconds = time.perf_counter() - start
    test_images, test_labels = splits["test"]
    if classes:
        keep = torch.isin(test_labels, torch.tensor(classes))
        test_images, test_labels = test_images[keep], test_labels[keep]
    backbone.model.cpu()
    test_accuracy = accuracy(backbone.model, test_images, test_labels, batch_size=c.eval_batch_size)
    return backbone, {"backbone_classes": sorted(classes) or list(range(recipe.target.model_kwargs["num_classes"])),
                      "backbone_training_images": len(labels), "backbone_test_accuracy": round(test_accuracy, 2),
                      "backbone_training_seconds": round(seconds, 1), "backbone_seed": c.seeds[0],
                      "backbone_source": recipe.tasks.backbone or "trained by this collection"}


def task_network(recipe: Recipe, backbone: TargetModel) -> TargetModel:
    """The generated 2-way network: the backbone's weights but the head's, its head drawn from ``tasks.seed``.

    Its generated parameters' values are the common start of every task's fit (``target.base_vector()``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.tasks.seed)
        # Both networks, the backbone first, as every collected family drew it: the head is the one drawn after.
        network = task_networks(recipe)[1]
    head = set(head_names(backbone.model, network.model))
    state = {k: v for k, v in backbone.model.state_dict().items() if k not in head}
    missing, unexpected = network.model.load_state_dict(state, strict=False)
    if set(missing) != head or unexpected:  # the two networks differ by their heads only
        raise RuntimeError(f"The backbone's weights do not fit the 2-way network: missing {missing}, unexpected "
                           f"{unexpected}")
    return network.eval()


def draw_tasks(recipe: Recipe) -> TaskSplit:
    """The recipe's training and held-out task codes, drawn and split with ``tasks.seed``."""
    t = recipe.tasks
    codes = sample_task_codes(t.num_train_tasks + t.num_heldout_tasks, recipe.target.model_kwargs["num_classes"],
                              seed=t.seed)
    return split_tasks(codes, t.num_heldout_tasks, seed=t.seed)


def score_rows(split: FrozenPrefixSplit, network: TargetModel, collected: TaskCheckpoints, subsets: dict,
               recipe: Recipe) -> dict[str, list[float]]:
    """Each checkpoint's accuracy on its own task, on the validation and test splits of ``subsets`` (what
    :func:`scoring_splits` gives), all checkpoints of a split in one batched pass."""
    scores = {}
    for name, key in (("validation", "val_accuracy"), ("test", "test_accuracy")):
        images, labels = subsets[name]
        evaluator = ParameterEvaluator(network.model, network.layout, images, labels,
                                       batch_size=recipe.collect.eval_batch_size, split=split)
        scores[key] = task_accuracy(evaluator.predictions(collected.vectors), labels, collected.tasks).tolist()
    return scores


def collect_task_family(recipe: Recipe, splits: dict, class_names: list[str], *,
                        device: torch.device | str | None = None, progress: bool = True) -> CollectedDataset:
    """Train the backbone, collect every training task's checkpoints and score them; the dataset and its metrics."""
    t = recipe.tasks
    backbone, backbone_info = train_backbone(recipe, splits, device=device, progress=progress)
    print(f"backbone: test accuracy {backbone_info['backbone_test_accuracy']:.2f}% on classes "
          f"{backbone_info['backbone_classes']}", flush=True)
    network = task_network(recipe, backbone)
    tasks = draw_tasks(recipe)
    # Every task runs the suffix hundreds of times: frozen convolutions on 1x1 maps run as their centre tap.
    split = FrozenPrefixSplit.from_model(network.model, network.layout.names, one_pixel_convs=True)
    start = time.perf_counter()
    features = split.compute_prefix(splits["train"][0], batch_size=recipe.collect.eval_batch_size)
    feature_seconds = time.perf_counter() - start
    start = time.perf_counter()
    keep = t.kept_steps()
    collected = collect_task_checkpoints(
        split, features, splits["train"][1], tasks.train, keep=keep, lr=t.lr,
        weight_decay=t.weight_decay, batch_size=t.batch_size, seed=t.seed, progress=progress)
    fit_seconds = time.perf_counter() - start
    scored = scoring_splits(recipe, splits)
    scores = score_rows(split, network, collected, scored, recipe)
    collect_seconds = time.perf_counter() - start
    rows = [{"step": s, "seed": t.seed, "lr": t.lr, "val_accuracy": v, "test_accuracy": a}
            for s, v, a in zip(collected.steps, scores["val_accuracy"], scores["test_accuracy"])]
    task_info = {"num_classes": recipe.target.model_kwargs["num_classes"], "class_names": class_names,
                 "train": tasks.train, "heldout": tasks.heldout, "seed": t.seed,
                 "head": head_names(backbone.model, network.model), **backbone_info,
                 "kept_steps": list(keep)}
    params = ParameterDataset(build_parameter_table(collected.vectors, rows, tasks=collected.tasks), network,
                              task_info=task_info)
    fit_times = list(collected.seconds.values())
    metrics = {"base_test_accuracy": [backbone_info["backbone_test_accuracy"]],
               "validation": summarize(scores["val_accuracy"]), "test": summarize(scores["test_accuracy"]),
               "base_training_seconds": backbone_info["backbone_training_seconds"],
               "collect_seconds": round(collect_seconds, 2), "prefix_cached": collected.prefix_cached,
               "num_params": network.layout.num_params, "num_train_tasks": len(tasks.train),
               "num_heldout_tasks": len(tasks.heldout), "feature_seconds": round(feature_seconds, 2),
               "fit_seconds": round(fit_seconds, 2), "fit_seconds_per_task": summarize(fit_times),
               "one_pixel_convs": list(split.one_pixel_convs),
               "scored_images": {name: len(scored[name][1]) for name in ("validation", "test")}}
    return CollectedDataset(params, metrics, backbone_info["backbone_training_seconds"], collect_seconds)
