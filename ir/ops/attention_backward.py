"""sdpa_grad: the backward of scaled dot-product attention as one op, which the Triton backend runs as
flash-attention-2 kernels (backends/triton/attention_grad_codegen.py) that never write a [Tq, Tk] tensor.

The gradient rule of sdpa (ir/ops/attention_grad.py) emits it for attention without a mask, with a boolean
mask and/or `causal`; an additive float mask's own cotangent is dS, [..., Tq, Tk] itself, so that case keeps
the rule written as IR ops. Autodiff introduces the op (testing/generate's PASS_ONLY_OPS); a program may call it.

Semantics, with S = q k^T * scale masked as sdpa masks it (bool mask False, causal key j > query i, additive
-inf: -inf; an additive mask is added), P = softmax(S) (0 on a query row that may attend to no key), O the
forward output and dO its cotangent:

    dV = P^T dO    dP = dO V^T    dS = P (dP - D),  D = rowsum(dO O)    dQ = dS K * scale    dK = dS^T Q * scale

The outputs have the broadcast batch of the forward (grouped-query heads: [..., H, Tk, d], not k's [..., 1, Tk,
d]); the rule sums them back to each input's shape. FLOPs: 2 * batch * Tq * Tk * (3 d + 2 dv) -- the five
products above (S recomputed, dV, dP, dQ, dK) -- 2.5x the forward's 2 * batch * Tq * Tk * (d + dv) when dv = d.
Its own gradient (second derivatives through attention) is the IR form above differentiated
(attention_grad.py): nothing trains through it in practice, but it keeps grad-of-grad exact.
"""
from __future__ import annotations

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import OPS, register
from ..types import dims_equal, numel


def _sdpa_grad_infer(types, attrs):
    q, k, v, o, do, mask = (list(types) + [None])[:6]
    fwd = OPS["sdpa"].infer_types([q, k, v, mask], attrs)[0]   # sdpa's checks; normalizes causal and scale
    for t, what in ((o, "forward output o"), (do, "output cotangent do")):
        if t is None or t.dtype != fwd.dtype or t.rank != fwd.rank \
                or not all(dims_equal(a, b) for a, b in zip(t.shape, fwd.shape)):
            raise ShapeError(f"sdpa_grad: {what} must have sdpa's output type {fwd}, got {t}")
    batch = fwd.shape[:-2]
    return [q.with_shape(batch + q.shape[-2:]), k.with_shape(batch + k.shape[-2:]), v.with_shape(batch + v.shape[-2:])]


def _swap(x):
    return np.swapaxes(x, -1, -2)


def _sdpa_grad_ref(q, k, v, o, do, mask=None, *, causal, scale):
    """The gradient rule's math (attention_grad.py's IR form) in NumPy: exact in float64, the oracle."""
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1]) if q.shape[-1] else np.inf
    with np.errstate(all="ignore"):
        scores = (q @ _swap(k)) * np.asarray(scale, q.dtype)
        allowed = np.ones(scores.shape[-2:], dtype=bool)
        if causal:
            allowed = np.tril(allowed)   # key j <= query i
        if mask is not None and mask.dtype == np.bool_:
            allowed = allowed & mask
        elif mask is not None:
            scores = scores + mask.astype(scores.dtype)
            allowed = allowed & (mask != -np.inf)
        scores = np.where(allowed, scores, -np.inf)
        top = scores.max(axis=-1, keepdims=True, initial=-np.inf)
        p = np.exp(scores - np.where(top == -np.inf, 0, top))
        total = p.sum(axis=-1, keepdims=True)
        p = np.where(total == 0, 0, p / np.where(total == 0, 1, total))   # a row with no allowed key: P = 0
        dv = _swap(p) @ do
        dp = do @ _swap(v)
        rowdot = (do * o).sum(axis=-1, keepdims=True)
        ds = p * (dp - rowdot)
        dq = (ds @ k) * np.asarray(scale, q.dtype)
        dk = (_swap(ds) @ q) * np.asarray(scale, q.dtype)
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return tuple(np.broadcast_to(g, batch + g.shape[-2:]).astype(q.dtype) for g in (dq, dk, dv))


def _sdpa_grad_torch(T, q, k, v, o, do, mask=None, *, causal, scale):
    """The same formulas in torch (no autograd: the op is itself a gradient)."""
    if scale is None:
        scale = q.shape[-1] ** -0.5 if q.shape[-1] else float("inf")
    scores = (q @ k.transpose(-1, -2)) * scale
    allowed = T.ones(scores.shape[-2:], dtype=T.bool, device=q.device)
    if causal:
        allowed = allowed.tril()
    if mask is not None and mask.dtype == T.bool:
        allowed = allowed & mask
    elif mask is not None:
        scores = scores + mask.to(scores.dtype)
        allowed = allowed & (mask != float("-inf"))
    scores = scores.masked_fill(~allowed, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True) if scores.shape[-1] else T.full_like(scores[..., :1], float("-inf"))
    p = T.exp(scores - T.where(top == float("-inf"), T.zeros_like(top), top))
    total = p.sum(dim=-1, keepdim=True)
    p = T.where(total == 0, T.zeros_like(p), p / T.where(total == 0, T.ones_like(total), total))
    dv = p.transpose(-1, -2) @ do
    ds = p * (do @ v.transpose(-1, -2) - (do * o).sum(dim=-1, keepdim=True))
    dq = (ds @ k) * scale
    dk = (ds.transpose(-1, -2) @ q) * scale
    batch = T.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return tuple(g.expand(*batch, *g.shape[-2:]).contiguous() for g in (dq, dk, dv))


def _sdpa_grad_flops(i, o, attrs):
    q, k, v = i[:3]
    batch = numel(o[0].shape[:-2])
    d, dv = q.shape[-1], v.shape[-1]
    # S = q k^T (recomputed), dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: a multiply-add per term
    return sympy.Integer(2) * batch * q.shape[-2] * k.shape[-2] * (3 * d + 2 * dv)


register("sdpa_grad", "q, k, v, o, do, mask?", kind="attention", attrs={"causal": False, "scale": None},
         infer=_sdpa_grad_infer, ref=_sdpa_grad_ref, torch=_sdpa_grad_torch, flops=_sdpa_grad_flops,
         doc="(dq, dk, dv) of sdpa(q, k, v, mask, causal, scale) = o given o's cotangent do (what autodiff emits: "
             "flash-attention backward kernels in Triton, no [Tq, Tk] tensor in memory); batch dims broadcast, "
             "not summed back")
