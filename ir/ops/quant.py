"""Quantization ops: the explicit integer forms the quantization pass (passes/quantize/) introduces.

Scales and zero points are tensor *values* (usually parameters), never attributes, so later passes and the
kernel plan see them. A scale broadcasts against its tensor like numpy (right-aligned), with one extension
for group-wise scales: a scale dim that is a proper divisor of the tensor's dim covers contiguous blocks of
`dim / scale_dim` elements (a weight [K, N] with scale [K/128, N] has one scale per 128 rows of a column).

Rounding rule (one for every op here): `round(v)` is round-half-to-even (np.rint / torch.round), then the
result saturates to the integer range [qmin, qmax] (qmin = -2^(bits-1), or -qmax when `narrow`; qmax =
2^(bits-1) - 1); NaN quantizes to 0. Integer contractions (qmatmul, qconv*) take 8-bit operands and
accumulate exactly into int32 (wrapping only past 2^31, i.e. never for K < 131072 with i8 operands).

Why the torch lowerings are bit-exact with the NumPy references on the integer part:
- quantize: x / scale is one IEEE division in the value's float dtype in both (correctly rounded), then
  the same round-half-even, the same clamp and the same NaN rule;
- qmatmul / qconv: torch has no int8 GEMM/conv on CPU (and CUDA integer matmul is limited), so the
  lowering computes in float64 on the exact integer values: every product of two 8-bit integers is at most
  2^14 and every partial sum at most K * 2^14 < 2^53, so each float64 operation is exact whatever the
  summation order or FMA use; the result is cast to int64 and then to int32 (the reference accumulates in
  int64 and casts the same way);
- pack_bits / unpack_bits are bit operations on uint8 in both.
"""
from __future__ import annotations

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import register
from ..types import TensorType, dims_equal, fmt_dim, is_float, is_int
from .conv import SPATIAL_NAMES, conv_infer, conv_ref, divides
from .elementwise import torch_dtype
from .linalg import matmul_infer

INT8 = ("i8", "u8")


# ---- helpers ------------------------------------------------------------------------------------
def qrange(bits: int, narrow: bool = False) -> tuple[int, int]:
    qmax = 2 ** (int(bits) - 1) - 1
    return (-qmax if narrow else -qmax - 1), qmax


def _check_bits(op, attrs):
    bits = attrs["bits"]
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 8:
        raise ShapeError(f"{op}: bits must be an integer from 2 to 8, got {bits!r}")
    attrs["bits"] = int(bits)


def _check_scale(op: str, x: TensorType, s: TensorType | None, what: str):
    """`s` broadcasts against `x` right-aligned; a dim may also be a proper divisor of x's (block scales)."""
    if s is None:
        return
    if s.rank > x.rank:
        raise ShapeError(f"{op}: {what} {s} has a higher rank than the tensor {x}")
    for i in range(1, s.rank + 1):
        ds, dx = s.shape[-i], x.shape[-i]
        if ds == 1 or dims_equal(ds, dx):
            continue
        if ds.is_Integer and divides(int(ds), dx) and (not dx.is_Integer or int(dx) % int(ds) == 0):
            continue
        raise ShapeError(f"{op}: {what} {s} does not fit the tensor {x}: dim {-i} is {fmt_dim(ds)} vs "
                         f"{fmt_dim(dx)} (a scale dim must be 1, equal, or divide the tensor's dim)")


def expand_np(s, shape):
    """A scale/zero-point array repeated over its blocks so that numpy broadcasting applies."""
    s = np.asarray(s)
    for i in range(1, s.ndim + 1):
        ds, dx = s.shape[-i], shape[-i]
        if ds not in (1, dx):
            s = np.repeat(s, dx // ds, axis=s.ndim - i)
    return s


def expand_torch(s, shape):
    for i in range(1, s.ndim + 1):
        ds, dx = s.shape[-i], shape[-i]
        if ds not in (1, dx):
            s = s.repeat_interleave(dx // ds, dim=s.ndim - i)
    return s


def _check_zero_point(op: str, x: TensorType, z: TensorType | None):
    """An optional integer zero point, laid out like a scale."""
    if z is None:
        return
    if not is_int(z.dtype):
        raise ShapeError(f"{op}: zero point must be an integer tensor, got {z}")
    _check_scale(op, x, z, "zero point")


# ---- quantize / dequantize / fake_quant ---------------------------------------------------------
def _quantize_infer(types, attrs):
    x, s, z = (list(types) + [None])[:3]
    _check_bits("quantize", attrs)
    if not is_float(x.dtype) or not is_float(s.dtype):
        raise ShapeError(f"quantize: expects a float tensor and a float scale, got {x} and {s}")
    _check_scale("quantize", x, s, "scale")
    _check_zero_point("quantize", x, z)
    return TensorType("i8", x.shape)


def _quantize_np(x, scale, zero_point, bits, narrow):
    lo, hi = qrange(bits, narrow)
    v = np.rint(x / expand_np(scale, x.shape).astype(x.dtype, copy=False))
    if zero_point is not None:
        v = v + expand_np(zero_point, x.shape)
    v = np.where(np.isnan(v), 0, np.clip(v, lo, hi))
    return v.astype(np.int8)


def _quantize_torch(T, x, scale, zero_point=None, *, bits, narrow):
    lo, hi = qrange(bits, narrow)
    v = T.round(x / expand_torch(scale, x.shape).to(x.dtype))
    if zero_point is not None:
        v = v + expand_torch(zero_point, x.shape).to(v.dtype)
    v = T.where(T.isnan(v), T.zeros_like(v), v.clamp(lo, hi))
    return v.to(T.int8)


register("quantize", "x, scale, zero_point?", attrs={"bits": 8, "narrow": False}, infer=_quantize_infer,
         ref=lambda x, scale, zero_point=None, *, bits, narrow: _quantize_np(x, scale, zero_point, bits, narrow),
         torch=_quantize_torch, triton=lambda x, scale, zero_point=None, *, bits, narrow:
         f"_quantize({x}, {scale}, {zero_point or 0.0}, {qrange(bits, narrow)[0]}.0, {qrange(bits, narrow)[1]}.0)",
         doc="q = saturate(round_half_even(x / scale) + zero_point) to [qmin, qmax] of `bits` (narrow: qmin = -qmax); "
             "NaN -> 0; i8 result; scale/zero_point broadcast, or cover blocks (group-wise)")


def _dequantize_infer(types, attrs):
    q, s, z = (list(types) + [None])[:3]
    if not is_int(q.dtype) or not is_float(s.dtype):
        raise ShapeError(f"dequantize: expects an integer tensor and a float scale, got {q} and {s}")
    if not is_float(attrs["dtype"]):
        raise ShapeError(f"dequantize: dtype must be a float dtype, got {attrs['dtype']!r}")
    _check_scale("dequantize", q, s, "scale")
    _check_zero_point("dequantize", q, z)
    return TensorType(attrs["dtype"], q.shape)


def _dequantize_np(q, scale, zero_point=None, *, dtype):
    from ..types import DTYPES
    ft = DTYPES[dtype]
    v = q.astype(np.int64)
    if zero_point is not None:
        v = v - expand_np(zero_point, q.shape).astype(np.int64)
    return v.astype(ft) * expand_np(scale, q.shape).astype(ft, copy=False)


def _dequantize_torch(T, q, scale, zero_point=None, *, dtype):
    ft = torch_dtype(T, dtype) if dtype != "bf16" else T.float32
    v = q.to(T.int64)
    if zero_point is not None:
        v = v - expand_torch(zero_point, q.shape).to(T.int64)
    return v.to(ft) * expand_torch(scale, q.shape).to(ft)


register("dequantize", "q, scale, zero_point?", attrs={"dtype": "f32"}, infer=_dequantize_infer,
         ref=_dequantize_np, torch=_dequantize_torch,
         triton=lambda q, scale, zero_point=None, *, dtype: f"(({q}) * 1.0) * ({scale})" if zero_point is None else
         f"(({q}) - ({zero_point})).to(tl.float32) * ({scale})",   # the difference in integers, as the reference
         doc="x = (q - zero_point) * scale in `dtype` (the integer difference is exact in int64, then one "
             "conversion and one multiply); scale/zero_point broadcast or cover blocks like quantize's")


def _fake_quant_infer(types, attrs):
    _quantize_infer(types, attrs)
    return types[0]


def _fake_quant_np(x, scale, zero_point=None, *, bits, narrow):
    q = _quantize_np(x, scale, zero_point, bits, narrow)
    v = q.astype(np.int64)
    if zero_point is not None:
        v = v - expand_np(zero_point, x.shape).astype(np.int64)
    return v.astype(x.dtype) * expand_np(scale, x.shape).astype(x.dtype, copy=False)


def _fake_quant_torch(T, x, scale, zero_point=None, *, bits, narrow):
    """quantize-dequantize forward; straight-through backward, clipped to the representable range (the
    gradient is zero where x saturates), none to the scale. `x - x.detach()` is exactly 0 in value, so the
    forward result is the quantized value bit for bit while autograd sees the identity where it is kept."""
    lo, hi = qrange(bits, narrow)
    s = expand_torch(scale, x.shape).to(x.dtype).detach()
    v = T.round(x.detach() / s)
    z = None
    if zero_point is not None:
        z = expand_torch(zero_point, x.shape).to(v.dtype)
        v = v + z
    inside = (v >= lo) & (v <= hi)
    q = T.where(T.isnan(v), T.zeros_like(v), v.clamp(lo, hi))
    if z is not None:
        q = q - z
    return q * s + T.where(inside, x - x.detach(), T.zeros_like(x))


register("fake_quant", "x, scale, zero_point?", attrs={"bits": 8, "narrow": False}, infer=_fake_quant_infer,
         ref=_fake_quant_np, torch=_fake_quant_torch, triton=lambda x, scale, zero_point=None, *, bits, narrow:
         f"((_quantize({x}, {scale}, {zero_point or 0.0}, {qrange(bits, narrow)[0]}.0, {qrange(bits, narrow)[1]}.0)"
         f" - ({zero_point or 0}) * 1.0) * ({scale}))",
         doc="dequantize(quantize(x)) in x's float dtype (quantization-aware training); the torch lowering's "
             "gradient is straight-through inside the representable range and zero where x saturates")


# ---- scales computed in the graph (dynamic activation scales) ------------------------------------
def _axes(axis, rank):
    from .common import norm_axes
    return norm_axes(axis, rank)


def _dynamic_scale_infer(types, attrs):
    x, = types
    _check_bits("dynamic_scale", attrs)
    if not is_float(x.dtype):
        raise ShapeError(f"dynamic_scale: expects a float tensor, got {x}")
    if attrs["method"] not in ("absmax", "absmean"):
        raise ShapeError(f"dynamic_scale: method must be 'absmax' or 'absmean', got {attrs['method']!r}")
    axes = _axes(attrs["axis"], x.rank)
    return TensorType(x.dtype, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))


def _dynamic_scale_np(x, *, axis, bits, method):
    axes = _axes(axis, x.ndim)
    a = np.abs(x)
    if method == "absmean":
        s = np.mean(a, axis=axes, keepdims=True, dtype=x.dtype)
    else:
        s = np.max(a, axis=axes, keepdims=True, initial=0) / np.asarray(qrange(bits)[1], dtype=x.dtype)
    return np.where(s > 0, s, np.ones_like(s)).astype(x.dtype, copy=False)


def _dims(axis, ndim):
    """norm_axes for the torch lowering, with no imports (it is copied into generated torch source)."""
    if axis is None:
        return list(range(ndim))
    return sorted({a % ndim for a in (axis if isinstance(axis, (list, tuple)) else [axis])})


def _dynamic_scale_torch(T, x, *, axis, bits, method):
    axes = _dims(axis, x.ndim)
    a = x.abs()
    if method == "absmean":
        s = a.mean(dim=axes, keepdim=True) if axes else a
    else:
        if axes and a.numel() == 0:   # the max over an empty axis is 0 (NumPy's initial=0); torch's amax refuses
            s = a.new_zeros([1 if i in axes else d for i, d in enumerate(a.shape)])
        else:
            s = (a.amax(dim=axes, keepdim=True) if axes else a) / qrange(bits)[1]
    return T.where(s > 0, s, T.ones_like(s))


register("dynamic_scale", "x", kind="reduce", attrs={"axis": -1, "bits": 8, "method": "absmax"},
         infer=_dynamic_scale_infer, ref=_dynamic_scale_np, torch=_dynamic_scale_torch,
         doc="a symmetric scale computed from the data, keepdims over `axis` (-1: per token; none: per tensor): "
             "absmax: max|x| / qmax (bit-exact: max and one division); absmean: mean|x| (XNOR-net's scale, "
             "summation order may differ between backends); 0 becomes 1")


def _sign_quant_infer(types, attrs):
    x, = types
    if not is_float(x.dtype):
        raise ShapeError(f"sign_quant: expects a float tensor, got {x}")
    return TensorType("i8", x.shape)


register("sign_quant", "x", infer=_sign_quant_infer,
         ref=lambda x: np.where(x >= 0, 1, -1).astype(np.int8),
         torch=lambda T, x: T.where(x >= 0, 1, -1).to(T.int8), triton=lambda x: f"tl.where({x} >= 0, 1.0, -1.0)",
         doc="binary activation: +1 where x >= 0, else -1 (NaN -> -1), as i8")


# ---- integer contractions -------------------------------------------------------------------------
def _qmatmul_infer(types, attrs):
    a, b = types
    if a.dtype not in INT8 or b.dtype not in INT8:
        raise ShapeError(f"qmatmul: expects 8-bit integer operands (i8/u8), got {a} and {b}")
    t = matmul_infer([a.with_dtype("f32"), b.with_dtype("f32")], attrs)
    return t.with_dtype("i32")


def _qmatmul_np(a, b):
    return np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(np.int32)


def _qmatmul_torch(T, a, b):
    return T.matmul(a.to(T.float64), b.to(T.float64)).to(T.int64).to(T.int32)


register("qmatmul", "a, b", kind="contraction", infer=_qmatmul_infer, ref=_qmatmul_np, torch=_qmatmul_torch,
         flops=lambda i, o, attrs: 2 * o[0].numel * i[0].shape[-1],
         doc="integer matmul (numpy semantics): 8-bit operands, exact int32 accumulation")


def _qconv_infer(nd):
    inner = conv_infer(f"qconv{nd}d", nd)

    def infer(types, attrs):
        x, w = types
        if x.dtype not in INT8 or w.dtype not in INT8:
            raise ShapeError(f"qconv{nd}d: expects 8-bit integer input and weight (i8/u8), got {x} and {w}")
        t = inner([x.with_dtype("f32"), w.with_dtype("f32"), None], attrs)
        return t.with_dtype("i32")
    return infer


def _qconv_np(x, w, *, stride, padding, dilation, groups):
    out = conv_ref(x.astype(np.int64), w.astype(np.int64), None, stride, padding, dilation, groups)
    return out.astype(np.int32)


def _qconv_torch(nd):
    def lower(T, x, w, *, stride, padding, dilation, groups):
        fn = getattr(T.nn.functional, f"conv{nd}d")
        y = fn(x.to(T.float64), w.to(T.float64), None, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return y.to(T.int64).to(T.int32)
    return lower


for _nd in (1, 2, 3):
    register(f"qconv{_nd}d", "x, w", kind="contraction", attrs={"stride": 1, "padding": 0, "dilation": 1, "groups": 1},
             infer=_qconv_infer(_nd), ref=_qconv_np, torch=_qconv_torch(_nd),
             flops=lambda i, o, attrs: 2 * o[0].numel * i[1].shape[1] * sympy.prod(i[1].shape[2:]),
             doc=f"integer conv{_nd}d (x [N, C_in, {SPATIAL_NAMES[_nd]}], w [C_out, C_in/groups, *kernel]): "
                 "8-bit operands, zero padding, exact int32 accumulation")


# ---- sub-byte packing ----------------------------------------------------------------------------
PACK_BITS = (1, 2, 4)


def _pack_attrs(op, t, attrs):
    from ..types import normalize_axis
    if t.rank == 0:
        raise ShapeError(f"{op}: expects a tensor of rank >= 1, got {t}")
    if attrs["bits"] not in PACK_BITS:
        raise ShapeError(f"{op}: bits must be one of {', '.join(map(str, PACK_BITS))}, got {attrs['bits']!r}")
    return normalize_axis(attrs["axis"], t.rank), 8 // attrs["bits"]


def _pack_infer(types, attrs):
    q, = types
    if q.dtype != "i8":
        raise ShapeError(f"pack_bits: expects an i8 tensor, got {q}")
    ax, per = _pack_attrs("pack_bits", q, attrs)
    d = q.shape[ax]
    if not divides(per, d):
        raise ShapeError(f"pack_bits: dim {ax} of {q} is {fmt_dim(d)}, not a multiple of {per} ({per} values per byte)")
    return TensorType("u8", q.shape[:ax] + (sympy.sympify(d) / per,) + q.shape[ax + 1:])


def _unpack_infer(types, attrs):
    p, = types
    if p.dtype != "u8":
        raise ShapeError(f"unpack_bits: expects a u8 tensor, got {p}")
    ax, per = _pack_attrs("unpack_bits", p, attrs)
    return TensorType("i8", p.shape[:ax] + (p.shape[ax] * per,) + p.shape[ax + 1:])


def _fields(q, bits):
    """The `bits`-bit field each value is stored as: its low bits (two's complement); 1 bit stores q > 0."""
    return (q > 0) * 1 if bits == 1 else q & ((1 << bits) - 1)


def _values(f, bits):
    """The inverse of _fields: sign-extended fields; a 1-bit field is -1 or +1."""
    return 2 * f - 1 if bits == 1 else f - ((f >> (bits - 1)) << bits)


def _pack_np(q, *, bits=4, axis):
    per = 8 // bits
    f = np.moveaxis(_fields(q.astype(np.int16), bits), axis, -1)
    out = sum(f[..., i::per] << (bits * i) for i in range(per))
    return np.moveaxis(out.astype(np.uint8), -1, axis)


def _unpack_np(p, *, bits=4, axis):
    per = 8 // bits
    p = np.moveaxis(p.astype(np.int16), axis, -1)
    f = np.stack([(p >> (bits * i)) & ((1 << bits) - 1) for i in range(per)], axis=-1)
    out = _values(f.reshape(*p.shape[:-1], p.shape[-1] * per), bits).astype(np.int8)
    return np.moveaxis(out, -1, axis)


def _pack_torch(T, q, *, bits, axis):
    per = 8 // bits
    f = _fields(q.to(T.int16), bits).movedim(axis, -1)
    out = sum(f[..., i::per] << (bits * i) for i in range(per))
    return out.to(T.uint8).movedim(-1, axis)


def _unpack_torch(T, p, *, bits, axis):
    per = 8 // bits
    p = p.to(T.int16).movedim(axis, -1)
    f = T.stack([(p >> (bits * i)) & ((1 << bits) - 1) for i in range(per)], dim=-1)
    out = _values(f.reshape(*p.shape[:-1], p.shape[-1] * per), bits).to(T.int8)
    return out.movedim(-1, axis)


register("pack_bits", "q", kind="movement", attrs={"bits": 4, "axis": -1}, infer=_pack_infer, ref=_pack_np,
         torch=_pack_torch, flops=lambda i, o, attrs: 0,
         doc="8/bits signed values per byte along `axis`, the first in the lowest bits: byte j = OR_i field(q[per*j + i]) "
             "<< bits*i; a field is the value's low `bits` bits (two's complement), and for bits=1 the sign (q > 0: "
             "values +-1, as binary weights)")
register("unpack_bits", "p", kind="movement", attrs={"bits": 4, "axis": -1}, infer=_unpack_infer, ref=_unpack_np,
         torch=_unpack_torch, flops=lambda i, o, attrs: 0,
         doc="the inverse of pack_bits: each byte gives 8/bits sign-extended values (lowest bits first) as i8; "
             "1-bit fields are -1 / +1")
