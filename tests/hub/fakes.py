"""The Hub's write API, intercepted: every commit's files are recorded so that a test can check them one by one.

Uploads cannot reach a server in tests, so :class:`FakeHub` replaces ``HfApi.create_repo``/``create_branch``/
``create_commit``; round-trip tests then serve exactly those files with the loopback Hub (tests/fixtures/) and load
them back with the real clients.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import Response as HubResponse
from huggingface_hub.utils import hf_raise_for_status

TOKEN = "hf_NeverUploadThisTestToken0123456789"
# The card and data recipe of the folders the scripts leave (tests/hub/conftest.py).
PIPELINE_CARD = "---\nlibrary_name: pdiff_hub\ntags:\n- p-diff\n---\n\n# Tiny p-diff pipeline\n\nWritten by train.py.\n"
DATA = {"dataset": "digits", "image_size": 32, "val_size": 200, "split_seed": 0}


@dataclass
class Commit:
    repo_id: str
    repo_type: str | None
    revision: str | None
    message: str
    token: str | None
    files: dict[str, bytes]


class FakeHub:
    """Stands in for the Hub's write API: records repos, branches and the files of each commit."""

    def __init__(self) -> None:
        self.repos: list[dict] = []
        self.branches: list[tuple[str, str]] = []
        self.commits: list[Commit] = []
        self.error: Exception | None = None
        self.fail_on = "create_commit"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        hub = self

        def create_repo(api, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
            hub._maybe_fail("create_repo")
            hub.repos.append({"repo_id": repo_id, "repo_type": repo_type, "private": private, "exist_ok": exist_ok})
            return SimpleNamespace(repo_id=repo_id)

        def create_branch(api, repo_id, *, branch, repo_type=None, exist_ok=False, **kwargs):
            assert exist_ok
            hub.branches.append((repo_id, branch))

        def create_commit(api, repo_id, operations, *, commit_message, repo_type=None, revision=None, **kwargs):
            files = {}
            for op in operations:
                with op.as_file() as f:
                    files[op.path_in_repo] = f.read()
            hub._maybe_fail("create_commit")
            hub.commits.append(Commit(repo_id, repo_type, revision, commit_message, api.token, files))
            return SimpleNamespace(commit_url=f"https://hub.test/{repo_id}/commit/{len(hub.commits)}", pr_url=None)

        def upload_folder(*args, **kwargs):
            raise AssertionError("pushes must go through one create_commit")

        for name, fn in [("create_repo", create_repo), ("create_branch", create_branch),
                         ("create_commit", create_commit), ("upload_folder", upload_folder)]:
            monkeypatch.setattr(HfApi, name, fn)
        return self

    def _maybe_fail(self, step: str) -> None:
        if self.error is not None and step == self.fail_on:
            raise self.error


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def materialize(commit: Commit, folder: Path) -> Path:
    """Write a recorded commit's files into ``folder``, to be served by the loopback Hub."""
    for path, data in commit.files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def add_clutter(folder: Path) -> None:
    """What a run leaves beside its results and must never be uploaded."""
    (folder / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_0" / "optimizer.bin").write_bytes(b"pickle")
    (folder / "logs").mkdir()
    (folder / "logs" / "events.out.tfevents.1.host").write_bytes(b"tb")
    (folder / ".run.tmp-abc").mkdir()
    (folder / ".run.tmp-abc" / "half.safetensors").write_bytes(b"partial")
    (folder / "stray.pt").write_bytes(b"pickle")


def http_error(status: int, message: str) -> Exception:
    """The error huggingface_hub raises for an HTTP ``status`` answer with the Hub's ``X-Error-Message``."""
    httpx = sys.modules[HubResponse.__module__.split(".")[0]]
    response = HubResponse(status, request=httpx.Request("POST", "https://hub.test/api/commit"),
                           headers={"X-Error-Message": message})
    try:
        hf_raise_for_status(response)
    except Exception as err:
        return err
    raise AssertionError("no error raised")
