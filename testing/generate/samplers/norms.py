"""Normalizations: softmax / log_softmax, layernorm / rmsnorm (with optional weight and bias params),
inference batchnorm, groupnorm."""
from __future__ import annotations

import math

import sympy

from ....ir.types import TensorType
from ..values import Arg, Call, Spec
from .common import ONE, divisors, param_for, spatial_input


def s_layernorm(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.rank >= 1)
    if x is None:
        return None
    k = 2 if x.type.rank >= 2 and g.ch.flag(0.3) else 1
    axis = -1 if k == 1 else [-2, -1]
    trailing = x.type.shape[-k:]
    if op == "layernorm" and g.numel(TensorType("f32", trailing)) < 2:
        return None   # statistics of one element: 0 / sqrt(eps) amplifies rounding noise (nothing to test)
    args = [Arg.of(x)]
    attrs = {"axis": axis} if k == 2 or g.ch.flag(0.5) else {}
    if g.ch.flag(0.3):
        attrs["eps"] = g.ch.choice([1e-5, 0.01])
    kw = {}
    if all(d.is_Integer for d in trailing):
        nparams = g.ch.int(0, 2 if op == "layernorm" else 1)
        for i in range(nparams):
            p = param_for(g, ctx, trailing)
            if p is None:
                break
            args.append(Arg.of(p))
        if op == "layernorm" and nparams == 1 and g.ch.flag(0.4):   # a bias without a weight
            args = [args[0], None, args[1]]
            kw = {2: "b"}
    bound = 1.0 + math.sqrt(max(g.numel(TensorType("f32", trailing)), 1))
    for a in args[1:]:
        if a is not None:
            bound *= a.bound + 1
    return Call(args, attrs, kw_inputs=kw, bound=bound)


def _channels_input(g, ctx):
    """A float value with a concrete channel dim (dim 1): from the pool, or a new [N, C, *spatial] input."""
    x = g.float_var(ctx, lambda v: v.type.rank >= 2 and v.type.shape[1].is_Integer)
    if x is None:
        x = spatial_input(g, ctx, g.ch.int(1, 2))
    return x


def s_batchnorm(g, ctx, op):
    x = _channels_input(g, ctx)
    if x is None:
        return None
    c = (x.type.shape[1],)
    mean = param_for(g, ctx, c, "normal(0, 0.5)")
    var = param_for(g, ctx, c, "uniform(0.5, 2)")
    if mean is None or var is None:
        return None
    args = [Arg.of(x), Arg.of(mean), Arg.of(var)]
    for _ in range(g.ch.int(0, 2)):
        p = param_for(g, ctx, c)
        args.append(Arg.of(p))
    attrs = {"eps": g.ch.choice([1e-5, 0.1])} if g.ch.flag(0.3) else {}
    return Call(args, attrs, bound=(x.bound + 2) * 2 * 3 + 3)


def s_groupnorm(g, ctx, op):
    x = _channels_input(g, ctx)
    if x is None:
        return None
    c = int(x.type.shape[1])
    per_sample = g.numel(x.type) // max(g.rt(x.type.shape[0]), 1)
    groups = g.ch.choice([d for d in divisors(c) if per_sample // d >= 2] or [0])
    if groups == 0:
        return None   # groups of one element: see s_layernorm
    args = [Arg.of(x)]
    for _ in range(g.ch.int(0, 2)):
        p = param_for(g, ctx, (sympy.Integer(c),))
        args.append(Arg.of(p))
    return Call(args, {"groups": groups}, bound=20.0)


SPECS: dict[str, Spec] = {
    # norms
    "softmax": Spec(grow=ONE), "log_softmax": Spec(grow=lambda b, c, o: 2 * b[0] + 10),
    "layernorm": Spec(s_layernorm), "rmsnorm": Spec(s_layernorm),
    "batchnorm": Spec(s_batchnorm), "groupnorm": Spec(s_groupnorm),
}
