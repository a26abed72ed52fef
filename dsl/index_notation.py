"""Index notation (Tensor-Comprehensions style): `y[i, j] = sum[k](a[i, k] * b[k, j])`. A plain product of
accesses becomes one einsum; anything else is computed over the full index space (each access aligned to it,
size 1 where an index is unused) and then reduced. A part of the Elaborator (dsl/elaborate.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import PnetError, ShapeError
from ..ir.types import dims_equal, fmt_dim
from . import ast as A
from .regions import Frame
from .values import IndexVar, Tensor


class IndexNotationMixin:
    """The Elaborator's index-notation statements and the accesses inside them."""

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

    def _index_item(self, i, frame):
        """Inside index notation a bare index name stays an IndexVar (not its coordinate tensor)."""
        if isinstance(i, A.Name) and isinstance(frame.vars.get(i.id), IndexVar):
            return frame.vars[i.id]
        return self.eval(i, frame)

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

