"""Gradients (vector-Jacobian products, as IR) of the sparse weight layouts of sparse.py (see elementwise_grad.py
for the conventions). For y = x @ W with W [K, N] stored as an N:M or block-sparse layout:

- x gets ct @ W^T, with W the dense reconstruction of the layout (pruned entries as zeros, as the torch
  lowering's autograd: a non-finite cotangent meets them as 0 * inf, where the forward leaves them absent);
- `values` gets x^T @ ct (the batch flattened) read at the stored positions only: the same one-hot selection
  matrices that rebuild W, contracted the other way (an index outside the layout stores nothing and gets 0;
  an entry stored twice gets the gradient twice, as W added it twice);
- the integer layout (meta, col_idx, row_ptr) gets none.

topk_mask lives in sparse.py but is a reduction's gradient (reduce_grad.py)."""
from __future__ import annotations

from ..registry import vjp


def _hot(e, idx, n, dtype):
    """[..., n] float: 1 where idx == 0..n-1 (an index outside [0, n) gives a zero row)."""
    i = e("cast", [idx], dtype="i64")
    return e("cast", [e("eq", [e("expand_dims", [i], axis=-1), e("arange", [], n=n, dtype="i64")])], dtype=dtype)


def _xt_ct(e, x, ct):
    """x^T @ ct [K, N] over every batch position (a rank-1 x is one row)."""
    k, cols = x.type.shape[-1], ct.type.shape[-1]
    x2 = e("reshape", [x], shape=[-1, k])
    ct2 = e("reshape", [ct], shape=[-1, cols])
    return e("matmul", [e("transpose", [x2], perm=[1, 0]), ct2])


def _x_grad(e, ct, w):
    """ct @ W^T."""
    return e("matmul", [ct, e("transpose", [w], perm=[1, 0])])


@vjp("nm_matmul")
def _nm_matmul(e, n, cts):
    (ct,), (x, values, meta) = cts, n.inputs
    nn, m = n.attrs["n"], n.attrs["m"]
    kc, cols = values.type.shape
    groups = kc / nn
    dt = ct.type.dtype
    hot = e("reshape", [_hot(e, meta, m, dt)], shape=[groups, nn, cols, m])           # [G, n, N, m]
    vals = e("reshape", [e.like(values, values.type.with_dtype(dt))], shape=[groups, nn, cols])
    w = e("reshape", [e("einsum", [hot, vals], equation="gjcm,gjc->gmc")], shape=[groups * m, cols])
    d = e("reshape", [_xt_ct(e, x, ct)], shape=[groups, m, cols])                    # [G, m, N]
    gv = e("reshape", [e("einsum", [hot, d], equation="gjcm,gmc->gjc")], shape=[kc, cols])
    return [_x_grad(e, ct, w), gv, None]


@vjp("bsr_matmul")
def _bsr_matmul(e, n, cts):
    (ct,), (x, values, col_idx, row_ptr) = cts, n.inputs
    nnz, bk, bn = values.type.shape
    rows = int(row_ptr.type.shape[0]) - 1
    kb = x.type.shape[-1] / bk
    dt = ct.type.dtype
    rp = e("cast", [row_ptr], dtype="i64")
    p = e("arange", [], n=nnz, dtype="i64")
    start = e("expand_dims", [e("slice", [rp], slices=[[0, rows, 1]])], axis=-1)       # [R, 1]
    stop = e("expand_dims", [e("slice", [rp], slices=[[1, rows + 1, 1]])], axis=-1)
    member = e("cast", [e("logical_and", [e("le", [start, p]), e("lt", [p, stop])])], dtype=dt)   # [R, nnz]
    at = _hot(e, col_idx, kb, dt)                                                     # [nnz, kb]
    vals = e.like(values, values.type.with_dtype(dt))
    w = e("einsum", [member, at, vals], equation="rp,pk,pab->karb")                   # [kb, bk, R, bn]
    w = e("reshape", [w], shape=[kb * bk, rows * bn])
    d = e("reshape", [_xt_ct(e, x, ct)], shape=[kb, bk, rows, bn])
    gv = e("einsum", [member, at, d], equation="rp,pk,karb->pab")
    return [_x_grad(e, ct, w), gv, None, None]
