"""Gradients (vector-Jacobian products, as IR) of the resampling and pooling ops of resample.py; see
elementwise_grad.py for the conventions. The formulas follow torch's derivatives:

- interpolate and adaptive_avg_pool are separable linear maps: along each spatial axis y = A x with A [out, in]
  (interpolate: A[o, idx[o, k]] += w[o, k] from the same tap tables as the reference; adaptive average: 1 / (window
  length) over each window), so the cotangent is A^T applied per axis (an einsum with a constant matrix: a scatter-add
  of the weights, as torch's upsample backward). The spatial sizes must be numbers (the tables are constants).
- adaptive_max_pool: the whole cotangent of a window to its first maximum in scan order, or, where the window holds
  NaN, to its last NaN (torch's `val > max || isnan(val)` scan), found by an argmax over the window's taps (a take of
  x at a constant table of window positions) and placed by a scatter_add, as torch's saved indices.
- max_pool3d / avg_pool3d: the 1-D / 2-D pools' rules (reduce_grad.py), which are written for any spatial rank.
- grid_sample: wrt x, each output's ct times its corner weights scatter-added at the corners that lie inside x
  (nearest: its one pixel); wrt grid (bilinear), the weights' derivatives times the corner values, summed over
  channels, times d(source)/d(grid): the unnormalize factor and the padding mode's clip / reflection derivative
  (torch's clip_coordinates_set_grad, reflect_coordinates_set_grad: 0 at and beyond a clipped border); nearest
  gives grid no gradient (torch: zeros).
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import vjp
from . import reduce_grad
from .resample import adaptive_bounds, interp_tables, per_dim

LETTERS = "abcdefgh"


def _numeric_spatial(n, what):
    x = n.inputs[0]
    sizes = x.type.shape[2:]
    if not all(sympy.sympify(d).is_number for d in sizes):
        raise ShapeError(f"{n.op}: the gradient needs numeric spatial sizes ({what}), got input {x.type}")
    return [int(d) for d in sizes]


def _apply_transposed(e, ct, mats, dtype):
    """ct [N, C, *out] -> [N, C, *in]: along spatial axis d, contract with A_d [out_d, in_d] (A_d^T ct)."""
    g = ct
    rank = ct.type.rank
    for d, a in enumerate(mats):
        if a is None:
            continue
        ax = 2 + d
        spec = LETTERS[:rank]
        out = spec[:ax] + "z" + spec[ax + 1:]
        m = e("const", [], value=a.tolist(), dtype=dtype, shape=list(a.shape))
        g = e("einsum", [g, m], equation=f"{spec},{spec[ax]}z->{out}")
    return g


def _matrix(idx, w, n_in):
    a = np.zeros((idx.shape[0], n_in))
    for k in range(idx.shape[1]):
        np.add.at(a, (np.arange(idx.shape[0]), idx[:, k]), w[:, k])
    return a


@vjp("interpolate")
def _interpolate(e, n, cts):
    x = n.inputs[0]
    sizes = _numeric_spatial(n, "the tap tables are constants")
    a = n.attrs
    tables = interp_tables(sizes, a["mode"], a["size"], a["scale_factor"], a["align_corners"])
    mats = []
    for (idx, w), n_in in zip(tables, sizes):
        m = _matrix(idx, w, n_in)
        mats.append(None if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(n_in)) else m)
    return [e.like(_apply_transposed(e, cts[0], mats, x.type.dtype), x.type)]


def _adaptive_avg(e, n, cts):
    x = n.inputs[0]
    sizes = _numeric_spatial(n, "the windows are constants")
    outs = per_dim(n.attrs["output_size"], len(sizes))
    mats = []
    for n_in, n_out in zip(sizes, outs):
        m = np.zeros((n_out, n_in))
        for o, (s, t) in enumerate(adaptive_bounds(n_in, n_out)):
            m[o, s:t] = 1.0 / (t - s)
        mats.append(None if n_in == n_out else m)
    return [e.like(_apply_transposed(e, cts[0], mats, x.type.dtype), x.type)]


def _adaptive_max(e, n, cts):
    """The window positions as a constant table P [out_flat, K] (row-major scan order, short windows padded with
    their last position); score each tap: NaN taps 2K + k (the last NaN wins), taps equal to the maximum K - k (the
    first wins), others 0; the argmax's position gets the whole ct."""
    x, y, ct = n.inputs[0], n.output, cts[0]
    sizes = _numeric_spatial(n, "the windows are constants")
    outs = per_dim(n.attrs["output_size"], len(sizes))
    bounds = [adaptive_bounds(i, o) for i, o in zip(sizes, outs)]
    strides = [int(np.prod(sizes[d + 1:])) for d in range(len(sizes))]
    rows = []
    for cell in itertools.product(*(range(o) for o in outs)):
        ranges = [range(*bounds[d][o]) for d, o in enumerate(cell)]
        rows.append([sum(p * s for p, s in zip(pos, strides)) for pos in itertools.product(*ranges)])
    K = max(len(r) for r in rows)
    table = [r + [r[-1]] * (K - len(r)) for r in rows]
    lead = list(x.type.shape[:2])
    n_out, n_in = len(rows), int(np.prod(sizes))
    dt = x.type.dtype
    xf = e("reshape", [x], shape=lead + [n_in])
    P = e("const", [], value=table, dtype="i64", shape=[n_out, K])
    taps = e("take", [xf, P], axis=2)                                           # [N, C, out, K]
    yk = e("expand_dims", [e("reshape", [y], shape=lead + [n_out])], axis=-1)   # [N, C, out, 1]
    first = e("const", [], value=[float(K - k) for k in range(K)], dtype=dt, shape=[K])
    last = e("const", [], value=[float(2 * K + k) for k in range(K)], dtype=dt, shape=[K])
    zero = e.const(0.0, dt)
    score = e("where", [e("ne", [taps, taps]), last, e("where", [e("eq", [taps, yk]), first, zero])])
    j = e("argmax", [score], axis=-1, keepdims=True)                            # [N, C, out, 1]
    Pb = e("broadcast_to", [P], shape=lead + [n_out, K])
    pos = e("squeeze", [e("gather", [Pb, j], axis=3)], axis=[3])               # [N, C, out]
    ctf = e("reshape", [ct], shape=lead + [n_out])
    g = e("scatter_add", [e.full(0.0, x.type.with_shape(lead + [n_in])), pos, ctf], axis=2)
    return [e("reshape", [g], shape=list(x.type.shape))]


vjp("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d")(_adaptive_avg)
vjp("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")(_adaptive_max)
vjp("avg_pool3d")(reduce_grad._avg_pool)
vjp("max_pool3d")(reduce_grad._max_pool)


# ---- grid_sample -----------------------------------------------------------------------------------------------
def _k(e, v, dt):
    return e.const(float(v), dt)


def _source(e, c, size, padding_mode, align_corners):
    """(source position, d source / d c) for normalized coordinates c (torch's
    grid_sampler_compute_source_index_set_grad)."""
    dt = c.type.dtype
    mult = (size - 1) / 2 if align_corners else size / 2
    s = e("add", [e("mul", [c, _k(e, mult, dt)]), _k(e, mult if align_corners else (size - 1) / 2, dt)])
    g = e.full(mult, c.type)
    one, zero = _k(e, 1, dt), _k(e, 0, dt)
    if padding_mode == "reflection":
        lo2, hi2 = (0, 2 * (size - 1)) if align_corners else (-1, 2 * size - 1)
        if lo2 == hi2:
            return e.full(0.0, c.type), e.full(0.0, c.type)
        lo, span = lo2 / 2, (hi2 - lo2) / 2
        t = e("sub", [s, _k(e, lo, dt)])
        sign = e("where", [e("lt", [t, zero]), _k(e, -1, dt), one])
        t = e("abs", [t])
        extra = e("mod", [t, _k(e, span, dt)])
        flips = e("floor", [e("div", [t, _k(e, span, dt)])])
        even = e("eq", [e("mod", [flips, _k(e, 2, dt)]), zero])
        s = e("where", [even, e("add", [extra, _k(e, lo, dt)]),
                        e("add", [e("sub", [_k(e, span, dt), extra]), _k(e, lo, dt)])])
        g = e("mul", [g, e("where", [even, sign, e("neg", [sign])])])
    if padding_mode in ("border", "reflection"):
        inside = e("logical_and", [e("gt", [s, zero]), e("lt", [s, _k(e, size - 1, dt)])])
        g = e("where", [inside, g, zero])
        s = e("clamp", [s], min=0.0, max=float(size - 1))
        s = e("where", [e("ne", [s, s]), zero, s])   # NaN reads position 0, as torch's clip
    return s, g


def _corner(e, xf, iy, ix, H, W, lead):
    """(values [N, C, P] of x at integer positions iy, ix [N, P] (0 outside), flat positions [N, C, P] (0 outside),
    the inside mask [N, 1, P])."""
    i64 = lambda v: e.const(v, "i64")  # noqa: E731
    inside = e("logical_and", [e("logical_and", [e("ge", [iy, i64(0)]), e("lt", [iy, i64(H)])]),
                               e("logical_and", [e("ge", [ix, i64(0)]), e("lt", [ix, i64(W)])])])
    flat = e("where", [inside, e("add", [e("mul", [iy, i64(W)]), ix]), i64(0)])
    P = flat.type.shape[1]
    flat = e("broadcast_to", [e("expand_dims", [flat], axis=1)], shape=lead + [P])
    inside = e("expand_dims", [inside], axis=1)
    vals = e("where", [inside, e("gather", [xf, flat], axis=2), _k(e, 0, xf.type.dtype)])
    return vals, flat, inside


def _as_index(e, v):
    """A float position (already floored or rounded) as i64; NaN / huge ones clamped far outside the input."""
    v = e("where", [e("ne", [v, v]), _k(e, -2, v.type.dtype), v])
    return e("cast", [e("clamp", [v], min=-2.0, max=float(2 ** 40))], dtype="i64")


@vjp("grid_sample")
def _grid_sample(e, n, cts):
    x, grid = n.inputs
    ct = cts[0]
    a = n.attrs
    N, C, H, W = x.type.shape
    if not (H.is_number and W.is_number):
        raise ShapeError(f"grid_sample: the gradient needs numeric spatial sizes, got input {x.type}")
    H, W = int(H), int(W)
    dt = x.type.dtype
    lead = [N, C]
    Ho, Wo = grid.type.shape[1:3]
    P = Ho * Wo
    gflat = e("reshape", [grid], shape=[N, P, 2])
    gx = e("squeeze", [e("slice", [gflat], slices=[[None, None, 1], [None, None, 1], [0, 1, 1]])], axis=[2])
    gy = e("squeeze", [e("slice", [gflat], slices=[[None, None, 1], [None, None, 1], [1, 2, 1]])], axis=[2])
    sx, dx = _source(e, gx, W, a["padding_mode"], a["align_corners"])
    sy, dy = _source(e, gy, H, a["padding_mode"], a["align_corners"])
    xf = e("reshape", [x], shape=lead + [H * W])
    ctf = e("reshape", [ct], shape=lead + [P])
    if a["mode"] == "nearest":
        _, flat, inside = _corner(e, xf, _as_index(e, e("round", [sy])), _as_index(e, e("round", [sx])), H, W, lead)
        src = e("where", [inside, ctf, _k(e, 0, dt)])
        gxx = e("scatter_add", [e.full(0.0, x.type.with_shape(lead + [H * W])), flat, src], axis=2)
        return [e("reshape", [gxx], shape=list(x.type.shape)), e.full(0.0, grid.type)]
    x0, y0 = e("floor", [sx]), e("floor", [sy])
    ix, iy = _as_index(e, x0), _as_index(e, y0)
    one = e.const(1, "i64")
    ix1, iy1 = e("add", [ix, one]), e("add", [iy, one])
    wx1, wy1 = e("sub", [sx, x0]), e("sub", [sy, y0])
    wx0 = e("sub", [e("add", [x0, _k(e, 1, dt)]), sx])
    wy0 = e("sub", [e("add", [y0, _k(e, 1, dt)]), sy])
    corners = [(iy, ix, wx0, wy0), (iy, ix1, wx1, wy0), (iy1, ix, wx0, wy1), (iy1, ix1, wx1, wy1)]
    idxs, srcs, vals = [], [], []
    for cy, cx, wx, wy in corners:
        v, flat, inside = _corner(e, xf, cy, cx, H, W, lead)
        w = e("expand_dims", [e("mul", [wx, wy])], axis=1)                    # [N, 1, P]
        idxs.append(flat)
        srcs.append(e("where", [inside, e("mul", [ctf, w]), _k(e, 0, dt)]))
        vals.append(v)
    gxx = e("scatter_add", [e.full(0.0, x.type.with_shape(lead + [H * W])), e("concat", idxs, axis=2),
                            e("concat", srcs, axis=2)], axis=2)
    gx_ct = e("reshape", [gxx], shape=list(x.type.shape))
    # d out / d sx = sum_c ct * ((v_ne - v_nw) wy0 + (v_se - v_sw) wy1); d out / d sy likewise with x weights
    ex = lambda v: e("expand_dims", [v], axis=1)  # noqa: E731
    v_nw, v_ne, v_sw, v_se = vals
    dsx = e("add", [e("mul", [e("sub", [v_ne, v_nw]), ex(wy0)]), e("mul", [e("sub", [v_se, v_sw]), ex(wy1)])])
    dsy = e("add", [e("mul", [e("sub", [v_sw, v_nw]), ex(wx0)]), e("mul", [e("sub", [v_se, v_ne]), ex(wx1)])])
    gsx = e("mul", [e("sum", [e("mul", [ctf, dsx])], axis=[1], keepdims=False), dx])   # [N, P]
    gsy = e("mul", [e("sum", [e("mul", [ctf, dsy])], axis=[1], keepdims=False), dy])
    g = e("concat", [e("expand_dims", [gsx], axis=-1), e("expand_dims", [gsy], axis=-1)], axis=-1)
    return [gx_ct, e("reshape", [g], shape=list(grid.type.shape))]
