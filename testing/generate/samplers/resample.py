"""Resampling and pooling (ir/ops/resample.py): interpolate, grid_sample, max_pool3d / avg_pool3d, adaptive pools.

Inputs have numeric spatial sizes (the gradients' tap tables are constants). grid_sample's grid is a fresh input
passed through `tanh(.) * 1.2`: coordinates stay within [-1.2, 1.2] (a little outside the image, so every padding
mode matters) whatever the input holds (inf included; NaN stays NaN, which every backend reads the same way), so
float32 and float64 unnormalize it alike."""
from __future__ import annotations

import sympy

from ..values import Arg, Call, Spec
from .common import spatial_input
from .conv_pool import s_pool

_MODES = {1: ("nearest", "linear"), 2: ("nearest", "bilinear", "bicubic"), 3: ("nearest", "trilinear")}


def _numeric_spatial_input(g, ctx, nd):
    v = g.float_var(ctx, lambda v: v.type.rank == nd + 2 and v.type.shape[1].is_Integer
                    and all(d.is_Integer and int(d) >= 1 for d in v.type.shape[2:]))
    if v is not None and g.ch.flag(0.6):
        return v
    v = spatial_input(g, ctx, nd)
    if v is None or not all(sympy.sympify(d).is_Integer for d in v.type.shape[2:]):
        return None
    return v


def s_interpolate(g, ctx, op):
    nd = g.ch.int(1, 3)
    x = _numeric_spatial_input(g, ctx, nd)
    if x is None:
        return None
    mode = g.ch.choice(_MODES[nd])
    attrs = {"mode": mode}
    ins = [int(d) for d in x.type.shape[2:]]
    if g.ch.flag(0.5):
        hi = 4 if nd == 3 else 8
        attrs["size"] = [g.ch.int(1, hi) for _ in range(nd)] if g.ch.flag(0.6) else g.ch.int(1, hi)
    else:
        sf = g.ch.choice([0.5, 1.5, 2.0, 3.0, 0.75])
        if any(int(n * sf) < 1 for n in ins):
            sf = 2.0
        attrs["scale_factor"] = sf
    if mode != "nearest" and g.ch.flag(0.5):
        attrs["align_corners"] = True
    growth = 1.6 ** nd if mode == "bicubic" else 1.0   # the cubic kernel's negative lobes overshoot
    return Call([Arg.of(x)], attrs, exact=x.exact and mode == "nearest", bound=x.bound * growth)


def s_grid_sample(g, ctx, op):
    x = _numeric_spatial_input(g, ctx, 2)
    if x is None:
        return None
    shape = (x.type.shape[0], sympy.Integer(g.ch.int(1, 4)), sympy.Integer(g.ch.int(1, 4)), sympy.Integer(2))
    grid = g.new_input(ctx, "f32", shape)
    if grid is None:
        grid = g.new_param(ctx, list(shape), "uniform(-1.2, 1.2)", 1.2)
    if grid is None:
        return None
    gridarg = Arg(f"tanh({grid.name}) * 1.2", grid.type, False, 1.2, atomic=False)
    attrs = {}
    if g.ch.flag(0.3):
        attrs["mode"] = "nearest"
    if g.ch.flag(0.6):
        attrs["padding_mode"] = g.ch.choice(["zeros", "border", "reflection"])
    if g.ch.flag(0.5):
        attrs["align_corners"] = True
    return Call([Arg.of(x), gridarg], attrs, exact=False, bound=x.bound)


def s_adaptive(g, ctx, op):
    nd = int(op[-2])
    x = _numeric_spatial_input(g, ctx, nd)
    if x is None:
        return None
    ins = [int(d) for d in x.type.shape[2:]]
    out = [g.ch.int(1, n + 1) for n in ins]
    attrs = {"output_size": out if len(set(out)) > 1 or g.ch.flag(0.5) else out[0]}
    return Call([Arg.of(x)], attrs, exact=x.exact and "max" in op, bound=x.bound)


SPECS: dict[str, Spec] = {
    "interpolate": Spec(s_interpolate), "grid_sample": Spec(s_grid_sample),
    "max_pool3d": Spec(s_pool, weight=0.5), "avg_pool3d": Spec(s_pool, weight=0.5),
    **{f"adaptive_{k}_pool{nd}d": Spec(s_adaptive, weight=0.5) for k in ("avg", "max") for nd in (1, 2, 3)},
}
