"""Reductions over any axes: sum, mean, max, min, prod, argmax, argmin, logsumexp, var, std; cumsum."""
from __future__ import annotations

import numpy as np

from ...errors import PnetError, ShapeError
from ..registry import document, register
from ..types import TensorType, is_float, normalize_axis
from .common import norm_axes, reduced_shape

_AXIS_ATTRS = {"axis": None, "keepdims": False}


def _reduce_infer(float_only=False, out_dtype=None, name=""):
    def infer(types, attrs):
        t = types[0]
        if float_only and not is_float(t.dtype) and t.dtype not in ("c64", "c128"):   # complex: only where allowed
            raise ShapeError(f"{name} expects a float tensor, got {t}")
        attrs["axis"] = list(norm_axes(attrs["axis"], t.rank))
        return TensorType(out_dtype or t.dtype, reduced_shape(t.shape, attrs["axis"], attrs["keepdims"]))
    return infer


def _np(fn):
    def ref(x, axis, keepdims, **kw):
        return np.asarray(fn(x, axis=tuple(axis), keepdims=keepdims, **kw)).astype(x.dtype, copy=False)
    return ref


def _torch_reduce(name):
    def lower(T, x, axis, keepdims, **kw):
        out = _lower(T, x, axis, keepdims, **kw)
        return out.to(x.dtype) if name in ("sum", "prod") and out.dtype != x.dtype else out  # torch widens ints

    def _lower(T, x, axis, keepdims, **kw):
        if not axis:
            return T.zeros_like(x) if name in ("var", "std") else x
        if name == "sum":
            return T.sum(x, dim=tuple(axis), keepdim=keepdims)
        if name == "mean":
            return T.mean(x, dim=tuple(axis), keepdim=keepdims)
        if name == "max":
            return T.amax(x, dim=tuple(axis), keepdim=keepdims)
        if name == "min":
            return T.amin(x, dim=tuple(axis), keepdim=keepdims)
        if name == "logsumexp":
            return T.logsumexp(x, dim=tuple(axis), keepdim=keepdims)
        if name == "prod":
            out = x
            for a in sorted(axis, reverse=True):
                out = T.prod(out, dim=a, keepdim=keepdims)
            return out
        if name in ("var", "std"):
            fn = T.var if name == "var" else T.std
            return fn(x, dim=tuple(axis), keepdim=keepdims, correction=kw["correction"])
        raise NotImplementedError(name)
    return lower


def _logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # over an empty axis: log(0) = -inf, its identity
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


register("sum", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np(np.sum), torch=_torch_reduce("sum"))
register("mean", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(True, name="mean"), ref=_np(np.mean), torch=_torch_reduce("mean"))
def _np_no_identity(op, ref):
    """max/min/argmax/argmin on an empty input: an empty result (numpy raises even for that); over an empty axis
    into a non-empty result the located error (backends/numpy_ref.check_shapes raises it before any op runs;
    this covers a scan body's)."""
    def run(x, axis, keepdims, **kw):
        if x.size == 0 and axis != []:
            msg = empty_reduction_error(op, x.shape, {"axis": axis})
            if msg:
                raise PnetError(msg)
            out = np.sum(x, axis=tuple(axis) if isinstance(axis, list) else axis, keepdims=keepdims)
            return out.astype(np.int64 if op.startswith("arg") else x.dtype)
        return ref(x, axis, keepdims, **kw)
    return run


def _torch_no_identity(lower, index=False):
    """The torch side: an empty result for an empty input (torch refuses an empty reduced axis even then)."""
    def run(T, x, axis, keepdims, **kw):
        if x.numel() == 0 and axis != []:
            out = T.sum(x, dim=tuple(axis) if isinstance(axis, list) else axis, keepdim=keepdims)
            return out.to(T.int64) if index else out.to(x.dtype)
        return lower(T, x, axis, keepdims, **kw)
    return run


register("max", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np_no_identity("max", _np(np.max)),
         torch=_torch_no_identity(_torch_reduce("max")))
register("min", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np_no_identity("min", _np(np.min)),
         torch=_torch_no_identity(_torch_reduce("min")))
register("prod", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np(np.prod), torch=_torch_reduce("prod"))
register("logsumexp", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(True, name="logsumexp"), ref=_np(_logsumexp),
         torch=_torch_reduce("logsumexp"), flops=lambda i, o, a: 3 * i[0].numel)


def _scaled_var(x, axis, keepdims, correction, root=False):
    """var (std with `root`) computed on x / s, s a power of two near max |x| along the axes (dividing by it is
    exact), then scaled back: the squared deviations of values near 3e38 do not overflow, so their std is finite
    (as torch's); a variance that itself exceeds the dtype's range is +inf, as it should be."""
    axis = tuple(axis)
    m = np.max(np.abs(x), axis=axis, keepdims=True, initial=0) if x.size else np.ones((1,) * x.ndim, x.dtype)
    m = np.where(np.isfinite(m) & (m > 0), m, 1).astype(x.dtype)
    s = np.ldexp(np.ones_like(m), np.frexp(m)[1] - 1)           # 2^e <= m: representable whatever the dtype
    v = np.var(x / s, axis=axis, keepdims=True, ddof=correction)
    out = np.sqrt(v) * s if root else v * s * s
    return np.asarray(out if keepdims else np.squeeze(out, axis=axis)).astype(x.dtype)


register("var", "x", kind="reduce", attrs={**_AXIS_ATTRS, "correction": 0}, infer=_reduce_infer(True, name="var"),
         ref=_scaled_var, torch=_torch_reduce("var"), flops=lambda i, o, a: 3 * i[0].numel)
register("std", "x", kind="reduce", attrs={**_AXIS_ATTRS, "correction": 0}, infer=_reduce_infer(True, name="std"),
         ref=lambda x, axis, keepdims, correction: _scaled_var(x, axis, keepdims, correction, root=True),
         torch=_torch_reduce("std"), flops=lambda i, o, a: 3 * i[0].numel)


def _arg_infer(types, attrs):
    t = types[0]
    attrs["axis"] = normalize_axis(attrs["axis"], t.rank)
    return TensorType("i64", reduced_shape(t.shape, (attrs["axis"],), attrs["keepdims"]))


register("argmax", "x", kind="reduce", attrs={"axis": -1, "keepdims": False}, infer=_arg_infer,
         ref=_np_no_identity("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)),
         torch=_torch_no_identity(lambda T, x, axis, keepdims: T.argmax(x, dim=axis, keepdim=keepdims), True))
register("argmin", "x", kind="reduce", attrs={"axis": -1, "keepdims": False}, infer=_arg_infer,
         ref=_np_no_identity("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64)),
         torch=_torch_no_identity(lambda T, x, axis, keepdims: T.argmin(x, dim=axis, keepdim=keepdims), True))


# Reductions with no identity: over an empty axis (a dim bound to 0 at run time) into a non-empty result they
# are an error on every backend, raised before running (backends/numpy_ref.check_shapes).
NO_IDENTITY = ("max", "min", "argmax", "argmin")


def empty_reduction_error(op: str, in_shape, attrs) -> str | None:
    """The error message when `op` (concrete input shape `in_shape`) reduces an empty axis into a non-empty
    result, else None."""
    if op not in NO_IDENTITY:
        return None
    axes = attrs["axis"] if isinstance(attrs["axis"], (list, tuple)) else [attrs["axis"]]
    axes = list(range(len(in_shape))) if attrs["axis"] is None else axes
    empty = [a for a in axes if in_shape[a] == 0]
    kept = [n for d, n in enumerate(in_shape) if d not in axes]
    if empty and 0 not in kept:
        return f"{op} over an empty axis (axis {empty[0]} has size 0) has no identity: its result is undefined"
    return None


def _cumsum_infer(types, attrs):
    attrs["axis"] = normalize_axis(attrs["axis"], types[0].rank)
    return types[0]


register("cumsum", "x", kind="reduce", attrs={"axis": -1}, infer=_cumsum_infer,
         ref=lambda x, axis: np.cumsum(x, axis=axis).astype(x.dtype),
         torch=lambda T, x, axis: T.cumsum(x, dim=axis).to(x.dtype))


# One-line docs of the ops above, for `pnet ops NAME` and the op reference in docs/language.md.
_DOCS = {
    "sum": "sum over `axis` (an int, a list, or none: every axis); keepdims keeps them as size 1",
    "mean": "mean over `axis` (none: every axis), of a float tensor",
    "max": "largest value over `axis` (none: every axis); NaN propagates; an empty axis is an error",
    "min": "smallest value over `axis` (none: every axis); NaN propagates; an empty axis is an error",
    "prod": "product over `axis` (none: every axis)",
    "logsumexp": "log(sum(exp(x))) over `axis`, computed stably (max subtracted first)",
    "var": "variance over `axis`: mean squared deviation, divided by n - correction",
    "std": "standard deviation over `axis`: sqrt(var(x, axis, correction=correction))",
    "argmax": "i64 index of the largest value along `axis` (the first one on ties)",
    "argmin": "i64 index of the smallest value along `axis` (the first one on ties)",
    "cumsum": "running sum along `axis`, same shape and dtype as x",
}
document(_DOCS)
