"""Gradients (vector-Jacobian products, as IR) of the indexing ops of index.py (see elementwise_grad.py for the
conventions). Indices get none. What reads rows by index (take, embedding) sends its cotangent back to those
rows summed (segment_sum over the index: torch's index_add / embedding_backward, dense), gather scatters its
cotangent back with scatter_add (torch.gather's backward), scatter_add passes its cotangent to x and gathers it
for src, and the segment reductions read each row's segment's cotangent back (take): segment_mean divides it by
the segment's size, and segment_max gives it to the rows equal to their segment's max, split evenly among ties
(torch's scatter_reduce "amax" backward; torch also counts the zero it starts from when a segment's max is
exactly 0, which this rule does not). one_hot's input is an integer id: nothing to differentiate."""
from __future__ import annotations

from ..registry import no_grad, vjp
from ..types import TensorType, numel


def _flat_index(e, ct, idx, axis):
    """ct with idx's axes (at `axis`) merged into one, and idx flattened to match (a rank-0 idx gives one)."""
    if idx.type.rank == 1:
        return ct, idx
    k = numel(idx.type.shape)
    shape = list(ct.type.shape)
    shape[axis:axis + idx.type.rank] = [k]
    return e("reshape", [ct], shape=shape), e("reshape", [idx], shape=[k])


def _index_add(e, ct, idx, x_type, axis):
    """The adjoint of take(x, idx, axis): x's zeros with each slice of ct added at its index along `axis`."""
    ct, idx = _flat_index(e, ct, idx, axis)
    if axis:   # segment_sum reduces along axis 0
        perm = [axis] + [i for i in range(ct.type.rank) if i != axis]
        ct = e("transpose", [ct], perm=perm)
    g = e("segment_sum", [ct, idx], num_segments=x_type.shape[axis])
    if axis:
        back = list(range(1, axis + 1)) + [0] + list(range(axis + 1, x_type.rank))
        g = e("transpose", [g], perm=back)
    return g


@vjp("take")
def _take(e, n, cts):
    x, idx = n.inputs
    return [_index_add(e, cts[0], idx, x.type, n.attrs["axis"]), None]


@vjp("embedding")
def _embedding(e, n, cts):
    table, ids = n.inputs
    return [_index_add(e, cts[0], ids, table.type, 0), None]


@vjp("gather")
def _gather(e, n, cts):
    x, idx = n.inputs
    return [e("scatter_add", [e.full(0.0, x.type), idx, cts[0]], axis=n.attrs["axis"]), None]


@vjp("scatter_add")
def _scatter_add(e, n, cts):
    (ct,), (x, idx, src) = cts, n.inputs
    return [ct, None, e("gather", [ct, idx], axis=n.attrs["axis"])]


def _rows(e, v, rank):
    """A [N] vector shaped [N, 1, ...] to broadcast against rank-`rank` rows."""
    for _ in range(rank - 1):
        v = e("expand_dims", [v], axis=-1)
    return v


@vjp("segment_sum")
def _segment_sum(e, n, cts):
    ids = n.inputs[1]
    return [e("take", [cts[0], ids], axis=0), None]


@vjp("segment_mean")
def _segment_mean(e, n, cts):
    """Each row gets its segment's cotangent over the segment's size (counted as a segment_sum of ones)."""
    (ct,), (data, ids) = cts, n.inputs
    ones = e.full(1.0, TensorType(data.type.dtype, (data.type.shape[0],)))
    counts = e("segment_sum", [ones, ids], num_segments=n.attrs["num_segments"])
    per_row = _rows(e, e("take", [counts, ids], axis=0), data.type.rank)   # >= 1: the row's own segment
    return [e("div", [e("take", [ct, ids], axis=0), per_row]), None]


@vjp("segment_max")
def _segment_max(e, n, cts):
    """The rows equal to their segment's max share its cotangent evenly (torch's scatter_reduce amax)."""
    (ct,), (data, ids), y = cts, n.inputs, n.output
    is_max = e("eq", [data, e("take", [y, ids], axis=0)])
    ties = e("segment_sum", [e("cast", [is_max], dtype=ct.type.dtype), ids], num_segments=n.attrs["num_segments"])
    one = e.const(1.0, ct.type.dtype)
    share = e("div", [ct, e("maximum", [ties, one])])   # an empty segment: no row reads it
    return [e("where", [is_max, e("take", [share, ids], axis=0), e.const(0.0, ct.type.dtype)]), None]


no_grad("its input is an integer id: no gradient flows through it", "one_hot")
