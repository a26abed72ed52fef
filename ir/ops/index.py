"""Data-dependent indexing: take, embedding, gather, scatter_add, segment_sum/mean/max, one_hot.

Index semantics shared by every op here: an index must lie in [0, n) for the axis it indexes (no negative
wrap-around); the reference raises on anything else rather than invent an answer, and so do the torch
lowerings (`check_index_range`, before torch indexes) and the Triton kernels (a device-side flag, see
backends/triton/index_codegen.py), all with `index_range_error`'s message.
one_hot is the exception: an id outside [0, depth) gives an all-zero row.
"""
from __future__ import annotations

import numpy as np

from ...errors import PnetError, ShapeError
from ..registry import REQUIRED, register
from ..types import DTYPES, TensorType, dim, dims_equal, fmt_dim, is_float, is_int, normalize_axis
from .elementwise import torch_dtype


def _index_tensor(op, t, what="index"):
    if not is_int(t.dtype):
        raise ShapeError(f"{op}: {what} must be an integer tensor, got {t}")


def _range_message(op, bad, n):
    return f"{op}: index {int(bad)} out of range [0, {int(n)})"


def index_range_error(op, bad, n) -> PnetError:
    """The one error every backend raises for an index outside [0, n) (the caller attaches the node's location)."""
    return PnetError(_range_message(op, bad, n))


def _check_range(op, idx, n):
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise index_range_error(op, idx[(idx < 0) | (idx >= n)].flat[0], n)


def check_index_range(op, idx, n):
    """The torch lowerings' check, before torch indexes (torch's own IndexError names neither op nor index).
    A builtin IndexError, so the lowering copies into standalone torch source; the torch backend turns it
    into the located PnetError (torch_backend._located). Skipped inside torch.compile, which cannot branch on
    tensor values without a graph break (fullgraph=True must keep working): there torch's own check applies."""
    import torch
    if torch.compiler.is_compiling():
        return
    if idx.numel() and (bool((idx < 0).any()) or bool((idx >= n).any())):
        raise IndexError(_range_message(op, idx[(idx < 0) | (idx >= n)].reshape(-1)[0].item(), n))


def _dim_attr(value, what, op):
    """A size attribute (may be a symbolic dim such as the node count N): an int when concrete."""
    d = dim(value)
    if d.is_number and d < 1:
        raise ShapeError(f"{op}: {what} must be >= 1, got {fmt_dim(d)}")
    return int(d) if d.is_Integer else d


def _mismatch(op, a, b, dims):
    return ShapeError(f"{op}: {a} and {b} differ in dim {', '.join(map(str, dims))}")


def _off_axis_mismatch(a, b, axis):
    return [i for i, (p, q) in enumerate(zip(a.shape, b.shape)) if i != axis and not dims_equal(p, q)]


# ---- take / embedding ------------------------------------------------------------------------------
def _take_type(op, x, idx, axis):
    _index_tensor(op, idx)
    if x.rank == 0:
        raise ShapeError(f"{op}: cannot index a scalar {x} with {idx}")
    return x.with_shape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _take_infer(types, attrs):
    x, idx = types
    attrs["axis"] = normalize_axis(attrs["axis"], max(x.rank, 1))
    return _take_type("take", x, idx, attrs["axis"])


def _take_ref(x, idx, axis, op="take"):
    _check_range(op, idx, x.shape[axis])
    return np.asarray(np.take(x, idx, axis=axis))


def _take_torch(T, x, idx, *, axis, op="take"):
    check_index_range(op, idx, x.shape[axis])
    flat = T.index_select(x, axis, idx.reshape(-1).long())
    return flat.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


register("take", "x, idx", kind="index", attrs={"axis": 0}, infer=_take_infer, ref=_take_ref, torch=_take_torch,
         flops=lambda i, o, a: 0,
         doc="np.take: slices of x along axis picked by idx; shape x[:axis] + idx + x[axis+1:]")


def _embedding_torch(T, table, ids):
    if table.ndim == 2:
        check_index_range("embedding", ids, table.shape[0])
        return T.nn.functional.embedding(ids.long(), table)
    return _take_torch(T, table, ids, axis=0, op="embedding")


register("embedding", "table, ids", kind="index", infer=lambda types, attrs: _take_type("embedding", *types, 0),
         ref=lambda table, ids: _take_ref(table, ids, 0, "embedding"), torch=_embedding_torch, flops=lambda i, o, a: 0,
         doc="rows of table picked by ids: take along axis 0, shape ids + table[1:]")


# ---- gather / scatter_add -----------------------------------------------------------------------------
def _gather_infer(types, attrs):
    x, idx = types
    _index_tensor("gather", idx)
    axis = attrs["axis"] = normalize_axis(attrs["axis"], max(x.rank, 1))
    if idx.rank != x.rank:
        raise ShapeError(f"gather: index {idx} must have the rank of input {x}")
    bad = _off_axis_mismatch(x, idx, axis)
    if bad:  # numpy would broadcast here and torch would truncate; demand equality so both agree
        raise _mismatch("gather", x, idx, bad)
    return x.with_shape(idx.shape)


def _gather_ref(x, idx, axis):
    _check_range("gather", idx, x.shape[axis])
    return np.take_along_axis(x, idx, axis=axis)


def _gather_torch(T, x, idx, *, axis):
    check_index_range("gather", idx, x.shape[axis])
    return T.gather(x, axis, idx.long())


register("gather", "x, idx", kind="index", attrs={"axis": REQUIRED}, infer=_gather_infer, ref=_gather_ref,
         torch=_gather_torch, flops=lambda i, o, a: 0,
         doc="out[..i..] = x[..idx[..i..] at axis..] (np.take_along_axis / torch.gather); idx has x's shape "
             "off the axis")


def _scatter_add_infer(types, attrs):
    x, idx, src = types
    _index_tensor("scatter_add", idx)
    if src.dtype != x.dtype:
        raise ShapeError(f"scatter_add: source {src} and input {x} have different dtypes")
    axis = attrs["axis"] = normalize_axis(attrs["axis"], max(x.rank, 1))
    if idx.rank != x.rank or src.rank != x.rank:
        raise ShapeError(f"scatter_add: index {idx} and source {src} must have the rank of input {x}")
    bad = [i for i, (a, b) in enumerate(zip(idx.shape, src.shape)) if not dims_equal(a, b)]
    if bad:
        raise _mismatch("scatter_add", idx, src, bad)
    bad = _off_axis_mismatch(x, idx, axis)
    if bad:
        raise _mismatch("scatter_add", x, idx, bad)
    return x


def _scatter_add_ref(x, idx, src, axis):
    _check_range("scatter_add", idx, x.shape[axis])
    out = x.copy()
    # out[..., idx[p], ...] += src[p] for every position p of idx: idx along axis, p's own coordinates elsewhere
    coords = np.indices(idx.shape, sparse=True)
    where = tuple(idx if d == axis else c for d, c in enumerate(coords))
    np.add.at(out, where, src)  # unbuffered: repeated indices accumulate
    return out


def _scatter_add_torch(T, x, idx, src, *, axis):
    check_index_range("scatter_add", idx, x.shape[axis])
    return T.scatter_add(x, axis, idx.long(), src)


register("scatter_add", "x, idx, src", kind="index", attrs={"axis": 0}, infer=_scatter_add_infer,
         ref=_scatter_add_ref, flops=lambda i, o, a: i[2].numel, torch=_scatter_add_torch,
         doc="copy of x with src[p] added at position p with its axis coordinate replaced by idx[p] "
             "(torch.scatter_add)")


# ---- segment reductions ---------------------------------------------------------------------------------
def _segment_infer(op, float_only=False):
    def infer(types, attrs):
        data, ids = types
        if not (is_float(data.dtype) or (is_int(data.dtype) and not float_only)):
            raise ShapeError(f"{op}: data must be a {'float' if float_only else 'numeric'} tensor, got {data}")
        _index_tensor(op, ids, "segment_ids")
        if data.rank == 0 or ids.rank != 1 or not dims_equal(ids.shape[0], data.shape[0]):
            raise ShapeError(f"{op}: segment_ids {ids} must be 1-D with one id per row of data {data} (dim 0)")
        n = attrs["num_segments"] = _dim_attr(attrs["num_segments"], "num_segments", op)
        return data.with_shape((dim(n),) + data.shape[1:])
    return infer


def _segment_counts(ids, n, ndim):
    """Rows per segment, shaped [n, 1, ...] to broadcast against the output."""
    return np.bincount(ids, minlength=n).reshape((n,) + (1,) * (ndim - 1))


def _segment_sum_ref(data, segment_ids, num_segments, op="segment_sum"):
    _check_range(op, segment_ids, num_segments)
    out = np.zeros((num_segments,) + data.shape[1:], dtype=data.dtype)
    np.add.at(out, segment_ids, data)
    return out


def _segment_mean_ref(data, segment_ids, num_segments):
    total = _segment_sum_ref(data, segment_ids, num_segments, "segment_mean")
    counts = _segment_counts(segment_ids, num_segments, data.ndim)
    return (total / np.maximum(counts, 1)).astype(data.dtype, copy=False)  # an empty segment: 0 / 1


def _segment_max_ref(data, segment_ids, num_segments):
    _check_range("segment_max", segment_ids, num_segments)
    lowest = -np.inf if np.issubdtype(data.dtype, np.floating) else np.iinfo(data.dtype).min
    out = np.full((num_segments,) + data.shape[1:], lowest, dtype=data.dtype)
    np.maximum.at(out, segment_ids, data)
    counts = _segment_counts(segment_ids, num_segments, data.ndim)
    return np.where(counts > 0, out, 0).astype(data.dtype, copy=False)


def _segment_sum_torch(T, data, ids, *, num_segments, op="segment_sum"):
    check_index_range(op, ids, num_segments)
    return data.new_zeros((num_segments,) + tuple(data.shape[1:])).index_add(0, ids.long(), data)


def _segment_mean_torch(T, data, ids, *, num_segments):
    check_index_range("segment_mean", ids, num_segments)
    counts = T.bincount(ids.long(), minlength=num_segments).clamp(min=1)
    counts = counts.reshape((num_segments,) + (1,) * (data.ndim - 1)).to(data.dtype)
    return _segment_sum_torch(T, data, ids, num_segments=num_segments, op="segment_mean") / counts


def _segment_max_torch(T, data, ids, *, num_segments):
    check_index_range("segment_max", ids, num_segments)
    index = ids.long().reshape((-1,) + (1,) * (data.ndim - 1)).expand_as(data)
    # include_self=False: a segment's result is the max of its rows only; an empty one keeps the zero
    out = data.new_zeros((num_segments,) + tuple(data.shape[1:]))
    return out.scatter_reduce(0, index, data, "amax", include_self=False)


for _name, _ref, _torch, _float_only in (("segment_sum", _segment_sum_ref, _segment_sum_torch, False),
                                         ("segment_mean", _segment_mean_ref, _segment_mean_torch, True),
                                         ("segment_max", _segment_max_ref, _segment_max_torch, False)):
    register(_name, "data, segment_ids", kind="index", attrs={"num_segments": REQUIRED},
             infer=_segment_infer(_name, _float_only), ref=_ref, torch=_torch, flops=lambda i, o, a: i[0].numel,
             doc=f"{_name.split('_')[1]} of the rows of data sharing a segment id; [num_segments, *data[1:]], "
                 "an empty segment gives 0")


# ---- one_hot ----------------------------------------------------------------------------------------------
def _one_hot_infer(types, attrs):
    ids = types[0]
    _index_tensor("one_hot", ids, "ids")
    if attrs["dtype"] not in DTYPES:
        raise ShapeError(f"one_hot: unknown dtype '{attrs['dtype']}'")
    depth = attrs["depth"] = _dim_attr(attrs["depth"], "depth", "one_hot")
    return TensorType(attrs["dtype"], ids.shape + (dim(depth),))


register("one_hot", "ids", kind="index", attrs={"depth": REQUIRED, "dtype": "f32"}, infer=_one_hot_infer,
         ref=lambda ids, depth, dtype: (ids[..., None] == np.arange(depth)).astype(DTYPES[dtype]),
         torch=lambda T, ids, *, depth, dtype: (ids.unsqueeze(-1) == T.arange(depth, device=ids.device)).to(
             torch_dtype(T, dtype)),
         flops=lambda i, o, a: 0,
         doc="ids + [depth]: 1 where the last index equals the id, else 0 (an id outside [0, depth) gives zeros)")
