"""Elaboration: syntax tree -> typed IR graph.

Hyperparameters, `for` and `if` are evaluated at compile time (unrolled); tensors become IR values.
Each `def` call pushes a scope segment, so parameters get call-path names (`blocks.3.attn.wq`).
A `scan` body is elaborated once into a sub-graph; outer values it reads become captured inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy

from ..errors import Loc, PnetError, PnetWarning, ShapeError, source_line
from ..ir import registry
from ..ir.graph import Annotation, Graph, Uses
from ..ir.types import is_float
from . import ast as A
from .builtins import BUILTINS
from .calls import CallsMixin
from .expressions import ExpressionsMixin
from .index_notation import IndexNotationMixin
from .loader import Loader
from .regions import Frame, Region, ReturnSignal
from .statements import StatementsMixin
from .suggest import did_you_mean
from .values import Fn, InitSpec, Namespace, Tensor

CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf}


@dataclass
class Elaborated:
    graph: Graph
    hyper: dict  # the model's hyperparameters as used
    model: A.Def
    warnings: list[PnetWarning] = field(default_factory=list)  # located, in source order; the CLI prints them


class Elaborator(StatementsMixin, IndexNotationMixin, ExpressionsMixin, CallsMixin):
    """Walks a model's syntax tree and builds its IR graph. The statements, index notation, expressions and
    calls live in their own modules (dsl/statements.py, dsl/index_notation.py, dsl/expressions.py,
    dsl/calls.py); here: the entry point, emitting ops, names, and the helpers they share."""

    def __init__(self, loader: Loader | None = None, training: bool = False):
        self.loader = loader or Loader()
        # the builtin name `training`: true when the model is elaborated for a training run (`pnet run
        # --train-mode`, `pnet train`); `update` statements become outputs only then
        self.training = bool(training)
        self.updated: dict[str, Loc] = {}   # state path -> its `update` (one per state)
        self.root: Region | None = None
        self.param_locs: dict[str, Loc] = {}
        self.scope_counts: dict[tuple, int] = {}
        self.entered_scopes: set[tuple] = set()
        self.ties: list[A.Tie] = []
        self.depth = 0
        self.warnings: dict[PnetWarning, None] = {}  # an ordered set: a def called in a loop warns once
        self._unrolled = 0  # compile-time loop iterations so far (bounded by MAX_UNROLLED_ITERATIONS)

    # ---- entry point --------------------------------------------------------------------------
    def elaborate_model(self, module: A.Module, model: str | None = None, overrides: dict | None = None) -> Elaborated:
        models = [d for d in module.defs if d.is_model]
        if not models:
            raise PnetError("no `model` in this file (a file of defs is imported, not run)", Loc(module.file, 1, 1))
        if model is None:
            mdef = models[0]
        else:
            found = [d for d in models if d.name == model]
            if not found:
                raise PnetError(f"no model named '{model}' in {module.file} (models: {', '.join(d.name for d in models)})")
            mdef = found[0]
        overrides = dict(overrides or {})
        graph = Graph(mdef.name)
        self.root = Region(graph)
        frame = Frame({}, module, (), self.root, self._annots(mdef.annotations, ()), is_model=True)
        names = {p.name for p in mdef.params}
        dims = {k: v for k, v in overrides.items() if k not in names}
        hyper = {}
        for p in mdef.params:
            if p.name in overrides:
                val = self._coerce_override(p, overrides[p.name], frame)
            elif p.default is not None:
                val = self.eval(p.default, frame)
            else:
                raise PnetError(f"model hyperparameter '{p.name}' has no default; give it with --set {p.name}=VALUE", p.loc)
            self._check_scalar(p, val, frame)
            frame.vars[p.name] = val
            hyper[p.name] = val
        graph.dims = {k: int(v) for k, v in dims.items() if isinstance(v, (int, np.integer))}
        try:
            self.run_block(mdef.body, frame)
        except ReturnSignal:
            raise PnetError("`return` in a model: use `output NAME = ...`", mdef.loc)
        if not graph.outputs:
            raise PnetError(f"model '{mdef.name}' has no `output`", mdef.loc)
        self._apply_ties(graph)
        return Elaborated(graph, hyper, mdef, list(self.warnings))

    def _coerce_override(self, p: A.ParamSpec, raw, frame):
        if not isinstance(raw, str):
            return raw
        kind = p.type.name if isinstance(p.type, A.ScalarTypeExpr) else "tensor"
        try:
            if kind == "int":
                return int(raw)
            if kind == "float":
                return float(raw)
            if kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return raw.lower() in ("true", "1")
            if kind == "fn":
                return self.lookup(raw, frame, p.loc)
            if kind == "list":
                import ast as pyast
                value = pyast.literal_eval(raw)
                if not isinstance(value, (list, tuple)):
                    raise ValueError
                return list(value)
        except (ValueError, SyntaxError):
            raise PnetError(f"--set {p.name}={raw}: expected {kind}") from None
        return raw


    # ---- emitting ops ---------------------------------------------------------------------------
    def emit(self, name, inputs, attrs, frame, loc):
        opdef = registry.get(name)
        tensors = [x for x in inputs if isinstance(x, Tensor)]
        const_dtype = self._const_dtype(tensors, inputs)
        values = []
        for x in inputs:
            if x is None:
                values.append(None)
            elif isinstance(x, Tensor):
                values.append(frame.region.lift(x.value))
            else:
                values.append(self.const(x, const_dtype, frame, loc).value)
        opdef.check_arity(len(values))
        if not opdef.variadic:  # absent optional inputs are explicit `None` slots in the IR
            values += [None] * (len(opdef.inputs) - len(values))
        attrs = opdef.bind_attrs(attrs)
        attrs = {k: (self._int_if_dim(v)) for k, v in attrs.items()}
        try:
            out_types = opdef.infer_types([v.type if v is not None else None for v in values], attrs)
        except ShapeError as err:
            message = err.message[len(name) + 2:] if err.message.startswith(name + ": ") else err.message
            culprit = self._culprit_input(opdef, values, message)
            raise ShapeError(f"{name}: " + (f"argument '{culprit}': " if culprit else "") + message, loc) from None
        node = frame.region.graph.add(name, values, attrs, out_types, loc, ".".join(frame.scope), frame.annotations)
        for v in node.outputs:
            frame.region.own.add(v)
        outs = [Tensor(v) for v in node.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    @staticmethod
    def _culprit_input(opdef, values, message) -> str | None:
        """The input a type-rule error is about, when the message shows the type of exactly one of several inputs
        (`embedding: index must be an integer tensor, got f32[2]`): its name, so the user knows which argument."""
        if opdef.variadic:
            return None
        typed = [(slot, str(v.type)) for (slot, _), v in zip(opdef.inputs, values) if v is not None]
        if len(typed) < 2:
            return None   # a one-input op: the argument is plain
        shown = [slot for slot, t in typed if t in message]   # two inputs of one type both show: no culprit
        return shown[0] if len(shown) == 1 else None

    def _int_if_dim(self, v):
        return v

    def _const_dtype(self, tensors, inputs):
        floats = [t.type.dtype for t in tensors if is_float(t.type.dtype)]
        if floats:
            return floats[0]
        numbers = [x for x in inputs if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if tensors and all(isinstance(x, int) for x in numbers):
            return tensors[0].type.dtype if tensors[0].type.dtype != "bool" else "i64"
        return "f32"

    def const(self, value, dtype, frame, loc, shape=()):
        if isinstance(value, sympy.Basic):
            value = int(value) if value.is_Integer else value
        if isinstance(value, bool):
            dtype = "bool"
        return self.emit("const", [], {"value": value, "dtype": dtype, "shape": list(shape)}, frame, loc)

    def to_tensor(self, val, loc, like=None) -> Tensor:
        if isinstance(val, Tensor):
            return val
        if isinstance(val, (int, float)) or isinstance(val, sympy.Basic):
            raise PnetError(f"expected a tensor, got the number {val} (make one with full([], {val}))", loc)
        raise PnetError(f"expected a tensor, got {self._show(val)}", loc)

    # ---- names ----------------------------------------------------------------------------------
    def lookup(self, name, frame, loc):
        if name in frame.vars:
            return frame.vars[name]
        found = self._global(name, frame)
        if found is None:
            raise PnetError(f"unknown name '{name}'{did_you_mean(name, self._visible_names(frame))}", loc)
        return found

    def _visible_names(self, frame):
        """Every name `lookup` could find from `frame` (for "did you mean")."""
        names = list(frame.vars) + [d.name for d in frame.module.defs]
        for imp in frame.module.imports:
            if imp.alias:
                names.append(imp.alias)
            else:
                names += [d.name for d in self.loader.imported(frame.module, imp).defs]
        ops = [n for n, op in registry.all_ops().items() if op.kind != "control"]
        return names + list(BUILTINS) + ops + list(CONSTANTS) + ["training"]

    def _global(self, name, frame):
        found = self._module_name(frame.module, name)
        if found is not None:
            return found
        for imp in frame.module.imports:
            if imp.alias:
                if imp.alias == name:
                    return Namespace(self.loader.imported(frame.module, imp))
                continue
            found = self._module_name(self.loader.imported(frame.module, imp), name)
            if found is not None:
                return found
        if name in BUILTINS:
            return Fn("builtin", name)
        if name in registry.all_ops():
            return Fn("op", name)
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name == "training":
            return self.training
        return None

    def _module_name(self, module, name):
        for d in module.defs:
            if d.name == name:
                return Fn("def", name, d, module)
        return None

    def _enter_scope(self, scope: tuple) -> None:
        """A call entering a scope a call entered before (`f(x) as enc` twice: the calls share their parameters)
        names its unnamed calls and loops as the first call did (`enc.linear`, `enc.blocks.0`, not `enc.linear_1`),
        so the whole sub-network is shared, not only its explicitly named parts."""
        if scope in self.entered_scopes:
            for key in [k for k in self.scope_counts if len(k) > len(scope) and k[:len(scope)] == scope]:
                del self.scope_counts[key]
        self.entered_scopes.add(scope)

    def _unique_scope(self, scope, base):
        key = scope + (base,)
        n = self.scope_counts.get(key, 0)
        self.scope_counts[key] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def _declares_params(self, s) -> bool:
        return True  # calls inside may declare params; a unique label is harmless

    # ---- small helpers --------------------------------------------------------------------------
    def _annots(self, annots, inherited, frame=None):
        out = list(inherited)
        for a in annots:
            f = frame or Frame({}, A.Module("<annotation>"), (), self.root)
            args = tuple(self._plain(self.eval(x, f)) for x in a.args)
            kwargs = tuple(sorted((k, self._plain(self.eval(v, f))) for k, v in a.kwargs))
            ann = Annotation(a.name, args, kwargs, a.loc)
            _check_annotation(ann)
            out.append(ann)
        return tuple(out)

    def _plain(self, v):
        if isinstance(v, Fn):
            return v.name
        if isinstance(v, sympy.Basic):
            return int(v) if v.is_Integer else str(v)
        if isinstance(v, (list, tuple)):
            return tuple(self._plain(x) for x in v)
        if isinstance(v, Tensor):
            raise PnetError("annotation arguments must be compile-time values")
        return v

    def _check_scalar(self, p: A.ParamSpec, val, frame):
        kind = p.type.name if isinstance(p.type, A.ScalarTypeExpr) else None
        ok = {
            "int": lambda v: (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or (isinstance(v, sympy.Basic) and v.is_integer),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "fn": lambda v: isinstance(v, Fn),
            "list": lambda v: isinstance(v, (list, tuple)),
        }
        if kind is None:
            raise PnetError(f"model hyperparameter '{p.name}' must be int, float, bool, str, fn or list", p.loc)
        if kind == "fn" and isinstance(val, str):
            val = self.lookup(val, frame, p.loc)
        if not ok[kind](val):
            raise PnetError(f"'{p.name}' should be {kind}, got {self._show(val)}", p.loc)
        if kind == "float":
            val = float(val)
        return val

    def _apply_ties(self, graph: Graph):
        if not self.ties:
            return
        uses, by_name = Uses(graph), {p.name: p for p in graph.params}  # once: a tie per param stays linear
        for t in self.ties:
            target, source = by_name.get(t.target), by_name.get(t.source)
            if target is None or source is None:
                missing = t.target if target is None else t.source
                raise PnetError(f"tie: no parameter named {missing!r}", t.loc)
            if target.value.type != source.value.type:
                raise ShapeError(f"tie: '{t.target}' is {target.value.type} but '{t.source}' is {source.value.type}", t.loc)
            uses.replace(target.value, source.value)
            del by_name[t.target]
        graph.params = [p for p in graph.params if by_name.get(p.name) is p]

    def _truth(self, v, loc):
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return v != 0
        if isinstance(v, sympy.Basic):
            if v.is_number:
                return bool(v != 0)
            raise PnetError(f"cannot decide '{v}' at compile time", loc)
        raise PnetError(f"expected a compile-time condition, got {self._show(v)}", loc)

    def _need_number(self, v, loc, op):
        if isinstance(v, bool) or not isinstance(v, (int, float, sympy.Basic)):
            raise PnetError(f"operator '{op}' cannot take {self._show(v)}", loc)

    def _int(self, v, loc) -> int:
        if isinstance(v, sympy.Basic):
            if v.is_Integer:
                return int(v)
            raise PnetError(f"expected a known integer, got the symbolic dim {v}", loc)
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise PnetError(f"expected an integer, got {self._show(v)}", loc)
        return int(v)

    @staticmethod
    def _dimval(d):
        return int(d) if d.is_Integer else d

    @staticmethod
    def _show(v) -> str:
        if isinstance(v, Tensor):
            return f"a tensor {v.type}"
        if isinstance(v, Fn):
            return f"the function '{v.name}'"
        if isinstance(v, InitSpec):
            return f"the initializer {v.fn}()"
        if isinstance(v, str):
            return f'the string "{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "a list"
        if v is None:
            return "none"
        return str(v)

    def _locate(self, err: PnetError, loc):
        if err.loc is None and loc is not None:
            err.loc = loc
        if err.source_line is None and err.loc is not None:
            err.source_line = self._source_line(err.loc)
        return err

    def _source_line(self, loc: Loc):
        for m in self.loader.modules.values():
            if m.file == loc.file:
                return source_line(m.source, loc.line)
        if self._main_source and self._main_source[0] == loc.file:
            return source_line(self._main_source[1], loc.line)
        return None

    _main_source = None


def _check_annotation(a: Annotation) -> None:
    """Annotations mean one thing: a `@sparse` / `@quantize` spec is read here, at compile time, by its pass's own
    parser (an error at the annotation); free text goes in `@note("...")`, which every pass ignores (its arguments are
    not checked: `@note` and any other name no pass reads are kept as they are)."""
    if a.name == "sparse":
        from ..passes.sparsify import _annotation_options
        _annotation_options(a)
    elif a.name == "quantize":
        from ..passes.quantize.layers import _annotation_options
        _annotation_options(a, None)
