"""Contractions: matmul (numpy semantics, batched with broadcasting) and einsum."""
from __future__ import annotations

import re

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import REQUIRED, document, get, register
from ..types import TensorType, broadcast_shapes, dims_equal, fmt_dim, numel, promote


def _result(*arrays):
    from .elementwise import result_dtype
    return result_dtype(*arrays)


def matmul_infer(types, attrs):
    a, b = types
    if a.rank == 0 or b.rank == 0:
        raise ShapeError(f"matmul needs tensors of rank >= 1, got {a} and {b}")
    ash = a.shape if a.rank > 1 else (1,) + a.shape
    bsh = b.shape if b.rank > 1 else b.shape + (1,)
    if not dims_equal(ash[-1], bsh[-2]):
        raise ShapeError(f"matmul: contraction dims differ: {a} @ {b} ({fmt_dim(ash[-1])} vs {fmt_dim(bsh[-2])})")
    try:
        batch = broadcast_shapes(ash[:-2], bsh[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: batch dims of {a} and {b} do not broadcast") from None
    shape = batch + ((ash[-2],) if a.rank > 1 else ()) + ((bsh[-1],) if b.rank > 1 else ())
    return TensorType(promote(a.dtype, b.dtype), shape)


def _matmul_flops(i, o, attrs):
    a = i[0]
    return 2 * o[0].numel * a.shape[-1]


register("matmul", "a, b", kind="contraction", infer=matmul_infer, flops=_matmul_flops,
         ref=lambda a, b: np.asarray(np.matmul(a, b)).astype(_result(a, b), copy=False),
         torch=lambda T, a, b: T.matmul(*_common(T, (a, b))))

_EQ = re.compile(r"^([a-zA-Z]*(?:,[a-zA-Z]*)*)->([a-zA-Z]*)$")


def _einsum_infer(types, attrs):
    eq = attrs["equation"].replace(" ", "")
    m = _EQ.match(eq)
    if not m:
        raise ShapeError(f"einsum: bad equation '{attrs['equation']}' (expected like 'ij,jk->ik')")
    ins = m.group(1).split(",")
    if len(ins) != len(types):
        raise ShapeError(f"einsum: equation '{eq}' names {len(ins)} operands, got {len(types)}")
    sizes: dict[str, sympy.Expr] = {}
    for spec, t in zip(ins, types):
        if len(spec) != t.rank:
            raise ShapeError(f"einsum: operand {t} has rank {t.rank} but '{spec}' names {len(spec)} indices")
        for ch, d in zip(spec, t.shape):
            if ch in sizes and not dims_equal(sizes[ch], d) and d != 1 and sizes[ch] != 1:
                shown = ", ".join(str(x) for x in types)
                raise ShapeError(f"einsum '{eq}': index '{ch}' has size {fmt_dim(sizes[ch])} and {fmt_dim(d)} (operands {shown})")
            if ch not in sizes or sizes[ch] == 1:
                sizes[ch] = d
    for ch in m.group(2):
        if ch not in sizes:
            raise ShapeError(f"einsum: output index '{ch}' does not appear in any operand")
    attrs["equation"] = eq
    dtype = types[0].dtype
    for t in types[1:]:
        dtype = promote(dtype, t.dtype)
    return TensorType(dtype, tuple(sizes[ch] for ch in m.group(2)))


def _einsum_flops(i, o, attrs):
    eq = attrs["equation"]
    ins = eq.split("->")[0].split(",")
    sizes = {}
    for spec, t in zip(ins, i):
        for ch, d in zip(spec, t.shape):
            sizes[ch] = d if sizes.get(ch, 1) == 1 else sizes[ch]
    # one multiply-add per point of the full index space per extra operand
    return (2 * (len(i) - 1) if len(i) > 1 else 1) * numel(sizes.values())


register("einsum", "*xs", kind="contraction", attrs={"equation": REQUIRED}, infer=_einsum_infer, flops=_einsum_flops,
         ref=lambda *xs, equation: np.asarray(np.einsum(equation, *xs, optimize=True)).astype(_result(*xs), copy=False),
         torch=lambda T, *xs, equation: T.einsum(equation, *_common(T, xs)))


def _common(T, xs):
    from .elementwise import torch_common
    return torch_common(T, *xs)


# One-line docs of the ops above, for `pnet ops NAME` and the op reference in docs/language.md.
_DOCS = {
    "matmul": "a @ b with numpy's rules: batch dims broadcast, a rank-1 operand gains (then loses) an axis",
    "einsum": "Einstein summation over the tensors in `xs`, as numpy: einsum([a, b], equation=\"bij,bjk->bik\")",
}
document(_DOCS)
