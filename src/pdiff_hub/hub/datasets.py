"""Publishing a parameter dataset as a Hub dataset repo, loadable with ``ParameterDataset.load`` and ``datasets``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..data.parameters import ParameterDataset
from ..recipes.config import Recipe
from .cards import render_card
from .commit import push_folder_to_hub, read_card

__all__ = ["parameter_dataset_card", "push_parameter_dataset"]


def parameter_dataset_card(recipe: Recipe, params: ParameterDataset, metrics: dict, command: str, *,
                           collect_seconds: float, machine: str, repo_hint: str) -> str:
    """The dataset card of a collected parameter dataset (``scripts/collect.py``'s README.md).

    Args:
        recipe: the recipe the dataset was collected with.
        params: the collected checkpoints and their target network.
        metrics: the collection's metrics (``base_test_accuracy``, ``validation`` and ``test`` statistics).
        command: the command line that collected it.
        collect_seconds: the collection time (unrounded).
        machine: the machine it ran on, in words.
        repo_hint: the folder or repo id the card's usage example loads.

    Returns:
        The card's text, Hub metadata header included.
    """
    c, layout, num_checkpoints = recipe.collect, params.target.layout, len(params.dataset)
    return render_card(
        "parameter_dataset",
        {"tags": ["p-diff", "neural-network-diffusion", "model-parameters", recipe.target.model_name],
         "library_name": "pdiff_hub", "pretty_name": f"p-diff parameters: {recipe.name}",
         "size_categories": ["n<1K"] if num_checkpoints < 1000 else ["1K<n<10K"]},
        title=f"p-diff parameter dataset: {recipe.name}", num_checkpoints=num_checkpoints,
        num_params=layout.num_params, param_patterns=", ".join(recipe.target.param_patterns),
        param_names=", ".join(layout.names), model_name=recipe.target.model_name, library=recipe.target.library,
        lora=recipe.lora,
        model_kwargs=recipe.target.model_kwargs, dataset=recipe.data.dataset, base_epochs=c.base_epochs,
        base_lr=c.base_lr, base_batch_size=c.base_batch_size, image_size=recipe.data.image_size, seeds=list(c.seeds),
        base_test_accuracy=", ".join(f"{a:.2f}%" for a in metrics["base_test_accuracy"]), lr=c.lr,
        batch_size=c.batch_size, command=command,
        accuracy_rows=[{"split": "validation", **metrics["validation"]}, {"split": "test", **metrics["test"]}],
        val_size=recipe.data.val_size, split_seed=recipe.data.split_seed, repo_hint=repo_hint,
        collect_seconds=f"{collect_seconds:.1f}", machine=machine, tasks=_task_family(params, metrics),
        task_lr=recipe.tasks.lr, task_batch_size=recipe.tasks.batch_size, subsets=_scoring_subsets(recipe, metrics))


def _scoring_subsets(recipe: Recipe, metrics: dict) -> str | None:
    """The card's words for the images the checkpoints were scored on, when the recipe cut the splits."""
    e = recipe.evaluate
    if not (e.val_images or e.test_images):
        return None
    counts = metrics.get("scored_images", {"validation": e.val_images, "test": e.test_images})
    return (f"{counts['validation']:,} validation and {counts['test']:,} test images, seeded random subsets (seed "
            f"{e.seed}; recipe keys `evaluate.val_images` / `evaluate.test_images`), the images the evaluation uses")


def _task_family(params: ParameterDataset, metrics: dict) -> dict | None:
    """What the card says about a task family (None for the checkpoints of one task)."""
    if not params.is_task_family:
        return None
    return {**params.task_info, "fit_seconds": metrics.get("fit_seconds_per_task", {}).get("mean", float("nan"))}


def push_parameter_dataset(
    folder_or_dataset: str | os.PathLike | ParameterDataset,
    repo_id: str,
    *,
    card: str | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload parameter dataset with pdiff_hub",
    revision: str | None = None,
) -> str:
    """Publish a parameter dataset as a Hub dataset repo, loadable with ``ParameterDataset.load(repo_id)``.

    The card gets a ``configs`` entry pointing at ``dataset/*.arrow`` (unless it has one), so
    ``datasets.load_dataset(repo_id)`` also works (a ``train`` split of the checkpoint table) and the Hub's viewer
    shows it. The folder is checked by loading it first and is not modified.

    Args:
        folder_or_dataset: a parameter dataset folder (``scripts/collect.py`` output, with its README.md card), or
            a :class:`ParameterDataset` (then ``card`` is required).
        repo_id: ``"org/name"`` of the dataset repo.
        card: the dataset card to publish; default: the folder's README.md.
        token: a Hub token with write access; default: the stored login or ``HF_TOKEN``.
        private: create the repo private.
        commit_message: the commit message.
        revision: the branch to commit to (created if missing).

    Returns:
        The URL of the commit.

    Raises:
        FileNotFoundError: not a parameter dataset folder, or no card.
        HubUploadError: the upload failed; the message says why.

    Example:
        ```py
        >>> push_parameter_dataset("runs/fmnist/params", "org/pdiff-fashion-mnist-resnet18-params")
        >>> ParameterDataset.load("org/pdiff-fashion-mnist-resnet18-params").vectors.shape
        torch.Size([200, 2048])
        ```
    """
    kwargs = {"token": token, "private": private, "commit_message": commit_message, "revision": revision}
    if isinstance(folder_or_dataset, ParameterDataset):
        if card is None:
            raise FileNotFoundError(f"A ParameterDataset has no card of its own: pass card= to push it to {repo_id!r}")
        with tempfile.TemporaryDirectory(prefix="pdiff-params-") as tmp:
            folder_or_dataset.save(tmp)
            return push_parameter_dataset(tmp, repo_id, card=card, **kwargs)
    folder = Path(folder_or_dataset)
    if not folder.is_dir():
        raise FileNotFoundError(f"No parameter dataset folder at {folder}")
    ParameterDataset.load(folder)  # a clear error for a folder that is not a complete parameter dataset
    if card is None:
        if not (folder / "README.md").is_file():
            raise FileNotFoundError(f"{folder} has no README.md dataset card; scripts/collect.py writes one")
        card = (folder / "README.md").read_text(encoding="utf-8")
    return push_folder_to_hub(folder, repo_id, "dataset", card=_with_arrow_config(card), **kwargs)


def _with_arrow_config(card: str) -> str:
    """The dataset card with a ``configs`` entry for the ``save_to_disk`` arrow shards in ``dataset/``."""
    parsed = read_card(card, "The dataset card")
    if parsed.data.get("configs") is None:
        parsed.data["configs"] = [{"config_name": "default",
                                   "data_files": [{"split": "train", "path": "dataset/data-*.arrow"}]}]
    return str(parsed)
