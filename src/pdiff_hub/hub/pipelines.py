"""Publishing a p-diff pipeline with its training card and everything its training run left beside it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..data.parameters import ParameterDataset
from ..pipeline import PDiffPipeline
from ..pipeline.pipeline_pdiff import is_accuracy_info
from ..recipes.config import Recipe
from ..training.conditions import condition_info
from .cards import render_card
from .commit import files_to_push, push_folder_to_hub

__all__ = ["pipeline_card", "push_pipeline_to_hub"]


def pipeline_card(recipe: Recipe, params: ParameterDataset, metrics: dict, command: str, *, param_dataset: str,
                  repo_id: str) -> str:
    """The model card of a trained pipeline (``scripts/train.py``'s README.md).

    Args:
        recipe: the recipe the pipeline was trained with.
        params: the parameter dataset it was trained on.
        metrics: the training run's metrics (losses, time, reconstruction accuracy when measured).
        command: the command line that trained it.
        param_dataset: the parameter dataset's folder or Hub id, as given.
        repo_id: the Hub repo id (or the folder) the card's usage example loads.

    Returns:
        The card's text, Hub metadata header included. A task family's card says how to give a task; an
        accuracy-prompted pipeline's (``train.accuracy_prompt``) what its prompt means and the range of the
        checkpoints' accuracies.
    """
    info = condition_info(recipe, params)
    accuracy = info if is_accuracy_info(info) else None
    metadata = {
        "library_name": "pdiff_hub",
        "tags": ["p-diff", "neural-network-diffusion", "parameter-generation", recipe.target.model_name,
                 *(["accuracy-prompted"] if accuracy else [])],
        "datasets": [recipe.data.dataset],
    }
    return render_card(
        "pipeline", metadata, name=recipe.name, model_name=recipe.target.model_name, library=recipe.target.library,
        adapter=recipe.lora.peft_arguments(),
        model_kwargs=recipe.target.model_kwargs, param_patterns=recipe.target.param_patterns,
        num_params=params.target.layout.num_params, dataset=recipe.data.dataset, param_dataset=param_dataset,
        num_checkpoints=len(params.dataset), autoencoder=recipe.autoencoder.__dict__, denoiser=recipe.denoiser.__dict__,
        train=recipe.train.__dict__, metrics=metrics, command=command, repo_id=repo_id,
        tasks=params.task_info, example_code=params.task_split.heldout[0] if params.is_task_family
        and params.task_split.heldout else None, accuracy=accuracy,
    )


def push_pipeline_to_hub(
    pipeline: PDiffPipeline,
    repo_id: str,
    *,
    model_card: str | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload p-diff pipeline with pdiff_hub",
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Save ``pipeline`` (safetensors) with its card, recipe and results and upload it in one commit.

    The card is ``model_card`` if given, else the README.md of the folder the pipeline was loaded from (the training
    card ``scripts/train.py`` writes). The other top-level files of that folder (``args.yaml``, ``metrics.json``,
    figures) go along; its subfolders do not (the components are saved afresh; checkpoints and logs stay local).
    The upload goes through :func:`~pdiff_hub.hub.push_folder_to_hub`: a token found in a file is refused and a
    failure says why. ``PDiffPipeline.push_to_hub`` is the lighter way: components, card and recipe only, with a
    generated card when there is none.

    Args:
        pipeline: the pipeline to publish.
        repo_id: ``"org/name"`` of the model repo.
        model_card: the README.md text to publish.
        token: a Hub token with write access; default: the stored login or ``HF_TOKEN``.
        private: create the repo private.
        commit_message: the commit message.
        revision: the branch to commit to (created if missing).
        create_pr: open a pull request instead.

    Returns:
        The URL of the commit.

    Raises:
        FileNotFoundError: no ``model_card`` and no README.md beside the pipeline.
        HubUploadError: the upload failed; the message says why.

    Example:
        ```py
        >>> pipe = PDiffPipeline.from_pretrained("runs/fmnist/pipeline")
        >>> push_pipeline_to_hub(pipe, "org/pdiff-fashion-mnist-resnet18")
        ```
    """
    source = Path(pipeline.name_or_path) if pipeline.name_or_path else None
    source = source if source is not None and source.is_dir() else None
    if model_card is None and (source is None or not (source / "README.md").is_file()):
        raise FileNotFoundError(f"The pipeline has no README.md card beside it ({source}): pass model_card= to push "
                                f"it to {repo_id!r}, or use PDiffPipeline.push_to_hub for a generated card")
    with tempfile.TemporaryDirectory(prefix="pdiff-pipeline-") as tmp:
        staging = Path(tmp)
        for path in files_to_push(source) if source is not None else []:
            if "/" not in path:
                shutil.copy2(source / path, staging / path)
        pipeline.save_pretrained(staging, safe_serialization=True)
        return push_folder_to_hub(staging, repo_id, "model", token, private, commit_message, revision,
                                  card=model_card, create_pr=create_pr)
