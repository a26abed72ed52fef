"""Quantized ops: quantize, dequantize, fake_quant, qmatmul, sub-byte pack_bits / unpack_bits. (The ops only the
quantization and sparsity passes introduce -- qconv, nm_matmul, bsr_matmul -- are config.PASS_ONLY_OPS.)"""
from __future__ import annotations

from ..values import Arg, Call, Spec, lit, number


# ---- quantized ops: integer results must agree bit for bit, so they start from exact float values and
# power-of-two scales (the division is exact: no backend's evaluation order can move a value across a rounding
# boundary) -------------------------------------------------------------------------------------------------
def _quantized(g, ctx, pred=lambda v: True) -> Arg | None:
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32" and pred(v), exact=True)
    if x is None:
        return None
    scale = g.ch.choice([0.125, 0.25, 0.5, 1.0])
    bits = g.ch.choice([8, 8, 4])
    return Arg(f"quantize({x.name}, {lit(scale)}, bits={bits})", x.type.with_dtype("i8"), True, 128.0)


def s_quantize(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32", exact=True)
    if x is None:
        return None
    attrs = {"bits": g.ch.choice([8, 4, 2])} if g.ch.flag(0.5) else {}
    if g.ch.flag(0.3):
        attrs["narrow"] = True
    return Call([Arg.of(x), number(g.ch.choice([0.125, 0.5, 2.0]))], attrs, exact=True, bound=128.0)


def s_dequantize(g, ctx, op):
    q = _quantized(g, ctx)
    if q is None:
        return None
    return Call([q, number(g.ch.choice([0.25, 0.5]))], {}, exact=True, bound=64.0)


def s_fake_quant(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32", exact=True)
    if x is None:
        return None
    return Call([Arg.of(x), number(g.ch.choice([0.125, 0.5]))], {"bits": g.ch.choice([8, 4])}, exact=True,
                bound=x.bound + 1)


def s_qmatmul(g, ctx, op):
    a = _quantized(g, ctx, lambda v: v.type.rank >= 1)
    if a is None:
        return None
    n = g.rand_dim(ctx, allow_sym=False)
    w = g.new_tensor(ctx, "f32", (a.type.shape[-1], n))
    if w is None:
        return None
    ctx.pool.append(w)
    scale = g.ch.choice([0.25, 0.5])
    b = Arg(f"quantize({w.name}, {lit(scale)})", w.type.with_dtype("i8"), True, 128.0)
    return Call([a, b], {}, exact=True, bound=float(128 * 128 * 5))  # K <= 5 (small dims)


def _packable(g, ctx, bits):
    per = 8 // bits
    return _quantized(g, ctx, lambda v: v.type.rank >= 1 and v.type.shape[-1].is_Integer and int(v.type.shape[-1]) % per == 0)


def s_pack_bits(g, ctx, op):
    bits = g.ch.choice([1, 2, 4])
    q = _packable(g, ctx, bits)
    if q is None:
        return None
    return Call([q], {"bits": bits}, exact=True, bound=255.0)


def s_unpack_bits(g, ctx, op):
    bits = g.ch.choice([1, 2, 4])
    q = _packable(g, ctx, bits)
    if q is None:
        return None
    packed = q.type.with_shape(q.type.shape[:-1] + (q.type.shape[-1] / (8 // bits),)).with_dtype("u8")
    return Call([Arg(f"pack_bits({q.expr}, bits={bits})", packed, True, 255.0)], {"bits": bits}, exact=True,
                bound=float(2 ** (bits - 1)))


SPECS: dict[str, Spec] = {
    "quantize": Spec(s_quantize), "dequantize": Spec(s_dequantize), "fake_quant": Spec(s_fake_quant),
    "qmatmul": Spec(s_qmatmul), "pack_bits": Spec(s_pack_bits), "unpack_bits": Spec(s_unpack_bits),
}
