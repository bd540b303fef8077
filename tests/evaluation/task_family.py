"""A tiny task family for the task-evaluation tests: 6 classes, a pdiff_mlp on 8x8 images, a conditional pipeline.

Built once per session (:func:`task_chain`); the parameter dataset is collected with the engine's own loop, so the
numbers are those of a real (if tiny) collection.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from pdiff_hub import LatentDenoiser, ParameterAutoencoder, PDiffPipeline, TargetModel
from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.data.tasks import binary_labels, sample_task_codes, split_tasks
from pdiff_hub.engine.fitting import fit_generated_parameters
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.evaluation.task_run import run_task_evaluation
from pdiff_hub.recipes.config import recipe_from_dict

from ..components import paper_scheduler

NUM_CLASSES = 6
RECIPE = recipe_from_dict({
    "evaluate": {"num_models": 3, "num_inference_steps": 2, "seed": 0, "val_images": 50},
    "tasks": {"num_train_tasks": 10, "num_heldout_tasks": 4, "seed": 1, "burn_in_steps": 2,
              "checkpoints_per_task": 3, "checkpoint_every": 2, "lr": 0.05, "batch_size": 16},
})


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images whose class lights up its own row, so that the tasks can be learned."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(NUM_CLASSES, (n,), generator=g)
    images = torch.randn(n, 1, 8, 8, generator=g)
    images[torch.arange(n), :, labels] += 2.0
    return images, labels


def target() -> TargetModel:
    torch.manual_seed(0)
    return TargetModel("pdiff_mlp", {"num_classes": 2, "in_chans": 1, "img_size": 8, "hidden": 8}, ["*"],
                       image_size=8)


@lru_cache(maxsize=1)
def task_chain():
    """(pipeline, parameter dataset, splits): 10 training tasks of 3 checkpoints each, 4 held-out tasks."""
    splits = {"train": _images(120, 0), "validation": _images(60, 1), "test": _images(80, 2)}
    net = target()
    tasks = RECIPE.tasks
    split = split_tasks(sample_task_codes(tasks.num_train_tasks + tasks.num_heldout_tasks, NUM_CLASSES, tasks.seed),
                        tasks.num_heldout_tasks, seed=tasks.seed)
    prefix = FrozenPrefixSplit.from_model(net.model, net.layout.names)
    features = prefix.compute_prefix(splits["train"][0])
    init = dict(net.model.named_parameters())
    vectors = torch.cat([
        fit_generated_parameters(prefix, features, binary_labels(splits["train"][1], code), init, keep=[2, 4, 6],
                                 lr=0.05, batch_size=16, generator=torch.Generator().manual_seed(i)).vectors
        for i, code in enumerate(split.train)])
    codes = [c for c in split.train for _ in range(3)]
    rows = [{"step": 0, "seed": 1, "lr": 0.05, "val_accuracy": 0.0, "test_accuracy": 0.0} for _ in codes]
    params = ParameterDataset(build_parameter_table(vectors, rows, tasks=codes), net, task_info={
        "num_classes": NUM_CLASSES, "train": split.train, "heldout": split.heldout, "seed": tasks.seed,
        "backbone_classes": list(range(NUM_CLASSES)), "backbone_test_accuracy": 97.5, "kept_steps": [2, 4, 6]})
    return conditional_pipeline(params), params, splits


def conditional_pipeline(params: ParameterDataset, condition_dim: int = NUM_CLASSES) -> PDiffPipeline:
    """A tiny conditional pipeline for ``params``' network, its denoiser's weights moved off their initial values."""
    layout = params.target.layout
    torch.manual_seed(0)
    autoencoder = ParameterAutoencoder(num_params=layout.num_params, tensor_sizes=layout.sizes, latent_dim=16,
                                       channels=(8, 16))
    autoencoder.fit_normalization(params.vectors)
    denoiser = LatentDenoiser(latent_dim=16, channels=(1, 8, 16, 8, 1), time_embed_dim=16,
                              condition_dim=condition_dim)
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pipe = PDiffPipeline(params.target, autoencoder, denoiser, paper_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@lru_cache(maxsize=1)
def task_result():
    pipe, params, splits = task_chain()
    return run_task_evaluation(pipe, params, splits, RECIPE, guidance_scale=1.5, nearest_k=3, num_training_tasks=4,
                               progress=False)
