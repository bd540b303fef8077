"""scripts/train.py end to end on a real (small) parameter dataset, the digits MLP, each run in a fresh process."""

import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from pdiff_hub import PDiffPipeline

from ..scripts import popen_script, run_script

pytestmark = pytest.mark.slow  # every case starts the script in a subprocess

FEW_STEPS = ["--train.autoencoder_steps", "12", "--train.diffusion_steps", "12", "--train.autoencoder_batch_size", "8",
             "--train.diffusion_batch_size", "8"]


@pytest.fixture(scope="session")
def digits_params(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "params"
    run_script("collect", "--recipe", "digits-mlp", "--collect.base_epochs", "3", "--collect.num_checkpoints", "20",
               "--output_dir", str(out))
    return out


def weights(folder):
    return {f"{c}/{k}": v for c in ("autoencoder", "denoiser") for k, v in
            load_file(next((folder / c).glob("*.safetensors"))).items()}


def test_train_under_accelerate_launch(digits_params, tmp_path):
    out = tmp_path / "pipe"
    run_script("train", "--recipe", "digits-mlp", "--param_dataset", str(digits_params), "--output_dir", str(out),
               *FEW_STEPS, "--train.use_ema", "true", "--checkpointing_steps", "5", "--checkpoints_total_limit", "2",
               accelerate=True)
    assert {"model_index.json", "README.md", "args.yaml", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert len(list((out / "checkpoints").glob("checkpoint-*"))) == 2
    card = (out / "README.md").read_text()
    assert "reconstructed by the autoencoder" in card and "{{" not in card
    pipe = PDiffPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    result = pipe(num_models=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert result.parameters.shape == (2, 2410)
    assert result.models[0](torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_killed_run_resumes_to_the_same_weights(digits_params, tmp_path):
    # The first checkpoint falls in the diffusion stage, so the EMA weights and step count are resumed too.
    steps = ["--train.autoencoder_steps", "40", "--train.diffusion_steps", "160", "--checkpointing_steps", "50",
             "--train.use_ema", "true", "--skip_eval", "--report_to", "none"]
    common = ["--recipe", "digits-mlp", "--param_dataset", str(digits_params), *steps]
    straight = tmp_path / "straight"
    run_script("train", *common, "--output_dir", str(straight))

    killed = tmp_path / "killed"
    process = popen_script("train", *common, "--output_dir", str(killed))
    deadline = time.time() + 300
    while not list((killed / "checkpoints").glob("checkpoint-*")) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model_index.json").exists(), "the run finished before it could be killed"
    assert not list(killed.rglob("custom_checkpoint_*")) and list(killed.rglob("denoiser_ema"))
    run_script("train", *common, "--output_dir", str(killed), "--resume_from_checkpoint", "latest")

    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_recipe_that_disagrees_with_the_dataset(digits_params, tmp_path):
    result = run_script("train", "--recipe", "digits-mlp", "--param_dataset", str(digits_params), "--output_dir",
                        str(tmp_path / "o"), "--target.model_kwargs", "{num_classes: 10, img_size: 8, hidden: 16}",
                        check=False)
    assert result.returncode != 0 and "does not match the parameter dataset" in result.stderr


def test_missing_dataset(tmp_path):
    result = run_script("train", "--recipe", "digits-mlp", "--param_dataset", str(tmp_path / "absent"),
                        "--output_dir", str(tmp_path / "o"), check=False)
    assert result.returncode != 0 and "No parameter dataset" in result.stderr


def test_unknown_recipe_key(digits_params, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  autoencoder_step: 10\n")
    result = run_script("train", "--recipe", str(recipe), "--param_dataset", str(digits_params), "--output_dir",
                        str(tmp_path / "o"), check=False)
    assert result.returncode == 2 and "unknown key train.autoencoder_step" in result.stderr.lower()
    assert not (tmp_path / "o").exists()
