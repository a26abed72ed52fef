"""Random sampling ops (ir/ops/random.py): rand_uniform / rand_normal / randint / gumbel of a pool value's shape
or a fresh one, bernoulli of exact probabilities (u < p must compare the same in the float32 and float64
references), dropout in training mode (its mask depends only on the seed, key and counter, so it is exact)."""
from __future__ import annotations

from ..values import Arg, Call, Spec, free_names


def _shape(g, ctx):
    v = g.pick(ctx, dtype_class=None) if g.ch.flag(0.7) else None
    shape = list(v.type.shape) if v is not None else list(g.rand_shape(ctx, g.ch.int(0, 3)))
    if ctx.symbols is not None and free_names(shape) - ctx.symbols:
        return None
    return shape


def s_source(g, ctx, op):
    shape = _shape(g, ctx)
    if shape is None:
        return None
    attrs = {"shape": shape}
    if op == "rand_uniform":
        if g.ch.flag(0.5):
            attrs["low"], attrs["high"] = g.ch.choice([(-1.0, 1.0), (0.0, 2.0), (-3.0, 0.5)])
        return Call([], attrs, exact=False, bound=max(1.0, abs(attrs.get("low", 0.0)), abs(attrs.get("high", 1.0))))
    if op == "rand_normal":
        if g.ch.flag(0.5):
            attrs["mean"], attrs["std"] = g.ch.choice([(1.0, 0.5), (-2.0, 2.0)])
        return Call([], attrs, exact=False, bound=abs(attrs.get("mean", 0.0)) + 6 * attrs.get("std", 1.0))
    if op == "randint":
        attrs = {"low": g.ch.choice([0, -3]), "high": g.ch.choice([2, 5, 17]), "shape": shape}
        if g.ch.flag(0.3):
            attrs["dtype"] = "i32"
        return Call([], attrs, exact=True, bound=17.0)
    return Call([], attrs, exact=False, bound=17.0)   # gumbel: in [-2.8, 16.7]


def s_bernoulli(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32", exact=True)
    if x is None:
        return None
    # an exact probability: sigmoid would round differently in float32 and float64 near a draw
    return Call([Arg(f"clamp({x.name} * 0.25 + 0.5, 0.0, 1.0)", x.type, True, 1.0, atomic=False)], {},
                exact=True, bound=1.0)


def s_dropout(g, ctx, op):
    x = g.float_var(ctx)
    if x is None:
        return None
    p = g.ch.choice([0.0, 0.25, 0.5, 0.9])
    return Call([Arg.of(x)], {"p": p, "training": g.ch.flag(0.8)}, bound=x.bound / (1 - p))


SPECS: dict[str, Spec] = {
    "rand_uniform": Spec(sample=s_source), "rand_normal": Spec(sample=s_source),
    "randint": Spec(sample=s_source), "gumbel": Spec(sample=s_source),
    "bernoulli": Spec(sample=s_bernoulli), "dropout": Spec(sample=s_dropout, keeps_exact=False),
}
