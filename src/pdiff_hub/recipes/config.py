"""Recipes: one YAML file per published pipeline, read into typed sections, overridable from the command line.

A recipe has the sections ``data``, ``target``, ``collect``, ``autoencoder``, ``denoiser``, ``train`` and
``evaluate``. Every script reads the whole recipe (so an unknown key anywhere is an error), uses the sections it
needs, and writes the final values to ``args.yaml`` beside its outputs: every run can be repeated.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.io import write_text_atomic

__all__ = ["Recipe", "add_recipe_arguments", "load_recipe", "recipe_from_args", "write_run_args", "write_yaml_atomic"]

RECIPE_DIR = Path(__file__).resolve().parent  # the bundled YAML recipes ship beside this module (package data)


@dataclass
class DataConfig:
    """The image dataset: a built-in name (``fashion_mnist``, ``mnist``, ``digits``), a folder or a Hub id."""

    dataset: str = "fashion_mnist"
    image_size: int = 32
    val_size: int = 5000
    split_seed: int = 0


@dataclass
class TargetConfig:
    """The timm model and the name patterns of its generated parameters."""

    model_name: str = "resnet18"
    model_kwargs: dict = field(default_factory=lambda: {"num_classes": 10, "in_chans": 1})
    param_patterns: list = field(default_factory=lambda: ["layer4.1.bn1", "layer4.1.bn2"])


@dataclass
class CollectConfig:
    """Base training from scratch, then checkpoint collection of the generated subset (AdamW, constant lr)."""

    base_epochs: int = 3
    base_lr: float = 2e-3
    base_weight_decay: float = 0.05
    base_batch_size: int = 128
    num_checkpoints: int = 200
    lr: float = 0.15
    weight_decay: float = 0.0
    batch_size: int = 128
    seeds: list = field(default_factory=lambda: [0])
    eval_batch_size: int = 1024


@dataclass
class AutoencoderConfig:
    latent_dim: int = 64
    channels: list = field(default_factory=lambda: [32, 64, 128])
    kernel_size: int = 7
    input_noise: float = 0.001
    latent_noise: float = 0.1
    bound_latent: bool = True
    center_per_coordinate: bool = True


@dataclass
class DenoiserConfig:
    channels: list = field(default_factory=lambda: [1, 32, 64, 128, 64, 32, 1])
    kernel_size: int = 7
    time_embed_dim: int = 64


@dataclass
class TrainConfig:
    """Both training stages, and the paper's DDPM noise schedule."""

    seed: int = 0
    autoencoder_steps: int = 1500
    autoencoder_lr: float = 1e-3
    autoencoder_batch_size: int = 50
    diffusion_steps: int = 3000
    diffusion_lr: float = 1e-3
    diffusion_batch_size: int = 50
    weight_decay: float = 2e-6
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 0
    use_ema: bool = False
    ema_decay: float = 0.999
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2


@dataclass
class EvaluateConfig:
    """Generation and the baselines of the memorization critique.

    ``val_images`` / ``test_images``: evaluate on a random subset of this many images of the split (drawn with
    ``seed``; 0 = the whole split), for models whose generated layers are expensive to run hundreds of times.
    """

    num_models: int = 100
    num_inference_steps: int = 50
    scheduler: str = "ddim"
    seed: int = 0
    noise_amplitudes: list = field(default_factory=lambda: [0.01, 0.06, 0.12])
    average_size: int = 16
    batch_size: int = 2048
    val_images: int = 0
    test_images: int = 0


@dataclass
class Recipe:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Recipe) if f.name != "name"}


def _section_fields(section: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(SECTIONS[section]())}


def recipe_from_dict(values: dict, source: str = "recipe") -> Recipe:
    """A :class:`Recipe` from nested dicts; unknown sections or keys raise ``ValueError`` naming them."""
    values = dict(values or {})
    values.pop("run", None)  # what a script recorded about its run in args.yaml (command, inputs): not a setting
    name = values.pop("name", "custom")
    sections = {}
    for section, content in values.items():
        if section not in SECTIONS:
            raise ValueError(f"Unknown section {section!r} in {source}; sections are {sorted(SECTIONS)}")
        known = _section_fields(section)
        unknown = sorted(set(content or {}) - set(known))
        if unknown:
            raise ValueError(f"Unknown key(s) {unknown} in section {section!r} of {source}; "
                             f"known keys: {sorted(known)}")
        defaults = SECTIONS[section]()
        typed = {key: _coerce(value, getattr(defaults, key), f"{section}.{key}", source)
                 for key, value in (content or {}).items()}
        sections[section] = type(defaults)(**typed)
    return Recipe(name=name, **sections)


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    """``value`` as the type of the field's default: YAML reads ``1e-3`` as a string, and ``5`` is a fine float."""
    kind = type(default)
    if value is None or isinstance(value, kind) or kind in (list, dict):
        if kind in (list, dict) and not isinstance(value, kind):
            raise ValueError(f"{key} in {source} must be a {kind.__name__}, got {value!r}")
        return value
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} in {source} must be a {kind.__name__}, got {value!r}") from None


def resolve_recipe_path(recipe: str | os.PathLike) -> Path:
    """A recipe path, or the name of a bundled recipe (``pdiff_hub/recipes/*.yaml``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    bundled = RECIPE_DIR / f"{path.stem}.yaml"
    if bundled.is_file():
        return bundled
    known = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")) if RECIPE_DIR.is_dir() else []
    raise FileNotFoundError(f"No recipe at {recipe}; bundled recipes: {known}")


def load_recipe(recipe: str | os.PathLike) -> Recipe:
    """Read a recipe YAML file (a path or a bundled recipe name)."""
    path = resolve_recipe_path(recipe)
    return recipe_from_dict(yaml.safe_load(path.read_text()) or {}, source=str(path))


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """``--recipe`` plus one ``--section.key VALUE`` override flag for every recipe field (values parsed as YAML)."""
    parser.add_argument("--recipe", default=None, help="recipe YAML path or bundled name (pdiff_hub/recipes/*.yaml)")
    group = parser.add_argument_group("recipe overrides (values are parsed as YAML: 0.01, [1, 2], true)")
    for section in SECTIONS:
        for key, f in _section_fields(section).items():
            group.add_argument(f"--{section}.{key}", dest=f"{section}.{key}", default=None, metavar=f.name.upper(),
                               help=argparse.SUPPRESS)


def recipe_from_args(args: argparse.Namespace, base: Recipe | None = None) -> Recipe:
    """The recipe named by ``args.recipe`` (else ``base``, else the defaults) with the command line's overrides."""
    recipe = load_recipe(args.recipe) if args.recipe else (base or Recipe())
    values = recipe.to_dict()
    for dest, raw in vars(args).items():
        if raw is None or "." not in dest:
            continue
        section, key = dest.split(".", 1)
        values[section][key] = yaml.safe_load(raw) if isinstance(raw, str) else raw
    return recipe_from_dict(values, source="the command line")


def write_run_args(folder: str | os.PathLike, recipe: Recipe, **run: Any) -> None:
    """``args.yaml``: the final recipe plus a ``run`` section (command line, inputs); ``load_recipe`` reads it back."""
    write_yaml_atomic(Path(folder) / "args.yaml", {"run": run, **recipe.to_dict()})


def write_yaml_atomic(path: str | os.PathLike, values: Any) -> None:
    """Write ``values`` as YAML; the file appears whole or not at all."""
    write_text_atomic(path, lambda f: yaml.safe_dump(values, f, sort_keys=False))
