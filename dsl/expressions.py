"""Elaborating expressions: names, literals, operators (folded at compile time on numbers and dims, ops on
tensors), calls, attributes (`.shape`, `.T`) and subscripts (list indexing, tensor slicing and `take`).
A part of the Elaborator (dsl/elaborate.py)."""
from __future__ import annotations

from pathlib import Path

import sympy

from ..errors import PnetError, ShapeError
from ..ir.types import is_float
from . import ast as A
from .regions import Frame
from .suggest import did_you_mean
from .values import Fn, IndexVar, Namespace, Tensor

TENSOR_ATTRIBUTES = ("shape", "ndim", "dtype", "T")


class ExpressionsMixin:
    """The Elaborator's expressions (`ex_<AST class>`, dispatched by eval)."""

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

    def ex_TupleLit(self, e, frame):
        return tuple(self.eval(x, frame) for x in e.items)

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
        self.warn_swapped(fn, e.args, args, e.kwargs)
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
                hint = did_you_mean(e.attr, [d.name for d in base.module.defs])
                raise PnetError(f"module '{Path(base.module.file).stem}' has no def '{e.attr}'{hint}", e.loc)
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
        hint = did_you_mean(e.attr, TENSOR_ATTRIBUTES) if isinstance(base, Tensor) else ""
        raise PnetError(f"{self._show(base)} has no attribute '{e.attr}'{hint}", e.loc)

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

