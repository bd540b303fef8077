"""A folder -> one Hub commit: what is left out, the card, the token, and failures that say why."""

from __future__ import annotations

import sys

import pytest
from huggingface_hub.errors import Response as HubResponse

from pdiff_hub.hub import HubUploadError, files_to_push, push_folder_to_hub

from .fakes import TOKEN, add_clutter, http_error, snapshot

CARD = "---\ntags:\n- p-diff\n---\n\n# Card\n"


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    (folder / "sub" / "model.safetensors").write_bytes(b"weights")
    add_clutter(folder)
    return folder


def test_one_commit_of_the_folder_without_state_logs_hidden_files_or_pickles(run_folder, fake_hub):
    before = snapshot(run_folder)
    assert files_to_push(run_folder) == ["README.md", "sub/model.safetensors"]
    url = push_folder_to_hub(run_folder, "hub-test/run", token=TOKEN, revision="dev", commit_message="m")
    (commit,) = fake_hub.commits
    assert url == "https://hub.test/hub-test/run/commit/1" and fake_hub.branches == [("hub-test/run", "dev")]
    assert (commit.repo_type, commit.revision, commit.message, commit.token) == ("model", "dev", "m", TOKEN)
    assert commit.files == {"README.md": CARD.encode(), "sub/model.safetensors": b"weights"}
    assert snapshot(run_folder) == before


def test_the_card_can_be_replaced_in_the_commit_only(run_folder, fake_hub):
    before = snapshot(run_folder)
    push_folder_to_hub(run_folder, "hub-test/run", card="---\ntags: [other]\n---\n")
    assert fake_hub.commits[-1].files["README.md"] == b"---\ntags: [other]\n---\n"
    assert snapshot(run_folder) == before


def test_no_card_or_a_broken_card_is_refused_before_the_hub(run_folder, fake_hub):
    (run_folder / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="no README.md"):
        push_folder_to_hub(run_folder, "hub-test/no-card")
    with pytest.raises(ValueError, match="unreadable metadata header"):
        push_folder_to_hub(run_folder, "hub-test/bad-card", card="---\ntags: [unclosed\n---\n")
    with pytest.raises(ValueError, match="repo_type"):
        push_folder_to_hub(run_folder, "hub-test/space", "space", card=CARD)
    assert not fake_hub.repos


def test_token_in_a_file_is_never_uploaded(tmp_path, fake_hub):
    folder = tmp_path / "leaky"
    folder.mkdir()
    (folder / "README.md").write_text(CARD)
    (folder / "args.yaml").write_text(f"hub_token: {TOKEN}\n")
    with pytest.raises(ValueError, match="args.yaml contains your Hugging Face token") as info:
        push_folder_to_hub(folder, "hub-test/leaky", "model", token=TOKEN)
    assert TOKEN not in str(info.value) and not fake_hub.repos


@pytest.mark.parametrize("step, error, reason", [
    ("create_commit", lambda: http_error(403, 'You don\'t have the rights to create a model under "hub-test"'),
     "HTTP 403 .*rights.*write access"),
    ("create_repo", lambda: sys.modules[HubResponse.__module__.split(".")[0]].ConnectError("Connection refused"),
     "the Hub at .* could not be reached"),
])
def test_failed_upload_says_why_and_leaves_the_folder(run_folder, fake_hub, step, error, reason):
    before = snapshot(run_folder)
    fake_hub.fail_on, fake_hub.error = step, error()
    with pytest.raises(HubUploadError, match=f"the dataset repo 'hub-test/fail' failed: {reason}") as info:
        push_folder_to_hub(run_folder, "hub-test/fail", "dataset", token=TOKEN)
    assert str(run_folder) in str(info.value) and "unchanged" in str(info.value) and TOKEN not in str(info.value)
    assert snapshot(run_folder) == before and not fake_hub.commits
