"""Gradients (vector-Jacobian products, as IR) of the contractions of linalg.py (see elementwise_grad.py for
the conventions). matmul follows torch: dA = dC @ B^T and dB = A^T @ dC with the transposes as `transpose`
views, a rank-1 operand gains the axis numpy gives it (then loses it again), and a broadcast batch dim is
summed back (`e.sum_to`). An einsum operand's gradient is one einsum of the cotangent with the other operands;
an index of that operand that no other operand nor the output has (summed out in it alone) is broadcast back
by a ones vector operand, a repeated index (a diagonal, `ii->i`) by an identity matrix operand; a size-1 dim
the equation broadcast is summed back, and a dim where only this operand is larger than 1 broadcast back."""
from __future__ import annotations

from ..registry import vjp
from ..types import TensorType, dims_equal, is_complex, is_float


def _swap_last(e, v):
    """v with its last two axes swapped (a view)."""
    r = v.type.rank
    return e("transpose", [v], perm=list(range(r - 2)) + [r - 1, r - 2])


@vjp("matmul")
def _matmul(e, n, cts):
    (ct,), (a, b) = cts, n.inputs
    big_a = a if a.type.rank > 1 else e("expand_dims", [a], axis=0)       # [1, K]
    big_b = b if b.type.rank > 1 else e("expand_dims", [b], axis=-1)      # [K, 1]
    g = ct
    if b.type.rank == 1:
        g = e("expand_dims", [g], axis=-1)
    if a.type.rank == 1:
        g = e("expand_dims", [g], axis=-2)                                 # g: [..., M, N]
    ga = gb = None
    if is_float(a.type.dtype) or is_complex(a.type.dtype):   # complex: fft_grad.py conjugates the rule
        ga = e("matmul", [g, _swap_last(e, big_b)])                         # [..., M, K]
        if a.type.rank == 1:
            ga = e("squeeze", [ga], axis=-2)
        ga = e.sum_to(ga, a.type)
    if is_float(b.type.dtype) or is_complex(b.type.dtype):
        gb = e("matmul", [_swap_last(e, big_a), g])                         # [..., K, N]
        if b.type.rank == 1:
            gb = e("squeeze", [gb], axis=-1)
        gb = e.sum_to(gb, b.type)
    return [ga, gb]


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@vjp("einsum")
def _einsum(e, n, cts):
    ct = cts[0]
    eq = n.attrs["equation"]
    ins, out = eq.split("->")
    specs = ins.split(",")
    fresh = iter(c for c in _LETTERS if c not in eq)
    sizes: dict[str, object] = {}                 # each index's size (a size-1 dim broadcasts)
    for spec, v in zip(specs, n.inputs):
        for ch, d in zip(spec, v.type.shape):
            if ch not in sizes or dims_equal(sizes[ch], 1):
                sizes[ch] = d
    grads = []
    for k, (spec, x) in enumerate(zip(specs, n.inputs)):
        if not (is_float(x.type.dtype) or is_complex(x.type.dtype)):   # complex: fft_grad.py conjugates the rule
            grads.append(None)
            continue
        operands, terms = [ct], [out]
        for j, (s, v) in enumerate(zip(specs, n.inputs)):
            if j != k:
                operands.append(v)
                terms.append(s)
        present = set("".join(terms))
        target, seen = [], set()
        for ch in spec:
            if ch in seen:                        # a repeated index: the gradient lies on the diagonal
                new = next(fresh)
                operands.append(_eye(e, sizes[ch], ct.type.dtype))
                terms.append(ch + new)
                target.append(new)
                continue
            seen.add(ch)
            if ch not in present:                 # summed out in this operand alone: broadcast back
                operands.append(e.full(1.0, TensorType(ct.type.dtype, (sizes[ch],))))
                terms.append(ch)
                present.add(ch)
            target.append(ch)
        g = e("einsum", operands, equation=",".join(terms) + "->" + "".join(target))
        grads.append(_fit(e, g, x.type))
    return grads


def _fit(e, g, t):
    """g [as the equation sized the operand's indices] to the operand's type `t`: summed over a dim where the
    operand had size 1 and broadcast where only the operand had more than 1."""
    shape = [d if dims_equal(gd, 1) and not dims_equal(d, 1) else gd for gd, d in zip(g.type.shape, t.shape)]
    if any(not dims_equal(a, b) for a, b in zip(shape, g.type.shape)):
        g = e("broadcast_to", [g], shape=shape)
    return e.sum_to(g, t)


def _eye(e, size, dtype):
    i = e("arange", [], n=size, dtype="i64")
    return e("cast", [e("eq", [e("expand_dims", [i], axis=-1), i])], dtype=dtype)
