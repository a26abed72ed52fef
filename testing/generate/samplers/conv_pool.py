"""Convolutions (1-3 D, transposed, grouped, strided, dilated) and pools over [N, C, *spatial] values."""
from __future__ import annotations

import math

import sympy

from ..values import Arg, Call, Spec
from .common import divisors, spatial_input


def s_conv(g, ctx, op):
    nd = int(op[4]) if op[4].isdigit() else 2
    transpose = op.startswith("conv_transpose")
    x = spatial_input(g, ctx, nd)
    if x is None:
        return None
    cin = int(x.type.shape[1])
    groups = g.ch.choice(divisors(cin)) if g.ch.flag(0.3) else 1
    m = g.ch.int(1, 3)
    k = [g.ch.int(1, 3) for _ in range(nd)]
    if transpose:
        wshape = (cin, m) + tuple(k)
        cout = m * groups
    else:
        cout = m * groups
        wshape = (cout, cin // groups) + tuple(k)
    w = g.new_param(ctx, [sympy.Integer(d) for d in wshape], "normal(0, 0.3)", 1.2)
    if w is None:
        return None
    args = [Arg.of(x), Arg.of(w)]
    if g.ch.flag(0.5):
        b = g.new_param(ctx, [sympy.Integer(cout)], "normal(0, 0.5)", 2.0)
        args.append(Arg.of(b))
    attrs = {}
    per_dim = lambda lo, hi: g.ch.int(lo, hi) if g.ch.flag(0.7) else [g.ch.int(lo, hi) for _ in range(nd)]
    if g.ch.flag(0.5):
        attrs["stride"] = per_dim(1, 2)
    if g.ch.flag(0.5):
        attrs["padding"] = per_dim(0, 2)
    if g.ch.flag(0.3):
        attrs["dilation"] = per_dim(1, 2)
    if groups > 1:
        attrs["groups"] = groups
    if transpose and g.ch.flag(0.3):
        attrs["output_padding"] = 1
    if x.bound > 4:
        args[0] = g.squash(args[0])
    taps = (cin // groups) * math.prod(k) if not transpose else cin * math.prod(k)
    return Call(args, attrs, bound=args[0].bound * 1.2 * taps + 2)


def s_pool(g, ctx, op):
    nd = int(op[-2])
    x = spatial_input(g, ctx, nd)
    if x is None:
        return None
    k = g.ch.int(1, 3)
    attrs = {"kernel": k if g.ch.flag(0.7) else [g.ch.int(1, 3) for _ in range(nd)]}
    if g.ch.flag(0.5):
        attrs["stride"] = g.ch.int(1, 2)
    if g.ch.flag(0.4):
        attrs["padding"] = g.ch.int(0, 1)
    return Call([Arg.of(x)], attrs, exact=x.exact and op.startswith("max"))


SPECS: dict[str, Spec] = {
    "conv1d": Spec(s_conv), "conv2d": Spec(s_conv), "conv3d": Spec(s_conv, weight=0.5),
    "conv_transpose2d": Spec(s_conv),
    "max_pool1d": Spec(s_pool), "avg_pool1d": Spec(s_pool), "max_pool2d": Spec(s_pool), "avg_pool2d": Spec(s_pool),
}
