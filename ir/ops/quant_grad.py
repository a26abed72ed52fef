"""Gradients (vector-Jacobian products, as IR) of the quantization ops of quant.py (see elementwise_grad.py for
the conventions). A scale (or zero point) broadcasts against its tensor or covers blocks of it (group-wise
scales); the rules see the blocks by reshaping the tensor's dim `d` into [scale_dim, d / scale_dim], where
ordinary broadcasting applies and a sum reduces a block.

- dequantize: none to the integer q and zero point; the scale gets ct * (q - zero_point), summed over what it
  covers.
- fake_quant: the straight-through estimator of torch's fake_quantize_per_tensor_affine (and of this op's own
  torch lowering): the gradient passes where round(x / scale) + zero_point lies inside [qmin, qmax], zero where
  it saturates (and at NaN). The scale gets none: the lowering detaches it (a fixed, calibrated scale); a
  learned step size (LSQ, torch's _fake_quantize_learnable_*) is a different op.
- quantize, qmatmul, qconv*: integer outputs, nothing to differentiate (tests/test_autodiff.py NEVER_FLOAT).
- sign_quant: an i8 output too, declared (no_grad) so that the reason is stated: binary networks train it
  with a straight-through estimator, which a file writes as straight_through(...).
dynamic_scale is a reduction's gradient (reduce_grad.py); pack_bits / unpack_bits are movement's."""
from __future__ import annotations

from ..registry import no_grad, vjp
from ..types import TensorType, dims_equal
from .quant import qrange


def _blocked(x: TensorType, s: TensorType):
    """(x's shape, s's shape) with each dim that s covers in blocks split as [s_dim, x_dim / s_dim] and
    [s_dim, 1]: s then broadcasts against x (right-aligned) like numpy."""
    xs, ss = [], []
    for i in range(1, x.rank + 1):
        dx = x.shape[-i]
        ds = s.shape[-i] if i <= s.rank else None
        if ds is not None and not dims_equal(ds, 1) and not dims_equal(ds, dx):
            xs[:0], ss[:0] = [ds, dx / ds], [ds, 1]
        else:
            xs[:0] = [dx]
            if ds is not None:
                ss[:0] = [ds]
    return xs, ss


def _as(e, v, shape, dtype):
    """v in `dtype`, reshaped to `shape` where that differs."""
    v = e.like(v, v.type.with_dtype(dtype))
    return v if tuple(shape) == tuple(v.type.shape) else e("reshape", [v], shape=list(shape))


@vjp("dequantize")
def _dequantize(e, n, cts):
    (ct,), (q, scale, zp) = cts, (list(n.inputs) + [None])[:3]
    dt = ct.type.dtype
    centered = e("dequantize", [q, e.const(1.0, dt), zp], dtype=dt)
    xs, ss = _blocked(q.type, scale.type)
    g = _as(e, e("mul", [ct, centered]), xs, dt)
    g = e.sum_to(g, TensorType(dt, tuple(ss)))
    return [None, _as(e, g, scale.type.shape, dt), None]


@vjp("fake_quant")
def _fake_quant(e, n, cts):
    (ct,), (x, scale, zp) = cts, (list(n.inputs) + [None])[:3]
    dt = x.type.dtype
    lo, hi = qrange(n.attrs["bits"], n.attrs["narrow"])
    xs, ss = _blocked(x.type, scale.type)
    v = e("round", [e("div", [_as(e, x, xs, dt), _as(e, scale, ss, dt)])])
    if zp is not None:
        zx, zs = _blocked(x.type, zp.type)
        z = _as(e, zp, zs, dt)
        if [str(d) for d in zx] != [str(d) for d in xs]:   # blocks unlike the scale's: spelled out in full
            z = e("reshape", [e("broadcast_to", [z], shape=zx)], shape=xs)
        v = e("add", [v, z])
    inside = e("logical_and", [e("ge", [v, e.const(float(lo), dt)]), e("le", [v, e.const(float(hi), dt)])])
    if tuple(inside.type.shape) != tuple(x.type.shape):
        inside = e("reshape", [inside], shape=list(x.type.shape))
    return [e("where", [inside, ct, e.const(0.0, ct.type.dtype)]), None, None]


no_grad("its output is an integer (+1 / -1 as i8); binary networks train through it with a straight-through "
        "estimator: write straight_through(...) with the surrogate", "sign_quant")
