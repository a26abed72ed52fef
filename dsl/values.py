"""Compile-time values the elaborator passes around besides numbers, strings, lists and sympy dims."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir.graph import Value
from . import ast as A


@dataclass(eq=False)
class Tensor:
    """A runtime tensor: an IR value of the region being built."""
    value: Value

    @property
    def type(self):
        return self.value.type


@dataclass(frozen=True)
class Fn:
    """A function value: a registry op, a `def`, or a DSL builtin. Can be passed as an `fn` hyperparameter."""
    kind: str       # "op" | "def" | "builtin"
    name: str
    node: Any = None      # the A.Def for kind "def"
    module: Any = None    # the A.Module it was defined in

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class InitSpec:
    fn: str
    args: tuple
    kwargs: tuple


@dataclass(frozen=True)
class Namespace:
    """`import nn.core as core`: `core.linear` looks up in that module."""
    module: A.Module


@dataclass(frozen=True)
class IndexVar:
    """An index variable of an index-notation statement; its position in the full index space."""
    name: str
    axis: int
