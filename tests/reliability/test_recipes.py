"""Recipe values are checked when they are read: one sentence naming the key, the value, where it came from and what
is allowed, exit status 2, and nothing written.

Every case runs ``scripts/collect.py`` in process (a recipe is the first thing it reads), with a recipe file written
per case or an override on the command line, and proves with :func:`snapshot` that the recipe file and the output
folder's parent are as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pdiff_hub.recipes.config import load_recipe, write_run_args

from .harness import call, error_line, snapshot

# A file (key: value) and what the sentence must say; "{path}" is the recipe file.
FILE_CASES = {
    "negative learning rate": ({"collect": {"lr": -0.1}}, "collect.lr in {path} must be a finite number > 0; got -0.1"),
    "negative step count": ({"train": {"autoencoder_steps": -5}},
                            "train.autoencoder_steps in {path} must be an integer >= 1; got -5"),
    "empty seed list": ({"collect": {"seeds": []}}, "collect.seeds in {path} must be a non-empty list"),
    "empty pattern list": ({"target": {"param_patterns": []}}, "target.param_patterns in {path} must be a non-empty"),
    "asymmetric denoiser": ({"denoiser": {"channels": [1, 8, 4]}}, "denoiser.channels in {path} must be a symmetric"),
    "even kernel": ({"autoencoder": {"kernel_size": 4}}, "autoencoder.kernel_size in {path} must be an odd integer"),
    "beta_start above beta_end": ({"train": {"beta_start": 0.5, "beta_end": 0.02}},
                                  "train.beta_start must be below train.beta_end, but train.beta_start is 0.5"),
    "unknown sampler": ({"evaluate": {"scheduler": "euler"}},
                        "evaluate.scheduler in {path} must be one of ddim, ddpm; got 'euler'"),
    "unknown key": ({"collect": {"num_checkpoint": 10}},
                    "unknown key collect.num_checkpoint in {path} (did you mean collect.num_checkpoints?)"),
    "section not a mapping": ({"train": [1, 2]}, "train in {path} must be a mapping of keys to values"),
    "zero latent size": ({"autoencoder": {"latent_dim": 0}},
                         "autoencoder.latent_dim in {path} must be an integer >= 1"),
}

# Overrides on the command line and what the sentence must say.
COMMAND_LINE_CASES = {
    "nan learning rate": (["--collect.lr", "nan"], "--collect.lr on the command line must be a finite number > 0"),
    "infinite learning rate": (["--train.diffusion_lr", ".inf"], "--train.diffusion_lr on the command line must be a "
                                                                 "finite number > 0; got inf"),
    "negative seed": (["--train.seed", "-1"], "--train.seed on the command line must be an integer from 0 to"),
    "fractional count": (["--collect.num_checkpoints", "1.5"],
                         "--collect.num_checkpoints on the command line must be an integer >= 2; got 1.5"),
    "one checkpoint": (["--collect.num_checkpoints", "1"], "must be an integer >= 2; got 1"),
    "not a boolean": (["--train.use_ema", "maybe"], "--train.use_ema on the command line must be a true/false value"),
    "a boolean as a size": (["--data.image_size", "true"], "--data.image_size on the command line must be an integer"),
    "negative noise": (["--autoencoder.input_noise", "-0.1"], "must be a finite number >= 0; got -0.1"),
    "repeated seeds": (["--collect.seeds", "[0, 0]"], "must be a non-empty list of distinct integers"),
    "unusable lr scheduler": (["--train.lr_scheduler", "piecewise_constant"], "--train.lr_scheduler on the command "
                                                                             "line must be one of linear, cosine"),
    "null value": (["--collect.batch_size", "null"], "--collect.batch_size on the command line must be an integer"),
    "negative val_size": (["--data.val_size", "-1"], "--data.val_size on the command line must be an integer >= 0"),
    "inference steps above timesteps": (["--evaluate.num_inference_steps", "2000"],
                                        "evaluate.num_inference_steps cannot exceed train.num_train_timesteps"),
    "not YAML": (["--collect.seeds", "[0,"], "--collect.seeds '[0,' on the command line is not a YAML value"),
}


def refused(tmp_path: Path, *argv: str) -> str:
    """Run collect with ``argv``, assert it was refused without a change, and return the sentence."""
    before = snapshot(tmp_path)
    code, stderr = call("collect", *argv, "--output_dir", str(tmp_path / "out"))
    assert code == 2, stderr
    assert snapshot(tmp_path) == before
    return error_line(stderr)


@pytest.mark.parametrize("case", FILE_CASES)
def test_a_bad_value_in_a_recipe_file_is_named_with_the_file(tmp_path, case):
    values, message = FILE_CASES[case]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "case", **values}))
    assert message.format(path=path) in refused(tmp_path, "--recipe", str(path))


@pytest.mark.parametrize("case", COMMAND_LINE_CASES)
def test_a_bad_value_on_the_command_line_is_named_as_typed(tmp_path, case):
    argv, message = COMMAND_LINE_CASES[case]
    assert message in refused(tmp_path, "--recipe", "digits-mlp", *argv)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ncollect:\n  seeds: [0, 1\n  lr: 0.1\n")
    line = refused(tmp_path, "--recipe", str(path))
    assert f"recipe {path} is not valid YAML: " in line and "at line 4" in line


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert f"{path} must hold a mapping of sections" in refused(tmp_path, "--recipe", str(path))


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("{tmp}/no-such.yaml", "recipe file {tmp}/no-such.yaml does not exist"),
        # a path is never replaced by the bundled recipe of the same name
        ("{tmp}/digits-mlp.yaml", "recipe file {tmp}/digits-mlp.yaml does not exist"),
        ("digits-mlp.yml", "recipe file digits-mlp.yml does not exist"),
        ("digits-mpl", "recipe 'digits-mpl' is not a bundled recipe (digits-mlp, "),
        ("{tmp}", "recipe {tmp} is a folder"),
    ],
)
def test_a_missing_recipe_is_an_error_naming_the_bundled_ones(tmp_path, recipe, message):
    line = refused(tmp_path, "--recipe", recipe.format(tmp=tmp_path))
    assert message.format(tmp=tmp_path) in line and "mnist-mlp" in line


def test_a_bad_value_in_a_recorded_args_yaml_names_that_file(tmp_path):
    run = tmp_path / "run"
    write_run_args(run, load_recipe("digits-mlp"), command="python scripts/collect.py")
    path = run / "args.yaml"
    values = yaml.safe_load(path.read_text())
    values["collect"]["num_checkpoints"] = 0
    path.write_text(yaml.safe_dump(values))
    assert f"collect.num_checkpoints in {path} must be an integer >= 2; got 0" in refused(tmp_path, "--recipe",
                                                                                          str(path))
