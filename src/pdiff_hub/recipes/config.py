"""Recipes: one YAML file per published pipeline, read into typed sections, overridable from the command line.

A recipe has the sections ``data``, ``target``, ``collect``, ``autoencoder``, ``denoiser``, ``train`` and
``evaluate``. Every script reads the whole recipe (so an unknown key anywhere is an error), uses the sections it
needs, and writes the final values to ``args.yaml`` beside its outputs: every run can be repeated.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import inspect
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import hf_hub_download

from ..core.io import is_hub_id, write_text_atomic
from ..models.autoencoder import ParameterAutoencoder
from ..models.denoiser import LatentDenoiser

__all__ = ["Recipe", "add_recipe_arguments", "command_line", "load_recipe", "recipe_from_args", "recipe_overrides",
           "recorded_recipe", "write_run_args", "write_yaml_atomic"]

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


def _component_section(name: str, component: type, derived: tuple[str, ...], doc: str) -> type:
    """A recipe section whose keys and defaults are ``component.__init__``'s: the model is the one source of both.

    ``derived`` names the arguments the data decides (the parameter count, the latent size a denoiser inherits),
    which are not settings. Tuple defaults become lists, the form YAML reads and writes.
    """
    fields = []
    for arg in inspect.signature(component.__init__).parameters.values():
        if arg.name == "self" or arg.name in derived or arg.default is inspect.Parameter.empty:
            continue
        default = list(arg.default) if isinstance(arg.default, tuple) else arg.default
        kind = type(default) if default is not None else Any
        fields.append((arg.name, kind, field(default_factory=functools.partial(copy.deepcopy, default))))
    section = dataclasses.make_dataclass(name, fields)
    section.__module__, section.__doc__ = __name__, doc
    return section


AutoencoderConfig = _component_section(
    "AutoencoderConfig", ParameterAutoencoder, ("num_params", "tensor_sizes"),
    "The parameter autoencoder: the arguments of ParameterAutoencoder, with its defaults.")
DenoiserConfig = _component_section(
    "DenoiserConfig", LatentDenoiser, ("latent_dim",),
    "The latent denoiser: the arguments of LatentDenoiser, with its defaults (latent_dim is the autoencoder's).")


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
    if default is None:  # a component argument without a typed default (e.g. an optional name) takes any value
        return value
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


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe_flag: bool = True) -> None:
    """``--recipe`` and one ``--section.key VALUE`` override per recipe key, in one help group per section.

    Values are parsed as YAML (``0.01``, ``[1, 2]``, ``true``); the help shows each key's type and built-in default
    (a recipe's own value takes precedence over it). ``recipe_flag=False`` leaves out ``--recipe``, for a command
    that names its recipes otherwise.
    """
    if recipe_flag:
        parser.add_argument("--recipe", default=None,
                            help="recipe YAML path or bundled name (pdiff_hub/recipes/*.yaml)")
    for section, factory in SECTIONS.items():
        defaults = factory()
        description = (type(defaults).__doc__ or "").strip().split("\n")[0]
        group = parser.add_argument_group(f"recipe section {section!r} (--{section}.KEY VALUE)", description)
        for key in _section_fields(section):
            default = getattr(defaults, key)
            kind = type(default).__name__ if default is not None else "yaml"
            shown = yaml.safe_dump(default, default_flow_style=True, sort_keys=False).removesuffix("...\n").strip()
            group.add_argument(f"--{section}.{key}", dest=f"{section}.{key}", default=None, metavar=kind.upper(),
                               help=f"default: {shown}".replace("%", "%%"))


def recipe_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The ``--section.key`` values given on the command line, as typed (``{"train.seed": "3"}``)."""
    return {dest: raw for dest, raw in vars(args).items()
            if raw is not None and "." in dest and dest.split(".", 1)[0] in SECTIONS}


def recipe_from_args(args: argparse.Namespace, base: Recipe | None = None) -> Recipe:
    """The recipe named by ``args.recipe`` (else ``base``, else the defaults) with the command line's overrides."""
    recipe = load_recipe(args.recipe) if getattr(args, "recipe", None) else (base or Recipe())
    values = recipe.to_dict()
    for dest, raw in recipe_overrides(args).items():
        section, key = dest.split(".", 1)
        values[section][key] = yaml.safe_load(raw) if isinstance(raw, str) else raw
    return recipe_from_dict(values, source="the command line")


def recorded_recipe(pipeline: str | os.PathLike, revision: str | None = None) -> Recipe:
    """The recipe a pipeline was trained with: the ``args.yaml`` that ``scripts/train.py`` saves beside it.

    Args:
        pipeline: a pipeline folder or a Hub model id.
        revision: the revision of a Hub pipeline.

    Raises:
        FileNotFoundError: when a local pipeline folder has no ``args.yaml``.
    """
    if is_hub_id(pipeline):
        path = Path(hf_hub_download(str(pipeline), "args.yaml", revision=revision))
    else:
        path = Path(pipeline) / "args.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{pipeline} has no args.yaml recording its recipe; pass --recipe")
    return load_recipe(path)


def command_line(argv: list[str]) -> str:
    """The command as typed, for ``args.yaml`` and cards, with the value of ``--hub_token`` masked."""
    shown, hide = [], False
    for arg in argv:
        shown.append("***" if hide else ("--hub_token=***" if arg.startswith("--hub_token=") else arg))
        hide = arg == "--hub_token"
    return "python " + " ".join(shlex.quote(a) for a in shown)


def write_run_args(folder: str | os.PathLike, recipe: Recipe, **run: Any) -> None:
    """``args.yaml``: the final recipe plus a ``run`` section (command line, inputs); ``load_recipe`` reads it back."""
    write_yaml_atomic(Path(folder) / "args.yaml", {"run": run, **recipe.to_dict()})


def write_yaml_atomic(path: str | os.PathLike, values: Any) -> None:
    """Write ``values`` as YAML; the file appears whole or not at all."""
    write_text_atomic(path, lambda f: yaml.safe_dump(values, f, sort_keys=False))
