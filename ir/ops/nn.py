"""Neural-network layers: softmax family, normalizations, pooling, top-k and sort.

Channel-first conventions like torch: batchnorm/groupnorm/pools take x [N, C, *spatial].
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import TensorType, dim, dims_equal, fmt_dim, fmt_shape, is_float, normalize_axis, numel
from .common import stable_argsort
from .conv import SPATIAL_NAMES, divides, int_attr, pad_spatial, per_dim, spatial_attr, window_sizes, windows


def _float(op, t, what="input"):
    if not is_float(t.dtype):
        raise ShapeError(f"{op}: {what} must be a float tensor, got {t}")


def _check_param(op, p, shape, x, what):
    """A per-feature parameter (w, b, mean, var) must have exactly `shape`, the normalized dims of x."""
    if p is None:
        return
    _float(op, p, what)
    if p.rank != len(shape) or not all(dims_equal(a, b) for a, b in zip(p.shape, shape)):
        raise ShapeError(f"{op}: {what} {p} must have shape {fmt_shape(shape)} to match input {x}")


def _channel(v: np.ndarray | None, ndim: int):
    """A [C] vector shaped to broadcast along axis 1 of a rank-`ndim` tensor."""
    return None if v is None else v.reshape((1, -1) + (1,) * (ndim - 2))


# ---- softmax family -------------------------------------------------------------------------------
def _softmax_infer(op):
    def infer(types, attrs):
        x = types[0]
        _float(op, x)
        attrs["axis"] = normalize_axis(attrs["axis"], x.rank)
        return x
    return infer


def _shifted(x, axis):
    """x minus its max along axis (so exp never overflows); an all -inf row is shifted by 0 (and is NaN after
    0 / 0). A row holding +inf or NaN is NaN throughout (inf - inf), as torch and the Triton kernels give."""
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # initial: an empty row (an empty result) is no error
    return x - np.where(m == -np.inf, 0, m)


def _softmax_ref(x, axis):
    e = np.exp(_shifted(x, axis))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)


def _log_softmax_ref(x, axis):
    z = _shifted(x, axis)
    return (z - np.log(np.exp(z).sum(axis=axis, keepdims=True))).astype(x.dtype, copy=False)


register("softmax", "x", kind="norm", attrs={"axis": -1}, infer=_softmax_infer("softmax"), ref=_softmax_ref,
         torch=lambda T, x, axis: T.nn.functional.softmax(x, dim=axis), flops=lambda i, o, a: 5 * i[0].numel,
         doc="exp(x) / sum(exp(x)) along axis, computed stably (max subtracted first)")
register("log_softmax", "x", kind="norm", attrs={"axis": -1}, infer=_softmax_infer("log_softmax"),
         ref=_log_softmax_ref, torch=lambda T, x, axis: T.nn.functional.log_softmax(x, dim=axis),
         flops=lambda i, o, a: 5 * i[0].numel, doc="x - logsumexp(x) along axis, computed stably")


# ---- layernorm / rmsnorm over trailing axes ----------------------------------------------------------
def _trailing_axes(op, x, axis) -> list[int]:
    axes = sorted({normalize_axis(a, x.rank) for a in (axis if isinstance(axis, (list, tuple)) else [axis])})
    if not axes or axes != list(range(x.rank - len(axes), x.rank)):
        raise ShapeError(f"{op}: axis {axis} must name the trailing axes of input {x}")
    return axes


def _trailing_norm_infer(op, params):
    def infer(types, attrs):
        x = types[0]
        _float(op, x)
        attrs["axis"] = _trailing_axes(op, x, attrs["axis"])
        shape = x.shape[attrs["axis"][0]:]
        for p, what in zip(types[1:], params):
            _check_param(op, p, shape, x, what)
        return x
    return infer


def _layernorm_ref(x, w, b, axis, eps):
    axes = tuple(axis)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)  # biased variance, like torch
    y = (x - mean) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y.astype(x.dtype, copy=False)


def _rmsnorm_ref(x, w, axis, eps):
    y = x / np.sqrt((x ** 2).mean(axis=tuple(axis), keepdims=True) + eps)
    if w is not None:
        y = y * w
    return y.astype(x.dtype, copy=False)


def _layernorm_torch(T, x, w=None, b=None, *, axis, eps):
    return T.nn.functional.layer_norm(x, x.shape[axis[0]:], w, b, eps)


def _rmsnorm_torch(T, x, w=None, *, axis, eps):
    return T.nn.functional.rms_norm(x, x.shape[axis[0]:], w, eps)


register("layernorm", "x, w?, b?", kind="norm", attrs={"axis": -1, "eps": 1e-5},
         infer=_trailing_norm_infer("layernorm", ("weight", "bias")), ref=_layernorm_ref, torch=_layernorm_torch,
         flops=lambda i, o, a: 8 * i[0].numel,
         doc="(x - mean) / sqrt(var + eps) * w + b over the trailing axes `axis` (int or list); w, b shaped like them")
register("rmsnorm", "x, w?", kind="norm", attrs={"axis": -1, "eps": 1e-6},
         infer=_trailing_norm_infer("rmsnorm", ("weight",)), ref=_rmsnorm_ref, torch=_rmsnorm_torch,
         flops=lambda i, o, a: 5 * i[0].numel,
         doc="x / sqrt(mean(x^2) + eps) * w over the trailing axes `axis` (int or list)")


# ---- batchnorm / groupnorm over the channel axis 1 ------------------------------------------------------
def _channels_input(op, x):
    _float(op, x)
    if x.rank < 2:
        raise ShapeError(f"{op}: expects input [N, C, ...], got {x}")
    return x.shape[1]


def _batchnorm_infer(types, attrs):
    x = types[0]
    c = _channels_input("batchnorm", x)
    for p, what in zip(types[1:], ("running mean", "running var", "weight", "bias")):
        _check_param("batchnorm", p, (c,), x, what)
    return x


def _batchnorm_ref(x, mean, var, w, b, eps):
    y = (x - _channel(mean, x.ndim)) / np.sqrt(_channel(var, x.ndim) + eps)
    if w is not None:
        y = y * _channel(w, x.ndim)
    if b is not None:
        y = y + _channel(b, x.ndim)
    return y.astype(x.dtype, copy=False)


register("batchnorm", "x, mean, var, w?, b?", kind="norm", attrs={"eps": 1e-5}, infer=_batchnorm_infer,
         ref=_batchnorm_ref, flops=lambda i, o, a: 4 * i[0].numel,
         torch=lambda T, x, mean, var, w=None, b=None, *, eps: T.nn.functional.batch_norm(
             x, mean, var, w, b, training=False, eps=eps),
         doc="inference-mode batch norm with running statistics, channel axis 1")


def _groupnorm_infer(types, attrs):
    x = types[0]
    c = _channels_input("groupnorm", x)
    g = attrs["groups"] = int_attr(attrs["groups"], "groups", "groupnorm", minimum=1)
    if not divides(g, c):
        raise ShapeError(f"groupnorm: input {x} has {fmt_dim(c)} channels, not a multiple of groups={g}")
    for p, what in zip(types[1:], ("weight", "bias")):
        _check_param("groupnorm", p, (c,), x, what)
    return x


def _groupnorm_ref(x, w, b, groups, eps):
    # each group: C/groups channels times all spatial positions (no -1: it cannot be inferred when N is 0)
    xg = x.reshape(x.shape[0], groups, int(np.prod(x.shape[1:])) // groups)
    mean = xg.mean(axis=2, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    if w is not None:
        y = y * _channel(w, x.ndim)
    if b is not None:
        y = y + _channel(b, x.ndim)
    return y.astype(x.dtype, copy=False)


def _groupnorm_torch(T, x, w=None, b=None, *, groups, eps):
    # T.group_norm, not F.group_norm: F refuses groups holding a single value (a training-time check on
    # the batch size it applies even in eval); the normalized result there is simply 0 (then * w + b).
    return T.group_norm(x, groups, w, b, eps)


register("groupnorm", "x, w?, b?", kind="norm", attrs={"groups": REQUIRED, "eps": 1e-5}, infer=_groupnorm_infer,
         ref=_groupnorm_ref, flops=lambda i, o, a: 8 * i[0].numel,
         torch=_groupnorm_torch,
         doc="normalize each of `groups` channel groups (with all spatial positions) per sample; channel axis 1")


# ---- pooling -----------------------------------------------------------------------------------------
def _pool_infer(op, nd):
    def infer(types, attrs):
        x = types[0]
        _float(op, x)
        if x.rank != nd + 2:
            raise ShapeError(f"{op}: expects input [N, C, {SPATIAL_NAMES[nd]}], got {x}")
        kernel = attrs["kernel"] = spatial_attr(attrs["kernel"], nd, "kernel", op, minimum=1)
        stride = attrs["stride"] = (list(kernel) if attrs["stride"] is None
                                    else spatial_attr(attrs["stride"], nd, "stride", op, minimum=1))
        padding = attrs["padding"] = spatial_attr(attrs["padding"], nd, "padding", op)
        for k, p in zip(kernel, padding):
            # torch's rule; it also guarantees every max-pool window holds a real element, never only -inf
            if isinstance(k, int) and isinstance(p, int) and p > k // 2:
                raise ShapeError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
        out = window_sizes(op, x, kernel, stride, padding, [1] * nd, f"kernel {kernel}")
        return x.with_shape(x.shape[:2] + tuple(out))
    return infer


def _pool_axes(nd):
    return tuple(range(-nd, 0))


def _max_pool_ref(x, kernel, stride, padding):
    nd = x.ndim - 2
    win = windows(pad_spatial(x, padding, -np.inf), kernel, stride, [1] * nd)
    return win.max(axis=_pool_axes(nd)).astype(x.dtype, copy=False)


def _avg_pool_ref(x, kernel, stride, padding):
    nd = x.ndim - 2  # padded zeros count in the mean (torch's count_include_pad=True)
    win = windows(pad_spatial(x, padding, 0.0), kernel, stride, [1] * nd)
    return win.mean(axis=_pool_axes(nd)).astype(x.dtype, copy=False)


def _pool_torch(kind, nd):
    def lower(T, x, *, kernel, stride, padding):
        if x.numel() == 0:   # a dim bound to 0: torch's pooling refuses empty sizes; the result is empty
            k, s, p = (per_dim(a, nd) for a in (kernel, stride if stride is not None else kernel, padding))
            out = [max((n + 2 * pi - ki) // si + 1, 0) for n, ki, si, pi in zip(x.shape[2:], k, s, p)]
            return x.new_zeros((*x.shape[:2], *out))
        return getattr(T.nn.functional, f"{kind}_pool{nd}d")(x, kernel, stride, padding)
    return lower


def _pool_flops(i, o, attrs):
    return o[0].numel * numel(attrs["kernel"])


for _nd in (1, 2):
    for _kind, _ref in (("max", _max_pool_ref), ("avg", _avg_pool_ref)):
        _name = f"{_kind}_pool{_nd}d"
        register(_name, "x", kind="reduce", attrs={"kernel": REQUIRED, "stride": None, "padding": 0},
                 infer=_pool_infer(_name, _nd), ref=_ref, torch=_pool_torch(_kind, _nd), flops=_pool_flops,
                 doc=f"{_kind} over sliding windows of x [N, C, ...]; stride defaults to kernel; padding "
                     + ("with -inf" if _kind == "max" else "with zeros that count in the mean"))


def _global_pool_infer(types, attrs):
    x = types[0]
    _channels_input("global_avg_pool", x)
    return x.with_shape(x.shape[:2])


register("global_avg_pool", "x", kind="reduce", infer=_global_pool_infer,
         ref=lambda x: x.mean(axis=tuple(range(2, x.ndim))).astype(x.dtype, copy=False),
         torch=lambda T, x: x.mean(dim=tuple(range(2, x.ndim))) if x.ndim > 2 else x,
         doc="mean over every axis after the channel axis: [N, C, ...] -> [N, C]")


# ---- sort / topk ---------------------------------------------------------------------------------------
def _sort_ref(x, axis, descending):
    idx = stable_argsort(x, axis, descending)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


def _sort_infer(types, attrs):
    x = types[0]
    if x.rank == 0:
        raise ShapeError(f"sort: expects a tensor of rank >= 1, got {x}")
    attrs["axis"] = normalize_axis(attrs["axis"], x.rank)
    return [x, x.with_dtype("i64")]


def _topk_infer(types, attrs):
    x = types[0]
    if x.rank == 0:
        raise ShapeError(f"topk: expects a tensor of rank >= 1, got {x}")
    axis = attrs["axis"] = normalize_axis(attrs["axis"], x.rank)
    k = attrs["k"] = int_attr(attrs["k"], "k", "topk", minimum=0)
    size = x.shape[axis]
    if size.is_number and isinstance(k, int) and k > size:
        raise ShapeError(f"topk: k={k} exceeds dim {axis} of input {x} (size {fmt_dim(size)})")
    shape = x.shape[:axis] + (dim(k),) + x.shape[axis + 1:]
    return [x.with_shape(shape), TensorType("i64", shape)]


def _topk_ref(x, k, axis, largest):
    values, idx = _sort_ref(x, axis, descending=largest)
    keep = (slice(None),) * axis + (slice(0, k),)
    return values[keep], idx[keep]


def _topk_torch(T, x, *, k, axis, largest):
    # A stable sort rather than T.topk: topk's order among ties is unspecified, and ties are common
    # (e.g. the zeros after a relu); this keeps the indices equal to the reference's.
    values, idx = T.sort(x, dim=axis, descending=largest, stable=True)
    return values.narrow(axis, 0, k), idx.narrow(axis, 0, k)


register("sort", "x", kind="reduce", attrs={"axis": -1, "descending": False}, infer=_sort_infer, ref=_sort_ref,
         torch=lambda T, x, axis, descending: tuple(T.sort(x, dim=axis, descending=descending, stable=True)),
         doc="(values, i64 indices) stably sorted along axis; equal elements keep their order")
register("topk", "x", kind="reduce", attrs={"k": REQUIRED, "axis": -1, "largest": True}, infer=_topk_infer,
         ref=_topk_ref, torch=_topk_torch,
         doc="(values, i64 indices) of the k largest (or smallest) along axis, best first; ties by lower index")
