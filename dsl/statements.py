"""Elaborating statements: assignments, parameter / input / output declarations, `return` and `yield`,
and control: `if` and `for` run at compile time (unrolled into the graph), `scan` becomes one `scan` node
whose body is elaborated once into a sub-graph. A part of the Elaborator (dsl/elaborate.py)."""
from __future__ import annotations

import sympy

from ..errors import PnetError, ShapeError
from ..ir.graph import STATE_OUTPUT_PREFIX, Graph, Init, Param, Value
from ..ir.types import dim, dims_equal, fmt_dim, fmt_shape, normalize_axis, sym
from . import ast as A
from .regions import Frame, Region, ReturnSignal
from .values import InitSpec, Tensor

INIT_FNS = ("normal", "uniform", "zeros", "ones", "constant", "kaiming", "xavier", "orthogonal", "trunc_normal")
DEFAULT_INIT = InitSpec("normal", (0.0, 0.02), ())
# compile-time `for` loops unroll into the graph: bounds that keep a typo (0..10**9) from exhausting memory
MAX_LOOP_ITERATIONS = 100_000
MAX_UNROLLED_ITERATIONS = 1_000_000


class StatementsMixin:
    """The Elaborator's statements (`stmt_<AST class>`, dispatched by run_stmt) and `scan`."""

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
        self._declare(s, frame, state=False)

    def stmt_StateDecl(self, s: A.StateDecl, frame):
        self._declare(s, frame, state=True)

    def _declare(self, s: A.ParamDecl, frame, state: bool):
        """`param` (trained) or `state` (not trained: a buffer): one tensor of the model, named by its call path."""
        # `@frozen` on a statement (a frozen backbone: `@frozen h = encoder(x)`) makes the params it declares state
        state = state or any(a.name == "frozen" for a in frame.annotations)
        what = "state" if state else "parameter"
        ttype = self.eval_type(s.type, frame)
        for d in ttype.shape:
            if not d.is_Integer:
                raise PnetError(f"{what} '{s.name}' has shape {fmt_shape(ttype.shape)}: {what} dims must be known at compile time", s.loc)
        init = self.eval(s.init, frame) if s.init is not None else DEFAULT_INIT
        if isinstance(init, (int, float)) and not isinstance(init, bool):
            init = InitSpec("constant", (float(init),), ())
        if not isinstance(init, InitSpec):
            raise PnetError(f"{what} init must be one of {', '.join(INIT_FNS)}, got {self._show(init)}", s.init.loc)
        name = ".".join(frame.scope + (s.name,))
        if name in self.param_locs:
            first = self.param_locs[name]
            existing = self.root.graph.param(name)
            if first == s.loc and existing.value.type == ttype and existing.state == state:
                # the same declaration reached through the same call path again (`f(x) as enc`
                # twice): the calls share their parameters
                frame.vars[s.name] = Tensor(frame.region.lift(existing.value))
                return
            raise PnetError(f"{what} '{name}' declared twice (first at {first}); name the calls apart with `as NAME`", s.loc)
        self.param_locs[name] = s.loc
        v = Value(ttype)
        self.root.own.add(v)
        self.root.graph.params.append(Param(name, v, Init(init.fn, init.args, init.kwargs), s.loc, tuple(frame.annotations), state))
        frame.vars[s.name] = Tensor(frame.region.lift(v))

    def stmt_Update(self, s: A.Update, frame):
        """`update NAME = expr`: in a training-mode elaboration the graph outputs the state's next value as
        "state:<path>" (backends and `pnet train` write it back, as torch updates a buffer in train()); in an
        inference elaboration the statement is checked and has no effect."""
        name = ".".join(frame.scope + (s.name,))
        p = next((p for p in self.root.graph.params if p.name == name and p.state), None)
        if p is None:
            raise PnetError(f"`update {s.name}`: '{s.name}' is not a state declared in this "
                            f"{'model' if frame.is_model else 'def'} (declare it with `state {s.name}: [...] = init()`)", s.loc)
        if frame.yields is not None:
            raise PnetError("`update` inside a scan body: update the state after the scan, from its result", s.loc)
        t = self.to_tensor(self.eval(s.value, frame), s.value.loc)
        want = p.value.type
        got = t.value.type
        if got.dtype != want.dtype or got.rank != want.rank or not all(map(dims_equal, got.shape, want.shape)):
            raise ShapeError(f"`update {s.name}`: the new value is {t.value.type}, the state is {want}", s.loc)
        if name in self.updated:
            raise PnetError(f"state '{name}' updated twice (first at {self.updated[name]}); one `update` per state: "
                            f"name calls that share it apart with `as NAME`", s.loc)
        self.updated[name] = s.loc
        if self.training:
            self.root.graph.outputs.append((STATE_OUTPUT_PREFIX + name, t.value))

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
        raise ReturnSignal(vals[0] if len(vals) == 1 else tuple(vals))

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
        except ReturnSignal:
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

