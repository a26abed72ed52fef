"""A Triton block-sparse matmul that iterates over the non-zero blocks only: y = x @ W for W stored as
`bsr_matmul`'s layout (ir/ops/sparse.py): values [nnz, bk, bn], col_idx [nnz] (each block's block row of W),
row_ptr [N/bn + 1] (the blocks of output block-column r are row_ptr[r] .. row_ptr[r+1]-1).

    y = bsr_matmul(x, values, col_idx, row_ptr)      # torch tensors; x [..., K] -> y [..., N]

One program computes a [BLOCK_M, bn] tile of y: it walks its block-column's list of blocks, loads the
matching [BLOCK_M, bk] slice of x and the stored [bk, bn] block, and accumulates their product in f32, so the
work is proportional to the stored blocks. Block dims that are not powers of two (or below 16, which
`tl.dot` needs on a GPU) are padded with masked loads: 1x1 blocks (CSR, unstructured sparsity) run, if
slowly. Without a GPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, set by
runtime.ensure_mode before triton is imported), the way the tests run it.
"""
from __future__ import annotations

from .runtime import ensure_mode

ensure_mode(quiet=True)  # TRITON_INTERPRET must be set before the kernel below is decorated

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def bsr_matmul_kernel(x_ptr, v_ptr, col_ptr, rowptr_ptr, y_ptr, M, K, N,
                      stride_xm, stride_xk, stride_ym, stride_yn,
                      BK: tl.constexpr, BN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    r = tl.program_id(1)                         # the output block-column
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K)
    offs_n = tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_k = offs_k < BK
    mask_n = offs_n < BN
    start = tl.load(rowptr_ptr + r)
    end = tl.load(rowptr_ptr + r + 1)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for p in range(start, end):                  # the stored blocks of this block-column, nothing else
        kb = tl.load(col_ptr + p)
        ks = kb * BK + offs_k
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + ks[None, :] * stride_xk,
                    mask=mask_m[:, None] & mask_k[None, :] & (ks[None, :] < K), other=0.0)
        b = tl.load(v_ptr + p * (BK * BN) + offs_k[:, None] * BN + offs_n[None, :],
                    mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc += tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    cols = r * BN + offs_n
    tl.store(y_ptr + offs_m[:, None] * stride_ym + cols[None, :] * stride_yn, acc.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :] & (cols[None, :] < N))


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(int(n)))


def bsr_matmul(x, values, col_idx, row_ptr, block_m: int = 32):
    """x [..., K] @ W (BSR, see the module doc) -> [..., N] in x's dtype, computed by `bsr_matmul_kernel`.
    The index tensors must be a valid BSR (row_ptr non-decreasing, col_idx in [0, K/bk))."""
    import torch
    nnz, bk, bn = values.shape
    rows = row_ptr.shape[0] - 1
    k = x.shape[-1]
    if k % bk:
        raise ValueError(f"bsr_matmul: K={k} is not a multiple of the block height {bk}")
    n = rows * bn
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m and n:
        grid = (triton.cdiv(m, block_m), rows)
        bsr_matmul_kernel[grid](x2, values.contiguous(), col_idx.to(torch.int32).contiguous(),
                                row_ptr.to(torch.int32).contiguous(), y, m, k, n,
                                x2.stride(0), x2.stride(1), y.stride(0), y.stride(1),
                                BK=bk, BN=bn, BLOCK_M=block_m, BLOCK_K=_pad(bk), BLOCK_N=_pad(bn))
    return y.reshape(*x.shape[:-1], n)
