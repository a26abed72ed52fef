"""Elementwise ops: arithmetic, comparisons and logic, unary math (domains keep results finite), casts."""
from __future__ import annotations

import math

from ....ir.types import is_float
from ..values import Arg, Call, Spec, Var, number
from .common import ONE
from .generic import generic_binary, partner


def s_exact_binary(g, ctx, op):
    """Comparisons: only exact operands (a tie must compare the same in float32 and float64)."""
    return generic_binary(g, ctx, op)


def s_logical(g, ctx, op):
    def boolish():
        v = g.pick(ctx, dtype_class="bool")
        if v is not None and g.ch.flag(0.7):
            return Arg.of(v)
        x = g.pick(ctx, exact=True, dtype_class="num")
        if x is None:
            return None
        c = g.ch.choice(["0.0", "0.5", "-0.5"]) if x.float else "1"
        return Arg(f"{x.paren() if False else x.name} > {c}", x.type.with_dtype("bool"), True, 1.0, atomic=False)
    a = boolish()
    if a is None:
        return None
    if op == "logical_not":
        return Call([a], {}, text=f"not {a.paren()}" if g.ch.flag(0.5) else None)
    b = boolish()
    if b is None:
        return None
    if g.ch.flag(0.5):
        return Call([a, b], {}, text=f"{a.paren()} {'and' if op == 'logical_and' else 'or'} {b.paren()}")
    return Call([Arg(a.paren(), a.type, True, 1.0), Arg(b.paren(), b.type, True, 1.0)], {})


def s_where(g, ctx, op):
    c = g.pick(ctx, dtype_class="bool")
    if c is not None and g.ch.flag(0.6):
        cond = Arg.of(c)
    else:
        x = g.pick(ctx, exact=True, dtype_class="num")
        if x is None:
            return None
        cond = Arg(f"{x.name} > {'0.0' if x.float else '0'}", x.type.with_dtype("bool"), True, 1.0, atomic=False)
    a = g.float_var(ctx)
    if a is None:
        return None
    b = partner(g, ctx, a)
    if b is None:
        return None
    return Call([cond, Arg.of(a), b], {})


def s_div(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    if a.float:
        b = partner(g, ctx, a)
        if b is None:
            return None
        if b.expr in ("0.5", "2.0", "-1.0", "0.25", "1.5"):
            den = b
        else:
            den = Arg(f"abs({b.expr}) + 0.5", b.type, False, b.bound + 0.5, atomic=False)
        if a.exact and den.expr in ("0.5", "2.0", "0.25") and g.ch.flag(0.4):
            return Call([Arg.of(a), den], {}, text=f"{a.name} // {den.expr}", bound=a.bound * 4,
                        exact=True)  # floor of an exact quotient by a power of two
        sym_ = g.ch.flag(0.6)
        return Call([Arg.of(a), den], {}, text=f"{a.name} / {den.paren()}" if sym_ else None,
                    bound=a.bound / 0.25 if den.atomic else a.bound * 2)
    b = g.pick(ctx, dtype_class="int")
    den = Arg(f"abs({b.name}) + 1", b.type, True, b.bound + 1, atomic=False) if b is not None and g.ch.flag(0.6) \
        else number(g.ch.choice([2, 3]), a.type.dtype)
    return Call([Arg.of(a), den], {}, text=f"{a.name} {g.ch.choice(['/', '//'])} {den.paren()}" if g.ch.flag(0.5) else None)


def s_mod(g, ctx, op):
    a = g.pick(ctx, exact=True, dtype_class="num")
    if a is None:
        return None
    if a.float:
        den = number(g.ch.choice([2.0, 1.0, 0.5]), a.type.dtype)
    else:
        b = g.pick(ctx, dtype_class="int")
        den = Arg(f"abs({b.name}) + 1", b.type, True, b.bound + 1, atomic=False) if b is not None and g.ch.flag(0.5) \
            else number(g.ch.choice([2, 3]), a.type.dtype)
    return Call([Arg.of(a), den], {}, text=f"{a.name} % {den.paren()}" if g.ch.flag(0.6) else None, bound=2.0)


def s_pow(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    if not a.float:
        return Call([Arg.of(a), number(2, a.type.dtype)], {}, text=f"{a.name} ** 2", bound=a.bound ** 2)
    a = g.squash(Arg.of(a)) if a.bound > 4 else Arg.of(a)
    base = Arg(f"abs({a.expr}) + 0.5", a.type, False, a.bound + 0.5, atomic=False)
    if g.ch.flag(0.6):
        e = number(g.ch.choice([2.0, 0.5, 3.0, -1.0, 1.5]), a.type.dtype)
    else:
        b = partner(g, ctx, g.float_var(ctx) or Var("_", a.type))
        if b is None or not is_float(b.type.dtype):
            return None
        e = g.squash(b)
    bound = (base.bound ** 3) + 2
    return Call([base, e], {}, text=f"{base.paren()} ** {e.paren()}" if g.ch.flag(0.5) else None, bound=bound)


def s_clamp(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    lo, hi = sorted(g.ch.shuffled([-1.0, -0.5, 0.0, 0.5, 1.0])[:2])
    if not a.float:
        lo, hi = int(lo), int(hi) + 1
    which = g.ch.int(0, 2)
    attrs = {"min": lo, "max": hi} if which == 0 else {"min": lo} if which == 1 else {"max": hi}
    return Call([Arg.of(a)], attrs, bound=max(a.bound, 1.0))


def s_scale(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    f = g.ch.choice([0.5, 2.0, -1.5, 0.1]) if a.float else g.ch.choice([2, -1])
    return Call([Arg.of(a)], {"factor": f}, exact=a.exact and f in (0.5, 2.0, -1), bound=a.bound * 2)


def s_cast(g, ctx, op):
    mode = g.ch.int(0, 4)
    if mode == 0:   # an int/bool to float (exact)
        a = g.pick(ctx, dtype_class=None, pred=lambda v: not v.float)
        if a is None:
            return None
        return Call([Arg.of(a)], {"dtype": g.ch.choice(["f32", "f64"])}, exact=True, bound=a.bound)
    a = g.float_var(ctx)
    if a is None:
        return None
    if mode == 1 and a.exact and not g.specials:   # float -> int (truncation: exact values only; NaN/inf unspecified)
        return Call([Arg.of(a)], {"dtype": g.ch.choice(["i64", "i32"])}, exact=True)
    if mode == 2:   # a round trip through f16 or bf16 (round to nearest even in every backend)
        low = g.ch.choice(["f16", "bf16"])
        if a.bound > 1000 and low == "f16":
            return None
        return Call([Arg.of(a)], {"dtype": "f32"}, text=f'cast(cast({a.name}, "{low}"), "f32")' if a.type.dtype == "f32"
                    else None, exact=False)
    if mode == 3:   # identity cast (canonicalize drops it)
        return Call([Arg.of(a)], {"dtype": a.type.dtype}, exact=a.exact)
    return Call([Arg.of(a)], {"dtype": "f64" if a.type.dtype != "f64" else "f32"}, exact=a.exact and a.type.dtype != "f64")


def _grow_sum(bounds, call, outs):
    return sum(bounds)


def _grow_mul(bounds, call, outs):
    return math.prod(bounds)


SPECS: dict[str, Spec] = {
    # elementwise arithmetic
    "add": Spec(generic_binary, grow=_grow_sum, weight=1.5),
    "sub": Spec(generic_binary, grow=_grow_sum),
    "mul": Spec(generic_binary, grow=_grow_mul, weight=1.5),
    "div": Spec(s_div),
    "pow": Spec(s_pow),
    "maximum": Spec(generic_binary, keeps_exact=True),
    "minimum": Spec(generic_binary, keeps_exact=True),
    "mod": Spec(s_mod),
    # comparisons and logic: discontinuous, exact operands only
    "lt": Spec(s_exact_binary, exact_inputs=True), "le": Spec(s_exact_binary, exact_inputs=True),
    "gt": Spec(s_exact_binary, exact_inputs=True), "ge": Spec(s_exact_binary, exact_inputs=True),
    "eq": Spec(s_exact_binary, exact_inputs=True, weight=0.5), "ne": Spec(s_exact_binary, exact_inputs=True, weight=0.5),
    "logical_and": Spec(s_logical, weight=0.5), "logical_or": Spec(s_logical, weight=0.5),
    "logical_not": Spec(s_logical, weight=0.5),
    "where": Spec(s_where, keeps_exact=True),
    # unary math (domains keep the results finite)
    "neg": Spec(keeps_exact=True), "abs": Spec(keeps_exact=True),
    "sign": Spec(exact_inputs=True, keeps_exact=True, grow=ONE),
    "exp": Spec(domain="clamp({}, max=3.0)", grow=lambda b, c, o: math.exp(min(b[0], 3.0))),
    "log": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: abs(math.log(b[0] + 0.5)) + 1),
    "sqrt": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: math.sqrt(b[0] + 0.5)),
    "rsqrt": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: 1.5),
    "reciprocal": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: 2.0),
    "square": Spec(grow=lambda b, c, o: b[0] ** 2),
    "sin": Spec(grow=ONE), "cos": Spec(grow=ONE), "tanh": Spec(grow=ONE, weight=1.5),
    "erf": Spec(grow=ONE), "sigmoid": Spec(grow=ONE),
    "floor": Spec(exact_inputs=True, keeps_exact=True), "round": Spec(exact_inputs=True, keeps_exact=True),
    "heaviside": Spec(exact_inputs=True, keeps_exact=True, grow=ONE),
    "relu": Spec(keeps_exact=True, weight=1.5), "hardsigmoid": Spec(grow=ONE),
    "clamp": Spec(s_clamp, keeps_exact=True), "scale": Spec(s_scale),
    "cast": Spec(s_cast, weight=1.2),
}
