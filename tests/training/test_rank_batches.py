"""The pure parts of training on N processes, checked in one: each rank's share of a step's global batch, the batch
sizes that split, and checkpoints that only a run with the same process count resumes."""

import pytest
import torch
from accelerate import Accelerator

from pdiff_hub.core.cli import UsageError
from pdiff_hub.recipes.config import load_recipe, recipe_from_dict
from pdiff_hub.training.checkpoints import RunCheckpoints, load_state
from pdiff_hub.training.identity import identity_difference, write_identity
from pdiff_hub.training.objectives import rank_batch, sample_batch, step_generator
from pdiff_hub.training.trainer import check_batch_split

IDENTITY = {"recipe_sha256": "a", "param_dataset_sha256": "p", "seed": 0, "recipe": {"train": {"seed": 0}}}


def shares(data, batch_size, num_processes, step=3, seed=0):
    return [rank_batch(data, batch_size, seed=seed, step=step, rank=r, num_processes=num_processes)
            for r in range(num_processes)]


@pytest.mark.parametrize("num_rows", [20, 6])  # more rows than the batch (distinct rows), fewer (with replacement)
def test_the_ranks_shares_make_up_the_global_batch_whatever_the_process_count(num_rows):
    data = torch.arange(num_rows)[:, None]
    global_batch = sample_batch(data, 8, step_generator(0, 3))
    for n in (1, 2, 4):
        parts = shares(data, 8, n)
        assert all(len(p) == 8 // n for p in parts)
        assert torch.equal(torch.cat(parts), global_batch)
    if num_rows > 8:
        assert len(torch.cat(shares(data, 8, 2)).unique()) == 8  # no row in two ranks' shares


def test_a_share_depends_on_the_seed_and_step_only():
    data = torch.randn(50, 3)
    first = shares(data, 10, 2, step=7)
    torch.manual_seed(123)  # the global generator plays no part
    assert all(torch.equal(a, b) for a, b in zip(first, shares(data, 10, 2, step=7), strict=True))
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], shares(data, 10, 2, step=8)[0])
    assert not torch.equal(first[0], shares(data, 10, 2, step=7, seed=1)[0])


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    with pytest.raises(ValueError, match="a batch of 7 does not split evenly over 2 processes"):
        rank_batch(torch.randn(10, 2), 7, seed=0, step=0, rank=0, num_processes=2)
    values = load_recipe("digits-mlp").to_dict()
    values["train"].update(autoencoder_batch_size=8, diffusion_batch_size=6)
    recipe = recipe_from_dict(values)
    check_batch_split(recipe, 1)
    check_batch_split(recipe, 2)
    with pytest.raises(UsageError, match=r"^train.diffusion_batch_size is 6, which does not split evenly over 4 "
                                         r"processes; give a multiple of 4"):
        check_batch_split(recipe, 4)


def test_a_checkpoint_is_resumed_only_with_the_process_count_that_wrote_it(tmp_path):
    two = {**IDENTITY, "num_processes": 2}
    assert identity_difference(IDENTITY, IDENTITY) is None and identity_difference(two, two) is None
    assert identity_difference(two, IDENTITY) == "it was trained by 2 process(es), this run has 1"
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-5").mkdir(parents=True)
    write_identity(folder / "checkpoint-5", two)
    with pytest.raises(UsageError, match=r"belongs to another run \(it was trained by 2 process\(es\), this run has 1"):
        RunCheckpoints(folder, IDENTITY, 2).start("latest")
    assert RunCheckpoints(folder, two, 2).start("latest").name == "checkpoint-5"


def test_a_checkpoint_without_this_process_random_state_is_refused(tmp_path):
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))
    checkpoints = RunCheckpoints(tmp_path / "checkpoints", IDENTITY, 2)
    checkpoints.start(None)
    checkpoint = checkpoints.save(accelerator, 4)
    load_state(accelerator, checkpoint)
    (checkpoint / "random_states_0.pkl").unlink()
    with pytest.raises(UsageError, match="has no random_states_0.pkl, the random state of process 0; resume it with "
                                         "as many processes"):
        load_state(accelerator, checkpoint)
