import pytest

from pdiff_hub.recipes.config import RECIPE_DIR, load_recipe, recipe_from_dict, write_run_args


def test_values_take_their_field_types():
    recipe = recipe_from_dict({"collect": {"lr": "1e-3", "num_checkpoints": 50.0},
                               "autoencoder": {"bound_latent": "no"}})
    assert recipe.collect.lr == 1e-3 and recipe.collect.num_checkpoints == 50
    assert recipe.autoencoder.bound_latent is False
    with pytest.raises(ValueError, match=r"collect\.num_checkpoints .* must be a int"):
        recipe_from_dict({"collect": {"num_checkpoints": "many"}})


def test_unknown_keys_and_sections_are_named():
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['lrate'\] in section 'collect'"):
        recipe_from_dict({"collect": {"lrate": 0.1}})
    with pytest.raises(ValueError, match="Unknown section 'trian'"):
        recipe_from_dict({"trian": {}})


def test_bundled_recipes_load_by_name_and_args_yaml_round_trips(tmp_path):
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    assert "fashion-mnist-resnet18" in names
    for name in names:
        recipe = load_recipe(name)
        write_run_args(tmp_path, recipe, command="python scripts/collect.py")
        assert load_recipe(tmp_path / "args.yaml") == recipe
    with pytest.raises(FileNotFoundError, match="bundled recipes"):
        load_recipe("no-such-recipe")
