"""Elaboration: syntax tree -> typed IR graph.

Hyperparameters, `for` and `if` are evaluated at compile time (unrolled); tensors become IR values.
Each `def` call pushes a scope segment, so parameters get call-path names (`blocks.3.attn.wq`).
A `scan` body is elaborated once into a sub-graph; outer values it reads become captured inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from ..errors import Loc, PnetError, ShapeError, source_line
from ..ir import registry
from ..ir.graph import Annotation, Graph, Init, Param, Uses, Value
from ..ir.types import DTYPES, TensorType, dim, dims_equal, fmt_dim, fmt_shape, is_float, normalize_axis, promote, sym
from . import ast as A
from .loader import Loader
from .values import Fn, IndexVar, InitSpec, Namespace, Tensor

INIT_FNS = ("normal", "uniform", "zeros", "ones", "constant", "kaiming", "xavier", "orthogonal", "trunc_normal")
DEFAULT_INIT = InitSpec("normal", (0.0, 0.02), ())
# compile-time `for` loops unroll into the graph: bounds that keep a typo (0..10**9) from exhausting memory
MAX_LOOP_ITERATIONS = 100_000
MAX_UNROLLED_ITERATIONS = 1_000_000


class _Return(Exception):
    def __init__(self, values):
        self.values = values


# ---- regions: the graph being built (the model, or a scan body) ------------------------------------
class Region:
    def __init__(self, graph: Graph, parent: "Region | None" = None):
        self.graph = graph
        self.parent = parent
        self.own: set[Value] = set()
        self.captures: dict[Value, Value] = {}  # outer value -> body input

    def lift(self, v: Value) -> Value:
        """The value as seen from this region (capturing it into scan bodies on the way)."""
        if v in self.own:
            return v
        if self.parent is None:
            raise PnetError("internal: value escapes its scan body")  # pragma: no cover
        outer = self.parent.lift(v)
        if outer not in self.captures:
            inner = Value(outer.type)
            self.captures[outer] = inner
            self.graph.inputs.append((f"cap{len(self.captures)}", inner))
            self.own.add(inner)
        return self.captures[outer]


@dataclass
class Frame:
    vars: dict
    module: A.Module
    scope: tuple
    region: Region
    annotations: tuple = ()
    yields: list | None = None  # set inside a scan body
    is_model: bool = False


@dataclass
class Elaborated:
    graph: Graph
    hyper: dict  # the model's hyperparameters as used
    model: A.Def


class Elaborator:
    def __init__(self, loader: Loader | None = None):
        self.loader = loader or Loader()
        self.root: Region | None = None
        self.param_locs: dict[str, Loc] = {}
        self.scope_counts: dict[tuple, int] = {}
        self.ties: list[A.Tie] = []
        self.depth = 0
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
        except _Return:
            raise PnetError("`return` in a model: use `output NAME = ...`", mdef.loc)
        if not graph.outputs:
            raise PnetError(f"model '{mdef.name}' has no `output`", mdef.loc)
        self._apply_ties(graph)
        return Elaborated(graph, hyper, mdef)

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

    # ---- statements ---------------------------------------------------------------------------
    def run_block(self, stmts, frame: Frame):
        for s in stmts:
            self.run_stmt(s, frame)

    def run_stmt(self, s, frame: Frame):
        saved = frame.annotations
        if s.annotations:
            frame.annotations = self._annots(s.annotations, frame.annotations, frame)
        try:
            getattr(self, "stmt_" + type(s).__name__)(s, frame)
        except PnetError as e:
            raise self._locate(e, s.loc)
        except RecursionError:
            raise PnetError("statement nests too deeply to elaborate (an expression or call chain thousands deep)",
                            s.loc) from None
        except OverflowError as e:  # a huge integer met a float somewhere in compile-time arithmetic
            raise PnetError(f"a compile-time number is too large ({e})", s.loc) from None
        finally:
            frame.annotations = saved

    def stmt_Assign(self, s: A.Assign, frame):
        val = self.eval(s.value, frame)
        self._bind_targets(s.targets, val, frame, s.loc)

    def _bind_targets(self, targets, val, frame, loc):
        if len(targets) == 1:
            frame.vars[targets[0]] = val
            return
        if not isinstance(val, (tuple, list)) or len(val) != len(targets):
            n = len(val) if isinstance(val, (tuple, list)) else 1
            raise PnetError(f"cannot unpack {n} value{'s' if n != 1 else ''} into {len(targets)} names", loc)
        for t, v in zip(targets, val):
            frame.vars[t] = v

    def stmt_ParamDecl(self, s: A.ParamDecl, frame):
        ttype = self.eval_type(s.type, frame)
        for d in ttype.shape:
            if not d.is_Integer:
                raise PnetError(f"parameter '{s.name}' has shape {fmt_shape(ttype.shape)}: parameter dims must be known at compile time", s.loc)
        init = self.eval(s.init, frame) if s.init is not None else DEFAULT_INIT
        if isinstance(init, (int, float)) and not isinstance(init, bool):
            init = InitSpec("constant", (float(init),), ())
        if not isinstance(init, InitSpec):
            raise PnetError(f"parameter init must be one of {', '.join(INIT_FNS)}, got {self._show(init)}", s.init.loc)
        name = ".".join(frame.scope + (s.name,))
        if name in self.param_locs:
            first = self.param_locs[name]
            existing = self.root.graph.param(name)
            if first == s.loc and existing.value.type == ttype:
                # the same declaration reached through the same call path again (`f(x) as enc`
                # twice): the calls share their parameters
                frame.vars[s.name] = Tensor(frame.region.lift(existing.value))
                return
            raise PnetError(f"parameter '{name}' declared twice (first at {first}); name the calls apart with `as NAME`", s.loc)
        self.param_locs[name] = s.loc
        v = Value(ttype)
        self.root.own.add(v)
        self.root.graph.params.append(Param(name, v, Init(init.fn, init.args, init.kwargs), s.loc, tuple(frame.annotations)))
        frame.vars[s.name] = Tensor(frame.region.lift(v))

    def stmt_InputDecl(self, s: A.InputDecl, frame):
        if not frame.is_model:
            raise PnetError("`input` is only allowed in a model (a def takes tensors as arguments)", s.loc)
        for d in s.type.dims:
            if isinstance(d, A.Name) and d.id not in frame.vars and self._global(d.id, frame) is None:
                frame.vars[d.id] = sym(d.id)
        ttype = self.eval_type(s.type, frame)
        v = Value(ttype)
        self.root.own.add(v)
        if any(n == s.name for n, _ in self.root.graph.inputs):
            raise PnetError(f"input '{s.name}' declared twice", s.loc)
        self.root.graph.inputs.append((s.name, v))
        frame.vars[s.name] = Tensor(v)

    def stmt_OutputDecl(self, s: A.OutputDecl, frame):
        if not frame.is_model:
            raise PnetError("`output` is only allowed in a model (a def uses `return`)", s.loc)
        val = self.eval(s.value, frame) if s.value is not None else self.lookup(s.name, frame, s.loc)
        t = self.to_tensor(val, s.loc)
        if any(n == s.name for n, _ in self.root.graph.outputs):
            raise PnetError(f"output '{s.name}' declared twice", s.loc)
        self.root.graph.outputs.append((s.name, t.value))
        frame.vars[s.name] = t

    def stmt_Return(self, s: A.Return, frame):
        vals = [self.eval(v, frame) for v in s.values]
        raise _Return(vals[0] if len(vals) == 1 else tuple(vals))

    def stmt_Yield(self, s: A.Yield, frame):
        if frame.yields is None:
            raise PnetError("`yield` outside a scan body", s.loc)
        if frame.yields:
            raise PnetError("a scan body yields once (yield several values: `yield a, b`)", s.loc)
        frame.yields.extend(self.to_tensor(self.eval(v, frame), v.loc) for v in s.values)

    def stmt_If(self, s: A.If, frame):
        cond = self.eval(s.cond, frame)
        if isinstance(cond, Tensor):
            raise PnetError("`if` needs a compile-time condition; for a per-element choice use where(cond, a, b)", s.cond.loc)
        if self._truth(cond, s.cond.loc):
            self.run_block(s.then, frame)
        elif s.other is not None:
            self.run_block(s.other, frame)

    def stmt_For(self, s: A.For, frame):
        if s.stop is not None:
            lo, hi = self._int(self.eval(s.start, frame), s.start.loc), self._int(self.eval(s.stop, frame), s.stop.loc)
            if hi - lo > MAX_LOOP_ITERATIONS:
                raise PnetError(f"`for` over {hi - lo} iterations: compile-time loops unroll, so at most "
                                f"{MAX_LOOP_ITERATIONS} (use `scan` for a loop that runs at run time)", s.loc)
            items = range(lo, hi)
        else:
            items = self.eval(s.start, frame)
            if not isinstance(items, (list, tuple)):
                raise PnetError(f"`for` iterates over a range a..b or a list, got {self._show(items)}", s.start.loc)
        label = s.label or s.var
        base = self._unique_scope(frame.scope, label) if any(self._declares_params(b) for b in s.body) else label
        saved = frame.scope
        for i, item in enumerate(items):
            self._unrolled += 1
            if self._unrolled > MAX_UNROLLED_ITERATIONS:
                raise PnetError(f"compile-time loops unroll more than {MAX_UNROLLED_ITERATIONS} iterations in all "
                                "(nested loops multiply; use `scan` for run-time loops)", s.loc)
            frame.vars[s.var] = item
            frame.scope = saved + (base, str(i))
            try:
                self.run_block(s.body, frame)
            finally:
                frame.scope = saved

    def stmt_ExprStmt(self, s, frame):
        self.eval(s.value, frame)

    def stmt_Tie(self, s: A.Tie, frame):
        self.ties.append(s)

    def stmt_IndexAssign(self, s: A.IndexAssign, frame):
        frame.vars[s.target] = self.index_notation(s, frame)

    def stmt_Scan(self, s: A.Scan, frame):
        frame.vars  # noqa: B018 - readability: the scan writes its targets into this frame
        results = self.scan(s, frame)
        self._bind_targets(s.targets, results if len(results) > 1 else results[0], frame, s.loc)

    # ---- scan ----------------------------------------------------------------------------------
    @staticmethod
    def _scan_range_length(lo: int, hi, q) -> sympy.Expr:
        """The length of `i in lo..hi`: a..a is an empty scan (no steps: the carries' initial values and
        zero-length stacks); a reversed range, or one not reversed for every size of its dims, is an error."""
        n = sympy.sympify(hi - lo)
        if n.is_nonnegative:
            return dim(n)
        if n.is_number:
            raise PnetError(f"scan range {lo}..{fmt_dim(hi)} is reversed (its end is before its start); "
                            f"an empty scan is written {lo}..{lo}", q.loc)
        raise PnetError(f"scan range {lo}..{fmt_dim(hi)} may be reversed ({fmt_dim(hi)} < {lo} for some sizes of its "
                        f"dims): its length {fmt_dim(n)} must be >= 0 for every size", q.loc)

    def scan(self, s: A.Scan, frame: Frame):
        seqs, axes = [], []
        for q in s.seqs:
            if q.stop is not None:
                lo = self._int(self.eval(q.source, frame), q.source.loc)
                hi = self.eval(q.stop, frame)  # may be a symbolic dim: `i in 0..T`
                hi = hi if isinstance(hi, sympy.Basic) else self._int(hi, q.stop.loc)
                t = self.emit("arange", [], {"n": self._scan_range_length(lo, hi, q)}, frame, q.loc)
                if lo:
                    t = self.binary("+", t, lo, frame, q.loc)
                seqs.append(t)
                axes.append(0)
            else:
                t = self.to_tensor(self.eval(q.source, frame), q.source.loc)
                axis = self._int(self.eval(q.axis, frame), q.axis.loc) if q.axis is not None else 0
                axes.append(normalize_axis(axis, t.type.rank, "scan axis"))
                seqs.append(t)
        length = seqs[0].type.shape[axes[0]]
        for t, ax, q in zip(seqs, axes, s.seqs):
            if not dims_equal(t.type.shape[ax], length):
                raise ShapeError(f"scan sequences differ in length: {fmt_dim(length)} vs {fmt_dim(t.type.shape[ax])} ({t.type} along axis {ax})", q.loc)
        inits = [self.to_tensor(self.eval(e, frame), e.loc, like=None) for _, e in s.carries]

        body = Graph("scan_body")
        region = Region(body, frame.region)
        inner_vars = dict(frame.vars)
        for (name, _), t in zip(s.carries, inits):
            v = Value(t.type)
            body.inputs.append((name, v))
            region.own.add(v)
            inner_vars[name] = Tensor(v)
        for q, t, ax in zip(s.seqs, seqs, axes):
            v = Value(t.type.with_shape(t.type.shape[:ax] + t.type.shape[ax + 1:]))
            body.inputs.append((q.name, v))
            region.own.add(v)
            inner_vars[q.name] = Tensor(v)
        inner = Frame(inner_vars, frame.module, frame.scope, region, frame.annotations, yields=[], is_model=False)
        try:
            self.run_block(s.body, inner)
        except _Return:
            raise PnetError("`return` inside a scan body: use `yield`", s.loc)
        new_carries = []
        for (name, e), t in zip(s.carries, inits):
            nt = self.to_tensor(inner.vars[name], s.loc)
            if nt.type != t.type:
                raise ShapeError(f"scan carry '{name}' changes type in the body: starts {t.type}, becomes {nt.type}", s.loc)
            new_carries.append(region.lift(nt.value))
        yields = [region.lift(t.value) for t in inner.yields]
        body.outputs = [(f"carry{i}", v) for i, v in enumerate(new_carries)] + [(f"y{i}", v) for i, v in enumerate(yields)]
        out_axis = axes[0]
        out_types = [t.type for t in inits] + [
            v.type.with_shape(v.type.shape[:out_axis] + (length,) + v.type.shape[out_axis:]) for v in yields]
        captured = [Tensor(outer) for outer in region.captures]  # outer values (already lifted into frame.region)
        attrs = {"axes": axes, "out_axis": out_axis, "n_carries": len(inits), "n_seqs": len(seqs), "length": length}
        # inits and sequences may be values of an enclosing scan's outer graph: lift them like emit() does
        operands = [frame.region.lift(t.value) for t in inits + seqs] + [t.value for t in captured]
        node = frame.region.graph.add("scan", operands, attrs, out_types,
                                      s.loc, ".".join(frame.scope), frame.annotations, body)
        for v in node.outputs:
            frame.region.own.add(v)
        outs = [Tensor(v) for v in node.outputs]
        n = len(s.targets)
        if n != len(outs):
            raise PnetError(f"scan gives {len(yields)} yielded sequence(s) then {len(inits)} final carr{'y' if len(inits) == 1 else 'ies'}: "
                            f"{len(outs)} values for {n} names", s.loc)
        return outs[len(inits):] + outs[:len(inits)]

    # ---- index notation -------------------------------------------------------------------------
    def index_notation(self, s: A.IndexAssign, frame: Frame):
        names = s.indices + s.reduce_indices
        if len(set(names)) != len(names):
            raise PnetError("an index appears twice in the output and reduction lists", s.loc)
        sizes: dict[str, Any] = {}
        self._index_sizes(s.value, set(names), sizes, frame)
        for n in names:
            if n not in sizes:
                raise PnetError(f"index '{n}' is not used to index any tensor, so its size is unknown", s.loc)
        einsum = self._as_einsum(s, frame)
        if einsum is not None:
            return einsum
        local = Frame(dict(frame.vars), frame.module, frame.scope, frame.region, frame.annotations, frame.yields)
        for i, n in enumerate(names):
            local.vars[n] = IndexVar(n, i)
        local.vars["__index_space__"] = (names, sizes)
        val = self.to_tensor(self.eval(s.value, local), s.value.loc)
        full = tuple(sizes[n] for n in names)
        if val.type.rank < len(names):
            val = self.emit("reshape", [val], {"shape": [1] * (len(names) - val.type.rank) + list(val.type.shape)}, frame, s.loc)
        want = tuple(sizes[n] if i < len(s.indices) or s.reducer != "sum" else d for i, (n, d) in enumerate(zip(names, val.type.shape)))
        if any(d == 1 and w != 1 for d, w in zip(val.type.shape, full)) and s.reducer != "sum":
            val = self.emit("broadcast_to", [val], {"shape": list(full)}, frame, s.loc)
        elif any(d == 1 and w != 1 for d, w in list(zip(val.type.shape, full))[:len(s.indices)]):
            val = self.emit("broadcast_to", [val], {"shape": list(want[:len(s.indices)]) + list(val.type.shape[len(s.indices):])}, frame, s.loc)
        if s.reducer:
            red_axes = list(range(len(s.indices), len(names)))
            red = s.reducer
            if red == "sum" and any(val.type.shape[a] == 1 and sizes[names[a]] != 1 for a in red_axes):
                # summing a broadcast axis multiplies by its size
                val = self.emit("broadcast_to", [val], {"shape": list(full)}, frame, s.loc)
            val = self.emit(red, [val], {"axis": red_axes}, frame, s.loc)
        return val

    def _index_sizes(self, e, names, sizes, frame):
        if isinstance(e, A.Subscript) and any(isinstance(i, A.Name) and i.id in names for i in e.items):
            t = self.to_tensor(self.eval(e.value, frame), e.loc)
            if len(e.items) != t.type.rank:
                raise ShapeError(f"{self._fmt_access(e)} uses {len(e.items)} indices for a rank-{t.type.rank} tensor {t.type}", e.loc)
            for item, d in zip(e.items, t.type.shape):
                if isinstance(item, A.Name) and item.id in names:
                    if item.id in sizes and not dims_equal(sizes[item.id], d):
                        raise ShapeError(f"index '{item.id}' has size {fmt_dim(sizes[item.id])} in one access and {fmt_dim(d)} in {self._fmt_access(e)} ({t.type})", e.loc)
                    sizes[item.id] = d
            return
        for child in _children(e):
            self._index_sizes(child, names, sizes, frame)

    def _fmt_access(self, e):
        from .fmt import expr
        return expr(e)

    def _as_einsum(self, s: A.IndexAssign, frame):
        """`sum(...)` over a plain product of accesses is an einsum (no broadcast intermediate)."""
        if s.reducer not in (None, "sum"):
            return None
        factors = []
        stack = [s.value]
        while stack:
            e = stack.pop()
            if isinstance(e, A.BinOp) and e.op == "*":
                stack += [e.right, e.left]
            elif isinstance(e, A.Subscript) and all(isinstance(i, A.Name) and i.id in s.indices + s.reduce_indices for i in e.items):
                factors.append(e)
            else:
                return None
        letters = {n: chr(ord("a") + i) for i, n in enumerate(s.indices + s.reduce_indices)}
        if len(letters) > 26 or any(len({i.id for i in f.items}) != len(f.items) for f in factors):
            return None
        tensors = [self.to_tensor(self.eval(f.value, frame), f.loc) for f in factors]
        eq = ",".join("".join(letters[i.id] for i in f.items) for f in factors) + "->" + "".join(letters[n] for n in s.indices)
        return self.emit("einsum", tensors, {"equation": eq}, frame, s.loc)

    def _index_access(self, base: Tensor, items, frame, loc):
        """`x[i, j]` inside index notation: x aligned to the full index space (size-1 where unused)."""
        names, sizes = frame.vars["__index_space__"]
        t = base
        if len(items) != t.type.rank:
            raise ShapeError(f"{len(items)} indices for a rank-{t.type.rank} tensor {t.type}", loc)
        keep = []
        for ax, it in enumerate(items):
            if isinstance(it, IndexVar):
                keep.append(it)
            elif isinstance(it, (int, np.integer)):
                t = self.emit("slice", [t], {"slices": [[None, None, None]] * ax + [[int(it), int(it) + 1 if it != -1 else None, 1]]}, frame, loc)
                keep.append(None)
            else:
                raise PnetError("index notation accesses take index names or integers", loc)
        squeeze = [i for i, k in enumerate(keep) if k is None]
        if squeeze:
            t = self.emit("squeeze", [t], {"axis": squeeze}, frame, loc)
        keep = [k for k in keep if k is not None]
        if len({k.name for k in keep}) != len(keep):
            raise PnetError("an index repeated within one access (a diagonal) is not supported", loc)
        order = sorted(range(len(keep)), key=lambda i: keep[i].axis)
        if order != list(range(len(keep))):
            t = self.emit("transpose", [t], {"perm": order}, frame, loc)
        present = sorted(k.axis for k in keep)
        shape, it = [], iter(t.type.shape)
        for ax in range(len(names)):
            shape.append(next(it) if ax in present else 1)
        if len(shape) != t.type.rank:
            t = self.emit("reshape", [t], {"shape": shape}, frame, loc)
        return t

    def _index_value(self, iv: IndexVar, frame, loc):
        """An index name used as a value: its coordinate (i64), aligned to the index space."""
        names, sizes = frame.vars["__index_space__"]
        t = self.emit("arange", [], {"n": sizes[iv.name]}, frame, loc)
        shape = [sizes[iv.name] if i == iv.axis else 1 for i in range(len(names))]
        return self.emit("reshape", [t], {"shape": shape}, frame, loc)

    # ---- expressions ----------------------------------------------------------------------------
    def eval(self, e, frame: Frame):
        try:
            return getattr(self, "ex_" + type(e).__name__)(e, frame)
        except PnetError as err:
            raise self._locate(err, e.loc)

    def ex_Name(self, e: A.Name, frame):
        val = self.lookup(e.id, frame, e.loc)
        if isinstance(val, IndexVar):
            return self._index_value(val, frame, e.loc)
        return val

    def ex_Literal(self, e, frame):
        return e.value

    def ex_ListLit(self, e, frame):
        return [self.eval(x, frame) for x in e.items]

    def ex_EllipsisLit(self, e, frame):
        return Ellipsis

    def ex_CondExpr(self, e, frame):
        c = self.eval(e.cond, frame)
        if isinstance(c, Tensor):
            raise PnetError("`a if c else b` needs a compile-time condition; use where(c, a, b) for tensors", e.cond.loc)
        return self.eval(e.then if self._truth(c, e.cond.loc) else e.other, frame)

    def ex_UnaryOp(self, e, frame):
        v = self.eval(e.operand, frame)
        if e.op == "not":
            if isinstance(v, Tensor):
                return self.emit("logical_not", [v], {}, frame, e.loc)
            return not self._truth(v, e.loc)
        if e.op == "+":
            return v
        if isinstance(v, Tensor):
            return self.emit("neg", [v], {}, frame, e.loc)
        self._need_number(v, e.loc, "-")
        return -v

    def ex_BinOp(self, e, frame):
        if e.op in ("and", "or"):
            left = self.eval(e.left, frame)
            if isinstance(left, Tensor):
                right = self.to_tensor(self.eval(e.right, frame), e.right.loc)
                return self.emit("logical_and" if e.op == "and" else "logical_or", [left, right], {}, frame, e.loc)
            lv = self._truth(left, e.left.loc)
            if e.op == "and" and not lv:
                return False
            if e.op == "or" and lv:
                return True
            return self._truth(self.eval(e.right, frame), e.right.loc)
        return self.binary(e.op, self.eval(e.left, frame), self.eval(e.right, frame), frame, e.loc)

    _OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul", "%": "mod",
            "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}

    def binary(self, op, a, b, frame, loc):
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            if op == "//":
                q = self.binary("/", a, b, frame, loc)
                return self.emit("floor", [q], {}, frame, loc) if is_float(q.type.dtype) else q
            return self.emit(self._OPS[op], [a, b], {}, frame, loc)
        if op in ("==", "!="):
            same = (a == b) if not isinstance(a, sympy.Basic) else sympy.simplify(a - b) == 0
            return bool(same) if op == "==" else not bool(same)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and op == "+":
            return list(a) + list(b)
        if isinstance(a, str) and isinstance(b, str) and op == "+":
            return a + b
        self._need_number(a, loc, op)
        self._need_number(b, loc, op)
        try:
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
                    q = sympy.Rational(1, 1) * a / b
                    return q if not q.is_Integer else int(q)
                return a / b
            if op == "//":
                if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
                    return sympy.floor(a / b)
                return a // b
            if op == "%":
                return sympy.Mod(a, b) if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic) else a % b
            if op == "**":
                if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b * max(abs(a), 2).bit_length() > 100_000:
                    raise PnetError(f"{a} ** {b} is too large a compile-time number", loc)
                return a ** b
            if op == "@":
                raise PnetError("`@` needs tensors")
            cmp = {"<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
            if isinstance(cmp, sympy.Basic):
                if cmp in (sympy.true, sympy.false):
                    return bool(cmp)
                raise PnetError(f"cannot decide {a} {op} {b} at compile time (symbolic dims)")
            return bool(cmp)
        except ZeroDivisionError:
            raise PnetError("division by zero in a compile-time expression", loc) from None
        except OverflowError:
            raise PnetError(f"compile-time number too large in `{op}`", loc) from None

    def ex_Call(self, e: A.Call, frame):
        fn = self.eval(e.fn, frame)
        if not isinstance(fn, Fn):
            if isinstance(e.fn, A.Name) and self._global(e.fn.id, frame) is not None:
                raise PnetError(f"'{e.fn.id}' is {self._show(fn)} here: a local name shadows the function '{e.fn.id}'", e.fn.loc)
            raise PnetError(f"{self._show(fn)} is not callable", e.fn.loc)
        args = [self.eval(a, frame) for a in e.args]
        kwargs = {}
        for k, v in e.kwargs:
            if k in kwargs:
                raise PnetError(f"argument '{k}' given twice", v.loc)
            kwargs[k] = self.eval(v, frame)
        return self.call(fn, args, kwargs, frame, e.loc, e.scope_name)

    def ex_AnnotatedExpr(self, e, frame):
        saved = frame.annotations
        frame.annotations = self._annots(e.annotations, saved, frame)
        try:
            return self.eval(e.value, frame)
        finally:
            frame.annotations = saved

    def ex_Attribute(self, e: A.Attribute, frame):
        base = self.eval(e.value, frame)
        if isinstance(base, Namespace):
            found = self._module_name(base.module, e.attr)
            if found is None:
                raise PnetError(f"module '{Path(base.module.file).stem}' has no def '{e.attr}'", e.loc)
            return found
        if isinstance(base, Tensor):
            t = base.type
            if e.attr == "shape":
                return [self._dimval(d) for d in t.shape]
            if e.attr == "ndim":
                return t.rank
            if e.attr == "dtype":
                return t.dtype
            if e.attr == "T":
                if t.rank < 2:
                    raise ShapeError(f".T needs rank >= 2, got {t}", e.loc)
                perm = list(range(t.rank))
                perm[-1], perm[-2] = perm[-2], perm[-1]
                return self.emit("transpose", [base], {"perm": perm}, frame, e.loc)
        raise PnetError(f"{self._show(base)} has no attribute '{e.attr}'", e.loc)

    def ex_Subscript(self, e: A.Subscript, frame):
        base = self.eval(e.value, frame)
        items = [i if isinstance(i, A.Slice) else self._index_item(i, frame) for i in e.items]
        if isinstance(base, (list, tuple)):
            if len(items) != 1 or isinstance(items[0], A.Slice):
                if len(items) == 1:
                    sl = items[0]
                    parts = [self._int(self.eval(x, frame), x.loc) if x is not None else None for x in (sl.start, sl.stop, sl.step)]
                    return list(base)[slice(*parts)]
                raise PnetError("a list takes one index", e.loc)
            idx = self._int(items[0], e.items[0].loc)
            if not -len(base) <= idx < len(base):
                raise PnetError(f"index {idx} out of range for a list of {len(base)}", e.loc)
            return base[idx]
        if not isinstance(base, Tensor):
            raise PnetError(f"{self._show(base)} cannot be indexed", e.loc)
        if any(isinstance(i, IndexVar) for i in items):
            return self._index_access(base, items, frame, e.loc)
        return self.tensor_index(base, items, frame, e.loc)

    def _index_item(self, i, frame):
        """Inside index notation a bare index name stays an IndexVar (not its coordinate tensor)."""
        if isinstance(i, A.Name) and isinstance(frame.vars.get(i.id), IndexVar):
            return frame.vars[i.id]
        return self.eval(i, frame)

    def tensor_index(self, base: Tensor, items, frame, loc):
        rank = base.type.rank
        n_ell = sum(1 for i in items if i is Ellipsis)
        if n_ell > 1:
            raise PnetError("only one `...` per index", loc)
        n_real = sum(1 for i in items if i is not Ellipsis and i is not None)
        if n_real > rank:
            raise ShapeError(f"{n_real} indices for a rank-{rank} tensor {base.type}", loc)
        expanded = []
        for i in items:
            if i is Ellipsis:
                expanded += [A.Slice(None, None, None)] * (rank - n_real)
            else:
                expanded.append(i)
        slices, squeeze, new_axes, gathers = [], [], [], []
        axis = 0
        out_axis = 0
        for it in expanded:
            if it is None:
                new_axes.append(out_axis)
                out_axis += 1
                continue
            if isinstance(it, A.Slice):
                parts = [self.eval(x, frame) if x is not None else None for x in (it.start, it.stop, it.step)]
                slices.append(parts)
            elif isinstance(it, Tensor):
                gathers.append((axis, it))
                slices.append([None, None, None])
            else:
                k = it if isinstance(it, sympy.Basic) else self._int(it, loc)
                if isinstance(k, int) and k < 0:
                    stop = k + 1 if k != -1 else None
                    slices.append([k, stop, 1])
                else:
                    slices.append([k, k + 1, 1])
                squeeze.append(axis)
                out_axis -= 1
            axis += 1
            out_axis += 1
        t = base
        if any(p != [None, None, None] for p in slices):
            t = self.emit("slice", [t], {"slices": slices}, frame, loc)
        for ax, idx in gathers:
            if len(gathers) > 1:
                raise PnetError("one tensor index per subscript (use gather for more)", loc)
            t = self.emit("take", [t, idx], {"axis": ax}, frame, loc)
            shift = idx.type.rank - 1
            squeeze = [s + shift if s > ax else s for s in squeeze]
        if squeeze:
            t = self.emit("squeeze", [t], {"axis": squeeze}, frame, loc)
        for ax in new_axes:
            t = self.emit("expand_dims", [t], {"axis": ax}, frame, loc)
        return t

    # ---- calls ----------------------------------------------------------------------------------
    def call(self, fn: Fn, args, kwargs, frame, loc, scope_name=None):
        if fn.kind == "def":
            return self.call_def(fn, args, kwargs, frame, loc, scope_name)
        if fn.kind == "builtin":
            return BUILTINS[fn.name](self, args, kwargs, frame, loc)
        return self.call_op(fn.name, args, kwargs, frame, loc)

    def call_op(self, name, args, kwargs, frame, loc):
        opdef = registry.get(name)
        if opdef.kind == "control":
            raise PnetError(f"'{name}' is a statement form, not a function")
        numbers_only = all(isinstance(a, (int, float, sympy.Basic)) and not isinstance(a, bool) for a in args) and args and not kwargs
        if numbers_only and opdef.kind == "elementwise" and len(args) == len(opdef.inputs):
            return self._fold_scalar(opdef, args, loc)
        inputs: list = []
        attrs = {}
        slots = list(opdef.inputs)
        attr_names = [k for k in opdef.attrs if k not in kwargs]
        si = 0
        for a in args:
            if isinstance(a, list) and a and all(isinstance(x, Tensor) for x in a) and si < len(slots) and slots[si][1] == "*":
                inputs.extend(a)
                si += 1
            elif isinstance(a, Tensor):
                if si >= len(slots):
                    raise PnetError(f"op '{name}' takes {len(slots)} tensor input{'s' if len(slots) != 1 else ''}, got more")
                inputs.append(a)
                if slots[si][1] != "*":
                    si += 1
            elif si < len(slots) and slots[si][1] == "" and isinstance(a, (int, float)) and not isinstance(a, bool):
                inputs.append(a)  # a number in a tensor slot becomes a constant
                si += 1
            else:
                if not attr_names:
                    raise PnetError(f"op '{name}' got too many arguments (attributes: {', '.join(opdef.attrs) or 'none'})")
                attrs[attr_names.pop(0)] = a
                si = len(slots) if slots and slots[-1][1] != "*" else si
        input_names = {n: i for i, (n, _) in enumerate(slots)}
        for k, v in kwargs.items():
            if k in input_names and isinstance(v, Tensor):
                idx = input_names[k]
                while len(inputs) <= idx:
                    inputs.append(None)
                if inputs[idx] is not None:
                    raise PnetError(f"op '{name}': input '{k}' given twice")
                inputs[idx] = v
            else:
                attrs[k] = v
        while inputs and inputs[-1] is None:
            inputs.pop()
        return self.emit(name, inputs, attrs, frame, loc)

    def _fold_scalar(self, opdef, args, loc):
        """`sqrt(1 / width)` on numbers is computed at compile time with the op's reference."""
        vals = []
        for a in args:
            if isinstance(a, sympy.Basic):
                if not a.is_number:
                    raise PnetError(f"{opdef.name}() of a symbolic dim {a} cannot be computed at compile time", loc)
                a = float(a)
            vals.append(np.asarray(a, dtype=np.float64))
        with np.errstate(all="ignore"):
            out = float(opdef.ref(*vals, **opdef.bind_attrs({})))
        if not math.isfinite(out):
            raise PnetError(f"{opdef.name}({', '.join(str(a) for a in args)}) is not finite", loc)
        return out

    def call_def(self, fn: Fn, args, kwargs, frame, loc, scope_name=None):
        d: A.Def = fn.node
        if d.is_model:
            raise PnetError(f"'{d.name}' is a model; call a def")
        self.depth += 1
        if self.depth > 200:
            raise PnetError(f"call depth over 200 in '{d.name}' (unbounded recursion?)")
        try:
            scope = frame.scope + (scope_name or self._unique_scope(frame.scope, d.name),)
            callee = Frame({}, fn.module, scope, frame.region, self._annots(d.annotations, frame.annotations, frame))
            if len(args) > len(d.params):
                raise PnetError(f"{d.name}() takes {len(d.params)} argument{'s' if len(d.params) != 1 else ''}, got {len(args)}")
            given = dict(zip((p.name for p in d.params), args))
            for k, v in kwargs.items():
                if k not in {p.name for p in d.params}:
                    raise PnetError(f"{d.name}() has no parameter '{k}'")
                if k in given:
                    raise PnetError(f"{d.name}() got '{k}' twice")
                given[k] = v
            # given hyperparameters first, then tensors (their shape patterns may use them),
            # then defaults (which may use dims the patterns bound)
            order = sorted(d.params, key=lambda p: (0 if p.name in given and not isinstance(p.type, A.TensorTypeExpr)
                                                    else 1 if isinstance(p.type, A.TensorTypeExpr) else 2))
            for p in order:
                if p.name in given:
                    val = given[p.name]
                elif p.default is not None:
                    val = self.eval(p.default, callee)
                else:
                    raise PnetError(f"{d.name}() missing argument '{p.name}'")
                if isinstance(p.type, A.TensorTypeExpr):
                    if not isinstance(val, Tensor):
                        val = self.to_tensor(val, loc)
                    self.match_type(p.type, val.type, callee, f"argument '{p.name}' of {d.name}()")
                else:
                    val = self._check_scalar(p, val, callee)
                callee.vars[p.name] = val
            try:
                self.run_block(d.body, callee)
                result = None
            except _Return as r:
                result = r.values
            if d.ret:
                outs = result if isinstance(result, tuple) else (result,)
                if len(outs) != len(d.ret):
                    raise PnetError(f"{d.name}() returns {len(outs)} value(s) but its signature says {len(d.ret)}", d.loc)
                for t, v in zip(d.ret, outs):
                    if not isinstance(v, Tensor):
                        raise PnetError(f"{d.name}() must return a tensor, returned {self._show(v)}", d.loc)
                    self.match_type(t, v.type, callee, f"the result of {d.name}()")
            return result
        finally:
            self.depth -= 1

    def match_type(self, pat: A.TensorTypeExpr, t: TensorType, frame, what):
        if pat.dtype and pat.dtype != t.dtype:
            raise ShapeError(f"{what} should be {pat.dtype}, got {t}", pat.loc)
        dims = pat.dims
        n_ell = sum(isinstance(d, A.EllipsisLit) for d in dims)
        fixed = len(dims) - n_ell
        if (n_ell == 0 and t.rank != fixed) or t.rank < fixed:
            want = "[" + ", ".join("..." if isinstance(d, A.EllipsisLit) else self._fmt_access(d) for d in dims) + "]"
            raise ShapeError(f"{what} should have shape {want}, got {t}", pat.loc)
        actual = list(t.shape)
        if n_ell:
            k = next(i for i, d in enumerate(dims) if isinstance(d, A.EllipsisLit))
            pairs = list(zip(dims[:k], actual[:k])) + list(zip(dims[k + 1:], actual[len(actual) - (len(dims) - k - 1):]))
        else:
            pairs = list(zip(dims, actual))
        for d, a in pairs:
            if isinstance(d, A.Name) and d.id not in frame.vars:
                frame.vars[d.id] = self._dimval(a)
                continue
            want = self.eval(d, frame)
            if not dims_equal(dim(want), a):
                raise ShapeError(f"{what} should have shape {self._pattern_str(pat, frame)}, got {t}: "
                                 f"dim '{self._fmt_access(d)}' is {fmt_dim(dim(want))}, not {fmt_dim(a)}", pat.loc)

    def _pattern_str(self, pat, frame):
        parts = []
        for d in pat.dims:
            if isinstance(d, A.EllipsisLit):
                parts.append("...")
            else:
                try:
                    parts.append(fmt_dim(dim(self.eval(d, frame))))
                except PnetError:
                    parts.append(self._fmt_access(d))
        return "[" + ", ".join(parts) + "]"

    def eval_type(self, t: A.TensorTypeExpr, frame) -> TensorType:
        dims = []
        for d in t.dims:
            if isinstance(d, A.EllipsisLit):
                raise PnetError("`...` is only allowed in a def's argument types", d.loc)
            v = self.eval(d, frame)
            try:
                dd = dim(v)
            except ShapeError:
                raise PnetError(f"dimension must be an integer, got {self._show(v)}", d.loc) from None
            if dd.is_number and int(dd) < 0:
                raise ShapeError(f"negative dimension {dd}", d.loc)
            dims.append(dd)
        return TensorType(t.dtype or "f32", tuple(dims))

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
            raise ShapeError(f"{name}: {err.message}" if not err.message.startswith(name) else err.message, loc) from None
        node = frame.region.graph.add(name, values, attrs, out_types, loc, ".".join(frame.scope), frame.annotations)
        for v in node.outputs:
            frame.region.own.add(v)
        outs = [Tensor(v) for v in node.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

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
            raise PnetError(f"unknown name '{name}'", loc)
        return found

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
        return None

    def _module_name(self, module, name):
        for d in module.defs:
            if d.name == name:
                return Fn("def", name, d, module)
        return None

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
            out.append(Annotation(a.name, args, kwargs, a.loc))
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


def _children(e):
    for name in getattr(e, "__dataclass_fields__", {}):
        v = getattr(e, name)
        if isinstance(v, A.Expr):
            yield v
        elif isinstance(v, list):
            for x in v:
                if isinstance(x, A.Expr):
                    yield x
                elif isinstance(x, tuple):
                    for y in x:
                        if isinstance(y, A.Expr):
                            yield y


CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf}

from .builtins import BUILTINS  # noqa: E402  (builtins call back into the Elaborator)
