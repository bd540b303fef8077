"""Recipes: one YAML file per published pipeline, read into typed sections, overridable from the command line.

A recipe has the sections ``data``, ``target``, ``collect``, ``autoencoder``, ``denoiser``, ``train`` and
``evaluate``. Every script reads the whole recipe (so an unknown key anywhere is an error), uses the sections it
needs, and writes the final values to ``args.yaml`` beside its outputs: every run can be repeated.

Every value is converted to its key's type and checked against the key's rule (:mod:`.sections` declares both, with
:mod:`.rules`) when it is read, from a file, an ``args.yaml`` or the command line: a bad value is one sentence naming
the key, the value, where it came from and what is allowed. Recorded commands have their secrets masked.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import get_token, hf_hub_download

from ..core.cli import UsageError
from ..core.io import is_hub_id, write_text_atomic
from .rules import COMMAND_LINE, check_value, field_rule, refuse
from .sections import (
    PAIR_RULES,
    RETIRED_KEYS,
    SECTIONS,
    AutoencoderConfig,
    CollectConfig,
    DataConfig,
    DenoiserConfig,
    EvaluateConfig,
    Recipe,
    TargetConfig,
    TrainConfig,
)

__all__ = ["AutoencoderConfig", "CollectConfig", "DataConfig", "DenoiserConfig", "EvaluateConfig", "Recipe",
           "TargetConfig", "TrainConfig", "add_recipe_arguments", "bundled_recipes", "command_line", "load_recipe",
           "mask_secrets", "recipe_from_args", "recipe_overrides", "recorded_recipe", "resolve_recipe_path",
           "write_run_args", "write_yaml_atomic"]

RECIPE_DIR = Path(__file__).resolve().parent  # the bundled YAML recipes ship beside this module (package data)


def _section_fields(section: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(SECTIONS[section]())}


def recipe_from_dict(values: dict, source: str = "recipe") -> Recipe:
    """A :class:`Recipe` from nested dicts, every value converted to its field's type and checked against its rule.

    Args:
        values: ``{"name": ..., "<section>": {"<key>": value}}``; a ``run`` section (what a script recorded about
            its run in args.yaml) is ignored, and marks a recorded recipe, whose retired keys are dropped.
        source: where the values come from (a file path, or ``"the command line"``), named in the error.

    Raises:
        UsageError: one sentence naming the key, the value, ``source`` and what is allowed (unknown sections and
            keys included).
    """
    if not isinstance(values, dict):
        raise UsageError(f"{source} must hold a mapping of sections ({', '.join(SECTIONS)}); got {values!r}")
    values = dict(values)
    recorded = "run" in values  # an args.yaml, maybe written before a key was retired
    values.pop("run", None)
    name = values.pop("name", "custom")
    if not isinstance(name, str) or not name.strip():
        refuse("name", name, source, "a non-empty string")
    sections = {}
    for section, content in values.items():
        if section not in SECTIONS:
            raise UsageError(f"unknown section {section!r} in {source}{_did_you_mean(section, SECTIONS)}; "
                             f"sections are {', '.join(SECTIONS)}")
        content = {} if content is None else content
        if not isinstance(content, dict):
            refuse(section, content, source, "a mapping of keys to values")
        known = _section_fields(section)
        retired = {key for key in content if f"{section}.{key}" in RETIRED_KEYS}
        if retired and not recorded:
            key = f"{section}.{sorted(retired)[0]}"
            raise UsageError(f"unknown key {key} in {source}: {RETIRED_KEYS[key]}; remove it")
        content = {key: value for key, value in content.items() if key not in retired}
        for key in content:
            if key not in known:
                raise UsageError(f"unknown key {section}.{key} in {source}{_did_you_mean(key, known, section)}; "
                                 f"the keys of {section} are {', '.join(known)}")
        defaults = SECTIONS[section]()
        typed = {key: check_value(value, getattr(defaults, key), field_rule(known[key]), f"{section}.{key}", source)
                 for key, value in content.items()}
        sections[section] = type(defaults)(**typed)
    recipe = Recipe(name=name, **sections)
    _check_pairs(recipe, source)
    return recipe


def _check_pairs(recipe: Recipe, source: str) -> None:
    """Raise for the first of :data:`PAIR_RULES` that ``recipe`` breaks."""
    for first, second, holds, allowed in PAIR_RULES:
        a, b = (getattr(getattr(recipe, key.split(".")[0]), key.split(".")[1]) for key in (first, second))
        if not holds(a, b):
            where = "on the command line" if source == COMMAND_LINE else f"in {source}"
            raise UsageError(f"{allowed}, but {first} is {a!r} and {second} is {b!r} {where}")


def _did_you_mean(word: str, known, section: str | None = None) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1)
    return f" (did you mean {section + '.' if section else ''}{close[0]}?)" if close else ""


def resolve_recipe_path(recipe: str | os.PathLike) -> Path:
    """The file of a recipe: a path to a YAML file, or a bare name (no folder, no suffix) of a bundled recipe.

    A path never falls back to the bundled recipe of the same name: a typo in a path is an error.

    Raises:
        UsageError: the path does not exist or is a folder, or the bare name is not a bundled recipe.
    """
    text = os.fspath(recipe)
    bundled = ", ".join(bundled_recipes())
    if not any(sep in text for sep in {"/", os.sep, os.altsep or "/"}) and not text.endswith((".yaml", ".yml")):
        path = RECIPE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise UsageError(f"recipe {text!r} is not a bundled recipe ({bundled}); to read a file, give its path, "
                             f"e.g. ./{text}.yaml")
        return path
    path = Path(text)
    if not path.exists():
        raise UsageError(f"recipe file {text} does not exist; give an existing YAML file or a bundled recipe's bare "
                         f"name ({bundled})")
    if path.is_dir():
        raise UsageError(f"recipe {text} is a folder; give a YAML file or a bundled recipe's bare name ({bundled})")
    return path


def bundled_recipes() -> list[str]:
    """The names of the recipes shipped with the package."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(recipe: str | os.PathLike) -> Recipe:
    """Read and check a recipe YAML file (a path or a bundled recipe's bare name).

    Raises:
        UsageError: the file is missing or not YAML (naming the line), or a value is not allowed.
    """
    path = resolve_recipe_path(recipe)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"recipe {path} is not a UTF-8 text file; give a YAML recipe") from None
    except yaml.YAMLError as err:
        raise UsageError(f"recipe {path} is not valid YAML: {_yaml_problem(err)}") from None
    return recipe_from_dict({} if values is None else values, source=str(path))


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What yaml found wrong, and where (1-based line and column)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).split("\n")[0]
    return problem + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe_flag: bool = True) -> None:
    """``--recipe`` and one ``--section.key VALUE`` override per recipe key, in one help group per section.

    Values are parsed as YAML (``0.01``, ``[1, 2]``, ``true``); the help shows each key's type and built-in default
    (a recipe's own value takes precedence over it). ``recipe_flag=False`` leaves out ``--recipe``, for a command
    that names its recipes otherwise.
    """
    if recipe_flag:
        parser.add_argument("--recipe", default=None,
                            help="a recipe YAML file's path, or a bundled recipe's bare name: "
                                 + ", ".join(bundled_recipes()))
    for section, factory in SECTIONS.items():
        defaults = factory()
        description = (type(defaults).__doc__ or "").strip().split("\n")[0]
        group = parser.add_argument_group(f"recipe section {section!r} (--{section}.KEY VALUE)", description)
        for key, item in _section_fields(section).items():
            default = getattr(defaults, key)
            kind = type(default).__name__ if default is not None else "yaml"
            shown = yaml.safe_dump(default, default_flow_style=True, sort_keys=False).removesuffix("...\n").strip()
            rule = field_rule(item)
            allowed = f"; {rule.allowed}" if rule is not None else ""
            group.add_argument(f"--{section}.{key}", dest=f"{section}.{key}", default=None, metavar=kind.upper(),
                               help=f"default: {shown}{allowed}".replace("%", "%%"))


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
        try:
            values[section][key] = yaml.safe_load(raw) if isinstance(raw, str) else raw
        except yaml.YAMLError as err:
            raise UsageError(f"--{dest} {raw!r} on the command line is not a YAML value: "
                             f"{_yaml_problem(err)}") from None
    return recipe_from_dict(values, source=COMMAND_LINE)


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
    """The command as typed, for ``args.yaml``, cards and ``generation.json``, with every secret masked.

    Masked: the value of any flag whose name contains ``token``, ``password``, ``secret`` or ``key`` (``--hub_token X``
    and ``--hub_token=X``; a recipe key ``--section.key`` is a setting, recorded in args.yaml anyway, and stays), and
    wherever it appears, anything that looks like a Hugging Face token or is the token of the environment or login.
    """
    shown, hide = [], False
    for arg in argv:
        flag, equals, _ = arg.partition("=")
        if hide:
            arg = "***"
        elif _is_secret_flag(flag) and equals:
            arg = f"{flag}=***"
        hide = _is_secret_flag(arg) and not equals
        shown.append(mask_secrets(arg))
    return "python " + " ".join(shlex.quote(a) for a in shown)


SECRET_WORDS = ("token", "password", "secret", "key")
HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")


def mask_secrets(text: str) -> str:
    """``text`` with Hugging Face tokens and the token of the environment or login replaced by ``***``."""
    token = get_token()
    if token and len(token) >= 8:  # a short value would mask ordinary words
        text = text.replace(token, "***")
    return HF_TOKEN.sub("hf_***", text)


def _is_secret_flag(arg: str) -> bool:
    if not arg.startswith("-") or arg.split(".", 1)[0].lstrip("-") in SECTIONS:
        return False
    return any(word in arg.lower() for word in SECRET_WORDS)


def write_run_args(folder: str | os.PathLike, recipe: Recipe, **run: Any) -> None:
    """``args.yaml``: the final recipe plus a ``run`` section (command line, inputs); ``load_recipe`` reads it back."""
    write_yaml_atomic(Path(folder) / "args.yaml", {"run": run, **recipe.to_dict()})


def write_yaml_atomic(path: str | os.PathLike, values: Any) -> None:
    """Write ``values`` as YAML; the file appears whole or not at all."""
    write_text_atomic(path, lambda f: yaml.safe_dump(values, f, sort_keys=False))
