"""What the generator and its samplers pass around: the typed values a block can use (`Var`), a call's
arguments and attributes (`Arg`, `Call`), what the generator knows about one op (`Spec`), the block being
generated (`Ctx`), and the source-text printers for literals, shapes and types."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy

from ...ir.types import TensorType, is_float, source_literal

# ---- source literals ---------------------------------------------------------------------------------------
lit = source_literal  # (ir/types.py: the formatter's literal printer)


def shape_src(shape) -> str:
    return "[" + ", ".join(lit(d) for d in shape) + "]"


def type_src(t: TensorType) -> str:
    return f"{t.dtype}{shape_src(t.shape)}"


def renderable(d) -> bool:
    """Whether a dim prints as .pnet source (ints, symbolic dims, sums and products of them; no floor/ceiling
    or fractions, which a shape in the source cannot spell)."""
    d = sympy.sympify(d)
    return not d.atoms(sympy.Function) and all(a.is_Integer or a.is_Symbol for a in d.atoms())


def all_renderable(v) -> bool:
    if isinstance(v, sympy.Basic):
        return renderable(v)
    if isinstance(v, (list, tuple)):
        return all(all_renderable(x) for x in v)
    return True


def free_names(v) -> set:
    if isinstance(v, sympy.Basic):
        return {s.name for s in v.free_symbols}
    if isinstance(v, (list, tuple)):
        return set().union(*[free_names(x) for x in v]) if v else set()
    return set()


# ---- values the generator tracks --------------------------------------------------------------------------
@dataclass
class Var:
    name: str
    type: TensorType
    exact: bool = False      # equal in the float32 and float64 references
    bound: float = 4.0       # rough bound on |value|

    @property
    def float(self) -> bool:
        return is_float(self.type.dtype)


@dataclass
class Arg:
    """A tensor argument of a call: its source text (a name, or a safe wrapper around one), type, ..."""
    expr: str
    type: TensorType
    exact: bool
    bound: float
    atomic: bool = True
    literal: bool = False

    @staticmethod
    def of(v: Var) -> "Arg":
        return Arg(v.name, v.type, v.exact or not v.float, v.bound)

    def paren(self) -> str:
        return self.expr if self.atomic else f"({self.expr})"


def number(value, dtype="f32") -> Arg:
    return Arg(lit(value), TensorType(dtype, ()), True, abs(float(value)), literal=True)


@dataclass
class Call:
    args: list                      # Arg | None (an absent optional input)
    attrs: dict
    text: str | None = None         # custom source for the call; default `op(args, k=v)`
    keep: list | None = None        # which outputs join the pool (default: all)
    exact: bool | None = None
    bound: float | None = None
    kw_inputs: dict | None = None   # optional inputs given by keyword: {index: name}


@dataclass(frozen=True)
class Spec:
    """What the generator knows about one op (all optional)."""
    sample: Callable | None = None   # per-op sampler (g, ctx, op) -> Call | None; None = generic by kind
    domain: str | None = None        # a wrapper making float inputs safe: 'abs({}) + 0.5'
    exact_inputs: bool = False       # discontinuous: only exact float inputs
    keeps_exact: bool = False        # exact inputs give an exact result
    grow: Callable | None = None     # (input bounds, call, out types) -> output bound
    weight: float = 1.0


class TypedCall(Call):
    """A call whose result type the sampler computed itself (subscripts: several IR ops)."""

    def __init__(self, text, t, x):
        super().__init__([Arg.of(x)], {}, text=text, exact=x.exact or not x.float, bound=x.bound)
        self.out_type = t


class Skip(Exception):
    """Raised by a sampler that cannot sample this op here (the attempt is dropped)."""


# ---- contexts: the block being generated --------------------------------------------------------------------
@dataclass
class Ctx:
    kind: str                       # model | def | loop | branch | scan
    lines: list
    indent: str
    pool: list
    symbols: set | None = None      # symbolic dims nameable here (None: all of the model's)
    depth: int = 0
    rhs: list = field(default_factory=list)  # (text, [Var]) of emitted single-output ops (for CSE bait)

    def child(self, kind, extra=()) -> "Ctx":
        return Ctx(kind, [], self.indent + "  ", list(self.pool) + list(extra), self.symbols, self.depth + 1)

    @property
    def can_declare_inputs(self) -> bool:
        return self.kind != "def" and self.symbols is None
