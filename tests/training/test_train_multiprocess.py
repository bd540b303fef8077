"""scripts/train.py under ``accelerate launch`` with 2 CPU processes (gloo): the gradients are the global batch's, a
checkpoint holds every rank's random state, and a killed 2-process run resumed with ``--resume_from_checkpoint latest``
ends with bit-identical weights to an uninterrupted 2-process run. A 1-process run of the same recipe trains on
other random draws (each rank has its own noise), so its weights are not compared with a 2-process run's."""

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .launch import kill_launch, launch_script, popen_launch
from .synthetic import digits_parameter_dataset

pytestmark = pytest.mark.slow  # every case starts processes

# 10 steps of each stage, a checkpoint every 5: the first falls in stage 1, so the resumed run crosses into stage 2
# (the latents, the EMA weights) on both ranks.
STEPS = ["--train.autoencoder_steps", "10", "--train.diffusion_steps", "10", "--train.autoencoder_batch_size", "8",
         "--train.diffusion_batch_size", "8", "--train.use_ema", "true", "--checkpointing_steps", "5",
         "--checkpoints_total_limit", "5", "--skip_eval", "--report_to", "none"]


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    return digits_parameter_dataset(tmp_path_factory.mktemp("params") / "params", num_checkpoints=12)


def weights(folder):
    return {f"{c}/{k}": v for c in ("autoencoder", "denoiser") for k, v in
            load_file(next((folder / c).glob("*.safetensors"))).items()}


def test_gradients_are_averaged_over_the_ranks_shares(params, tmp_path):
    result = launch_script(Path(__file__).with_name("ddp_gradients.py"), str(params), str(tmp_path / "out"))
    assert result.stdout.count("gradients are the global batch's") == 2, result.stdout


def test_a_killed_two_process_run_resumes_to_the_same_weights(params, tmp_path):
    common = ["--recipe", "digits-mlp", "--param_dataset", str(params), *STEPS]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # Both runs start at once (the startup of 2 x 2 processes overlaps); the second is killed after its first
    # checkpoint.
    uninterrupted = popen_launch("train", *common, "--output_dir", str(straight), log=tmp_path / "straight.log")
    process = popen_launch("train", *common, "--output_dir", str(killed), log=tmp_path / "killed.log")
    deadline = time.time() + 300
    while not list((killed / "checkpoints").glob("checkpoint-*")) and time.time() < deadline:
        time.sleep(0.05)
    kill_launch(process)
    assert not (killed / "model_index.json").exists(), "the run finished before it could be killed"
    assert (killed / "checkpoints" / "checkpoint-5" / "random_states_1.pkl").is_file()
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "straight.log").read_text()[-5000:]

    checkpoint = straight / "checkpoints" / "checkpoint-5"
    assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors"} <= {p.name for p in
                                                                                   checkpoint.iterdir()}
    assert not [p for p in straight.rglob("*") if ".tmp-" in p.name]
    assert json.loads((straight / "metrics.json").read_text())["num_processes"] == 2
    # the ranks drew distinct noise: their random states differ
    assert (checkpoint / "random_states_0.pkl").read_bytes() != (checkpoint / "random_states_1.pkl").read_bytes()

    launch_script("train", *common, "--output_dir", str(killed), "--resume_from_checkpoint", "latest")
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
