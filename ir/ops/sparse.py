"""Sparse ops: the explicit compressed weight layouts the sparsity pass (passes/sparsify.py) introduces, and
activation sparsity (top-k by magnitude).

Every layout stands for a dense weight W [K, N] of a matmul `x @ W` (K the reduction axis); what is stored are
parameters, so the kernel plan counts only the stored bytes, and each op's FLOPs are those of its stored
non-zeros (they fall with the density):

- `nm_matmul(x, values, meta, n=2, m=4)` -- N:M semi-structured: in every group of m consecutive rows of a
  column of W, at most n entries are non-zero. `values` [K*n/m, N] holds them group by group (rows
  g*n .. g*n+n-1 for group g), `meta` [K*n/m, N] (any integer dtype, u8 from the pass) the row of each inside
  its group (0 .. m-1). W[g*m + meta[j, c], c] += values[j, c] for j in group g (entries equal to an index
  outside [0, m) contribute nothing).
- `bsr_matmul(x, values, col_idx, row_ptr)` -- block-sparse (BSR of W's transpose): the non-zero blocks are
  grouped by output block-column r (row_ptr [N/bn + 1]: blocks row_ptr[r] .. row_ptr[r+1]-1), block p is the
  tile W[col_idx[p]*bk : +bk, r*bn : +bn] stored as values[p] [bk, bn] in W's own [K, N] orientation.
  Unstructured (CSR) sparsity is the same op with 1x1 blocks. A block listed under several block-columns (a
  row_ptr that is not non-decreasing) is added to each; a col_idx outside [0, K/bk) contributes nothing.

The NumPy references reconstruct the dense (masked) weight and multiply: that product is the oracle every
backend and kernel is tested against. The torch lowerings do the same (dense-masked reconstruction, which
autograd differentiates with respect to x and the stored values); a Triton kernel that iterates over the
non-zero blocks only is in backends/triton/sparse_kernels.py.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import TensorType, dims_equal, fmt_dim, is_float, is_int
from .conv import divides, int_attr
from .linalg import _matmul_infer
from .nn import _stable_argsort


def _check_nm(op, attrs):
    n = attrs["n"] = int_attr(attrs["n"], "n", op, minimum=1)
    m = attrs["m"] = int_attr(attrs["m"], "m", op, minimum=1)
    if not isinstance(n, int) or not isinstance(m, int):
        raise ShapeError(f"{op}: n and m must be integers, got {n}:{m}")
    if n > m:
        raise ShapeError(f"{op}: n={n} exceeds m={m} (N:M keeps n of every m)")
    return n, m


def _operand(op, x):
    if x.rank == 0 or not is_float(x.dtype):
        raise ShapeError(f"{op}: expects a float input of rank >= 1, got {x}")


# ---- N:M semi-structured -------------------------------------------------------------------------------
def _nm_matmul_infer(types, attrs):
    x, values, meta = types
    n, m = _check_nm("nm_matmul", attrs)
    _operand("nm_matmul", x)
    if values.rank != 2 or not is_float(values.dtype):
        raise ShapeError(f"nm_matmul: values must be a float [K*n/m, N] tensor, got {values}")
    if meta.rank != 2 or not is_int(meta.dtype) or not all(dims_equal(a, b) for a, b in zip(meta.shape, values.shape)):
        raise ShapeError(f"nm_matmul: meta must be an integer tensor shaped like values {values}, got {meta}")
    k = x.shape[-1]
    if not divides(m, k):
        raise ShapeError(f"nm_matmul: the reduction dim {fmt_dim(k)} of {x} is not a multiple of m={m}")
    if not dims_equal(values.shape[0] * m, k * n):
        raise ShapeError(f"nm_matmul: values {values} has {fmt_dim(values.shape[0])} rows; {n}:{m} of K={fmt_dim(k)} "
                         f"needs K*{n}/{m}")
    return _matmul_infer([x, TensorType(values.dtype, (k, values.shape[1]))], {})


def nm_dense_np(values, meta, n, m):
    """The dense [K, N] weight an N:M layout stands for."""
    kc, cols = values.shape
    groups = kc // n
    hot = (meta.astype(np.int64)[..., None] == np.arange(m)).astype(values.dtype)
    d = np.einsum("gjcm,gjc->gmc", hot.reshape(groups, n, cols, m), values.reshape(groups, n, cols))
    return d.reshape(groups * m, cols)


def _nm_matmul_np(x, values, meta, *, n, m):
    return np.matmul(x, nm_dense_np(values, meta, n, m))


def _nm_dense_torch(T, values, meta, n, m):
    kc, cols = values.shape
    groups = kc // n
    hot = (meta.to(T.int64).unsqueeze(-1) == T.arange(m, device=meta.device)).to(values.dtype)
    d = T.einsum("gjcm,gjc->gmc", hot.reshape(groups, n, cols, m), values.reshape(groups, n, cols))
    return d.reshape(groups * m, cols)


def _nm_matmul_torch(T, x, values, meta, *, n, m):
    w = _nm_dense_torch(T, values, meta, n, m)
    dt = T.promote_types(x.dtype, w.dtype)
    return T.matmul(x.to(dt), w.to(dt))


register("nm_matmul", "x, values, meta", kind="contraction", attrs={"n": 2, "m": 4}, infer=_nm_matmul_infer,
         ref=_nm_matmul_np, torch=_nm_matmul_torch,
         flops=lambda i, o, attrs: 2 * o[0].numel * i[1].shape[0],
         doc="x @ W for an N:M sparse W [K, N]: values [K*n/m, N] (n per group of m rows of a column) and meta "
             "(each value's row inside its group); FLOPs count the stored values only")


# ---- block-sparse (BSR) / unstructured (CSR = 1x1 blocks) ------------------------------------------------
def _bsr_matmul_infer(types, attrs):
    x, values, col_idx, row_ptr = types
    _operand("bsr_matmul", x)
    if values.rank != 3 or not is_float(values.dtype):
        raise ShapeError(f"bsr_matmul: values must be a float [nnz_blocks, bk, bn] tensor, got {values}")
    if col_idx.rank != 1 or not is_int(col_idx.dtype) or not dims_equal(col_idx.shape[0], values.shape[0]):
        raise ShapeError(f"bsr_matmul: col_idx must be an integer [nnz_blocks] tensor matching values {values}, "
                         f"got {col_idx}")
    if row_ptr.rank != 1 or not is_int(row_ptr.dtype) or not row_ptr.shape[0].is_Integer or int(row_ptr.shape[0]) < 1:
        raise ShapeError(f"bsr_matmul: row_ptr must be an integer [block_cols + 1] tensor of static size, got {row_ptr}")
    bk, bn = values.shape[1], values.shape[2]
    k = x.shape[-1]
    if not divides(bk, k):
        raise ShapeError(f"bsr_matmul: the reduction dim {fmt_dim(k)} of {x} is not a multiple of the block "
                         f"height {fmt_dim(bk)}")
    cols = (int(row_ptr.shape[0]) - 1) * bn
    return _matmul_infer([x, TensorType(values.dtype, (k, cols))], {})


def bsr_dense_np(values, col_idx, row_ptr, kb):
    """The dense [kb*bk, R*bn] weight a BSR layout stands for (kb = K / bk block rows of W)."""
    nnz, bk, bn = values.shape
    rows = len(row_ptr) - 1
    p = np.arange(nnz)
    rp = np.asarray(row_ptr).astype(np.int64)
    col = np.asarray(col_idx).astype(np.int64)
    inrow = (rp[:-1, None] <= p) & (p < rp[1:, None]) & ((col >= 0) & (col < kb))[None, :]
    r, q = np.nonzero(inrow)
    d = np.zeros((kb, rows, bk, bn), values.dtype)
    np.add.at(d, (col[q], r), values[q])
    return d.transpose(0, 2, 1, 3).reshape(kb * bk, rows * bn)


def _bsr_matmul_np(x, values, col_idx, row_ptr):
    return np.matmul(x, bsr_dense_np(values, col_idx, row_ptr, x.shape[-1] // values.shape[1]))


def _bsr_dense_torch(T, values, col_idx, row_ptr, kb):
    nnz, bk, bn = values.shape
    rows = row_ptr.shape[0] - 1
    p = T.arange(nnz, device=values.device)
    rp = row_ptr.to(T.int64)
    col = col_idx.to(T.int64)
    inrow = (rp[:-1, None] <= p) & (p < rp[1:, None]) & ((col >= 0) & (col < kb))[None, :]
    r, q = T.nonzero(inrow, as_tuple=True)
    d = T.zeros((kb, rows, bk, bn), dtype=values.dtype, device=values.device)
    d = d.index_put((col[q], r), values[q], accumulate=True)
    return d.permute(0, 2, 1, 3).reshape(kb * bk, rows * bn)


def _bsr_matmul_torch(T, x, values, col_idx, row_ptr):
    w = _bsr_dense_torch(T, values, col_idx, row_ptr, x.shape[-1] // values.shape[1])
    dt = T.promote_types(x.dtype, w.dtype)
    return T.matmul(x.to(dt), w.to(dt))


register("bsr_matmul", "x, values, col_idx, row_ptr", kind="contraction", infer=_bsr_matmul_infer,
         ref=_bsr_matmul_np, torch=_bsr_matmul_torch,
         flops=lambda i, o, attrs: 2 * o[0].numel * i[1].shape[0] * i[1].shape[1] / max(int(i[3].shape[0]) - 1, 1),
         doc="x @ W for a block-sparse W [K, N] (BSR of W^T): values [nnz_blocks, bk, bn], col_idx (each block's "
             "block row of W), row_ptr (blocks per output block-column); 1x1 blocks = CSR; FLOPs count stored blocks")


# ---- activation sparsity ---------------------------------------------------------------------------------
def _topk_mask_infer(types, attrs):
    from ..types import normalize_axis
    x, = types
    if x.rank == 0 or x.dtype == "bool":
        raise ShapeError(f"topk_mask: expects a numeric tensor of rank >= 1, got {x}")
    axis = attrs["axis"] = normalize_axis(attrs["axis"], x.rank)
    k = attrs["k"] = int_attr(attrs["k"], "k", "topk_mask", minimum=0)
    size = x.shape[axis]
    if size.is_number and isinstance(k, int) and k > size:
        raise ShapeError(f"topk_mask: k={k} exceeds dim {axis} of input {x} (size {fmt_dim(size)})")
    return x


def _topk_mask_np(x, *, k, axis):
    idx = _stable_argsort(np.abs(x), axis, True)
    keep = np.take(idx, np.arange(k), axis=axis)
    mask = np.zeros(x.shape, bool)
    np.put_along_axis(mask, keep, True, axis=axis)
    return np.where(mask, x, np.zeros_like(x))


def _topk_mask_torch(T, x, *, k, axis):
    idx = T.sort(x.abs(), dim=axis, descending=True, stable=True)[1].narrow(axis, 0, k)
    mask = T.zeros(x.shape, dtype=T.bool, device=x.device).scatter(axis, idx, True)
    return T.where(mask, x, T.zeros_like(x))


register("topk_mask", "x", kind="reduce", attrs={"k": REQUIRED, "axis": -1}, infer=_topk_mask_infer,
         ref=_topk_mask_np, torch=_topk_mask_torch,
         doc="activation sparsity: keep the k largest-magnitude entries along axis (ties: the lower index), "
             "zero the rest; same shape and dtype as x")
