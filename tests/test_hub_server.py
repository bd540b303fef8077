"""The loopback Hub (tests/hub_server.py) works with the real clients, inside one pytest process.

The clients are imported here at collection time, i.e. before the fixtures set HF_ENDPOINT / HF_HOME: passing tests
also prove that the import-time constants are re-derived.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import datasets
import huggingface_hub
import pytest
import timm
import torch
from huggingface_hub import HfFileSystem, constants, hf_hub_download, model_info, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from timm.models import save_for_hf

from .hub_server import hub_env


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def blob_repo(loopback_hub, tmp_path_factory):
    """A model repo with text, a 3 MB random binary and nested subfolders."""
    folder = tmp_path_factory.mktemp("blob_repo")
    (folder / "config.json").write_text(json.dumps({"hello": "world"}))
    (folder / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "notes.txt").write_text("line\r\nwith CRLF and trailing spaces   \n")
    (folder / "sub" / "deeper" / "tiny.bin").write_bytes(bytes(range(256)) * 3)
    sha = loopback_hub.add_repo("test-org/blobs", folder)
    return "test-org/blobs", folder, sha


def test_env_points_clients_at_loopback(loopback_hub, hf_home):
    assert constants.ENDPOINT == loopback_hub.endpoint
    assert datasets.config.HF_ENDPOINT == loopback_hub.endpoint
    assert huggingface_hub.hf_api.api.endpoint == loopback_hub.endpoint
    assert Path(constants.HF_HUB_CACHE) == hf_home / "hub"
    assert Path(datasets.config.HF_DATASETS_CACHE) == hf_home / "datasets"
    assert not constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE
    assert constants.HF_HUB_DISABLE_TELEMETRY


def test_hub_env_restores_everything(tmp_path):
    before = (constants.ENDPOINT, constants.HF_HUB_CACHE, datasets.config.HF_ENDPOINT, os.environ.get("HF_ENDPOINT"))
    with hub_env("http://127.0.0.1:1/", tmp_path / "home"):
        assert constants.ENDPOINT == "http://127.0.0.1:1"
        assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith("http://127.0.0.1:1/")
        assert datasets.config.HUB_DATASETS_URL.startswith("http://127.0.0.1:1/")
        assert huggingface_hub.hf_api.api.endpoint == "http://127.0.0.1:1"
        assert constants.HF_HUB_CACHE == str(tmp_path / "home" / "hub")
        assert os.environ["HF_HOME"] == str(tmp_path / "home")
    after = (constants.ENDPOINT, constants.HF_HUB_CACHE, datasets.config.HF_ENDPOINT, os.environ.get("HF_ENDPOINT"))
    assert after == before


def test_timm_hf_hub_roundtrip(loopback_hub, tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10, pretrained=False).eval()
    export = tmp_path / "export"
    save_for_hf(model, export, safe_serialization=True)
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors"]
    sha = loopback_hub.add_repo("org/test-model", export)

    loaded = timm.create_model("hf-hub:org/test-model", pretrained=True).eval()
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.num_classes == 10

    local = hf_hub_download("org/test-model", "model.safetensors", revision="main")
    assert Path(local).read_bytes() == (export / "model.safetensors").read_bytes()
    assert sha in local  # snapshots/<commit sha>/...
    assert model_info("org/test-model").sha == sha  # no revision: served as revision/main


def test_snapshot_download_byte_identical(blob_repo, hf_home):
    repo_id, folder, sha = blob_repo
    local = Path(snapshot_download(repo_id, revision="main"))
    assert local.name == sha and hf_home in local.parents
    assert _files(local) == _files(folder)


def test_partial_reads_and_ranges(loopback_hub, blob_repo):
    repo_id, folder, _ = blob_repo
    data = (folder / "weights.bin").read_bytes()
    with HfFileSystem().open(f"{repo_id}/weights.bin", "rb", revision="main", block_size=4096) as f:
        f.seek(1_000_000)
        assert f.read(5000) == data[1_000_000:1_005_000]
    request = urllib.request.Request(
        f"{loopback_hub.endpoint}/{repo_id}/resolve/main/weights.bin", headers={"Range": "bytes=-10"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 206 and resp.read() == data[-10:]


def test_load_dataset_roundtrip(loopback_hub, tmp_path):
    original = datasets.Dataset.from_dict(
        {"idx": list(range(50)), "text": [f"row {i}" for i in range(50)], "x": [i / 7 for i in range(50)]}
    )
    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    original.to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# Tiny test dataset\n")
    loopback_hub.add_repo("org/test-dataset", folder, repo_type="dataset")

    loaded = datasets.load_dataset("org/test-dataset", revision="main", split="train")
    assert loaded.features == original.features
    assert loaded.to_dict() == original.to_dict()


def test_missing_things_raise_the_clients_errors(blob_repo):
    repo_id, _, _ = blob_repo
    with pytest.raises(RemoteEntryNotFoundError) as excinfo:
        hf_hub_download(repo_id, "does-not-exist.json", revision="main")
    assert isinstance(excinfo.value, EntryNotFoundError)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-org/no-such-repo", "config.json", revision="main")
