"""Which parameters of a network are generated, and how they become one flat vector.

p-diff treats a chosen subset of a trained network's parameters (by default the last two normalization layers) as
one float32 vector. A :class:`ParameterLayout` fixes the subset (ordered names and shapes), flattens state dicts to
vectors and writes vectors back.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ParameterLayout", "PatternError", "select_parameters"]


class PatternError(ValueError):
    """Parameter patterns that select nothing of a network."""


def select_parameters(model: nn.Module, patterns: str | Sequence[str],
                      among: Sequence[str] | None = None) -> list[str]:
    """Names of the trainable parameters of ``model`` that match any of ``patterns``, in the model's own order.

    ``among`` restricts the choice to those names (an adapter's parameters: ``["*"]`` is then the whole adapter).

    Patterns are shell-style (``fnmatch``) and match parameter names (``layer4.1.bn1.weight``) or module names
    (``layer4.1.bn*`` selects every parameter of the matching modules). ``"*"`` selects the whole network.

    Raises:
        PatternError: a ``ValueError``, if a pattern matches nothing; the message lists the closest parameter names.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise PatternError("No parameter patterns given: pass e.g. ['layer4.1.bn*'] or ['*'] for the whole network.")
    allowed = None if among is None else set(among)
    names = [name for name, _ in model.named_parameters() if allowed is None or name in allowed]
    selected: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if any(fnmatch.fnmatchcase(x, pattern) for x in (n, n.rsplit(".", 1)[0]))]
        if not hits:
            prefix = pattern.split("*")[0].rsplit(".", 1)[0]
            near = [n for n in names if n.startswith(prefix)][:8] or names[-8:]
            raise PatternError(f"Parameter pattern {pattern!r} matches no parameter of {type(model).__name__}; "
                             f"parameters near it: {near}")
        selected.extend(hits)
    chosen = set(selected)
    return [n for n in names if n in chosen]


@dataclass(frozen=True)
class ParameterLayout:
    """The ordered names and shapes of the generated parameters.

    Args:
        names: parameter names as in the model's ``state_dict``.
        shapes: one shape per name.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.shapes):
            raise ValueError(f"{len(self.names)} names but {len(self.shapes)} shapes")
        if not self.names:
            raise ValueError("A parameter layout needs at least one parameter")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "shapes", tuple(tuple(int(d) for d in s) for s in self.shapes))

    @classmethod
    def from_model(cls, model: nn.Module, patterns: str | Sequence[str],
                   among: Sequence[str] | None = None) -> ParameterLayout:
        """The layout of the parameters of ``model`` selected by ``patterns`` (see :func:`select_parameters`)."""
        params = dict(model.named_parameters())
        names = select_parameters(model, patterns, among)
        return cls(tuple(names), tuple(tuple(params[n].shape) for n in names))

    @property
    def sizes(self) -> list[int]:
        """Number of values in each tensor."""
        return [math.prod(s) for s in self.shapes]

    @property
    def num_params(self) -> int:
        """Length ``D`` of the flat vector."""
        return sum(self.sizes)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    def check_state_dict(self, state_dict: Mapping[str, torch.Tensor], what: str = "model") -> None:
        """Raise ``ValueError`` naming the first parameter missing from ``state_dict`` or of another shape."""
        for name, shape in zip(self.names, self.shapes):
            if name not in state_dict:
                raise ValueError(f"The {what} has no parameter {name!r}, which the layout generates")
            got = tuple(state_dict[name].shape)
            if got != shape:
                raise ValueError(f"Parameter {name!r} of the {what} has shape {got}, the layout expects {shape}")

    def flatten(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One float32 vector of length :attr:`num_params` from a state dict (or a model's named parameters)."""
        self.check_state_dict(state_dict)
        return torch.cat([state_dict[n].detach().reshape(-1).float().cpu() for n in self.names])

    def flatten_many(self, state_dicts: Iterable[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """A (K, D) matrix, one flattened state dict per row."""
        return torch.stack([self.flatten(sd) for sd in state_dicts])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors of a vector (D,) or a batch of vectors (N, D) by name, shaped (…, *shape)."""
        if vector.ndim not in (1, 2) or vector.shape[-1] != self.num_params:
            raise ValueError(f"Expected a vector of length {self.num_params} (or a batch of them), got shape "
                             f"{tuple(vector.shape)}")
        lead = vector.shape[:-1]
        pieces = torch.split(vector, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, pieces, self.shapes)}

    def load_into(self, model: nn.Module, vector: torch.Tensor) -> nn.Module:
        """Write ``vector`` into the generated parameters of ``model`` in place and return the model."""
        if not torch.isfinite(vector).all():
            raise ValueError("The parameter vector contains NaN or infinite values")
        params = dict(model.named_parameters())
        self.check_state_dict(params)
        with torch.no_grad():
            for name, value in self.unflatten(vector).items():
                params[name].copy_(value.to(params[name].dtype))
        return model
