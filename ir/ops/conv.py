"""Convolutions over 1-3 spatial dims, channels-first like torch: conv1d/2d/3d and conv_transpose2d.

One generic implementation serves every spatial rank. The sliding-window helpers here (`spatial_attr`,
`window_sizes`, `pad_spatial`, `windows`) are shared with the pooling ops in `nn.py`.

Layouts: input [N, C, *spatial]; conv weight [C_out, C_in/groups, *kernel]; transposed-conv weight
[C_in, C_out/groups, *kernel] (torch's layouts, so state_dicts load unchanged).
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import ShapeError
from ..registry import register
from ..types import TensorType, dim, dims_equal, fmt_dim, fmt_shape, is_float, numel, promote

SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


# ---- shared sliding-window helpers -------------------------------------------------------------
def int_attr(value, what: str, op: str, minimum: int = 0):
    """An integer attribute as a python int (or a sympy expression when symbolic), checked >= minimum."""
    try:
        d = dim(value)
    except ShapeError:
        raise ShapeError(f"{op}: {what} must be an integer, got {value!r}") from None
    if not d.is_Integer:
        return d
    if int(d) < minimum:
        raise ShapeError(f"{op}: {what} must be >= {minimum}, got {int(d)}")
    return int(d)


def spatial_attr(value, nd: int, what: str, op: str, minimum: int = 0) -> list:
    """An int-or-list attribute (stride, padding, ...) as a list with one entry per spatial dim."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * nd
    if len(values) != nd:
        raise ShapeError(f"{op}: {what} has {len(values)} entries, expected {nd} (one per spatial dim)")
    return [int_attr(v, what, op, minimum) for v in values]


def divides(n, d) -> bool:
    """Whether the dim `d` is provably a multiple of `n`."""
    return bool(sympy.simplify(sympy.sympify(d) / n).is_integer)


def window_sizes(op: str, x: TensorType, kernel, stride, padding, dilation, what: str) -> list:
    """Output spatial sizes floor((n + 2p - d(k-1) - 1) / s) + 1; `what` names the kernel's source in errors."""
    out = []
    for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation):
        size = sympy.floor((n + 2 * p - d * (k - 1) - 1) / sympy.sympify(s)) + 1
        if size.is_number and size < 1:
            raise ShapeError(f"{op}: input {fmt_shape(x.shape)} is too small for {what} "
                             f"(padding {list(padding)}, dilation {list(dilation)}): output size {fmt_dim(size)}")
        out.append(size)
    return out


def per_dim(value, nd: int) -> list:
    """An int-or-list attribute already checked by its type rule, as one entry per spatial dim (plain, so a
    torch lowering that uses it can be copied into generated source)."""
    return list(value) if isinstance(value, (list, tuple)) else [value] * nd


def pad_spatial(x: np.ndarray, padding, value=0.0) -> np.ndarray:
    return np.pad(x, [(0, 0)] * 2 + [(p, p) for p in padding], constant_values=value)


def windows(xp: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """A view [N, C, *out, *kernel] of a padded input: window o, tap t reads xp[o*stride + t*dilation]."""
    nd = len(kernel)
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    out = [(n - e) // s + 1 for n, e, s in zip(xp.shape[2:], extent, stride)]
    if min(out) <= 0 or 0 in kernel:   # a zero-size spatial dim bound at run time: no window (or no tap) fits
        if min(out) < 0:
            raise ShapeError(f"input of spatial shape {list(xp.shape[2:])} (padded) is too small for the "
                             f"kernel {list(kernel)} (dilation {list(dilation)})")
        return np.zeros(xp.shape[:2] + tuple(out) + tuple(kernel), xp.dtype)
    view = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + nd)))
    # every window start is a candidate; keep every stride-th one, and every dilation-th tap inside it
    pick = ((slice(None),) * 2 + tuple(slice(None, None, s) for s in stride)
            + tuple(slice(None, None, d) for d in dilation))
    return view[pick]


# ---- type rules ---------------------------------------------------------------------------------
def _check_operands(op, nd, x, w, what_w):
    for t, what in ((x, "input"), (w, "weight")):
        if not is_float(t.dtype):
            raise ShapeError(f"{op}: {what} must be a float tensor, got {t}")
    if x.rank != nd + 2 or w.rank != nd + 2:
        raise ShapeError(f"{op}: expects input [N, C, {SPATIAL_NAMES[nd]}] and weight {what_w}, got {x} and {w}")


def _check_bias(op, b, cout, w):
    if b is not None and (b.rank != 1 or not dims_equal(b.shape[0], cout)):
        raise ShapeError(f"{op}: bias {b} must have shape [{fmt_dim(cout)}] (the output channels of weight {w})")


def _common_attrs(op, nd, attrs):
    attrs["groups"] = int_attr(attrs["groups"], "groups", op, minimum=1)
    attrs["stride"] = spatial_attr(attrs["stride"], nd, "stride", op, minimum=1)
    attrs["padding"] = spatial_attr(attrs["padding"], nd, "padding", op)
    attrs["dilation"] = spatial_attr(attrs["dilation"], nd, "dilation", op, minimum=1)


def conv_infer(op, nd):
    def infer(types, attrs):
        x, w, b = types
        _check_operands(op, nd, x, w, f"[C_out, C_in/groups, {SPATIAL_NAMES[nd].lower()}]")
        _common_attrs(op, nd, attrs)
        g = attrs["groups"]
        cin, cout = x.shape[1], w.shape[0]
        if not dims_equal(w.shape[1] * g, cin):
            raise ShapeError(f"{op}: input {x} has {fmt_dim(cin)} channels but weight {w} with groups={g} "
                             f"expects {fmt_dim(w.shape[1] * g)} (dim 1 of input vs dim 1 of weight * groups)")
        if not divides(g, cout):
            raise ShapeError(f"{op}: weight {w} has {fmt_dim(cout)} output channels, not a multiple of groups={g} "
                             f"(input {x})")
        _check_bias(op, b, cout, w)
        what = f"kernel {fmt_shape(w.shape[2:])} of weight {fmt_shape(w.shape)}"
        out = window_sizes(op, x, w.shape[2:], attrs["stride"], attrs["padding"], attrs["dilation"], what)
        return TensorType(promote(x.dtype, w.dtype), (x.shape[0], cout, *out))
    return infer


def _conv_transpose_infer(op, nd):
    def infer(types, attrs):
        x, w, b = types
        _check_operands(op, nd, x, w, f"[C_in, C_out/groups, {SPATIAL_NAMES[nd].lower()}]")
        _common_attrs(op, nd, attrs)
        attrs["output_padding"] = spatial_attr(attrs["output_padding"], nd, "output_padding", op)
        g = attrs["groups"]
        cin = x.shape[1]
        if not dims_equal(w.shape[0], cin):
            raise ShapeError(f"{op}: input {x} has {fmt_dim(cin)} channels but weight {w} expects "
                             f"{fmt_dim(w.shape[0])} (dim 1 of input vs dim 0 of weight)")
        if not divides(g, cin):
            raise ShapeError(f"{op}: input {x} has {fmt_dim(cin)} channels, not a multiple of groups={g} (weight {w})")
        for e, s, d in zip(attrs["output_padding"], attrs["stride"], attrs["dilation"]):
            # torch's rule: output_padding only fills the rows a partial stride (or dilation) step leaves
            if all(isinstance(v, int) for v in (e, s, d)) and not (e < s or e < d):
                raise ShapeError(f"{op}: output_padding {attrs['output_padding']} must be smaller than "
                                 f"stride {attrs['stride']} or dilation {attrs['dilation']}")
        cout = w.shape[1] * g
        _check_bias(op, b, cout, w)
        out = []
        for n, k, s, p, d, extra in zip(x.shape[2:], w.shape[2:], attrs["stride"], attrs["padding"],
                                        attrs["dilation"], attrs["output_padding"]):
            size = (n - 1) * s - 2 * p + d * (k - 1) + extra + 1
            if size.is_number and size < 1:
                raise ShapeError(f"{op}: padding {attrs['padding']} leaves no output for input {fmt_shape(x.shape)} "
                                 f"and weight {fmt_shape(w.shape)}")
            out.append(size)
        return TensorType(promote(x.dtype, w.dtype), (x.shape[0], cout, *out))
    return infer


# ---- NumPy references ---------------------------------------------------------------------------
_OUT, _TAP = "xyz", "uvw"  # einsum letters for output positions and kernel taps


def conv_ref(x, w, b, stride, padding, dilation, groups):
    n, c = x.shape[:2]
    nd = x.ndim - 2
    win = windows(pad_spatial(x, padding), w.shape[2:], stride, dilation)   # [N, C, *out, *k]
    win = win.reshape(n, groups, c // groups, *win.shape[2:])                 # [N, G, C/G, *out, *k]
    wg = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])               # [G, F/G, C/G, *k]
    o, t = _OUT[:nd], _TAP[:nd]
    out = np.einsum(f"ngc{o}{t},gfc{t}->ngf{o}", win, wg, optimize=True)
    out = out.reshape(n, w.shape[0], *out.shape[3:])
    if b is not None:
        out = out + b.reshape(-1, *[1] * nd)
    return out.astype(np.result_type(x, w), copy=False)


def _conv_transpose_ref(x, w, b, stride, padding, output_padding, dilation, groups):
    """Scatter form: input position i, kernel tap t adds x[i] * w[t] to output position i*stride + t*dilation,
    on an uncropped output that is then cropped by `padding` on both sides."""
    n, cin = x.shape[:2]
    nd = x.ndim - 2
    size_in, kernel, fg = x.shape[2:], w.shape[2:], w.shape[1]
    full = [(i - 1) * s + d * (k - 1) + 1 + e
            for i, k, s, d, e in zip(size_in, kernel, stride, dilation, output_padding)]
    xg = x.reshape(n, groups, cin // groups, *size_in)                      # [N, G, C/G, *in]
    wg = w.reshape(groups, cin // groups, fg, *kernel)                      # [G, C/G, F/G, *k]
    out = np.zeros((n, groups, fg, *full), dtype=np.result_type(x, w))
    o = _OUT[:nd]
    for tap in itertools.product(*(range(k) for k in kernel)):
        contrib = np.einsum(f"ngc{o},gcf->ngf{o}", xg, wg[(..., *tap)])
        dest = tuple(slice(t * d, t * d + (i - 1) * s + 1, s) for t, d, i, s in zip(tap, dilation, size_in, stride))
        out[(slice(None),) * 3 + dest] += contrib
    out = out.reshape(n, groups * fg, *full)
    out = out[(slice(None),) * 2 + tuple(slice(p, f - p) for p, f in zip(padding, full))]
    if b is not None:
        out = out + b.reshape(-1, *[1] * nd)
    return np.ascontiguousarray(out).astype(np.result_type(x, w), copy=False)


# ---- torch lowerings and FLOPs --------------------------------------------------------------------
def _conv_torch(nd):
    def lower(T, x, w, b=None, *, stride, padding, dilation, groups):
        fn = getattr(T.nn.functional, f"conv{nd}d")
        if x.shape[1] == 0:  # no input channels (a dim bound to 0): torch returns 0 output channels, not zeros;
            #                  one zero channel per group gives the same (empty) sum with the right shape
            x = x.new_zeros(x.shape[:1] + (groups,) + x.shape[2:])
            w = w.new_zeros(w.shape[:1] + (1,) + w.shape[2:])
        out = [(n + 2 * p - d * (k - 1) - 1) // s + 1
               for n, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation)]
        if min(out) == 0 or x.numel() == 0:   # a dim bound to 0: torch refuses (an empty input with autograd on,
            y = x.new_zeros((x.shape[0], w.shape[0], *out))   # or no window fits); every tap reads padding
            return y if b is None else y + b.reshape(-1, *[1] * nd)
        return fn(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return lower


def _conv_transpose_torch(nd):
    def lower(T, x, w, b=None, *, stride, padding, output_padding, dilation, groups):
        fn = getattr(T.nn.functional, f"conv_transpose{nd}d")
        if x.numel() == 0:   # a dim bound to 0: torch's kernels refuse empty batches and sizes
            out = [max((n - 1) * s - 2 * p + d * (k - 1) + op + 1, 0) for n, k, s, p, d, op in
                   zip(x.shape[2:], w.shape[2:], *(per_dim(a, nd) for a in
                                                   (stride, padding, dilation, output_padding)))]
            y = x.new_zeros((x.shape[0], w.shape[1] * groups, *out))
            return y if b is None else y + b.reshape(-1, *[1] * nd)
        return fn(x, w, b, stride=stride, padding=padding, output_padding=output_padding,
                  groups=groups, dilation=dilation)
    return lower


def _conv_flops(i, o, attrs):
    w = i[1]  # each output element is a dot product over C_in/groups * prod(kernel) taps
    return 2 * o[0].numel * w.shape[1] * numel(w.shape[2:])


def _conv_transpose_flops(i, o, attrs):
    x, w = i[0], i[1]  # each input element is scattered into C_out/groups * prod(kernel) outputs
    return 2 * x.numel * w.shape[1] * numel(w.shape[2:])


_ATTRS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}

for _nd in (1, 2, 3):
    register(f"conv{_nd}d", "x, w, b?", kind="contraction", attrs=_ATTRS,
             infer=conv_infer(f"conv{_nd}d", _nd), ref=conv_ref, torch=_conv_torch(_nd), flops=_conv_flops,
             doc=f"cross-correlation of x [N, C_in, {SPATIAL_NAMES[_nd]}] with w [C_out, C_in/groups, *kernel], "
                 "like torch; stride/padding/dilation are an int or one per spatial dim")

# conv_transpose1d/3d are one line each here if a model needs them.
register("conv_transpose2d", "x, w, b?", kind="contraction", attrs={**_ATTRS, "output_padding": 0},
         infer=_conv_transpose_infer("conv_transpose2d", 2), ref=_conv_transpose_ref, torch=_conv_transpose_torch(2),
         flops=_conv_transpose_flops,
         doc="transposed convolution (the gradient of conv2d wrt its input); w [C_in, C_out/groups, kh, kw]")
