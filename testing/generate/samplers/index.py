"""Index ops: take, embedding, gather, scatter_add, segment reductions, one_hot. Their index operands are i64
inputs drawn within the indexed size (`Gen.index_input`), now and then moved out of range on purpose."""
from __future__ import annotations

import sympy

from ....ir.types import dims_equal
from ..values import Arg, Call, Spec
from .common import param_for


def s_take(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    r = x.type.rank
    axis = g.ch.int(0, r - 1)
    ishape = g.rand_shape(ctx, g.ch.int(0, 2), declare=True)
    idx = g.index_input(ctx, ishape, g.rt(x.type.shape[axis]))
    if idx is None:
        return None
    exact = x.exact or not x.float
    mode = g.ch.int(0, 2)
    if mode == 0:
        text = f"{x.name}[{', '.join([':'] * axis + [idx.name])}]"
    elif mode == 1 and axis == r - 1 and r >= 2:
        text = f"{x.name}[..., {idx.name}]"
    else:
        text = None
    if op == "embedding":     # (rows of a 2-D table: the ids index axis 0)
        if r != 2 or axis != 0:
            return None
        return Call([Arg.of(x), Arg.of(idx)], {}, exact=exact)
    return Call([Arg.of(x), Arg.of(idx)], {"axis": axis}, text=text, exact=exact)


def s_embedding(g, ctx, op):
    if g.ch.flag(0.5):
        return s_take(g, ctx, op)
    v = g.ch.int(2, 8)
    table = param_for(g, ctx, (sympy.Integer(v), sympy.Integer(g.ch.int(1, 4))))
    if table is None:
        return None
    idx = g.index_input(ctx, g.rand_shape(ctx, g.ch.int(0, 2), declare=True), v)
    if idx is None:
        return None
    return Call([Arg.of(table), Arg.of(idx)], {}, exact=True)


def _index_along_axis(g, ctx, x):
    """(axis, an index input shaped like `x` but 1-4 long on that axis, valid for `x`'s size there) or None:
    the operands gather and scatter_add share."""
    axis = g.ch.int(0, x.type.rank - 1)
    shape = list(x.type.shape)
    shape[axis] = sympy.Integer(g.ch.int(1, 4))
    idx = g.index_input(ctx, shape, g.rt(x.type.shape[axis]))
    return None if idx is None else (axis, idx)


def s_gather(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    found = _index_along_axis(g, ctx, x) if x is not None else None
    if found is None:
        return None
    axis, idx = found
    a = axis if g.ch.flag(0.7) else axis - x.type.rank
    return Call([Arg.of(x), Arg.of(idx)], {"axis": a}, exact=x.exact or not x.float)


def s_scatter_add(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1 and v.type.dtype in ("f32", "i64"), dtype_class=None)
    found = _index_along_axis(g, ctx, x) if x is not None else None
    if found is None:
        return None
    axis, idx = found
    shape = idx.type.shape
    src = g.pick(ctx, lambda v: v.type.dtype == x.type.dtype and len(v.type.shape) == len(shape)
                 and all(dims_equal(a, b) for a, b in zip(v.type.shape, shape)), dtype_class=None)
    if src is None:
        src = g.new_tensor(ctx, x.type.dtype, tuple(shape))
        if src is None:
            return None
        ctx.pool.append(src)
    return Call([Arg.of(x), Arg.of(idx), Arg.of(src)], {"axis": axis},
                bound=x.bound + src.bound * g.rt(shape[axis]))


def s_segment(g, ctx, op):
    data = g.pick(ctx, lambda v: v.type.rank >= 1 and (v.float or op != "segment_mean") and v.type.dtype != "bool",
                  dtype_class=None)
    if data is None:
        return None
    n = g.ch.int(1, 5) if g.ch.flag(0.8) or not ctx.can_declare_inputs else None
    s = g.symbol(existing=True) if n is None else None
    if s is not None and (ctx.symbols is None or s.name in ctx.symbols):
        num, nb = s, g.rt(s)
    else:
        n = n or 2
        num, nb = n, n
    ids = g.index_input(ctx, (data.type.shape[0],), nb)
    if ids is None:
        return None
    exact = op == "segment_max" and (data.exact or not data.float)
    return Call([Arg.of(data), Arg.of(ids)], {"num_segments": num}, exact=exact,
                bound=data.bound * (g.rt(data.type.shape[0]) if op == "segment_sum" else 1))


def s_one_hot(g, ctx, op):
    ids = g.pick(ctx, lambda v: v.type.rank <= 2, dtype_class="int")
    depth = g.ch.int(1, 5)
    if ids is None or g.ch.flag(0.5):
        ids = g.index_input(ctx, g.rand_shape(ctx, g.ch.int(0, 2), declare=True), depth)
        if ids is None:
            return None
    attrs = {"depth": depth}
    if g.ch.flag(0.3):
        attrs["dtype"] = g.ch.choice(["f32", "i64", "f64"])
    return Call([Arg.of(ids)], attrs, exact=True, bound=1.0)


SPECS: dict[str, Spec] = {
    # indexing
    "take": Spec(s_take, keeps_exact=True), "embedding": Spec(s_embedding, keeps_exact=True),
    "gather": Spec(s_gather, keeps_exact=True), "scatter_add": Spec(s_scatter_add),
    "segment_sum": Spec(s_segment), "segment_mean": Spec(s_segment), "segment_max": Spec(s_segment),
    "one_hot": Spec(s_one_hot),
}
