"""Gradient (vector-Jacobian product, as IR) of sdpa (see elementwise_grad.py for the conventions).

The forward node keeps no attention weights, so the backward recomputes them, as flash attention's backward
does, from q and k: S = q k^T * scale (+ an additive mask; -inf where a bool mask, an additive -inf or
`causal` forbids the key), P = softmax(S) (0 on a query row that may attend to no key, as the forward's 0).
With dO the output's cotangent and O the forward output:

    dV = P^T dO    dP = dO V^T    dS = P (dP - D),  D = rowsum(dO O) = rowsum(dP P)
    dQ = dS K * scale    dK = dS^T Q * scale    d(additive mask) = dS

(D from O, flash attention's trick, reads [Tq, dv] instead of a second [Tq, Tk] product.) Leading dims
broadcast in the forward (grouped-query heads, a shared mask) get their cotangent summed back (`sum_to`).

Without a mask, with a boolean mask and/or `causal`, the rule emits one `sdpa_grad` node (ir/ops/
attention_backward.py) computing these formulas, which the Triton backend runs as flash-attention-2 kernels (P
rebuilt per tile from a recomputed row logsumexp: no [Tq, Tk] tensor in memory). With an additive float mask
the rule is the IR ops above, which materialize P and dS ([..., Tq, Tk] each, as torch's math backend does):
that mask's cotangent is dS itself. sdpa_grad's own gradient (second order) is this IR form, differentiated.
"""
from __future__ import annotations

from ..backprop import reverse_walk
from ..builder import Emitter
from ..registry import vjp
from ..types import TensorType


def _t(e, x):
    """x with its last two axes swapped (a view)."""
    perm = list(range(x.type.rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return e("transpose", [x], perm=perm)


def _scale(e, q, scale):
    """The scores' scale as a scalar of q's dtype: `scale`, or 1/sqrt(d) (d may be symbolic: then computed as
    the sum of d ones)."""
    d = q.type.shape[-1]
    if scale is not None:
        return e.const(float(scale), q.type.dtype)
    if d.is_number:
        return e.const(float(d) ** -0.5 if d else float("inf"), q.type.dtype)   # d = 0: the forward's 1/sqrt(0)
    ones = e.full(1.0, TensorType(q.type.dtype, (d,)))
    return e("rsqrt", [e("sum", [ones], axis=[0], keepdims=False)])


def _weights(e, q, k, mask, causal, s):
    """P: softmax of the masked scores, and 0 on a row no key may be attended from (only a mask can empty a
    row: causal alone leaves key 0 to every query)."""
    scores = e("mul", [e("matmul", [q, _t(e, k)]), s])
    allowed = None
    if mask is not None and mask.type.dtype == "bool":
        allowed = mask
    elif mask is not None:
        m = mask if mask.type.dtype == scores.type.dtype else e("cast", [mask], dtype=scores.type.dtype)
        scores = e("add", [scores, m])
        allowed = e("ne", [mask, e.const(float("-inf"), mask.type.dtype)])
    if causal:
        tq, tk = scores.type.shape[-2], scores.type.shape[-1]
        rows = e("expand_dims", [e("arange", [], n=tq)], axis=-1)
        tri = e("le", [e("arange", [], n=tk), rows])                        # key j <= query i
        allowed = tri if allowed is None else e("logical_and", [allowed, tri])
    if allowed is not None:
        scores = e("where", [allowed, scores, e.const(float("-inf"), scores.type.dtype)])
    p = e("softmax", [scores], axis=-1)
    if mask is None:
        return p
    one, zero = e.const(1.0, p.type.dtype), e.const(0.0, p.type.dtype)   # counted on the mask's own shape
    count = e("sum", [e("where", [allowed, one, zero])], axis=[-1], keepdims=True)
    return e("where", [e("eq", [count, zero]), zero, p])


def _expand(e, q, k, v, mask, o, do, causal, scale):
    """The formulas of the module doc as IR ops: (dq, dk, dv, ds) over the forward's broadcast batch."""
    s = _scale(e, q, scale)
    p = _weights(e, q, k, mask, causal, s)
    dv = e("matmul", [_t(e, p), do])
    dp = e("matmul", [do, _t(e, v)])
    rowdot = e("sum", [e("mul", [do, o])], axis=[-1], keepdims=True)
    ds = e("mul", [p, e("sub", [dp, rowdot])])
    dq = e("mul", [e("matmul", [ds, k]), s])
    dk = e("mul", [e("matmul", [_t(e, ds), q]), s])
    return dq, dk, dv, ds


@vjp("sdpa")
def _sdpa(e, n, cts):
    (do,), (q, k, v, mask), o = cts, (list(n.inputs) + [None])[:4], n.output
    causal, scale = n.attrs["causal"], n.attrs["scale"]
    if mask is None or mask.type.dtype == "bool":   # one op: flash kernels in Triton, no [Tq, Tk] in memory
        grads = e.node("sdpa_grad", [q, k, v, o, do, mask], causal=causal, scale=scale).outputs
        return [e.sum_to(g, x.type) for g, x in zip(grads, (q, k, v))] + [None]
    dq, dk, dv, ds = _expand(e, q, k, v, mask, o, do, causal, scale)
    return [e.sum_to(dq, q.type), e.sum_to(dk, k.type), e.sum_to(dv, v.type), e.sum_to(ds, mask.type)]


@vjp("sdpa_grad")
def _sdpa_grad(e, n, cts):
    """Second order: the IR form of sdpa_grad (`_expand`) emitted and walked backwards from the cotangents of
    dq, dk, dv (materializes [Tq, Tk] tensors, as torch's double backward does)."""
    q, k, v, o, do, mask = (list(n.inputs) + [None] * 6)[:6]
    sub = Emitter(n)
    grads = _expand(sub, q, k, v, mask, o, do, n.attrs["causal"], n.attrs["scale"])[:3]
    grads = [sub.like(g, out) for g, out in zip(grads, n.outputs)]
    seeds = {g: c for g, c in zip(grads, cts) if c is not None}
    wrt = [q, k, v, o, do]
    emitted, ct, _ = reverse_walk(sub.nodes, seeds, wrt)
    e.nodes += sub.nodes + emitted
    # an input read twice (self-attention's k = v = q) gets its summed cotangent once: the caller sums per position
    return [ct.get(x) if x not in wrt[:i] else None for i, x in enumerate(wrt)] + [None]
