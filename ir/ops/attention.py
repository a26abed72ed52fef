"""Scaled dot-product attention: softmax(q k^T * scale + mask) v, the op the fusion pass turns into one
flash-style kernel.

Semantics (the same in every backend):
- q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv] -> [..., Tq, dv]; the leading dims broadcast.
- mask (optional) broadcasts to [..., Tq, Tk]: bool means True = may attend; float is added to the scores
  (-inf = may not attend).
- causal=True masks key j > query i (top-left aligned, as torch's F.scaled_dot_product_attention does).
- A query row that may attend to no key at all gives 0, not NaN.
"""
from __future__ import annotations

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import register
from ..types import TensorType, broadcast_shapes, dims_equal, fmt_dim, fmt_shape, is_float, numel
from .common import same_dtype


def _broadcasts_to(shape, target) -> bool:
    if len(shape) > len(target):
        return False
    try:
        return all(dims_equal(a, b) for a, b in zip(broadcast_shapes(shape, target), target))
    except ShapeError:
        return False


def _sdpa_infer(types, attrs):
    q, k, v, mask = types
    for t, what in ((q, "query"), (k, "key"), (v, "value")):
        if not is_float(t.dtype) or t.rank < 2:
            raise ShapeError(f"sdpa: {what} must be a float tensor [..., T, d], got {t}")
    same_dtype("sdpa", q, k, v)
    if not dims_equal(q.shape[-1], k.shape[-1]):
        raise ShapeError(f"sdpa: query {q} and key {k} differ in the head dim (dim -1: "
                         f"{fmt_dim(q.shape[-1])} vs {fmt_dim(k.shape[-1])})")
    if not dims_equal(k.shape[-2], v.shape[-2]):
        raise ShapeError(f"sdpa: key {k} and value {v} differ in length (dim -2: "
                         f"{fmt_dim(k.shape[-2])} vs {fmt_dim(v.shape[-2])})")
    try:
        batch = broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ShapeError as err:
        raise ShapeError(f"sdpa: the leading dims of query {q}, key {k} and value {v} do not broadcast "
                         f"({err.message})") from None
    scores = batch + (q.shape[-2], k.shape[-2])
    if mask is not None:
        if not (mask.dtype == "bool" or is_float(mask.dtype)):
            raise ShapeError(f"sdpa: mask must be bool or float, got {mask}")
        if not _broadcasts_to(mask.shape, scores):
            raise ShapeError(f"sdpa: mask {mask} does not broadcast to the scores' shape {fmt_shape(scores)} "
                             f"of query {q} and key {k}")
    if attrs["scale"] is not None:
        attrs["scale"] = float(attrs["scale"])
    attrs["causal"] = bool(attrs["causal"])
    return TensorType(q.dtype, batch + (q.shape[-2], v.shape[-1]))


def _sdpa_ref(q, k, v, mask, causal, scale):
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    allowed = np.ones(scores.shape[-2:], dtype=bool)
    if causal:
        allowed = np.tril(allowed)  # key j <= query i
    if mask is not None and mask.dtype == np.bool_:
        allowed = allowed & mask
    elif mask is not None:   # an additive -inf masks the key as a boolean mask does, even against a NaN score
        scores = scores + mask
        allowed = allowed & (mask != -np.inf)
    scores = np.where(allowed, scores, -np.inf)
    # softmax along the keys; a row with no allowed key (max = -inf) gets all-zero weights, not 0/0 = NaN
    top = scores.max(axis=-1, keepdims=True, initial=-np.inf)  # no keys at all (TK = 0): zeros, as all masked
    weights = np.exp(scores - np.where(top == -np.inf, 0, top))   # a +inf score: a NaN row, as softmax
    total = weights.sum(axis=-1, keepdims=True)
    weights = weights / np.where(total == 0, 1, total)
    return np.where(total == 0, 0, weights @ v).astype(q.dtype, copy=False)   # 0, even where v holds NaN


def _sdpa_torch(T, q, k, v, mask=None, *, causal, scale):
    F = T.nn.functional
    batch = T.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    if mask.dtype != T.bool:
        mask = mask.to(q.dtype)
    if mask.ndim < 2:  # F.sdpa wants the mask to have (broadcastable) query and key dims
        mask = mask.reshape((1,) * (2 - mask.ndim) + tuple(mask.shape))
    if causal:  # F.sdpa refuses attn_mask together with is_causal: fold the causal mask into attn_mask
        tri = T.ones(q.shape[-2], k.shape[-2], dtype=T.bool, device=q.device).tril()
        mask = mask & tri if mask.dtype == T.bool else T.where(tri, mask, float("-inf"))
    # What F.sdpa gives for a row with no allowed key depends on the kernel picked (0 or NaN), and a NaN
    # would poison the gradients even if zeroed afterwards: open such rows up, then zero their output.
    allowed = mask if mask.dtype == T.bool else mask > float("-inf")
    empty = ~allowed.any(dim=-1, keepdim=True)
    mask = mask | empty if mask.dtype == T.bool else mask.masked_fill(empty, 0.0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.masked_fill(empty, 0.0)


def _sdpa_flops(i, o, attrs):
    q, k, v = i[:3]
    batch = numel(o[0].shape[:-2])
    # q k^T and weights @ v, a multiply-add each (4 * Tq * Tk * d when dv = d)
    return sympy.Integer(2) * batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


register("sdpa", "q, k, v, mask?", kind="attention", attrs={"causal": False, "scale": None},
         infer=_sdpa_infer, ref=_sdpa_ref, torch=_sdpa_torch, flops=_sdpa_flops,
         doc="scaled dot-product attention softmax(q k^T * scale + mask) v; scale None = 1/sqrt(d); "
             "causal is top-left (key j > query i masked); a fully masked query row gives 0")
