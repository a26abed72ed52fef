"""The .pnet syntax tree. Every node keeps its source location (excluded from equality, so a
formatted-and-reparsed tree compares equal to the original)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Loc


def _loc():
    return field(default=None, compare=False, repr=False)


# ---- expressions -------------------------------------------------------------------------------
@dataclass
class Expr:
    pass


@dataclass
class Name(Expr):
    id: str
    loc: Loc | None = _loc()


@dataclass
class Literal(Expr):
    value: Any  # int, float, str, bool or None
    loc: Loc | None = _loc()


@dataclass
class ListLit(Expr):
    items: list
    loc: Loc | None = _loc()


@dataclass
class TupleLit(Expr):
    """`a, b` on the right of an assignment: `h, c = c, h` (evaluated before any name is bound)."""
    items: list
    loc: Loc | None = _loc()


@dataclass
class BinOp(Expr):
    op: str  # + - * / // % @ ** == != < <= > >= and or
    left: Expr
    right: Expr
    loc: Loc | None = _loc()


@dataclass
class UnaryOp(Expr):
    op: str  # - + not
    operand: Expr
    loc: Loc | None = _loc()


@dataclass
class CondExpr(Expr):
    cond: Expr
    then: Expr
    other: Expr
    loc: Loc | None = _loc()


@dataclass
class Call(Expr):
    fn: Expr
    args: list
    kwargs: list  # [(name, Expr)]
    scope_name: str | None = None  # `f(x) as name`
    loc: Loc | None = _loc()


@dataclass
class Slice(Expr):
    start: Expr | None
    stop: Expr | None
    step: Expr | None
    loc: Loc | None = _loc()


@dataclass
class EllipsisLit(Expr):
    loc: Loc | None = _loc()


@dataclass
class Subscript(Expr):
    value: Expr
    items: list
    loc: Loc | None = _loc()


@dataclass
class Attribute(Expr):
    value: Expr
    attr: str
    loc: Loc | None = _loc()


@dataclass
class Annotation:
    name: str
    args: list
    kwargs: list
    loc: Loc | None = _loc()


@dataclass
class AnnotatedExpr(Expr):
    annotations: list
    value: Expr
    loc: Loc | None = _loc()


# ---- types ---------------------------------------------------------------------------------------
@dataclass
class TensorTypeExpr:
    dtype: str | None
    dims: list  # Expr or EllipsisLit
    loc: Loc | None = _loc()


@dataclass
class ScalarTypeExpr:
    name: str  # int float bool str fn
    loc: Loc | None = _loc()


# ---- statements ----------------------------------------------------------------------------------
@dataclass
class Stmt:
    pass


@dataclass
class Assign(Stmt):
    targets: list
    value: Expr
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class IndexAssign(Stmt):
    target: str
    indices: list
    reducer: str | None
    reduce_indices: list
    value: Expr
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class ParamDecl(Stmt):
    name: str
    type: TensorTypeExpr
    init: Expr | None
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class InputDecl(Stmt):
    name: str
    type: TensorTypeExpr
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class StateDecl(ParamDecl):
    """`state NAME: [dims] = init()`: a tensor that is not trained (running statistics, frozen weights)."""


@dataclass
class Update(Stmt):
    """`update NAME = expr`: the state NAME's next value, written back after a training-mode run."""
    name: str
    value: Expr
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class OutputDecl(Stmt):
    name: str
    value: Expr | None
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class Return(Stmt):
    values: list
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class Yield(Stmt):
    values: list
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class If(Stmt):
    cond: Expr
    then: list
    other: list | None  # statements; an `else if` is a one-If list
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class For(Stmt):
    var: str
    start: Expr  # the list to iterate when stop is None
    stop: Expr | None
    label: str | None
    body: list
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class ScanSeq:
    name: str
    source: Expr          # the sequence tensor, or the range start
    axis: Expr | None     # `along AXIS`
    stop: Expr | None     # set for `i in a..b` (a step counter)
    loc: Loc | None = _loc()


@dataclass
class Scan(Stmt):
    targets: list
    seqs: list
    carries: list  # [(name, Expr)]
    body: list
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class ExprStmt(Stmt):
    """A call for its effect, e.g. `assert(d % h == 0, "...")`."""
    value: Expr
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


@dataclass
class Tie(Stmt):
    target: str
    source: str
    annotations: list = field(default_factory=list)
    loc: Loc | None = _loc()


# ---- top level -----------------------------------------------------------------------------------
@dataclass
class ParamSpec:
    name: str
    type: Any  # TensorTypeExpr | ScalarTypeExpr
    default: Expr | None
    loc: Loc | None = _loc()


@dataclass
class Import:
    path: str
    is_file: bool  # `import "rel/path.pnet"` vs `import nn.core`
    alias: str | None
    loc: Loc | None = _loc()


@dataclass
class Def:
    name: str
    params: list
    ret: list | None
    body: list
    annotations: list = field(default_factory=list)
    is_model: bool = False
    loc: Loc | None = _loc()
    end_line: int = field(default=0, compare=False, repr=False)


@dataclass
class Module:
    file: str = field(compare=False)
    items: list = field(default_factory=list)
    comments: list = field(default_factory=list, compare=False, repr=False)  # [(line, col, text)]
    source: str = field(default="", compare=False, repr=False)

    @property
    def imports(self):
        return [i for i in self.items if isinstance(i, Import)]

    @property
    def defs(self):
        return [i for i in self.items if isinstance(i, Def)]
