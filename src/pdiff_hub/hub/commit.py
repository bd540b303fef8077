"""A local folder -> one Hub commit: which files go, the card, the token, and errors that say why.

Every upload is one commit, made with ``HfApi.create_repo(exist_ok=True)`` and ``HfApi.create_commit``, so exactly
the listed files land together (no partial, multi-commit upload) and the README can be replaced in that commit
without touching the folder. Nothing is uploaded without a ``README.md`` card, and never training state, logs,
hidden or temporary files or pickles (see :data:`IGNORE_PATTERNS`).

Example:
    ```py
    >>> from pdiff_hub.hub import push_folder_to_hub
    >>> push_folder_to_hub("runs/fmnist/pipeline", "org/pdiff-fashion-mnist-resnet18", "model")
    ```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, RepoCard, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects

from .. import __version__

__all__ = ["IGNORE_PATTERNS", "HubUploadError", "files_to_push", "push_folder_to_hub", "read_card"]


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
            raise FileNotFoundError(f"{folder} has no README.md card; write one (pdiff_hub.hub.render_card) "
                                    f"before pushing to {repo_id!r}")
        card = (folder / "README.md").read_text(encoding="utf-8")
    read_card(card, f"The card for {repo_id!r}")
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


def read_card(card: str, what: str) -> RepoCard:
    """Parse a card, raising ``ValueError`` that names ``what`` if its metadata header is unreadable."""
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
