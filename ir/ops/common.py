"""Type-rule and reference helpers shared by the op modules."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..types import TensorType, broadcast_shapes, is_float, normalize_axis, promote


def same_as_first(types, attrs):
    return types[0]


def float_unary(name):
    def infer(types, attrs):
        t = types[0]
        if not is_float(t.dtype):
            raise ShapeError(f"{name} expects a float tensor, got {t}")
        return t
    return infer


def broadcast_binary(types, attrs):
    a, b = types
    return TensorType(promote(a.dtype, b.dtype), broadcast_shapes(a.shape, b.shape))


def arith_binary(name):
    """Arithmetic on two tensors: bool with bool is refused (bool arithmetic means `and`/`or`/`not`, and the
    backends disagree on it); bool with a number promotes, so `mask * x` stays a valid idiom."""
    def infer(types, attrs):
        out = broadcast_binary(types, attrs)
        if out.dtype == "bool":
            raise ShapeError(f"{name}: arithmetic on bool tensors {types[0]} and {types[1]} "
                             "(use and/or/not, or cast to a number type first)")
        return out
    return infer


def numeric_unary(name):
    """Any number dtype, not bool."""
    def infer(types, attrs):
        if types[0].dtype == "bool":
            raise ShapeError(f"{name}: arithmetic on a bool tensor {types[0]} (cast it to a number type first)")
        return types[0]
    return infer


def compare_binary(types, attrs):
    a, b = types
    return TensorType("bool", broadcast_shapes(a.shape, b.shape))


def norm_axes(axis, rank: int) -> tuple[int, ...]:
    """`axis` attr (None = all, int, or list) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    out = sorted({normalize_axis(a, rank) for a in axes})
    return tuple(out)


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def same_dtype(what, *types):
    dtypes = {t.dtype for t in types if t is not None}
    if len(dtypes) > 1:
        raise ShapeError(f"{what}: operands have different dtypes " + " and ".join(str(t) for t in types if t is not None))


def as_np_dtype(x, like):
    return np.asarray(x).astype(like.dtype, copy=False)


def stable_argsort(x, axis, descending):
    """Indices that sort `x` along `axis`, ties in index order (the sort / topk references)."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    # Stable descending order (ties keep ascending index order, like torch's stable sort) without negating,
    # which would overflow for the lowest integer: sort the reversed array ascending, then reverse back.
    n = x.shape[axis]
    idx = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
    return np.flip(n - 1 - idx, axis)
