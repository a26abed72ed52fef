"""Special functions, pointwise: the inverse trigonometric functions (atan, atan2, asin, acos), the gamma family
(lgamma, digamma), erfinv, and the forms that stay accurate near zero or safe from overflow (log1p, expm1,
logaddexp, xlogy). Poles and boundaries follow torch: lgamma is +inf at 0 and the negative integers; digamma is
-inf at +0, +inf at -0 and NaN at the negative integers (and -inf); erfinv(+-1) = +-inf, NaN outside [-1, 1];
xlogy(0, y) = 0 for every y but NaN.

NumPy has no lgamma, digamma or erfinv (and scipy is not a dependency): lgamma is libm's per element (math.lgamma,
as elementwise.py's erf), digamma and erfinv are computed here in float64 (recurrence and asymptotic series;
Giles' approximation polished by Newton steps on math.erf / math.erfc), accurate to a few ulps. Every reference
computes in float64 and rounds to the input's dtype. The Triton lowerings are prelude.py's `tl.*` helpers."""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from ..registry import register
from ..types import DTYPES, NP_NAMES, TensorType, broadcast_shapes, is_float, promote
from .common import float_unary


# ---- float64 references --------------------------------------------------------------------------------------
def _lgamma1(x: float) -> float:
    x = float(x)
    if math.isinf(x) or (x <= 0 and x.is_integer()):
        return math.inf                       # +-inf, and the poles 0, -1, -2, ... (math.lgamma raises there)
    return math.lgamma(x)


_lgamma_each = np.frompyfunc(_lgamma1, 1, 1)


def lgamma64(x) -> np.ndarray:
    """log |Gamma(x)| in float64 (libm per element)."""
    x = np.asarray(x, np.float64)
    return np.asarray(_lgamma_each(x), dtype=np.float64).reshape(x.shape)


# psi(z) ~ log z - 1/(2z) - sum_k B_2k / (2k z^2k): the coefficients of z^-2, z^-4, ..., z^-14
_PSI_SERIES = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)


def digamma64(x) -> np.ndarray:
    """psi(x) = d/dx log Gamma(x) in float64: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, then the
    asymptotic series (truncation error < 1e-16); reflection psi(x) = psi(1 - x) - pi / tan(pi x) for x < 0, with
    tan(pi x) taken at x - round(x) (exact), so large negative x keep their accuracy. Poles as torch."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        neg = x < 0
        z = np.where(neg, 1 - x, x)
        acc = np.zeros_like(z)
        for _ in range(10):
            low = z < 10
            acc = np.where(low, acc - 1 / z, acc)
            z = np.where(low, z + 1, z)
        w = 1 / (z * z)
        series = np.zeros_like(z)
        for c in reversed(_PSI_SERIES):
            series = (series + c) * w
        out = acc + np.log(z) - 0.5 / z - series
        out = np.where(neg, out - np.pi / np.tan(np.pi * (x - np.round(x))), out)
        out = np.where(x == 0, np.copysign(np.inf, -x), out)              # psi(+0) = -inf, psi(-0) = +inf
        out = np.where(neg & (np.floor(x) == x), np.nan, out)             # negative integers and -inf
    return out


def _erfinv1(x: float) -> float:
    x = float(x)
    if not -1 < x < 1:
        return math.copysign(math.inf, x) if abs(x) == 1 else math.nan
    if x == 0:
        return x                                  # +-0 keeps its sign
    a = abs(x)
    # Giles (2010), "Approximating the erfinv function": the single-precision fit (relative error ~1e-7 in
    # its range; a rough but monotone start beyond it), then Newton steps on erf (|x| <= 0.5) or on erfc, whose
    # 1 - |x| is exact there (Sterbenz), so the tails keep full relative accuracy.
    w = -math.log((1 - a) * (1 + a))
    if w < 5:
        w -= 2.5
        p = 2.81022636e-08
        for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                  -0.00417768164, 0.246640727, 1.50140941):
            p = c + p * w
    else:
        w = math.sqrt(w) - 3
        p = -0.000200214257
        for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
                  0.00943887047, 1.00167406, 2.83297682):
            p = c + p * w
    y = p * a
    two_over_sqrt_pi = 2 / math.sqrt(math.pi)
    for _ in range(8):
        if a <= 0.5:
            step = (math.erf(y) - a) / (two_over_sqrt_pi * math.exp(-y * y))
        else:   # Newton on log erfc(y) = log(1 - a): nearly linear in y^2, fast even from a far start
            e = math.erfc(y)
            step = (math.log(e) - math.log1p(-a)) * e / -(two_over_sqrt_pi * math.exp(-y * y))
        y -= step
        if abs(step) <= 1e-16 * y:
            break
    return math.copysign(y, x)


_erfinv_each = np.frompyfunc(_erfinv1, 1, 1)


def erfinv64(x) -> np.ndarray:
    """The inverse of erf on (-1, 1) in float64 (a few ulps; +-inf at +-1, NaN outside)."""
    x = np.asarray(x, np.float64)
    return np.asarray(_erfinv_each(x), dtype=np.float64).reshape(x.shape)


def xlogy64(x, y) -> np.ndarray:
    """x * log(y), 0 where x == 0 (even y == 0, y < 0 or y = inf), NaN where y is NaN: torch.xlogy."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    with np.errstate(all="ignore"):
        out = np.where(x == 0, 0.0, x * np.log(y))
    return np.where(np.isnan(y), np.nan, out)


def logaddexp64(a, b) -> np.ndarray:
    """log(exp(a) + exp(b)) without overflow (NumPy's: logaddexp(inf, inf) = inf, (-inf, -inf) = -inf)."""
    return np.logaddexp(np.asarray(a, np.float64), np.asarray(b, np.float64))


# ---- registration ----------------------------------------------------------------------------------------------
def _in_f64(fn):
    """A reference computed in float64 and rounded to the input's dtype (NumPy would compute f16 in f16)."""
    def ref(*xs):
        out_dtype = _result_dtype(*xs)
        with np.errstate(all="ignore"):
            return np.asarray(fn(*[np.asarray(x, np.float64) for x in xs])).astype(out_dtype)
    return ref


def _result_dtype(*xs) -> np.dtype:
    name = NP_NAMES[np.dtype(xs[0].dtype)]
    for x in xs[1:]:
        name = promote(name, NP_NAMES[np.dtype(x.dtype)])
    return DTYPES[name]


def _float_binary(name):
    """Two tensors that broadcast, promoted to a float dtype (an integer operand with a float one is fine)."""
    def infer(types, attrs):
        a, b = types
        dtype = promote(a.dtype, b.dtype)
        if not is_float(dtype):
            raise ShapeError(f"{name} expects float tensors, got {a} and {b} (cast one to a float dtype)")
        return TensorType(dtype, broadcast_shapes(a.shape, b.shape))
    return infer


def _unary(name, fn, torch_fn, triton_fn, flops, doc):
    register(name, "x", infer=float_unary(name), ref=_in_f64(fn), torch=torch_fn, triton=triton_fn,
             flops=lambda i, o, at: flops * o[0].numel, doc=doc)


def _binary(name, fn, torch_fn, triton_fn, flops, doc):
    register(name, "a, b", infer=_float_binary(name), ref=_in_f64(fn), torch=torch_fn, triton=triton_fn,
             flops=lambda i, o, at: flops * o[0].numel, doc=doc)


def torch_float_pair(T, a, b):
    """Both operands in their promoted dtype (torch keeps an integer operand's own rules otherwise)."""
    dtype = T.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def torch_atan2(T, a, b):
    return T.atan2(*torch_float_pair(T, a, b))


def torch_logaddexp(T, a, b):
    return T.logaddexp(*torch_float_pair(T, a, b))


def torch_xlogy(T, a, b):
    return T.xlogy(*torch_float_pair(T, a, b))


_unary("atan", np.arctan, lambda T, x: T.atan(x), lambda x: f"_atan({x})", 10, "the inverse tangent, in (-pi/2, pi/2)")
_unary("asin", np.arcsin, lambda T, x: T.asin(x), lambda x: f"_asin({x})", 14,
       "the inverse sine, in [-pi/2, pi/2]; NaN outside [-1, 1]")
_unary("acos", np.arccos, lambda T, x: T.acos(x), lambda x: f"_acos({x})", 14,
       "the inverse cosine, in [0, pi]; NaN outside [-1, 1]")
_unary("lgamma", lgamma64, lambda T, x: T.lgamma(x), lambda x: f"_lgamma({x})", 30,
       "log |Gamma(x)|; +inf at 0 and the negative integers")
_unary("digamma", digamma64, lambda T, x: T.digamma(x), lambda x: f"_digamma({x})", 30,
       "d/dx lgamma(x); -inf at +0, +inf at -0, NaN at the negative integers")
_unary("erfinv", erfinv64, lambda T, x: T.special.erfinv(x), lambda x: f"_erfinv({x})", 20,
       "the inverse error function: erf(erfinv(x)) = x on (-1, 1); +-inf at +-1, NaN outside")
_unary("log1p", np.log1p, lambda T, x: T.log1p(x), lambda x: f"_log1p({x})", 4,
       "log(1 + x), accurate for tiny x")
_unary("expm1", np.expm1, lambda T, x: T.expm1(x), lambda x: f"_expm1({x})", 4,
       "exp(x) - 1, accurate for tiny x")
_binary("atan2", np.arctan2, torch_atan2, lambda a, b: f"_atan2({a}, {b})", 12,
        "the angle of the point (b, a): atan(a / b) in the right quadrant, in [-pi, pi] (C99's signed zeros)")
_binary("logaddexp", logaddexp64, torch_logaddexp, lambda a, b: f"_logaddexp({a}, {b})", 5,
        "log(exp(a) + exp(b)) without overflow")
_binary("xlogy", xlogy64, torch_xlogy, lambda a, b: f"_xlogy({a}, {b})", 3,
        "a * log(b), 0 where a == 0 (whatever b but NaN)")
