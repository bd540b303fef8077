"""Publishing a parameter dataset as a Hub dataset repo, loadable with ``ParameterDataset.load`` and ``datasets``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..data.parameters import ParameterDataset
from .commit import push_folder_to_hub, read_card

__all__ = ["push_parameter_dataset"]


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
