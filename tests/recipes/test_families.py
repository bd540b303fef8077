"""Table 1 across model families: parameter selection, write-back and prefix caching for every family, every recipe.

Fast tests build each family's smallest timm model (``test_resnet``, ``test_vit``, ``test_convnext``) and the whole
small networks (``pdiff_mlp``, ``pdiff_convnet3``) as a :class:`pdiff_hub.TargetModel` with the patterns the
recipes use (adapted to the test models' block indices), and load every bundled recipe to check that its
patterns resolve on the real model. The ``slow`` tests run one recipe per family end to end (collect -> train ->
evaluate) on scikit-learn's digits resized to the recipe's input size, with tiny settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdiff_hub import TargetModel
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.recipes.config import RECIPE_DIR, load_recipe
from pdiff_hub.training.objectives import build_autoencoder, build_denoiser

from ..scripts import REPO, run_script

RECIPES = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))

# (timm name, model kwargs, patterns, image size, expected generated names, whole network?)
FAMILIES = {
    "resnet": ("test_resnet", {}, ["layer4.0.bn1", "layer4.0.bn2"], 32,
               ["layer4.0.bn1.weight", "layer4.0.bn1.bias", "layer4.0.bn2.weight", "layer4.0.bn2.bias"], False),
    "vit": ("test_vit", {"img_size": 32, "patch_size": 4}, ["blocks.5.norm2", "norm"], 32,
            ["blocks.5.norm2.weight", "blocks.5.norm2.bias", "norm.weight", "norm.bias"], False),
    "convnext": ("test_convnext", {}, ["stages.3.blocks.1.norm", "head.norm"], 32,
                 ["stages.3.blocks.1.norm.weight", "stages.3.blocks.1.norm.bias", "head.norm.weight",
                  "head.norm.bias"], False),
    "mlp": ("pdiff_mlp", {"img_size": 16, "hidden": 48}, ["*"], 16,
            ["1.weight", "1.bias", "3.weight", "3.bias"], True),
    "convnet3": ("pdiff_convnet3", {"width": 8}, ["*"], 16,
                 ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias", "11.weight", "11.bias"], True),
}


def _target(family: str) -> TargetModel:
    name, kwargs, patterns, size, _, _ = FAMILIES[family]
    torch.manual_seed(0)
    return TargetModel(name, {"num_classes": 10, "in_chans": 1, **kwargs}, patterns, image_size=size)


def _images(family: str, n: int = 6) -> torch.Tensor:
    size = FAMILIES[family][3]
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_selection(family: str) -> None:
    target = _target(family)
    expected, whole = FAMILIES[family][4], FAMILIES[family][5]
    assert list(target.layout.names) == expected
    params = dict(target.model.named_parameters())
    assert target.layout.num_params == sum(params[n].numel() for n in expected)
    total = sum(p.numel() for p in params.values())
    assert (target.layout.num_params == total) is whole


@pytest.mark.parametrize("family", list(FAMILIES))
def test_flatten_write_back_round_trip(family: str) -> None:
    target = _target(family)
    base = target.base_vector().clone()
    vector = base + 0.1 * torch.randn(base.shape, generator=torch.Generator().manual_seed(2))
    model = target.build_model(vector)
    assert torch.equal(target.layout.flatten(dict(model.named_parameters())), vector)
    assert torch.equal(target.base_vector(), base), "building a model must not touch the frozen target"
    assert torch.equal(target.layout.flatten(target.layout.unflatten(vector)), vector)
    images = _images(family)
    state = target.build_state_dict(vector)
    fresh = _target(family).model
    fresh.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(images), model(images))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_prefix_split_or_clean_fallback(family: str) -> None:
    target = _target(family)
    whole = FAMILIES[family][5]
    split = FrozenPrefixSplit.from_model(target.model, list(target.layout.names))
    images = _images(family)
    split.compute_prefix(images)
    if whole:
        assert not split.is_split
        assert split.fallback_reason
    else:
        assert split.is_split, split.fallback_reason
    # Either way, the cached evaluation predicts exactly what the written-back models predict.
    vectors = target.base_vector()[None] + 0.5 * torch.randn(3, target.layout.num_params,
                                                             generator=torch.Generator().manual_seed(3))
    labels = torch.zeros(len(images), dtype=torch.long)
    predictions = ParameterEvaluator(target.model, target.layout, images, labels).predictions(vectors)
    with torch.no_grad():
        expected = torch.stack([target.build_model(v)(images).argmax(-1) for v in vectors])
    assert torch.equal(predictions, expected)


@pytest.mark.parametrize("recipe_name", RECIPES)
def test_recipe_patterns_resolve(recipe_name: str) -> None:
    recipe = load_recipe(recipe_name)
    assert recipe.name == recipe_name
    t = recipe.target
    target = TargetModel(**recipe.target_kwargs(t.model_kwargs))
    assert target.layout.num_params > 0
    for pattern in t.param_patterns:
        if pattern != "*":
            assert any(name.startswith(pattern + ".") for name in target.layout.names), pattern
    if t.param_patterns == ["*"]:  # the whole network, or with a LoRA adapter the whole adapter
        chosen = [p for n, p in target.model.named_parameters()
                  if not target.has_adapter or ".lora_" in n or ".modules_to_save." in n]
        assert target.layout.num_params == sum(p.numel() for p in chosen)
    # The input size must be one the model accepts (img_size of a ViT or an MLP must match the data).
    io = t.image_kwargs()
    images = torch.zeros(2, io["in_chans"], recipe.data.image_size, recipe.data.image_size)
    with torch.no_grad():
        assert target(images).shape == (2, io["num_classes"])


@pytest.mark.parametrize("recipe_name", RECIPES)
def test_recipe_components_fit_its_target(recipe_name: str) -> None:
    """The recipe's autoencoder and denoiser build for its target's parameter count and carry a vector through."""
    recipe = load_recipe(recipe_name)
    target = TargetModel(**recipe.target_kwargs(recipe.target.model_kwargs))
    vectors = target.base_vector()[None] + 0.01 * torch.randn(3, target.layout.num_params,
                                                              generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    autoencoder = build_autoencoder(recipe, target, vectors).eval()
    denoiser = build_denoiser(recipe)
    with torch.no_grad():
        latents = autoencoder.encode(vectors)
        assert latents.shape == (3, recipe.autoencoder.latent_dim)
        noise = denoiser(latents[:, None], torch.tensor([0, 500, 999])).sample
        assert noise.shape == (3, 1, recipe.autoencoder.latent_dim)
        decoded = autoencoder.decode(latents)
    assert decoded.shape == vectors.shape and torch.isfinite(decoded).all()
    target.build_model(decoded[0])  # the decoded vector writes back into the target


# ------------------------------------------------------------------------------------------------------- slow

SLOW_RECIPES = ["mnist-resnet18", "fashion-mnist-vit-tiny", "fashion-mnist-convnext-atto", "mnist-convnet3",
                "mnist-mlp", "mnist-transformers-resnet", "digits-transformers-vit", "digits-transformers-vit-lora"]

TINY = ["--data.dataset", "digits", "--data.val_size", "200", "--collect.base_epochs", "1",
        "--collect.num_checkpoints", "20", "--train.autoencoder_steps", "10", "--train.diffusion_steps", "10"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe_name", SLOW_RECIPES)
def test_family_end_to_end(recipe_name: str, tmp_path: Path) -> None:
    size = str(load_recipe(recipe_name).data.image_size)
    recipe = ["--recipe", recipe_name, *TINY, "--data.image_size", size]
    params, pipeline, evaluation = tmp_path / "params", tmp_path / "pipeline", tmp_path / "eval"
    run_script("collect", *recipe, "--output_dir", str(params))
    run_script("train", *recipe, "--param_dataset", str(params), "--output_dir", str(pipeline), "--report_to", "none",
               "--skip_eval")
    run_script("evaluate", *recipe, "--pipeline", str(pipeline), "--param_dataset", str(params), "--output_dir",
               str(evaluation), "--num_models", "5", "--evaluate.num_inference_steps", "5")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["table"]["p-diff"]["n"] == 5
    assert metrics["table"]["original"]["n"] == 20
    assert {"original", "ensemble", "p-diff", "gaussian", "average of 16"} <= set(metrics["table"])


@pytest.mark.slow
def test_table1_benchmark_reuses_and_tabulates(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ..scripts import script_env

    command = [sys.executable, str(REPO / "benchmarks" / "table1.py"), "--recipes", "mnist-mlp", "--quick",
               "--output_dir", str(tmp_path), "--data.dataset", "digits", "--data.val_size", "200",
               "--evaluate.num_models", "4"]
    for _ in range(2):  # the second run reuses every step
        result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "reusing" in result.stdout
    table = json.loads((tmp_path / "table1.json").read_text())
    row = table["rows"][0]
    assert row["recipe"] == "mnist-mlp" and row["num_models"] == 4
    assert {"collect", "train", "evaluate"} == set(table["records"]["mnist-mlp"]["steps"])
    assert all(step["wall_s"] is not None for step in table["records"]["mnist-mlp"]["steps"].values())
    assert "| mnist-mlp |" in (tmp_path / "table1.md").read_text()
