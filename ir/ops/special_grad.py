"""Gradients of the special functions of special.py, as torch's derivatives (tools/autograd/derivatives.yaml):
atan 1/(1 + x^2); asin / acos +-1/sqrt(1 - x^2); atan2 (b, -a) / (a^2 + b^2); lgamma digamma(x); digamma
trigamma(x) (polygamma(1), written here as IR: recurrence, asymptotic series and reflection, so it is itself
differentiable); erfinv sqrt(pi)/2 exp(erfinv(x)^2); log1p 1/(1 + x); expm1 expm1(x) + 1; logaddexp
1/(1 + exp(b - a)) and 1/(1 + exp(a - b)); xlogy: xlogy(ct, b) for a, 0 where a == 0 and b <= 0, and ct a / b
for b. See elementwise_grad.py for the rules' shape (an Emitter, the node, the output's cotangent)."""
from __future__ import annotations

import math

from ..registry import vjp


def _k(e, value, like):
    return e.const(float(value), like.type.dtype)


def _both(e, n, ga, gb):
    a, b = n.inputs
    return [e.sum_to(ga, a.type), e.sum_to(gb, b.type)]


def _unary(name):
    """A unary rule written as fn(e, x, y, ct) -> the input's cotangent."""
    def attach(fn):
        vjp(name)(lambda e, n, cts: [fn(e, n.inputs[0], n.output, cts[0])])
        return fn
    return attach


@_unary("atan")
def _atan(e, x, y, ct):
    return e("div", [ct, e("add", [e("square", [x]), _k(e, 1, x)])])


def _one_minus_square(e, x):
    return e("sub", [_k(e, 1, x), e("square", [x])])


@_unary("asin")
def _asin(e, x, y, ct):
    return e("mul", [ct, e("rsqrt", [_one_minus_square(e, x)])])


@_unary("acos")
def _acos(e, x, y, ct):
    return e("neg", [e("mul", [ct, e("rsqrt", [_one_minus_square(e, x)])])])


@_unary("lgamma")
def _lgamma(e, x, y, ct):
    return e("mul", [ct, e("digamma", [x])])


def trigamma(e, x):
    """polygamma(1, x) as IR: for u >= 1/2, sum_{k<8} 1/(u+k)^2 + the asymptotic series at z = u + 8 >= 8.5 (to
    z^-13: truncation < 2e-14 relative); below 1/2 the reflection pi^2 / sin^2(pi x) - trigamma(1 - x), sin taken
    at the exact fraction |x| - floor(|x|) folded to [0, 1/2] (floor under stop_gradient: the rule stays differentiable). +inf at the
    poles 0, -1, ...; NaN at -inf (as torch)."""
    neg = e("lt", [x, _k(e, 0.5, x)])
    u = e("where", [neg, e("sub", [_k(e, 1, x), x]), x])
    acc = None
    for k in range(8):
        t = e("reciprocal", [e("square", [e("add", [u, _k(e, k, u)]) if k else u])])
        acc = t if acc is None else e("add", [acc, t])
    z = e("add", [u, _k(e, 8, u)])
    w = e("reciprocal", [e("square", [z])])
    # 1/z + 1/(2 z^2) + (1/z^3) (1/6 - w/30 + w^2/42 - w^3/30 + 5 w^4/66 - 691 w^5/2730)
    poly = None
    for c in (-691 / 2730, 5 / 66, -1 / 30, 1 / 42, -1 / 30, 1 / 6):
        poly = _k(e, c, z) if poly is None else e("add", [e("mul", [poly, w]), _k(e, c, z)])
    iz = e("reciprocal", [z])
    series = e("add", [iz, e("mul", [w, e("add", [_k(e, 0.5, z), e("mul", [iz, poly])])])])
    pos = e("add", [acc, series])
    ax = e("abs", [x])   # sin^2(pi x) = sin^2(pi |x|); |x| - floor(|x|) is exact (x - floor(x) rounds -1e-10 + 1)
    frac = e("sub", [ax, e("stop_gradient", [e("floor", [ax])])])
    frac = e("minimum", [frac, e("sub", [_k(e, 1, x), frac])])   # sin^2(pi f) = sin^2(pi (1 - f)): f <= 1/2
    s = e("sin", [e("mul", [frac, _k(e, math.pi, x)])])
    refl = e("sub", [e("div", [_k(e, math.pi ** 2, x), e("square", [s])]), pos])
    return e("where", [neg, refl, pos])


@_unary("digamma")
def _digamma(e, x, y, ct):
    return e("mul", [ct, trigamma(e, x)])


@_unary("erfinv")
def _erfinv(e, x, y, ct):
    return e("mul", [ct, e("mul", [_k(e, math.sqrt(math.pi) / 2, y), e("exp", [e("square", [y])])])])


@_unary("log1p")
def _log1p(e, x, y, ct):
    return e("div", [ct, e("add", [x, _k(e, 1, x)])])


@_unary("expm1")
def _expm1(e, x, y, ct):
    return e("mul", [ct, e("add", [y, _k(e, 1, y)])])


@vjp("atan2")
def _atan2(e, n, cts):
    (ct,), (a, b) = cts, n.inputs
    r = e("div", [ct, e("add", [e("square", [a]), e("square", [b])])])
    return _both(e, n, e("mul", [r, b]), e("neg", [e("mul", [r, a])]))


@vjp("logaddexp")
def _logaddexp(e, n, cts):
    (ct,), (a, b) = cts, n.inputs
    one = _k(e, 1, ct)
    ga = e("div", [ct, e("add", [one, e("exp", [e("sub", [b, a])])])])
    gb = e("div", [ct, e("add", [one, e("exp", [e("sub", [a, b])])])])
    return _both(e, n, ga, gb)


@vjp("xlogy")
def _xlogy(e, n, cts):
    (ct,), (a, b) = cts, n.inputs
    zero = _k(e, 0, a)
    masked = e("logical_and", [e("eq", [a, zero]), e("le", [b, _k(e, 0, b)])])
    ga = e("where", [masked, _k(e, 0, ct), e("xlogy", [ct, b])])
    return _both(e, n, ga, e("div", [e("mul", [ct, a]), b]))
