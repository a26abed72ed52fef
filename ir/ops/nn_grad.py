"""Gradients (vector-Jacobian products, as IR) of the softmax family and the normalizations of nn.py (see
elementwise_grad.py for the conventions). The formulas are torch's fused backwards (softmax_backward_data,
native_layer_norm_backward, ...), so they keep no more than torch does:

- softmax: dx = y (ct - sum(ct y)); log_softmax: dx = ct - exp(y) sum(ct), both along `axis`, from the output.
- layernorm / rmsnorm / groupnorm: the statistics (mean, 1/sqrt(var + eps)) are recomputed from x, which
  torch saves instead (two small tensors); with g = ct * w and xhat the normalized input,
  dx = rstd (g - mean(g) - xhat mean(g xhat)) over the normalized axes (rmsnorm: without the mean(g) term);
  dw = sum(ct xhat) and db = sum(ct) over the other axes.
- batchnorm is differentiated as the per-channel affine map it is, y = (x - mean) rstd w + b with
  rstd = 1/sqrt(var + eps), wrt all five inputs: running statistics (inputs or params) get their gradient from
  this formula; batch statistics computed in the program (`batchnorm(x, mean(x, ..), var(x, ..))`) reach x
  through the rules of mean and var.
"""
from __future__ import annotations

import sympy

from ..registry import vjp
from ..types import numel


def _k(e, value, like):
    """A scalar constant of `like`'s dtype."""
    return e.const(float(value), like.type.dtype)


def _opt(n, count):
    return (list(n.inputs) + [None] * count)[:count]


# ---- softmax family ------------------------------------------------------------------------------------
@vjp("softmax")
def _softmax(e, n, cts):
    (ct,), y, axis = cts, n.output, n.attrs["axis"]
    dot = e("sum", [e("mul", [ct, y])], axis=[axis], keepdims=True)
    return [e("mul", [y, e("sub", [ct, dot])])]


@vjp("log_softmax")
def _log_softmax(e, n, cts):
    (ct,), y, axis = cts, n.output, n.attrs["axis"]
    total = e("sum", [ct], axis=[axis], keepdims=True)
    return [e("sub", [ct, e("mul", [e("exp", [y]), total])])]


# ---- normalizations --------------------------------------------------------------------------------------
def _normalized(e, x, axes, eps, center=True):
    """(xhat, rstd) of x over `axes` (kept as size-1 dims): the biased-variance statistics of the forward."""
    if center:
        x = e("sub", [x, e("mean", [x], axis=axes, keepdims=True)])
    var = e("mean", [e("square", [x])], axis=axes, keepdims=True)
    rstd = e("rsqrt", [e("add", [var, _k(e, eps, var)])])
    return e("mul", [x, rstd]), rstd


def _dx(e, g, xhat, rstd, axes, center=True):
    """rstd (g - mean(g) - xhat mean(g xhat)) over `axes`: the input cotangent of a normalization whose
    normalized output xhat received g."""
    proj = e("mul", [xhat, e("mean", [e("mul", [g, xhat])], axis=axes, keepdims=True)])
    inner = e("sub", [g, proj])
    if center:
        inner = e("sub", [inner, e("mean", [g], axis=axes, keepdims=True)])
    return e("mul", [rstd, inner])


def _trailing(center):
    """layernorm (center=True) and rmsnorm: normalized over the trailing axes `axis`, w and b shaped like
    them; their gradients are summed over the leading axes."""
    def rule(e, n, cts):
        (ct,), axes = cts, list(n.attrs["axis"])
        x, w, b = _opt(n, 3)
        xhat, rstd = _normalized(e, x, axes, n.attrs["eps"], center)
        g = ct if w is None else e("mul", [ct, w])
        dx = _dx(e, g, xhat, rstd, axes, center)
        dw = None if w is None else e.sum_to(e("mul", [ct, xhat]), w.type)
        db = None if b is None else e.sum_to(ct, b.type)
        return [dx, dw, db]
    return rule


vjp("layernorm")(_trailing(center=True))
vjp("rmsnorm")(_trailing(center=False))


def _per_channel(e, t):
    """t [N, C, ...] summed over every axis but the channel axis 1: [C]."""
    return e("sum", [t], axis=[a for a in range(t.type.rank) if a != 1], keepdims=False)


@vjp("groupnorm")
def _groupnorm(e, n, cts):
    """Normalized over [N, G, C/G * spatial] (the reshape the forward and decompose.py use), then the
    per-channel affine map."""
    (ct,), (x, w, b) = cts, _opt(n, 3)
    shape = list(x.type.shape)
    rank, groups = len(shape), sympy.sympify(n.attrs["groups"])
    grouped = [shape[0], groups, sympy.simplify(shape[1] / groups * numel(shape[2:]))]
    xhat, rstd = _normalized(e, e("reshape", [x], shape=grouped), [2], n.attrs["eps"])
    g = ct if w is None else e("mul", [ct, e.channel(w, rank)])
    dx = e("reshape", [_dx(e, e("reshape", [g], shape=grouped), xhat, rstd, [2])], shape=shape)
    dw = None if w is None else _per_channel(e, e("mul", [ct, e("reshape", [xhat], shape=shape)]))
    db = None if b is None else _per_channel(e, ct)
    return [dx, dw, db]


@vjp("batchnorm")
def _batchnorm(e, n, cts):
    """y = (x - mean) rstd w + b per channel: dx = ct rstd w, dmean = -sum(dx), dvar = -1/2 rstd^2
    sum(dx (x - mean)), dw = sum(ct (x - mean) rstd), db = sum(ct), the sums over every axis but 1."""
    (ct,), (x, mean, var, w, b) = cts, _opt(n, 5)
    rank = x.type.rank
    rstd = e("rsqrt", [e("add", [var, _k(e, n.attrs["eps"], var)])])          # [C]
    xc = e("sub", [x, e.channel(mean, rank)])
    scale = rstd if w is None else e("mul", [rstd, w])
    dx = e("mul", [ct, e.channel(scale, rank)])
    dmean = e("neg", [_per_channel(e, dx)])
    half_r2 = e("mul", [_k(e, -0.5, rstd), e("square", [rstd])])
    dvar = e("mul", [half_r2, _per_channel(e, e("mul", [dx, xc]))])
    dw = None if w is None else e("mul", [rstd, _per_channel(e, e("mul", [ct, xc]))])
    db = None if b is None else _per_channel(e, ct)
    return [dx, dmean, dvar, dw, db]
