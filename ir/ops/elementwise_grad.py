"""Gradients (vector-Jacobian products, as IR) of the pointwise ops of elementwise.py: what passes/autodiff.py
calls for each node on the path from the differentiated values to the loss. Each rule gets an Emitter (whose
nodes carry the node's source location), the node, and its output's cotangent `ct`; it returns one cotangent
per input, shaped like that input (`e.sum_to` undoes broadcasting). The formulas follow torch's derivatives
(tools/autograd/derivatives.yaml) where a choice exists: maximum/minimum split a tie's gradient in half, relu
and clamp pass none at the kink's closed side, abs gives 0 at 0."""
from __future__ import annotations

import math

from ...errors import ShapeError
from ..registry import no_grad, register, vjp
from ..types import dims_equal, is_float


def _k(e, value, like):
    """A scalar constant of `like`'s dtype."""
    return e.const(float(value), like.type.dtype)


def _both(e, n, ga, gb):
    a, b = n.inputs
    return [e.sum_to(ga, a.type) if ga is not None else None, e.sum_to(gb, b.type) if gb is not None else None]


@vjp("add")
def _add(e, n, cts):
    return _both(e, n, cts[0], cts[0])


@vjp("sub")
def _sub(e, n, cts):
    return _both(e, n, cts[0], e("neg", [cts[0]]))


@vjp("mul")
def _mul(e, n, cts):
    a, b = n.inputs
    return _both(e, n, e("mul", [cts[0], b]), e("mul", [cts[0], a]))


@vjp("div")
def _div(e, n, cts):
    (ct,), (a, b), y = cts, n.inputs, n.output
    return _both(e, n, e("div", [ct, b]), e("neg", [e("div", [e("mul", [ct, y]), b])]))


@vjp("pow")
def _pow(e, n, cts):
    """d/da = b a^(b-1); d/db = a^b log a, taken as 0 where a = 0 and b >= 0 (as torch)."""
    (ct,), (a, b), y = cts, n.inputs, n.output
    ga = e("mul", [ct, e("mul", [b, e("pow", [a, e("sub", [b, _k(e, 1, b)])])])])
    zero_base = e("logical_and", [e("eq", [a, _k(e, 0, a)]), e("ge", [b, _k(e, 0, b)])])
    dlog = e("where", [zero_base, _k(e, 0, y), e("mul", [y, e("log", [a])])])
    return _both(e, n, ga, e("mul", [ct, dlog]))


def _extremum(pick):
    """maximum / minimum: the gradient goes to the operand that won; a tie splits it in half (as torch)."""
    def rule(e, n, cts):
        (ct,), (a, b) = cts, n.inputs
        half = e("mul", [ct, _k(e, 0.5, ct)])
        zero = _k(e, 0, ct)
        tie = e("eq", [a, b])
        ga = e("where", [tie, half, e("where", [e(pick, [a, b]), ct, zero])])
        gb = e("where", [tie, half, e("where", [e(pick, [b, a]), ct, zero])])
        return _both(e, n, ga, gb)
    return rule


vjp("maximum")(_extremum("gt"))
vjp("minimum")(_extremum("lt"))


@vjp("mod")
def _mod(e, n, cts):
    """a mod b = a - floor(a / b) * b: d/da = 1, d/db = -floor(a / b)."""
    (ct,), (a, b) = cts, n.inputs
    return _both(e, n, ct, e("neg", [e("mul", [ct, e("floor", [e("div", [a, b])])])]))


@vjp("where")
def _where(e, n, cts):
    (ct,), (c, a, b) = cts, n.inputs
    zero = _k(e, 0, ct)
    return [None, e.sum_to(e("where", [c, ct, zero]), a.type), e.sum_to(e("where", [c, zero, ct]), b.type)]


# ---- unary ---------------------------------------------------------------------------------------------
def _unary(name):
    """Decorator for a unary rule written as `ct * dy/dx`: fn(e, x, y, ct) -> the input's cotangent."""
    def attach(fn):
        vjp(name)(lambda e, n, cts: [fn(e, n.inputs[0], n.output, cts[0], **n.attrs)])
        return fn
    return attach


@_unary("neg")
def _neg(e, x, y, ct):
    return e("neg", [ct])


@_unary("abs")
def _abs(e, x, y, ct):   # ct * sign(x), 0 at 0: written with where, so the rule is itself differentiable
    zero = _k(e, 0, x)
    return e("where", [e("gt", [x, zero]), ct, e("where", [e("lt", [x, zero]), e("neg", [ct]), _k(e, 0, ct)])])


@_unary("exp")
def _exp(e, x, y, ct):
    return e("mul", [ct, y])


@_unary("log")
def _log(e, x, y, ct):
    return e("div", [ct, x])


@_unary("sqrt")
def _sqrt(e, x, y, ct):
    return e("div", [ct, e("mul", [y, _k(e, 2, y)])])


@_unary("rsqrt")
def _rsqrt(e, x, y, ct):   # -1/2 x^(-3/2) = -1/2 y^3
    return e("mul", [ct, e("mul", [_k(e, -0.5, y), e("mul", [y, e("square", [y])])])])


@_unary("reciprocal")
def _reciprocal(e, x, y, ct):
    return e("neg", [e("mul", [ct, e("square", [y])])])


@_unary("square")
def _square(e, x, y, ct):
    return e("mul", [ct, e("mul", [x, _k(e, 2, x)])])


@_unary("sin")
def _sin(e, x, y, ct):
    return e("mul", [ct, e("cos", [x])])


@_unary("cos")
def _cos(e, x, y, ct):
    return e("neg", [e("mul", [ct, e("sin", [x])])])


@_unary("tanh")
def _tanh(e, x, y, ct):
    return e("mul", [ct, e("sub", [_k(e, 1, y), e("square", [y])])])


@_unary("erf")
def _erf(e, x, y, ct):
    return e("mul", [ct, e("mul", [_k(e, 2 / math.sqrt(math.pi), x), e("exp", [e("neg", [e("square", [x])])])])])


@_unary("sigmoid")
def _sigmoid(e, x, y, ct):
    return e("mul", [ct, e("mul", [y, e("sub", [_k(e, 1, y), y])])])


@_unary("relu")
def _relu(e, x, y, ct):
    return e("where", [e("gt", [x, _k(e, 0, x)]), ct, _k(e, 0, ct)])


@_unary("leaky_relu")
def _leaky_relu(e, x, y, ct, alpha):
    return e("where", [e("gt", [x, _k(e, 0, x)]), ct, e("mul", [ct, _k(e, alpha, ct)])])


@_unary("elu")
def _elu(e, x, y, ct, alpha):   # x <= 0: alpha exp(x) = y + alpha
    return e("where", [e("gt", [x, _k(e, 0, x)]), ct, e("mul", [ct, e("add", [y, _k(e, alpha, y)])])])


@_unary("gelu")
def _gelu(e, x, y, ct, approximate):
    if approximate == "tanh":   # 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3))
        k, c = math.sqrt(2 / math.pi), 0.044715
        x2 = e("square", [x])
        t = e("tanh", [e("mul", [_k(e, k, x), e("add", [x, e("mul", [_k(e, c, x), e("mul", [x2, x])])])])])
        dt = e("mul", [e("sub", [_k(e, 1, t), e("square", [t])]),
                       e("mul", [_k(e, k, x), e("add", [_k(e, 1, x), e("mul", [_k(e, 3 * c, x), x2])])])])
        d = e("mul", [_k(e, 0.5, x), e("add", [e("add", [_k(e, 1, t), t]), e("mul", [x, dt])])])
        return e("mul", [ct, d])
    # Phi(x) + x phi(x)
    cdf = e("mul", [_k(e, 0.5, x), e("add", [_k(e, 1, x), e("erf", [e("mul", [x, _k(e, 1 / math.sqrt(2), x)])])])])
    pdf = e("mul", [_k(e, 1 / math.sqrt(2 * math.pi), x), e("exp", [e("mul", [e("square", [x]), _k(e, -0.5, x)])])])
    return e("mul", [ct, e("add", [cdf, e("mul", [x, pdf])])])


@_unary("silu")
def _silu(e, x, y, ct):   # s (1 + x (1 - s))
    s = e("sigmoid", [x])
    return e("mul", [ct, e("mul", [s, e("add", [_k(e, 1, x), e("mul", [x, e("sub", [_k(e, 1, s), s])])])])])


@_unary("softplus")
def _softplus(e, x, y, ct, beta, threshold):
    bx = e("mul", [x, _k(e, beta, x)])
    return e("where", [e("gt", [bx, _k(e, threshold, x)]), ct, e("mul", [ct, e("sigmoid", [bx])])])


@_unary("hardswish")
def _hardswish(e, x, y, ct):   # 0 below -3, x/3 + 1/2 up to 3, 1 above (torch's choice at the kinks)
    mid = e("add", [e("mul", [x, _k(e, 1 / 3, x)]), _k(e, 0.5, x)])
    d = e("where", [e("lt", [x, _k(e, -3, x)]), _k(e, 0, x), e("where", [e("le", [x, _k(e, 3, x)]), mid, _k(e, 1, x)])])
    return e("mul", [ct, d])


@_unary("hardsigmoid")
def _hardsigmoid(e, x, y, ct):
    inside = e("logical_and", [e("gt", [x, _k(e, -3, x)]), e("lt", [x, _k(e, 3, x)])])
    return e("where", [inside, e("mul", [ct, _k(e, 1 / 6, ct)]), _k(e, 0, ct)])


@_unary("clamp")
def _clamp(e, x, y, ct, min, max):
    keep = None
    for bound, cmp in ((min, "ge"), (max, "le")):
        if bound is not None:
            c = e(cmp, [x, _k(e, bound, x)])
            keep = c if keep is None else e("logical_and", [keep, c])
    return ct if keep is None else e("where", [keep, ct, _k(e, 0, ct)])


@_unary("scale")
def _scale(e, x, y, ct, factor):
    return e("mul", [ct, _k(e, factor, ct)])


@_unary("cast")
def _cast(e, x, y, ct, dtype):   # float to float: the cotangent goes back in the input's dtype
    return e("cast", [ct], dtype=x.type.dtype)


no_grad("a step function: its gradient is zero almost everywhere", "sign", "floor", "round", "heaviside")


# ---- ops that steer gradients --------------------------------------------------------------------------
def _straight_through_infer(types, attrs):
    x, s = types
    if not is_float(x.dtype) or not is_float(s.dtype) or x.rank != s.rank \
            or not all(dims_equal(a, b) for a, b in zip(x.shape, s.shape)):
        raise ShapeError(f"straight_through: the value {x} and its surrogate {s} must be float tensors of one shape")
    return x


def torch_straight_through(T, x, s):
    """x in the forward; in the backward, the gradient of s (a finite s adds exactly 0 to x's value)."""
    return x.detach() + T.where(T.isfinite(s), s - s.detach(), T.zeros_like(s))


register("stop_gradient", "x", infer=lambda t, a: t[0], ref=lambda x: x.copy(), torch=lambda T, x: x.detach(),
         triton=lambda x: x, flops=lambda i, o, a: 0,
         doc="x, through which no gradient flows (a constant to grad and to training)")
register("straight_through", "x, surrogate", infer=_straight_through_infer, ref=lambda x, s: x.copy(),
         torch=torch_straight_through, triton=lambda x, s: x, flops=lambda i, o, a: 0,
         doc="x in the forward pass; the gradient is the surrogate's (e.g. straight_through(sign(x), tanh(k * x)))")
vjp("stop_gradient")(lambda e, n, cts: [None])
vjp("straight_through")(lambda e, n, cts: [None, cts[0]])
