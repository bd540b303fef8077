"""Publishing on the Hugging Face Hub: parameter datasets, pipelines and generated timm models.

Fetching lives with the objects (``PDiffPipeline.from_pretrained``, ``ParameterDataset.load``, timm's
``hf-hub:`` names); this module writes and uploads. Every upload is one commit of a local folder, made with
``HfApi.create_repo(exist_ok=True)`` and ``HfApi.create_commit``, so exactly the listed files land together (no
partial, multi-commit upload) and the README can be replaced in that commit without touching the folder.
Nothing is uploaded without a ``README.md`` card, and never training state, logs, hidden or temporary files or
pickles (see :data:`IGNORE_PATTERNS`).

Example:
    ```py
    >>> from pdiff_hub.hub.upload import push_folder_to_hub, push_parameter_dataset
    >>> push_parameter_dataset("runs/fmnist/params", "org/pdiff-fashion-mnist-resnet18-params")
    >>> push_folder_to_hub("runs/fmnist/pipeline", "org/pdiff-fashion-mnist-resnet18", "model")
    ```
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import timm
import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, RepoCard, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import load_file
from timm.models import save_for_hf
from torch import nn

from .. import __version__
from ..core.io import atomic_output_dir
from ..data.images import DEFAULT_MEAN, DEFAULT_STD
from ..data.parameters import ParameterDataset
from ..models.target import TargetModel
from .cards import render_card

if TYPE_CHECKING:
    from ..pipeline import PDiffPipeline

__all__ = [
    "IGNORE_PATTERNS",
    "GenerationRecord",
    "HubUploadError",
    "export_timm_model",
    "files_to_push",
    "push_folder_to_hub",
    "push_parameter_dataset",
    "push_pipeline_to_hub",
]


def _anywhere(*folders: str) -> list[str]:
    # ``filter_repo_objects`` matches with fnmatch, whose "*" also matches "/": "x/*" is everything below x.
    return [p for folder in folders for p in (f"{folder}/*", f"*/{folder}/*")]


#: Paths (fnmatch patterns on the path relative to the folder) that are never uploaded: training state and logs,
#: hidden files and folders (``.git``, the ``.name.tmp-*`` folders of atomic writes), and pickled files, since
#: what this package publishes is safetensors only.
IGNORE_PATTERNS: tuple[str, ...] = (
    *_anywhere("checkpoints", "checkpoint-*", "checkpoint_*", "logs", "__pycache__"),
    ".*", "*/.*", "*.tmp", "*events.out.tfevents*",
    "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt",
)
# Repos of the datasets the built-in offline builders read (pdiff_hub.data.images), for the cards' `datasets` metadata.
_HUB_DATASET_IDS = {"fashion_mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist"}
_HTTP_HINTS = {
    401: "the Hub did not accept the credentials: log in with `hf auth login` or set HF_TOKEN",
    403: "the token has no write access there: use a token with write permission for {namespace}",
    404: "the namespace {namespace!r} does not exist or is not visible to this token",
    409: "the repo changed during the upload or the name is taken by another repo type",
    413: "a file is too large for a single upload",
}


class HubUploadError(RuntimeError):
    """An upload to the Hub failed; the message says which folder, which repo and why. The folder is unchanged."""


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload with pdiff_hub",
    revision: str | None = None,
    *,
    card: str | None = None,
    create_pr: bool = False,
    ignore_patterns: Sequence[str] = (),
) -> str:
    """Upload a local folder to a Hub repo in one commit, creating the repo if needed.

    The folder must hold a ``README.md`` card (or ``card`` must be given). Files matching :data:`IGNORE_PATTERNS`
    or ``ignore_patterns`` are left out. The folder is only read. The token is passed to the Hub client and nowhere
    else; as a safeguard, the upload is refused if the token (given or stored) appears in a file to be uploaded.

    Args:
        folder: the folder to upload; its layout becomes the repo's.
        repo_id: ``"org/name"``.
        repo_type: ``"model"`` or ``"dataset"``.
        token: a Hub token with write access; default: the stored login or ``HF_TOKEN``.
        private: create the repo private (an existing repo keeps its visibility).
        commit_message: the commit message.
        revision: the branch to commit to, created from the default branch if missing; default: the default branch.
        card: the README.md to upload instead of the folder's own (the folder keeps its file).
        create_pr: open a pull request instead of committing to the branch.
        ignore_patterns: more fnmatch patterns of relative paths to leave out.

    Returns:
        The URL of the commit (of the pull request with ``create_pr=True``).

    Raises:
        FileNotFoundError: the folder is missing or has no README.md card (and ``card`` is not given).
        ValueError: a bad ``repo_type``, an unparsable card header, or the token found in a file.
        HubUploadError: the Hub refused or could not be reached; the message says why.

    Example:
        ```py
        >>> push_folder_to_hub("runs/fmnist/pipeline", "org/pdiff-fashion-mnist-resnet18", "model")
        'https://huggingface.co/org/pdiff-fashion-mnist-resnet18/commit/...'
        ```
    """
    folder = Path(folder)
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"repo_type must be 'model' or 'dataset', got {repo_type!r}")
    files = files_to_push(folder, ignore_patterns)
    if card is None:
        if "README.md" not in files:
            raise FileNotFoundError(f"{folder} has no README.md card; write one (pdiff_hub.cards.render_card) "
                                    f"before pushing to {repo_id!r}")
        card = (folder / "README.md").read_text(encoding="utf-8")
    _check_card(card, f"The card for {repo_id!r}")
    _refuse_token_leak(folder, files, card, token)

    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path))
                  for path in files if path != "README.md"]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    api = HfApi(token=token, library_name="pdiff_hub", library_version=__version__)
    try:
        repo_id = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True).repo_id
        if revision is not None and not create_pr:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type,
                                 revision=revision, create_pr=create_pr)
    except Exception as err:  # HTTP, connection, offline mode, argument errors: all reported with the repo
        reason = _upload_failure_reason(err, repo_id, api.endpoint)
        message = (f"Pushing {folder} to the {repo_type} repo {repo_id!r} failed: {reason}. The local folder is "
                   f"unchanged; fix the cause and push again.")
        raise HubUploadError(_redact(message, token)) from err
    return (info.pr_url or info.commit_url) if create_pr else info.commit_url


def files_to_push(folder: str | os.PathLike, ignore_patterns: Sequence[str] = ()) -> list[str]:
    """The sorted relative paths :func:`push_folder_to_hub` would upload from ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder to push at {folder}")
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    files = list(filter_repo_objects(paths, ignore_patterns=[*IGNORE_PATTERNS, *ignore_patterns]))
    if not files:
        raise FileNotFoundError(f"{folder} has no files to push")
    return files


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
    """Save ``pipeline`` (safetensors) with its card and recipe and upload it in one commit.

    The card is ``model_card`` if given, else the README.md of the folder the pipeline was loaded from (the training
    card), else a short generated one. The other top-level files of that folder (``args.yaml``, metrics, figures)
    go along, since ``scripts/generate.py`` reads the data recipe from ``args.yaml``; its subfolders do not (the
    components are saved afresh; checkpoints and logs stay local).

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
    """
    source = Path(pipeline.name_or_path) if pipeline.name_or_path else None
    source = source if source is not None and source.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="pdiff-pipeline-") as tmp:
        staging = Path(tmp)
        if source is not None:
            for path in files_to_push(source):
                if "/" not in path:
                    shutil.copy2(source / path, staging / path)
        pipeline.save_pretrained(staging, safe_serialization=True)
        if model_card is None and not (staging / "README.md").is_file():
            model_card = _minimal_pipeline_card(pipeline, repo_id)
        return push_folder_to_hub(staging, repo_id, "model", token, private, commit_message, revision,
                                  card=model_card, create_pr=create_pr)


@dataclass
class GenerationRecord:
    """Where a generated model comes from and how well it does: its card, and a row of ``generation.json``.

    Args:
        pipeline: Hub id or local folder of the pipeline that generated it.
        revision: the pipeline's revision, if one was asked for.
        seed: seed of the ``torch.Generator`` of the call.
        num_models: models sampled in that one batch (a row depends on the batch size).
        index: the model's row in the batch.
        num_inference_steps: denoising steps.
        scheduler: the diffusers scheduler class used (``"DDIMScheduler"``, ``"DDPMScheduler"``).
        dataset: the dataset the accuracies were measured on (built-in name, folder or Hub id).
        val_accuracy: top-1 accuracy in percent on the validation split (used for selection).
        test_accuracy: top-1 accuracy in percent on the test split.
        val_size: images in the validation split.
        test_size: images in the test split.
        rank: rank by validation accuracy among the ``num_models`` (1 = best).
        repo_id: the Hub repo it is published to, if any (used in the card's loading snippet).
    """

    pipeline: str
    revision: str | None
    seed: int
    num_models: int
    index: int
    num_inference_steps: int
    scheduler: str
    dataset: str
    val_accuracy: float
    test_accuracy: float
    val_size: int
    test_size: int
    rank: int
    repo_id: str | None = None


def export_timm_model(
    target: TargetModel,
    vector: torch.Tensor,
    folder: str | os.PathLike,
    *,
    card_values: GenerationRecord,
    label_names: Sequence[str] | None = None,
    image_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a generated model as a timm Hub repo folder: ``config.json``, ``model.safetensors``, ``README.md``.

    The weights and config are written by ``timm.models.save_for_hf`` with the preprocessing ``pdiff_hub.data.images``
    uses (``in_chans`` x ``image_size`` x ``image_size``, bilinear, mean/std 0.5), so for a timm architecture
    ``timm.create_model("hf-hub:org/name", pretrained=True)`` rebuilds the same network without pdiff_hub. The
    architecture is rebuilt from ``config.json`` and the saved weights are checked to be the generated model's, bit
    for bit. The folder appears complete or not at all.

    Args:
        target: the pipeline's target (architecture, frozen weights, layout).
        vector: one generated parameter vector, (D,).
        folder: the output folder.
        card_values: provenance and measured accuracy, for the card.
        label_names: class names, stored in ``config.json`` (timm's ``label_names``).
        image_size: the input resolution the accuracy was measured at; default: the target's ``image_size``.
        overwrite: replace an existing non-empty folder.

    Returns:
        The folder.

    Example:
        ```py
        >>> out = pipe(num_models=1, generator=torch.Generator().manual_seed(0))
        >>> export_timm_model(pipe.target, out.parameters[0], "sample-0", card_values=record)
        ```
    """
    model = target.build_model(vector)
    model_name, model_kwargs = target.config.model_name, dict(target.config.model_kwargs or {})
    in_chans, image_size = int(model_kwargs.get("in_chans", 3)), int(image_size or target.config.image_size)
    stock_timm = timm.models.model_entrypoint(model_name).__module__.startswith("timm.")
    source_cfg = getattr(model, "pretrained_cfg", None) or {}
    # Only what describes the architecture survives from the source cfg: its tag, license, test sizes and pool size
    # belong to the original pretrained weights, not to these.
    model.pretrained_cfg = {
        "architecture": model_name,
        "num_classes": model.num_classes,
        "input_size": (in_chans, image_size, image_size),
        **{k: source_cfg[k] for k in ("first_conv", "classifier", "fixed_input_size") if k in source_cfg},
    }
    if not hasattr(model, "num_features"):  # save_for_hf records it; the small pdiff_hub networks lack it
        model.num_features = next(m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)).in_features
    data_config = {"input_size": (in_chans, image_size, image_size), "interpolation": "bilinear", "crop_pct": 1.0,
                   "crop_mode": "center", "mean": (DEFAULT_MEAN,) * in_chans, "std": (DEFAULT_STD,) * in_chans}
    model_config = {"label_names": list(label_names)} if label_names else None
    if label_names and len(label_names) != model.num_classes:
        raise ValueError(f"{len(label_names)} label names for a model with {model.num_classes} classes")

    folder = Path(folder)
    with atomic_output_dir(folder, overwrite=overwrite) as tmp:
        save_for_hf(model, tmp, model_config=model_config, safe_serialization=True, data_config=data_config)
        _check_export(model, tmp)
        card = _generated_model_card(target, card_values, stock_timm, folder, image_size)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return folder


def _check_export(model: nn.Module, folder: Path) -> None:
    """Rebuild the architecture from ``config.json`` alone and check the saved weights are the model's, bit for bit."""
    config = json.loads((folder / "config.json").read_text())
    rebuilt = timm.create_model(config["architecture"], pretrained=False, **config.get("model_args", {}))
    saved = load_file(folder / "model.safetensors")
    rebuilt.load_state_dict(saved, strict=True)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(saved[k], v)]
    if changed:
        raise RuntimeError(f"The export in {folder} does not hold the generated model's values for {changed}")


def _generated_model_card(
    target: TargetModel, record: GenerationRecord, stock_timm: bool, folder: Path, image_size: int
) -> str:
    layout, config = target.layout, target.config
    model_kwargs = dict(config.model_kwargs or {})
    in_chans = int(model_kwargs.get("in_chans", 3))
    dataset_id = _hub_dataset_id(record.dataset)
    name = record.repo_id.split("/")[-1] if record.repo_id else folder.name
    metadata = {
        "library_name": "timm",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "timm", "p-diff", "generated-weights"],
        "datasets": [dataset_id] if dataset_id else None,
        "metrics": ["accuracy"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "image-classification", "name": "Image Classification"},
                "dataset": {"name": record.dataset, "type": dataset_id or record.dataset, "split": "test"},
                "metrics": [{"type": "accuracy", "value": round(record.test_accuracy, 2),
                             "name": "Top-1 accuracy (%)"}],
            }],
        }],
    }
    return render_card(
        "generated_model", metadata,
        title=f"{config.model_name} generated by p-diff ({name})", model_name=config.model_name,
        model_kwargs=model_kwargs, stock_timm=stock_timm, repo_id=record.repo_id, num_params=layout.num_params,
        num_tensors=len(layout.names), param_patterns=", ".join(config.param_patterns),
        generated_all=layout.num_params == sum(p.numel() for p in target.model.parameters()),
        image_size=image_size, in_chans=in_chans, mean=DEFAULT_MEAN, std=DEFAULT_STD, record=record,
        pdiff_hub_version=__version__, timm_version=timm.__version__,
    )


def _hub_dataset_id(dataset: str) -> str | None:
    key = dataset.strip().lower().replace("-", "_")
    if key in _HUB_DATASET_IDS:
        return _HUB_DATASET_IDS[key]
    looks_local = dataset.startswith((".", "/", "~")) or Path(dataset).exists()
    return dataset if dataset.count("/") == 1 and not looks_local else None


def _with_arrow_config(card: str) -> str:
    """The dataset card with a ``configs`` entry for the ``save_to_disk`` arrow shards in ``dataset/``."""
    parsed = _check_card(card, "The dataset card")
    if parsed.data.get("configs") is None:
        parsed.data["configs"] = [{"config_name": "default",
                                   "data_files": [{"split": "train", "path": "dataset/data-*.arrow"}]}]
    return str(parsed)


def _minimal_pipeline_card(pipeline: PDiffPipeline, repo_id: str) -> str:
    target = pipeline.target.config
    metadata = {"library_name": "pdiff_hub",
                "tags": ["p-diff", "neural-network-diffusion", "parameter-generation", target.model_name]}
    return (f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n\n"
            f"# p-diff pipeline for `{target.model_name}`\n\nGenerates the {pipeline.target.layout.num_params} "
            f"parameters `{', '.join(target.param_patterns)}` of a `{target.model_name}` with a latent diffusion "
            f"model ([p-diff](https://arxiv.org/abs/2402.13144)), made with `pdiff_hub` {__version__}.\n\n"
            "```python\nimport torch\nfrom pdiff_hub import PDiffPipeline\n\n"
            f'pipe = PDiffPipeline.from_pretrained("{repo_id}")\n'
            "out = pipe(num_models=10, generator=torch.Generator().manual_seed(0))\n```\n")


def _check_card(card: str, what: str) -> RepoCard:
    try:
        return RepoCard(card)
    except Exception as err:  # yaml and huggingface_hub raise several error types for a broken header
        raise ValueError(f"{what} has an unreadable metadata header: {err}") from err


def _refuse_token_leak(folder: Path, files: list[str], card: str, token: str | None) -> None:
    secrets = {t for t in (token, get_token()) if t}
    if not secrets:
        return
    binary = (".safetensors", ".arrow", ".parquet", ".png", ".jpg")
    for path in files:
        data = card.encode("utf-8") if path == "README.md" else (
            b"" if path.endswith(binary) else (folder / path).read_bytes())
        if any(secret.encode() in data for secret in secrets):
            raise ValueError(f"{folder / path} contains your Hugging Face token; remove it before pushing "
                             "(nothing was uploaded)")


def _upload_failure_reason(err: Exception, repo_id: str, endpoint: str) -> str:
    namespace = repo_id.split("/")[0]
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to upload"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        hint = _HTTP_HINTS.get(status, "the Hub had a server error; retry later" if status >= 500 else "")
        detail = err.server_message or str(err).splitlines()[0]
        return f"HTTP {status} ({detail})" + (f"; {hint.format(namespace=namespace)}" if hint else "")
    if type(err).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3"):
        return f"the Hub at {endpoint} could not be reached ({type(err).__name__}: {err})"
    return f"{type(err).__name__}: {err}"


def _redact(text: str, token: str | None) -> str:
    for secret in {t for t in (token, get_token()) if t}:
        text = text.replace(secret, "hf_***")
    return text
