"""Training checkpoints: written whole, rotated, found by step; the pipeline swapped in without a half-written state."""

import pytest
import torch
from accelerate import Accelerator

from pdiff_hub import PDiffPipeline
from pdiff_hub.training.checkpoints import find_checkpoint, save_checkpoint, save_pipeline

from ..components import tiny_pipeline


def test_checkpoints_rotate_and_the_latest_is_found_by_step(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    checkpoints = tmp_path / "checkpoints"
    assert find_checkpoint(checkpoints, "latest") is None
    for step in (9, 10, 11):  # 10 sorts before 9 as text
        with torch.no_grad():
            model.weight.fill_(step)
        save_checkpoint(accelerator, checkpoints, step, limit=2)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-10", "checkpoint-11"]
    latest = find_checkpoint(checkpoints, "latest")
    assert latest.name == "checkpoint-11"
    with torch.no_grad():
        model.weight.zero_()
    accelerator.load_state(str(find_checkpoint(checkpoints, str(checkpoints / "checkpoint-10"))))
    assert (model.weight == 10).all()
    with pytest.raises(FileNotFoundError, match="No checkpoint folder"):
        find_checkpoint(checkpoints, str(checkpoints / "checkpoint-3"))


def test_save_pipeline_replaces_the_pipeline_and_keeps_the_rest(tmp_path):
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    first, second = tiny_pipeline(latent_dim=16), tiny_pipeline(latent_dim=8)
    save_pipeline(first, tmp_path, {"metrics.json": "{}"})
    save_pipeline(second, tmp_path, {"metrics.json": '{"run": 2}', "README.md": "card"})
    loaded = PDiffPipeline.from_pretrained(tmp_path)
    assert loaded.autoencoder.config.latent_dim == 8
    assert (tmp_path / "metrics.json").read_text() == '{"run": 2}' and (tmp_path / "README.md").read_text() == "card"
    assert (tmp_path / "checkpoints" / "checkpoint-5").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
