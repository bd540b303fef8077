"""Training checkpoints: written whole, rotated within one run, refused for another run or for pickled code; the
pipeline swapped in without a half-written state; a resumed EMA run ending with the weights of an uninterrupted one."""

import shutil

import pytest
import torch
from accelerate import Accelerator

from pdiff_hub import PDiffPipeline
from pdiff_hub.core.cli import UsageError
from pdiff_hub.data.parameters import ParameterDataset
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training.checkpoints import RunCheckpoints, check_checkpoint_files, list_checkpoints, save_pipeline
from pdiff_hub.training.trainer import PDiffTrainer

from ..components import tiny_pipeline
from .synthetic import digits_parameter_dataset

IDENTITY = {"recipe_sha256": "a", "param_dataset_sha256": "p", "seed": 0, "recipe": {"train": {"seed": 0}}}
OTHER = {"recipe_sha256": "b", "param_dataset_sha256": "p", "seed": 1, "recipe": {"train": {"seed": 1}}}


class RunsCode:
    """Unpickled with code allowed, it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def saved_checkpoints(folder, identity, steps, limit=2, overwrite=False):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    checkpoints = RunCheckpoints(folder, identity, limit)
    checkpoints.start(None, overwrite=overwrite)
    for step in steps:
        with torch.no_grad():
            model.weight.fill_(step)
        checkpoints.save(accelerator, step)
    return accelerator, model


def test_checkpoints_rotate_and_the_latest_is_found_by_step(tmp_path):
    folder = tmp_path / "checkpoints"
    assert RunCheckpoints(folder, IDENTITY, 2).start("latest") is None
    accelerator, model = saved_checkpoints(folder, IDENTITY, (9, 10, 11))  # 10 sorts before 9 as text
    assert [p.name for p in list_checkpoints(folder)] == ["checkpoint-10", "checkpoint-11"]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-11", "run.json"]
    assert RunCheckpoints(folder, IDENTITY, 2).start("latest").name == "checkpoint-11"
    with torch.no_grad():
        model.weight.zero_()
    accelerator.load_state(str(RunCheckpoints(folder, IDENTITY, 2).start(str(folder / "checkpoint-10"))))
    assert (model.weight == 10).all()
    with pytest.raises(UsageError, match="checkpoint-3 is not a folder"):
        RunCheckpoints(folder, IDENTITY, 2).start(str(folder / "checkpoint-3"))


def test_another_runs_checkpoints_are_refused_and_replaced_only_with_overwrite(tmp_path):
    folder = tmp_path / "checkpoints"
    saved_checkpoints(folder, OTHER, (30, 60))
    with pytest.raises(UsageError, match=r"belongs to another run \(train.seed was 1, is 0"):
        RunCheckpoints(folder, IDENTITY, 2).start("latest")
    with pytest.raises(UsageError, match="holds checkpoints of another run"):
        RunCheckpoints(folder, IDENTITY, 2).start(None)
    with pytest.raises(UsageError, match="holds checkpoints of this run"):
        RunCheckpoints(folder, OTHER, 2).start(None)
    # replaced with overwrite: kept until this run saved its own, and never rotated in its place
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))
    checkpoints = RunCheckpoints(folder, IDENTITY, 2)
    checkpoints.start(None, overwrite=True)
    assert [p.name for p in list_checkpoints(folder)] == ["checkpoint-30", "checkpoint-60"]
    checkpoints.save(accelerator, 3)
    assert [p.name for p in list_checkpoints(folder)] == ["checkpoint-3"]
    assert RunCheckpoints(folder, IDENTITY, 2).start("latest").name == "checkpoint-3"


def test_a_checkpoint_holding_a_pickle_is_refused_and_nothing_in_it_runs(tmp_path):
    folder = tmp_path / "checkpoints"
    saved_checkpoints(folder, IDENTITY, (5,))
    checkpoint = folder / "checkpoint-5"
    check_checkpoint_files(checkpoint)  # accelerate's own files pass

    marker = tmp_path / "ran"
    custom = checkpoint / "custom_checkpoint_0.pkl"
    torch.save({"decay": RunsCode(marker)}, custom)
    with pytest.raises(UsageError, match="custom_checkpoint_0.pkl, a pickle that loading would run code from"):
        RunCheckpoints(folder, IDENTITY, 2).start("latest")
    custom.unlink()

    rng = checkpoint / "random_states_0.pkl"
    torch.save({"random_state": RunsCode(marker)}, rng)
    with pytest.raises(UsageError, match="random_states_0.pkl, which is not a plain random state"):
        RunCheckpoints(folder, IDENTITY, 2).start("latest")
    assert not marker.exists()


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    return ParameterDataset.load(digits_parameter_dataset(tmp_path_factory.mktemp("params") / "params"))


def tiny_trainer(params, output_dir, **kwargs):
    values = load_recipe("digits-mlp").to_dict()
    values["train"].update(autoencoder_steps=4, diffusion_steps=6, autoencoder_batch_size=4, diffusion_batch_size=4,
                           use_ema=True)
    return PDiffTrainer(recipe_from_dict(values), params, output_dir, checkpointing_steps=3, report_to="none",
                        checkpoints_total_limit=5, **kwargs)


def test_a_run_resumed_with_ema_ends_with_the_weights_of_an_uninterrupted_one(params, tmp_path):
    straight = tiny_trainer(params, tmp_path / "straight").train().pipeline
    checkpoint = tmp_path / "straight" / "checkpoints" / "checkpoint-6"  # in the diffusion stage: EMA has moved
    assert not list(checkpoint.rglob("*custom_checkpoint*")) and (checkpoint / "denoiser_ema").is_dir()
    shutil.copytree(checkpoint, tmp_path / "resumed" / "checkpoints" / checkpoint.name)
    resumed = tiny_trainer(params, tmp_path / "resumed", resume_from_checkpoint="latest").train().pipeline
    for name in ("autoencoder", "denoiser"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key}"


def test_save_pipeline_replaces_the_pipeline_and_keeps_the_rest(tmp_path):
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    first, second = tiny_pipeline(latent_dim=16), tiny_pipeline(latent_dim=8)
    save_pipeline(first, tmp_path, {"metrics.json": "{}"})
    save_pipeline(second, tmp_path, {"metrics.json": '{"run": 2}', "README.md": "card"})
    loaded = PDiffPipeline.from_pretrained(tmp_path)
    assert loaded.autoencoder.config.latent_dim == 8
    assert (tmp_path / "metrics.json").read_text() == '{"run": 2}' and (tmp_path / "README.md").read_text() == "card"
    assert (tmp_path / "checkpoints" / "checkpoint-5").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_pipeline_save_leaves_no_temporary_folder(tmp_path, monkeypatch):
    def fail(self, folder, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PDiffPipeline, "save_pretrained", fail)
    with pytest.raises(OSError):
        save_pipeline(tiny_pipeline(), tmp_path, {})
    assert list(tmp_path.iterdir()) == []
