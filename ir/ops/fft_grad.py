"""Gradients of fft.py's complex ops and FFTs, in torch's convention for complex values (the conjugate Wirtinger
derivative: a real loss L of z = x + i y has the cotangent dL/dx + i dL/dy; a real input of a complex op gets the
real part of its complex cotangent, which `Emitter.like` takes). For a holomorphic op the rule is ct * conj(f'(z));
the real rules of mul, div, matmul and einsum compute ct * f'(z) with real coefficients, so their complex form is
conj(rule(conj(ct))) (`_conjugated`).

complex(re, im): real(ct), imag(ct); real: complex(ct, 0); imag: complex(0, ct); conj: conj(ct); abs: ct z / |z|
(0 at 0); angle: i ct z / |z|^2 (0 at 0). The transforms are linear: a transform's adjoint is its inverse with the
dual scaling (backward <-> forward, ortho itself): fft -> ifft, ifft -> fft (2-D alike); rfft -> irfft of ct with
the doubled frequencies halved (so it is real(ifft(zero-padded ct))); irfft -> rfft of ct with the frequencies that
stand for two (0 < k, 2k != n) doubled, cut or zero-padded to the input's length (torch's fft_c2r_backward)."""
from __future__ import annotations

from ...errors import PnetError
from ..registry import OPS, vjp
from ..types import dims_equal, is_complex, real_dtype
from .fft import DUAL_NORM


def _c(e, value, dtype):
    return e.const(float(value), dtype)


def _conjugated(rule):
    def complex_rule(e, n, cts):
        if not is_complex(n.outputs[0].type.dtype):
            return rule(e, n, cts)
        flipped = [None if c is None else e("conj", [c]) for c in cts]
        grads = rule(e, n, flipped)
        return [g if g is None or not is_complex(g.type.dtype) else e("conj", [g]) for g in grads]
    return complex_rule


for _name in ("mul", "div", "matmul", "einsum"):
    OPS[_name].vjp = _conjugated(OPS[_name].vjp)

_real_abs = OPS["abs"].vjp


@vjp("abs")
def _abs(e, n, cts):
    z = n.inputs[0]
    if not is_complex(z.type.dtype):
        return _real_abs(e, n, cts)
    ct, r = cts[0], n.output
    zero = _c(e, 0, r.type.dtype)
    scale = e("where", [e("eq", [r, zero]), zero, e("div", [ct, r])])        # ct / |z|, 0 at 0 (sgn(0) = 0)
    return [e("mul", [scale, z])]


@vjp("complex")
def _complex(e, n, cts):
    re, im = n.inputs
    return [e.sum_to(e("real", [cts[0]]), re.type), e.sum_to(e("imag", [cts[0]]), im.type)]


@vjp("real")
def _real(e, n, cts):
    return [e("complex", [cts[0], _c(e, 0, cts[0].type.dtype)])]


@vjp("imag")
def _imag(e, n, cts):
    return [e("complex", [_c(e, 0, cts[0].type.dtype), cts[0]])]


@vjp("conj")
def _conj(e, n, cts):
    return [e("conj", [cts[0]])]


@vjp("angle")
def _angle(e, n, cts):
    z, ct = n.inputs[0], cts[0]
    x, y = e("real", [z]), e("imag", [z])
    r2 = e("add", [e("square", [x]), e("square", [y])])
    zero = _c(e, 0, r2.type.dtype)
    s = e("where", [e("eq", [r2, zero]), zero, e("div", [ct, r2])])
    return [e("complex", [e("neg", [e("mul", [s, y])]), e("mul", [s, x])])]        # i z ct / |z|^2


def _dual(attrs, **more):
    out = {k: v for k, v in attrs.items() if k != "n"}
    out["norm"] = DUAL_NORM[attrs["norm"]]
    out.update(more)
    return out


def _c2c(inverse):
    def rule(e, n, cts):
        return [e(inverse, [cts[0]], **_dual(n.attrs))]
    return rule


for _op, _inv in (("fft", "ifft"), ("ifft", "fft"), ("fft2", "ifft2"), ("ifft2", "fft2")):
    vjp(_op)(_c2c(_inv))


def _last_axis(n, t):
    a = n.attrs["axes"][-1] if "axes" in n.attrs else n.attrs["axis"]
    return a % t.rank


def _pair_weights(e, h, length, axis, rank, dtype, paired):
    """[h, 1, ...] along `axis` of a rank-`rank` tensor: 1 at frequency 0 and at 2k == length (the ones a real
    signal of `length` points holds once), `paired` at the rest (held twice: k and length - k)."""
    k = e("arange", [], n=h, dtype=dtype)
    single = e("logical_or", [e("eq", [k, _c(e, 0, dtype)]),
                              e("eq", [e("mul", [k, _c(e, 2, dtype)]), e.const(length, dtype)])])
    w = e("where", [single, _c(e, 1, dtype), _c(e, paired, dtype)])
    for _ in range(rank - 1 - axis):
        w = e("expand_dims", [w], axis=-1)
    return w


def _r2c(inverse):
    """rfft / rfft2: real(ifft(ct zero-padded to the input's length)) = irfft(ct with the paired bins halved)."""
    def rule(e, n, cts):
        x, ct = n.inputs[0], cts[0]
        axis = _last_axis(n, x.type)
        length = x.type.shape[axis]
        w = _pair_weights(e, ct.type.shape[axis], length, axis, ct.type.rank, real_dtype(ct.type.dtype), 0.5)
        return [e(inverse, [e("mul", [ct, w])], **_dual(n.attrs, n=length))]
    return rule


def _c2r(forward):
    """irfft / irfft2: rfft(ct) with the paired bins doubled, cut or zero-padded to the input's length."""
    def rule(e, n, cts):
        c, ct = n.inputs[0], cts[0]
        axis = _last_axis(n, c.type)
        length = ct.type.shape[axis]
        g = e(forward, [ct], **_dual(n.attrs))
        h, m = g.type.shape[axis], c.type.shape[axis]
        g = e("mul", [g, _pair_weights(e, h, length, axis, g.type.rank, ct.type.dtype, 2)])
        if not dims_equal(h, m):
            if not (h.is_Integer and m.is_Integer):
                raise PnetError(f"the gradient of {n.op} needs the input's length along axis {axis} ({m}) and "
                                f"n // 2 + 1 ({h}) known", n.where)
            h, m = int(h), int(m)
            if m < h:
                g = e("slice", [g], slices=[[0, None, 1]] * axis + [[0, m, 1]])
            else:
                g = e("pad", [g], pads=[[0, m - h]] + [[0, 0]] * (g.type.rank - 1 - axis))
        return [g]
    return rule


vjp("rfft")(_r2c("irfft"))
vjp("rfft2")(_r2c("irfft2"))
vjp("irfft")(_c2r("rfft"))
vjp("irfft2")(_c2r("rfft2"))
