"""Resampling and pooling over [N, C, *spatial] values, torch's semantics exactly (issue 21, item 5):
interpolate (nearest, linear, bilinear, bicubic, trilinear), grid_sample (2-D), max_pool3d / avg_pool3d and
adaptive average / max pooling in 1-3 D.

interpolate is separable: along each spatial axis, output position o reads `taps` input positions idx[o, k] with
weights w[o, k] (`axis_taps`, the same integer/weight tables torch's CPU kernels build: nearest's
floor(o * scale) in float32, linear's clamped source index and lambda, bicubic's A = -0.75 convolution with
border-clamped indices); the reference applies the axes from the last to the first, as torch nests them, so
non-finite values land where torch's do (a zero weight times inf is NaN in both). Adaptive pools use torch's
window rule start = floor(o * in / out), end = ceil((o + 1) * in / out). The gradients (resample_grad.py) read the
same tables.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import dim, is_float, numel
from .conv import SPATIAL_NAMES, pad_spatial, per_dim, spatial_attr, window_sizes, windows

MODES = {"nearest": (1, 2, 3), "linear": (1,), "bilinear": (2,), "bicubic": (2,), "trilinear": (3,)}
CUBIC_A = -0.75


def _float_input(op, x, nds):
    if not is_float(x.dtype):
        raise ShapeError(f"{op}: input must be a float tensor, got {x}")
    if x.rank - 2 not in nds:
        want = " or ".join(f"[N, C, {SPATIAL_NAMES[n]}]" for n in nds)
        raise ShapeError(f"{op}: expects input {want}, got {x}")
    return x.rank - 2


# ---- interpolate ---------------------------------------------------------------------------------------------
def _scale_list(value, nd, op):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * nd
    if len(values) != nd:
        raise ShapeError(f"{op}: scale_factor has {len(values)} entries, expected {nd} (one per spatial dim)")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ShapeError(f"{op}: scale_factor must hold positive numbers, got {value!r}")
        out.append(float(v))
    return out


def scaled_size(n, s):
    """torch's output size floor(n * scale_factor) (n a number or a symbolic dim)."""
    n = sympy.sympify(n)
    if n.is_number:
        return sympy.Integer(math.floor(float(int(n)) * s))
    return sympy.floor(n * sympy.Rational(repr(s)))


def _interpolate_infer(types, attrs):
    op = "interpolate"
    x = types[0]
    mode = attrs["mode"]
    if mode not in MODES:
        raise ShapeError(f"{op}: mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    nd = _float_input(op, x, MODES[mode])
    if not isinstance(attrs["align_corners"], bool):
        raise ShapeError(f"{op}: align_corners must be true or false, got {attrs['align_corners']!r}")
    if mode == "nearest" and attrs["align_corners"]:
        raise ShapeError(f"{op}: align_corners=true needs a linear or cubic mode, not 'nearest'")
    size, sf = attrs["size"], attrs["scale_factor"]
    if (size is None) == (sf is None):
        raise ShapeError(f"{op}: give exactly one of size and scale_factor")
    if size is not None:
        attrs["size"] = spatial_attr(size, nd, "size", op, minimum=1)
        out = [dim(s) for s in attrs["size"]]
    else:
        attrs["scale_factor"] = _scale_list(sf, nd, op)
        out = [scaled_size(n, s) for n, s in zip(x.shape[2:], attrs["scale_factor"])]
        for n, o in zip(x.shape[2:], out):
            if o.is_number and int(o) < 1 and not (n.is_number and int(n) == 0):
                raise ShapeError(f"{op}: scale_factor {attrs['scale_factor']} makes an empty output from input {x}")
    return x.with_shape(x.shape[:2] + tuple(out))


def _source_scale(n_in, n_out, align_corners, sf):
    """torch's area_pixel_compute_scale (double here; torch's opmath for the dtype)."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / sf if sf is not None else n_in / n_out


def axis_taps(mode, n_in, n_out, align_corners, sf):
    """(idx [n_out, taps] int64, w [n_out, taps] float64): output o along this axis is sum_k w[o, k] x[idx[o, k]]."""
    o = np.arange(n_out)
    if n_in == 0 or n_out == 0:
        k = {"nearest": 1, "bicubic": 4}.get(mode, 2)
        return np.zeros((n_out, k), np.int64), np.zeros((n_out, k))
    if mode == "nearest":
        if n_out == n_in:
            idx = o
        elif n_out == 2 * n_in:
            idx = o >> 1
        else:   # torch's nearest_idx: floorf(o * scale) in float32, scale = 1/sf or in/out as float32
            scale = np.float32(1.0 / sf) if sf is not None else np.float32(n_in) / np.float32(n_out)
            idx = np.minimum(np.floor(o.astype(np.float32) * scale).astype(np.int64), n_in - 1)
        return idx[:, None].astype(np.int64), np.ones((n_out, 1))
    scale = _source_scale(n_in, n_out, align_corners, sf)
    cubic = mode == "bicubic"
    src = scale * o if align_corners else scale * (o + 0.5) - 0.5
    if not cubic:
        src = np.maximum(src, 0.0)
    base = np.minimum(np.floor(src).astype(np.int64), n_in - 1)      # guard_index_and_lambda
    t = np.clip(src - base, 0.0, 1.0)
    if not cubic:
        idx = np.stack([base, base + (base < n_in - 1)], axis=1)
        return idx, np.stack([1.0 - t, t], axis=1)
    a = CUBIC_A
    def near(u):   # |u| <= 1
        return ((a + 2) * u - (a + 3)) * u * u + 1
    def far(u):    # 1 < |u| < 2
        return ((a * u - 5 * a) * u + 8 * a) * u - 4 * a
    w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    idx = np.clip(base[:, None] - 1 + np.arange(4)[None, :], 0, n_in - 1)
    return idx, w


def interp_out_sizes(in_sizes, size, scale_factor):
    if size is not None:
        return [int(s) for s in per_dim(size, len(in_sizes))]
    return [int(scaled_size(n, s)) for n, s in zip(in_sizes, per_dim(scale_factor, len(in_sizes)))]


def interp_tables(in_sizes, mode, size, scale_factor, align_corners):
    """Per spatial axis, axis_taps for concrete input sizes."""
    out = interp_out_sizes(in_sizes, size, scale_factor)
    sfs = per_dim(scale_factor, len(in_sizes)) if scale_factor is not None else [None] * len(in_sizes)
    return [axis_taps(mode, n, o, align_corners, s) for n, o, s in zip(in_sizes, out, sfs)]


def _interpolate_ref(x, size, scale_factor, mode, align_corners):
    nd = x.ndim - 2
    wide = np.float64 if x.dtype == np.float64 else np.float32
    y = x
    tables = interp_tables(x.shape[2:], mode, size, scale_factor, align_corners)
    for d in reversed(range(nd)):   # the last axis innermost, as torch's kernels nest them
        idx, w = tables[d]
        axis = 2 + d
        if mode == "nearest":
            y = np.take(y, idx[:, 0], axis=axis)
            continue
        acc = None
        shape = [1] * y.ndim
        shape[axis] = -1
        for k in range(idx.shape[1]):
            term = np.take(y, idx[:, k], axis=axis) * w[:, k].astype(wide).reshape(shape)
            acc = term if acc is None else acc + term
        y = acc
    return np.asarray(y).astype(x.dtype, copy=False)


def _interpolate_torch(T, x, *, size, scale_factor, mode, align_corners):
    ac = None if mode == "nearest" else align_corners
    if x.numel() == 0:   # torch refuses some empty inputs; the result is empty
        nd = x.ndim - 2
        if size is not None:
            out = list(size) if isinstance(size, (list, tuple)) else [size] * nd
        else:
            sf = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nd
            out = [int(float(n) * s // 1) for n, s in zip(x.shape[2:], sf)]
        return x.new_zeros((*x.shape[:2], *out))
    return T.nn.functional.interpolate(x, size=size, scale_factor=scale_factor, mode=mode, align_corners=ac)


def _interpolate_flops(i, o, attrs):
    taps = {"nearest": 0, "bicubic": 4}.get(attrs["mode"], 2)
    return o[0].numel * 2 * taps * (o[0].rank - 2)


register("interpolate", "x", kind="index",
         attrs={"size": None, "scale_factor": None, "mode": "nearest", "align_corners": False},
         infer=_interpolate_infer, ref=_interpolate_ref, torch=_interpolate_torch, flops=_interpolate_flops,
         doc="resize x [N, C, *spatial] to `size` (or floor(in * scale_factor)) like torch's F.interpolate: nearest "
             "(floor(o * in/out)), linear / bilinear / trilinear, bicubic (A = -0.75, clamped border)")


# ---- grid_sample ---------------------------------------------------------------------------------------------
GRID_MODES = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")


def _grid_sample_infer(types, attrs):
    op = "grid_sample"
    x, grid = types
    _float_input(op, x, (2,))
    if attrs["mode"] not in GRID_MODES:
        raise ShapeError(f"{op}: mode must be 'bilinear' or 'nearest', got {attrs['mode']!r}")
    if attrs["padding_mode"] not in PADDING_MODES:
        raise ShapeError(f"{op}: padding_mode must be one of 'zeros', 'border', 'reflection', "
                         f"got {attrs['padding_mode']!r}")
    if not isinstance(attrs["align_corners"], bool):
        raise ShapeError(f"{op}: align_corners must be true or false, got {attrs['align_corners']!r}")
    if grid.dtype != x.dtype or grid.rank != 4 or not grid.shape[3] == 2 or \
            not sympy.simplify(grid.shape[0] - x.shape[0]) == 0:
        raise ShapeError(f"{op}: grid must be {x.dtype}[{x.shape[0]}, H_out, W_out, 2] (x, y in [-1, 1]) "
                         f"for input {x}, got {grid}")
    return x.with_shape((x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]))


def _reflect(c, lo2, hi2):
    """torch's reflect_coordinates over [lo2 / 2, hi2 / 2]."""
    if lo2 == hi2:
        return np.zeros_like(c)
    lo, span = lo2 / 2, (hi2 - lo2) / 2
    c = np.abs(c - lo)
    extra = np.fmod(c, span)
    flips = np.floor(c / span)
    return np.where(np.fmod(flips, 2) == 0, extra + lo, span - extra + lo)


def grid_source(c, size, padding_mode, align_corners):
    """torch's grid_sampler_compute_source_index: a normalized coordinate as a (real) input position."""
    c = ((c + 1) / 2) * (size - 1) if align_corners else ((c + 1) * size - 1) / 2
    if padding_mode == "border":
        c = np.minimum(np.maximum(c, 0), size - 1)
    elif padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (size - 1)) if align_corners else _reflect(c, -1, 2 * size - 1)
        c = np.minimum(np.maximum(c, 0), size - 1)
    if padding_mode != "zeros":   # torch's vectorized clip maps NaN (a NaN or reflected infinite coordinate) to 0
        c = np.where(np.isnan(c), 0.0, c)
    return c


def _corner(x, iy, ix):
    """x [N, C, H, W] read at integer positions iy, ix [N, Ho, Wo] (0 outside): [N, C, Ho, Wo]."""
    N, C, H, W = x.shape
    inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    flat = np.where(inside, iy * W + ix, 0).reshape(N, 1, -1)
    vals = np.take_along_axis(x.reshape(N, C, H * W), np.broadcast_to(flat, (N, C, flat.shape[2])), axis=2)
    vals = vals.reshape(N, C, *iy.shape[1:])
    return np.where(inside[:, None], vals, 0)


def _grid_sample_ref(x, grid, mode, padding_mode, align_corners):
    N, C, H, W = x.shape
    with np.errstate(invalid="ignore"):
        gx = grid_source(grid[..., 0], W, padding_mode, align_corners)
        gy = grid_source(grid[..., 1], H, padding_mode, align_corners)
        if x.size == 0 or grid.size == 0:
            return np.zeros((N, C) + grid.shape[1:3], x.dtype)
        if mode == "nearest":
            ix = _to_int(np.rint(gx))
            iy = _to_int(np.rint(gy))
            return _corner(x, iy, ix).astype(x.dtype, copy=False)
        x0, y0 = np.floor(gx), np.floor(gy)
        wx1, wy1 = gx - x0, gy - y0
        wx0, wy0 = (x0 + 1) - gx, (y0 + 1) - gy
        ix, iy = _to_int(x0), _to_int(y0)
        out = None
        for dy, dx, w in ((0, 0, wx0 * wy0), (0, 1, wx1 * wy0), (1, 0, wx0 * wy1), (1, 1, wx1 * wy1)):
            term = _corner(x, iy + dy, ix + dx) * w[:, None]
            out = term if out is None else out + term
    return out.astype(x.dtype, copy=False)


def _to_int(v):
    """Positions as int64; a NaN or infinite one becomes a position outside every input (read as 0)."""
    return np.where(np.isfinite(v), np.clip(v, -2, 2**40), -2).astype(np.int64)


def _grid_sample_torch(T, x, grid, *, mode, padding_mode, align_corners):
    if x.numel() == 0 or grid.numel() == 0:
        return x.new_zeros((x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]))
    return T.nn.functional.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


register("grid_sample", "x, grid", kind="index",
         attrs={"mode": "bilinear", "padding_mode": "zeros", "align_corners": False},
         infer=_grid_sample_infer, ref=_grid_sample_ref, torch=_grid_sample_torch,
         flops=lambda i, o, a: o[0].numel * (8 if a["mode"] == "bilinear" else 1),
         doc="sample x [N, C, H, W] at grid [N, Ho, Wo, 2] ((x, y) in [-1, 1]) like torch's F.grid_sample: "
             "bilinear / nearest, zeros / border / reflection padding")


# ---- max_pool3d / avg_pool3d (the 1-D / 2-D pools' rule and attributes, nn.py) ----------------------------------
def _pool3d_infer(op):
    def infer(types, attrs):
        x = types[0]
        _float_input(op, x, (3,))
        kernel = attrs["kernel"] = spatial_attr(attrs["kernel"], 3, "kernel", op, minimum=1)
        stride = attrs["stride"] = (list(kernel) if attrs["stride"] is None
                                    else spatial_attr(attrs["stride"], 3, "stride", op, minimum=1))
        padding = attrs["padding"] = spatial_attr(attrs["padding"], 3, "padding", op)
        for k, p in zip(kernel, padding):
            if isinstance(k, int) and isinstance(p, int) and p > k // 2:
                raise ShapeError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
        out = window_sizes(op, x, kernel, stride, padding, [1] * 3, f"kernel {kernel}")
        return x.with_shape(x.shape[:2] + tuple(out))
    return infer


def _pool3d_attrs(kernel, stride, padding):
    kernel = per_dim(kernel, 3)
    return kernel, (kernel if stride is None else per_dim(stride, 3)), per_dim(padding, 3)


def _max_pool3d_ref(x, kernel, stride, padding):
    kernel, stride, padding = _pool3d_attrs(kernel, stride, padding)
    win = windows(pad_spatial(x, padding, -np.inf), kernel, stride, [1] * 3)
    return win.max(axis=(-3, -2, -1)).astype(x.dtype, copy=False)


def _avg_pool3d_ref(x, kernel, stride, padding):
    kernel, stride, padding = _pool3d_attrs(kernel, stride, padding)
    win = windows(pad_spatial(x, padding, 0.0), kernel, stride, [1] * 3)
    return win.mean(axis=(-3, -2, -1)).astype(x.dtype, copy=False)


def _pool3d_torch(kind):
    def lower(T, x, *, kernel, stride, padding):
        if x.numel() == 0:   # torch's pooling refuses empty sizes; the result is empty
            k, s, p = (list(a) if isinstance(a, (list, tuple)) else [a] * 3 for a in (kernel, stride, padding))
            out = [max((n + 2 * pi - ki) // si + 1, 0) for n, ki, si, pi in zip(x.shape[2:], k, s, p)]
            return x.new_zeros((*x.shape[:2], *out))
        if x.dtype in (T.float16, T.bfloat16) and x.device.type == "cpu":   # no CPU half kernel for avg_pool3d
            return getattr(T.nn.functional, f"{kind}_pool3d")(x.float(), kernel, stride, padding).to(x.dtype)
        return getattr(T.nn.functional, f"{kind}_pool3d")(x, kernel, stride, padding)
    return lower


for _kind, _ref in (("max", _max_pool3d_ref), ("avg", _avg_pool3d_ref)):
    register(f"{_kind}_pool3d", "x", kind="reduce", attrs={"kernel": REQUIRED, "stride": None, "padding": 0},
             infer=_pool3d_infer(f"{_kind}_pool3d"), ref=_ref, torch=_pool3d_torch(_kind),
             flops=lambda i, o, a: o[0].numel * numel(a["kernel"]),
             doc=f"{_kind} over sliding windows of x [N, C, D, H, W]; stride defaults to kernel; padding "
                 + ("with -inf" if _kind == "max" else "with zeros that count in the mean"))


# ---- adaptive pools --------------------------------------------------------------------------------------------
def adaptive_bounds(n_in, n_out):
    """torch's adaptive windows: [floor(o * in / out), ceil((o + 1) * in / out)) for o < out."""
    return [((o * n_in) // n_out, -(-((o + 1) * n_in) // n_out)) for o in range(n_out)]


def _adaptive_infer(op, nd):
    def infer(types, attrs):
        x = types[0]
        _float_input(op, x, (nd,))
        out = attrs["output_size"] = spatial_attr(attrs["output_size"], nd, "output_size", op, minimum=1)
        for n in x.shape[2:]:
            if n.is_number and int(n) == 0:
                raise ShapeError(f"{op}: input {x} has an empty spatial dim (every output window would be empty)")
        return x.with_shape(x.shape[:2] + tuple(dim(o) for o in out))
    return infer


def _adaptive_ref(kind):
    def ref(x, output_size):
        nd = x.ndim - 2
        out = per_dim(output_size, nd)
        if any(n == 0 for n in x.shape[2:]) and x.shape[0] * x.shape[1]:
            raise ShapeError(f"adaptive_{kind}_pool{nd}d: input of spatial shape {list(x.shape[2:])} is empty")
        y = np.zeros(x.shape[:2] + tuple(out), x.dtype)
        bounds = [adaptive_bounds(n, o) for n, o in zip(x.shape[2:], out)]
        for cell in itertools.product(*(range(o) for o in out)):
            box = (slice(None),) * 2 + tuple(slice(*bounds[d][o]) for d, o in enumerate(cell))
            win = x[box]
            axes = tuple(range(2, 2 + nd))
            y[(slice(None),) * 2 + cell] = win.max(axis=axes) if kind == "max" else win.mean(axis=axes)
        return y
    return ref


def _adaptive_torch(kind, nd):
    def lower(T, x, *, output_size):
        if x.numel() == 0:
            out = list(output_size) if isinstance(output_size, (list, tuple)) else [output_size] * nd
            return x.new_zeros((*x.shape[:2], *out))
        fn = getattr(T.nn.functional, f"adaptive_{kind}_pool{nd}d")
        return fn(x, output_size)
    return lower


for _nd in (1, 2, 3):
    for _kind in ("avg", "max"):
        _name = f"adaptive_{_kind}_pool{_nd}d"
        register(_name, "x", kind="reduce", attrs={"output_size": REQUIRED},
                 infer=_adaptive_infer(_name, _nd), ref=_adaptive_ref(_kind), torch=_adaptive_torch(_kind, _nd),
                 flops=lambda i, o, a: i[0].numel + o[0].numel,
                 doc=f"{_kind} over torch's adaptive windows [floor(o in/out), ceil((o+1) in/out)) of x "
                     f"[N, C, {SPATIAL_NAMES[_nd]}] giving [N, C, *output_size]")
