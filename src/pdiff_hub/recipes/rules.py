"""What each recipe value may be: a rule per key, checked when the value is read, and one sentence when it is not.

A :class:`Rule` says in words what is allowed (``"an integer >= 1"``), which the error sentence and ``--help`` show,
and tests a value already converted to its field's type. The sections in :mod:`pdiff_hub.recipes.config` declare
their rules beside their fields with :func:`setting`; :func:`check_value` converts and checks one value.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.cli import UsageError

__all__ = ["COMMAND_LINE", "Rule", "check_value", "choice", "field_rule", "integer", "items", "number", "odd",
           "random_seed", "refuse", "setting", "symmetric_channels", "text"]

COMMAND_LINE = "the command line"
"""The ``source`` of values given as ``--section.key VALUE`` overrides."""

SEED_LIMIT = 2**32  # numpy's seed range, which accelerate's set_seed also seeds


@dataclass(frozen=True)
class Rule:
    """A value is allowed when ``test(value)`` is true; ``allowed`` says which values are, in words.

    ``item`` is the type of a list's elements, which are converted like a single value of that type.
    """

    allowed: str
    test: Callable[[Any], bool]
    item: type | None = None


def integer(low: int | None = None, high: int | None = None) -> Rule:
    """An integer in ``[low, high)``; either bound may be left out."""
    if low is not None and high is not None:
        words = f"an integer from {low} to {high - 1}"
    else:
        words = "an integer" + (f" >= {low}" if low is not None else "") + (f" < {high}" if high is not None else "")
    return Rule(words, lambda v: (low is None or v >= low) and (high is None or v < high))


def number(low: float, *, above: bool = False, below: float | None = None) -> Rule:
    """A finite number ``>= low`` (``> low`` when ``above``), and ``< below`` when given."""
    words = f"a finite number {'>' if above else '>='} {low:g}" + (f" and < {below:g}" if below is not None else "")
    return Rule(words, lambda v: math.isfinite(v) and (v > low if above else v >= low)
                and (below is None or v < below))


def choice(names: Sequence[str]) -> Rule:
    """One of ``names``."""
    return Rule("one of " + ", ".join(names), lambda v: v in names)


def odd(low: int = 1) -> Rule:
    """An odd integer ``>= low`` (a convolution that keeps its input's length needs an odd kernel)."""
    return Rule(f"an odd integer >= {low}", lambda v: v >= low and v % 2 == 1)


def items(kind: type, rule: Rule | None = None, *, non_empty: bool = False, distinct: bool = False) -> Rule:
    """A list whose elements are ``kind`` values allowed by ``rule``; ``non_empty`` refuses ``[]``, ``distinct``
    a repeated element."""
    words = (f"a {'non-empty ' if non_empty else ''}list of {'distinct ' if distinct else ''}"
             + _plural(kind, rule))
    return Rule(words, lambda v: (bool(v) or not non_empty) and (len(set(v)) == len(v) or not distinct)
                and all(rule is None or rule.test(x) for x in v), item=kind)


def symmetric_channels() -> Rule:
    """A denoiser's conv channels: symmetric, of odd length >= 3, each >= 1, starting and ending at 1."""
    return Rule("a symmetric list of odd length >= 3 of integers >= 1 that starts and ends with 1, "
                "e.g. [1, 64, 128, 64, 1]",
                lambda v: len(v) >= 3 and len(v) % 2 == 1 and v == v[::-1] and v[0] == 1 and min(v) >= 1, item=int)


def text() -> Rule:
    """A non-empty string."""
    return Rule("a non-empty string", lambda v: bool(v.strip()))


def random_seed() -> Rule:
    """A random seed: numpy accepts 0 to 2**32 - 1."""
    return integer(0, SEED_LIMIT)


def setting(default: Any, rule: Rule) -> Any:
    """A section field with ``default`` (copied for lists and dicts) and ``rule`` in its metadata."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def field_rule(item: dataclasses.Field) -> Rule | None:
    """The rule a section field declares, if any."""
    return item.metadata.get("rule")


def check_value(value: Any, default: Any, rule: Rule | None, key: str, source: str) -> Any:
    """``value`` converted to the type of the field's ``default`` and checked against ``rule``.

    YAML reads ``1e-3`` as a string and ``5`` as an int where a float is meant: both are converted.

    Raises:
        UsageError: naming ``key``, ``value``, ``source`` and what is allowed.
    """
    if default is None:  # a component argument without a typed default (e.g. an optional name) takes any value
        return value
    kind = type(default)
    allowed = rule.allowed if rule is not None else _article(kind)
    converted = _convert(value, kind)
    if converted is not _REFUSED and kind is list and rule is not None and rule.item is not None:
        converted = [_convert(x, rule.item) for x in converted]
        converted = _REFUSED if any(x is _REFUSED for x in converted) else converted
    if converted is _REFUSED or (rule is not None and not rule.test(converted)):
        refuse(key, value, source, allowed)
    return converted


def refuse(key: str, value: Any, source: str, allowed: str) -> None:
    """Raise the one sentence for a refused value: ``KEY in SOURCE must be ALLOWED; got VALUE``."""
    where = f"--{key} on {COMMAND_LINE}" if source == COMMAND_LINE else f"{key} in {source}"
    raise UsageError(f"{where} must be {allowed}; got {value!r}")


_REFUSED = object()


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or ``_REFUSED``: no silent bool -> int, list -> str or fraction -> int."""
    if isinstance(value, bool) and kind is not bool:
        return _REFUSED
    if isinstance(value, kind):
        return value
    if kind in (list, dict) or value is None or isinstance(value, (list, dict)):
        return _REFUSED
    if kind is bool:
        text = str(value).lower()
        return text in ("true", "yes", "1") if text in ("true", "false", "yes", "no", "1", "0") else _REFUSED
    try:
        if kind is int and isinstance(value, float):
            return int(value) if value.is_integer() else _REFUSED
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return _REFUSED


_KIND_WORDS = {int: "integer", float: "number", str: "string", bool: "true/false value", list: "list", dict: "mapping"}


def _article(kind: type) -> str:
    word = _KIND_WORDS.get(kind, kind.__name__)
    return ("an " if word[0] in "aeiou" else "a ") + word


def _plural(kind: type, rule: Rule | None) -> str:
    words = (rule.allowed if rule is not None else _article(kind)).split(" ", 1)[1]
    noun = _KIND_WORDS.get(kind, kind.__name__)
    return words.replace(noun, noun + "s", 1)
