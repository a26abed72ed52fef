"""Calls: of a registry op (arguments sorted into tensor inputs and attributes; on numbers, computed at compile
time), of a DSL builtin, or of a `def` (a new scope; arguments matched against the def's type patterns, which
bind its dims). Also the tensor types a source spells. A part of the Elaborator (dsl/elaborate.py)."""
from __future__ import annotations

import math

import numpy as np
import sympy

from ..errors import PnetError, PnetWarning, ShapeError
from ..ir import registry
from ..ir.types import TensorType, dim, dims_equal, fmt_dim
from . import ast as A
from .builtins import BUILTINS
from .regions import Frame, ReturnSignal
from .suggest import did_you_mean
from .values import Fn, Tensor


class CallsMixin:
    """The Elaborator's calls and type patterns."""

    def call(self, fn: Fn, args, kwargs, frame, loc, scope_name=None):
        if fn.kind == "def":
            return self.call_def(fn, args, kwargs, frame, loc, scope_name)
        if fn.kind == "builtin":
            return BUILTINS[fn.name](self, args, kwargs, frame, loc)
        return self.call_op(fn.name, args, kwargs, frame, loc)

    # ---- arguments easy to swap --------------------------------------------------------------------
    def warn_swapped(self, fn: Fn, arg_exprs, args, kwargs_exprs):
        """`batchnorm(x, var, mean)`: positional arguments that are plain names of OTHER parameters of the op or
        def, each in the other's place, are likely swapped; warn (the call still elaborates as written). Only a
        swap (or rotation) counts: `mab(x, x)`, `avg_pool2d(x, stride)` (kernel = stride) are deliberate."""
        slots = self._positional_params(fn, args, dict(kwargs_exprs))
        params = set(self._param_names(fn))
        bound = {p: e for e, p in zip(arg_exprs, slots) if p} | dict(kwargs_exprs)
        warned = set()
        for expr, param in zip(arg_exprs, slots):
            if not (isinstance(expr, A.Name) and param and expr.id != param and expr.id in params):
                continue
            other = bound.get(expr.id)   # what the parameter named like this argument receives
            if isinstance(other, A.Name) and other.id != expr.id and other.id in params and expr.id not in warned:
                warned |= {expr.id, param}   # a swapped pair is one warning
                self.warnings[PnetWarning(f"argument '{expr.id}' is passed as parameter '{param}' of {fn.name}; "
                                          "did you mean to swap them? (pass by name to silence)", expr.loc)] = None

    @staticmethod
    def _param_names(fn: Fn) -> list[str]:
        if fn.kind == "def":
            return [p.name for p in fn.node.params]
        if fn.kind == "op":
            opdef = registry.get(fn.name)
            return [n for n, _ in opdef.inputs] + list(opdef.attrs)
        return []

    @staticmethod
    def _positional_params(fn: Fn, args, kwargs) -> list:
        """The parameter each positional argument binds (None where unclear), as call_def / call_op bind them."""
        if fn.kind == "def":
            return [p.name for p in fn.node.params][:len(args)]
        if fn.kind != "op":
            return []
        opdef = registry.get(fn.name)
        if any(k == "*" for _, k in opdef.inputs):
            return []   # a variadic op's positions are not its parameters
        slots, attrs = list(opdef.inputs), [k for k in opdef.attrs if k not in kwargs]
        out, si = [], 0
        for a in args:
            number = isinstance(a, (int, float)) and not isinstance(a, bool)
            if si < len(slots) and (isinstance(a, Tensor) or (number and slots[si][1] == "")):
                out.append(slots[si][0])
                si += 1
            else:
                out.append(attrs.pop(0) if attrs else None)
                si = len(slots)
        return out

    def call_op(self, name, args, kwargs, frame, loc):
        opdef = registry.get(name)
        if opdef.kind == "control":
            raise PnetError(f"'{name}' is a statement form, not a function")
        numbers_only = all(isinstance(a, (int, float, sympy.Basic)) and not isinstance(a, bool) for a in args) and args and not kwargs
        # (complex(0.5, 1.0) of numbers stays an op: a c64 scalar tensor, which no Python float holds)
        if numbers_only and opdef.kind == "elementwise" and len(args) == len(opdef.inputs) and name != "complex":
            return self._fold_scalar(opdef, args, loc)
        self._check_keywords(opdef, kwargs)
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

    @staticmethod
    def _check_keywords(opdef, kwargs):
        """A keyword that is neither an input nor an attribute of the op: say so, with the nearest one."""
        known = [n for n, _ in opdef.inputs] + list(opdef.attrs)
        for k in kwargs:
            if k not in known:
                raise PnetError(f"op '{opdef.name}' has no attribute '{k}'{did_you_mean(k, known)} "
                                f"(attributes: {', '.join(opdef.attrs) or 'none'})")

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
        try:
            return self._call_def(fn, args, kwargs, frame, loc, scope_name)
        except PnetError as err:
            # an error inside the def's body or signature: note this call site, so the chain of notes leads
            # back to the user's file (errors with no place yet get the call's own location instead)
            if err.loc is not None and loc is not None and err.loc != loc:
                self._locate(err, None).add_note(loc, f"in the call of {fn.node.name}(...)")
            raise

    def _call_def(self, fn: Fn, args, kwargs, frame, loc, scope_name=None):
        d: A.Def = fn.node
        if d.is_model:
            raise PnetError(f"'{d.name}' is a model; call a def")
        self.depth += 1
        if self.depth > 200:
            raise PnetError(f"call depth over 200 in '{d.name}' (unbounded recursion?)")
        try:
            scope = frame.scope + (scope_name or self._unique_scope(frame.scope, d.name),)
            self._enter_scope(scope)
            callee = Frame({}, fn.module, scope, frame.region, self._annots(d.annotations, frame.annotations, frame))
            if len(args) > len(d.params):
                raise PnetError(f"{d.name}() takes {len(d.params)} argument{'s' if len(d.params) != 1 else ''}, got {len(args)}")
            given = dict(zip((p.name for p in d.params), args))
            for k, v in kwargs.items():
                if k not in {p.name for p in d.params}:
                    raise PnetError(f"{d.name}() has no parameter '{k}'{did_you_mean(k, [p.name for p in d.params])}")
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
            except ReturnSignal as r:
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

