"""Reductions over any axes: sum, mean, max, min, prod, argmax, argmin, logsumexp, var, std; cumsum."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import register
from ..types import TensorType, is_float, normalize_axis
from .common import norm_axes, reduced_shape

_AXIS_ATTRS = {"axis": None, "keepdims": False}


def _reduce_infer(float_only=False, out_dtype=None, name=""):
    def infer(types, attrs):
        t = types[0]
        if float_only and not is_float(t.dtype):
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
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


register("sum", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np(np.sum), torch=_torch_reduce("sum"))
register("mean", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(True, name="mean"), ref=_np(np.mean), torch=_torch_reduce("mean"))
register("max", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np(np.max), torch=_torch_reduce("max"))
register("min", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np(np.min), torch=_torch_reduce("min"))
register("prod", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(), ref=_np(np.prod), torch=_torch_reduce("prod"))
register("logsumexp", "x", kind="reduce", attrs=_AXIS_ATTRS, infer=_reduce_infer(True, name="logsumexp"), ref=_np(_logsumexp),
         torch=_torch_reduce("logsumexp"), flops=lambda i, o, a: 3 * i[0].numel)
register("var", "x", kind="reduce", attrs={**_AXIS_ATTRS, "correction": 0}, infer=_reduce_infer(True, name="var"),
         ref=lambda x, axis, keepdims, correction: np.asarray(np.var(x, axis=tuple(axis), keepdims=keepdims, ddof=correction)).astype(x.dtype),
         torch=_torch_reduce("var"), flops=lambda i, o, a: 3 * i[0].numel)
register("std", "x", kind="reduce", attrs={**_AXIS_ATTRS, "correction": 0}, infer=_reduce_infer(True, name="std"),
         ref=lambda x, axis, keepdims, correction: np.asarray(np.std(x, axis=tuple(axis), keepdims=keepdims, ddof=correction)).astype(x.dtype),
         torch=_torch_reduce("std"), flops=lambda i, o, a: 3 * i[0].numel)


def _arg_infer(types, attrs):
    t = types[0]
    attrs["axis"] = normalize_axis(attrs["axis"], t.rank)
    return TensorType("i64", reduced_shape(t.shape, (attrs["axis"],), attrs["keepdims"]))


register("argmax", "x", kind="reduce", attrs={"axis": -1, "keepdims": False}, infer=_arg_infer,
         ref=lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64),
         torch=lambda T, x, axis, keepdims: T.argmax(x, dim=axis, keepdim=keepdims))
register("argmin", "x", kind="reduce", attrs={"axis": -1, "keepdims": False}, infer=_arg_infer,
         ref=lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64),
         torch=lambda T, x, axis, keepdims: T.argmin(x, dim=axis, keepdim=keepdims))


def _cumsum_infer(types, attrs):
    attrs["axis"] = normalize_axis(attrs["axis"], types[0].rank)
    return types[0]


register("cumsum", "x", kind="reduce", attrs={"axis": -1}, infer=_cumsum_infer,
         ref=lambda x, axis: np.cumsum(x, axis=axis).astype(x.dtype),
         torch=lambda T, x, axis: T.cumsum(x, dim=axis).to(x.dtype))
