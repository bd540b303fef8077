"""Recipes: typed sections, bundled recipes by name, one override syntax, and the recipe recorded with a run."""

import argparse
import json
import re

import pytest
import torch
from diffusers.optimization import get_scheduler

from pdiff_hub import LatentDenoiser, ParameterAutoencoder
from pdiff_hub.core.cli import UsageError
from pdiff_hub.evaluation.generation import SCHEDULERS
from pdiff_hub.recipes.config import (
    RECIPE_DIR,
    Recipe,
    add_recipe_arguments,
    command_line,
    load_recipe,
    recipe_from_args,
    recipe_from_dict,
    recipe_overrides,
    recorded_recipe,
    write_run_args,
)
from pdiff_hub.recipes.sections import LR_SCHEDULERS, SAMPLERS
from pdiff_hub.training.objectives import build_autoencoder, build_denoiser

from ..components import tiny_target


def test_values_take_their_field_types():
    recipe = recipe_from_dict({"collect": {"lr": "1e-3", "num_checkpoints": 50.0},
                               "autoencoder": {"bound_latent": "no"}})
    assert recipe.collect.lr == 1e-3 and recipe.collect.num_checkpoints == 50
    assert recipe.autoencoder.bound_latent is False
    with pytest.raises(ValueError, match=r"collect\.num_checkpoints in recipe must be an integer >= 2; got 'many'"):
        recipe_from_dict({"collect": {"num_checkpoints": "many"}})


def test_unknown_keys_and_sections_are_named():
    with pytest.raises(ValueError, match=r"unknown key collect\.num_checkpoint in recipe \(did you mean "
                                         r"collect\.num_checkpoints\?\); the keys of collect are base_epochs, "):
        recipe_from_dict({"collect": {"num_checkpoint": 10}})
    with pytest.raises(ValueError, match=r"unknown section 'trian' in recipe \(did you mean train\?\)"):
        recipe_from_dict({"trian": {}})


def test_bundled_recipes_load_by_name_and_args_yaml_round_trips(tmp_path):
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    assert "fashion-mnist-resnet18" in names
    for name in names:
        recipe = load_recipe(name)
        write_run_args(tmp_path, recipe, command="python scripts/collect.py")
        assert load_recipe(tmp_path / "args.yaml") == recipe
    with pytest.raises(ValueError, match="'no-such-recipe' is not a bundled recipe .*digits-mlp"):
        load_recipe("no-such-recipe")


def test_a_recipe_that_sets_no_component_key_builds_the_components_defaults():
    recipe = recipe_from_dict({})
    target = tiny_target()
    vectors = torch.randn(4, target.layout.num_params)
    built = build_autoencoder(recipe, target, vectors)
    default = ParameterAutoencoder(num_params=target.layout.num_params, tensor_sizes=target.layout.sizes)
    assert _settings(built) == _settings(default)
    assert _settings(build_denoiser(recipe)) == _settings(LatentDenoiser(latent_dim=built.config.latent_dim))


def _settings(model) -> dict:
    """A component's configuration as saved in its config.json (tuples become lists), without diffusers' notes."""
    return {k: v for k, v in json.loads(model.to_json_string()).items() if not k.startswith("_")}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_recipe_arguments(parser)
    return parser


def test_help_shows_every_key_by_section_with_its_type_and_default():
    text = _parser().format_help()
    defaults = Recipe().to_dict()
    for section, values in defaults.items():
        if section == "name":
            continue
        block = text.split(f"recipe section {section!r}")[1].split("recipe section")[0]
        for key in values:
            assert f"--{section}.{key}" in block, (section, key)
    assert re.search(r"--train\.autoencoder_steps INT\s+default: 1500", text)
    assert re.search(r"--autoencoder\.channels LIST\s+default: \[64, 128, 256\]", text)


def test_command_line_overrides_and_their_order(tmp_path):
    parser = _parser()
    args = parser.parse_args(["--recipe", "digits-mlp", "--train.seed", "3", "--autoencoder.channels", "[8, 16]"])
    assert recipe_overrides(args) == {"train.seed": "3", "autoencoder.channels": "[8, 16]"}
    recipe = recipe_from_args(args)
    assert recipe.name == "digits-mlp" and recipe.train.seed == 3 and recipe.autoencoder.channels == [8, 16]
    assert recipe.data.dataset == "digits"
    base = load_recipe("mnist-mlp")
    assert recipe_from_args(parser.parse_args(["--train.seed", "3"]), base=base).data.dataset == "mnist"
    with pytest.raises(SystemExit):
        parser.parse_args(["--train.se", "3"])  # no abbreviations: a typo is an error, not another key


def test_recorded_recipe_is_the_one_saved_beside_the_pipeline(tmp_path):
    recipe = recipe_from_dict({"name": "x", "train": {"seed": 5}, "autoencoder": {"latent_dim": 16}})
    write_run_args(tmp_path, recipe, command="python scripts/train.py")
    assert recorded_recipe(tmp_path) == recipe
    with pytest.raises(FileNotFoundError, match="pass --recipe"):
        recorded_recipe(tmp_path / "elsewhere")


def test_hub_token_never_reaches_the_recorded_command():
    command = command_line(["scripts/train.py", "--hub_token", "hf_secret1", "--hub_token=hf_secret2", "--x", "a b"])
    assert "hf_secret" not in command and command.count("--hub_token") == 2 and "'a b'" in command


def test_every_secret_looking_value_is_masked(monkeypatch):
    token = "hf_" + "A1b2" * 8
    monkeypatch.setenv("HF_TOKEN", "login-token-value")
    command = command_line(["scripts/x.py", "--api_key", "k1", "--db_password=p1", "--client_secret", "s1",
                            "--data.dataset", f"org/{token}", "--note", "login-token-value", "--train.seed", "3"])
    for secret in ("k1", "p1", "s1", token, "login-token-value"):
        assert secret not in command, command
    assert "--api_key '***'" in command and "--db_password=***" in command and "org/hf_***" in command
    assert "--train.seed 3" in command  # a recipe key is a setting, recorded in args.yaml anyway


def test_empty_lists_are_refused_only_where_they_mean_nothing():
    assert recipe_from_dict({"evaluate": {"noise_amplitudes": []}}).evaluate.noise_amplitudes == []
    for section, key in [("collect", "seeds"), ("target", "param_patterns"), ("autoencoder", "channels"),
                         ("denoiser", "channels")]:
        with pytest.raises(UsageError, match=rf"{section}\.{key} in recipe must be a (non-empty|symmetric) list"):
            recipe_from_dict({section: {key: []}})


def test_list_elements_take_their_type():
    recipe = recipe_from_dict({"evaluate": {"noise_amplitudes": ["1e-3", 1]}, "collect": {"seeds": [1.0, 2]}})
    assert recipe.evaluate.noise_amplitudes == [1e-3, 1.0] and recipe.collect.seeds == [1, 2]
    with pytest.raises(UsageError, match=r"collect\.seeds in recipe must be .*; got \[0, 'a'\]"):
        recipe_from_dict({"collect": {"seeds": [0, "a"]}})


def test_the_named_schedulers_are_the_ones_that_exist():
    assert set(SAMPLERS) == set(SCHEDULERS)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    for name in LR_SCHEDULERS:
        get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=4)


def test_a_latent_norm_is_a_choice_and_excludes_the_tanh_bound():
    recipe = recipe_from_dict({"autoencoder": {"bound_latent": False, "latent_norm": "layer",
                                               "standardize_latents": True}})
    assert (recipe.autoencoder.latent_norm, recipe.autoencoder.standardize_latents) == ("layer", True)
    with pytest.raises(UsageError, match=r"autoencoder\.bound_latent must be false with autoencoder\.latent_norm"):
        recipe_from_dict({"autoencoder": {"latent_norm": "layer"}})
    with pytest.raises(UsageError, match=r"autoencoder\.latent_norm in recipe must be one of"):
        recipe_from_dict({"autoencoder": {"bound_latent": False, "latent_norm": "batch"}})


def test_a_variational_latent_needs_an_unbounded_unnormalized_latent():
    recipe = recipe_from_dict({"autoencoder": {"bound_latent": False, "latent_kl": 0.01}})
    assert recipe.autoencoder.latent_kl == 0.01
    with pytest.raises(UsageError, match=r"autoencoder\.bound_latent must be false when autoencoder\.latent_kl > 0"):
        recipe_from_dict({"autoencoder": {"latent_kl": 0.01}})
    with pytest.raises(UsageError, match=r"autoencoder\.latent_norm must be 'none' when autoencoder\.latent_kl > 0"):
        recipe_from_dict({"autoencoder": {"bound_latent": False, "latent_norm": "layer", "latent_kl": 0.01}})
    with pytest.raises(UsageError, match=r"autoencoder\.latent_kl"):
        recipe_from_dict({"autoencoder": {"bound_latent": False, "latent_kl": -1}})
