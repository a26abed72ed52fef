"""Reductions (sum, mean, max, prod, logsumexp, arg-reductions, cumsum) and sort / topk / topk_mask; their
bound rules grow with the number of elements reduced."""
from __future__ import annotations

import math

from ..values import Arg, Call, Spec


def s_sort_topk(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class="num")
    if x is None:
        return None
    axis = g.ch.int(-x.type.rank, x.type.rank - 1)
    exact = x.exact or not x.float
    keep = [True, exact] if g.ch.flag(0.5) or not exact else [g.ch.flag(0.5), True]
    if op == "sort":
        attrs = {"axis": axis} if g.ch.flag(0.7) else {}
        if g.ch.flag(0.5):
            attrs["descending"] = g.ch.flag()
        return Call([Arg.of(x)], attrs, keep=keep, exact=exact)
    size = g.rt(x.type.shape[axis])
    attrs = {"k": g.ch.int(1, min(size, 4)), "axis": axis}
    if g.ch.flag(0.4):
        attrs["largest"] = g.ch.flag()
    return Call([Arg.of(x)], attrs, keep=keep, exact=exact)


def s_topk_mask(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, exact=True, dtype_class="num")
    if x is None:
        return None
    axis = g.ch.int(-x.type.rank, x.type.rank - 1)
    size = g.rt(x.type.shape[axis])
    return Call([Arg.of(x)], {"k": g.ch.int(1, min(size, 4)), "axis": axis}, exact=True)


def _grow_reduce(bounds, call, outs):
    a = call.args[0]
    g_in = max(1, _numel_hint(a.type))
    g_out = max(1, _numel_hint(outs[0]))
    return bounds[0] * max(1, g_in // g_out)


def _numel_hint(t):
    n = 1
    for d in t.shape:
        n *= int(d) if getattr(d, "is_Integer", False) else 5
    return n


def _grow_prod(bounds, call, outs):
    a = call.args[0]
    k = max(1, _numel_hint(a.type) // max(1, _numel_hint(outs[0])))
    if bounds[0] <= 1:
        return 1.0
    return math.inf if k * math.log(bounds[0]) > 700 else bounds[0] ** k


SPECS: dict[str, Spec] = {
    # reductions
    "sum": Spec(grow=_grow_reduce, weight=1.5), "mean": Spec(weight=1.5), "max": Spec(keeps_exact=True),
    "min": Spec(keeps_exact=True), "prod": Spec(grow=_grow_prod),
    "logsumexp": Spec(grow=lambda b, c, o: b[0] + 10),
    "argmax": Spec(exact_inputs=True), "argmin": Spec(exact_inputs=True),
    "cumsum": Spec(grow=_grow_reduce),
    "sort": Spec(s_sort_topk, keeps_exact=True), "topk": Spec(s_sort_topk, keeps_exact=True),
    # which entries topk_mask keeps flips with rounding when magnitudes nearly tie: exact inputs only
    "topk_mask": Spec(s_topk_mask, exact_inputs=True, keeps_exact=True),
}
