"""Special functions (ir/ops/special.py): inputs kept inside each function's domain in the generated source, so
results stay finite -- asin / acos on tanh(x) in [-1, 1], erfinv on 0.9 tanh(x) in (-1, 1), lgamma / digamma on
|x| + 0.5 (no pole), log1p on |x| (> -1), expm1 bounded above like exp, xlogy's second operand |y| + 0.5."""
from __future__ import annotations

import math

from ..values import Arg, Call, Spec, number
from .generic import generic_binary, partner


def s_xlogy(g, ctx, op):
    """xlogy(x, |y| + 0.5): x anything (zeros included), y positive (a literal y: a positive one)."""
    a = g.float_var(ctx)
    if a is None:
        return None
    b = partner(g, ctx, a)
    if b is None:
        return None
    y = number(g.ch.choice([0.5, 2.0, 1.5]), b.type.dtype) if b.literal else g.wrap(b, "abs({}) + 0.5")
    return Call([Arg.of(a), y], {})


def _lgamma_bound(b, call, outs):
    x = min(b[0], 1e300) + 1.0
    return abs(math.lgamma(x)) + 1.0


SPECS: dict[str, Spec] = {
    "atan": Spec(grow=lambda b, c, o: 1.6),
    "asin": Spec(domain="tanh({})", grow=lambda b, c, o: 1.6),
    "acos": Spec(domain="tanh({})", grow=lambda b, c, o: 3.2),
    "erfinv": Spec(domain="tanh({}) * 0.9", grow=lambda b, c, o: 1.2),
    "lgamma": Spec(domain="abs({}) + 0.5", grow=_lgamma_bound),
    "digamma": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: abs(math.log(min(b[0], 1e300) + 1.0)) + 2.0),
    "log1p": Spec(domain="abs({})", grow=lambda b, c, o: math.log1p(min(b[0], 1e300)) + 0.1),
    "expm1": Spec(domain="clamp({}, max=3.0)", grow=lambda b, c, o: math.exp(min(b[0], 3.0))),
    "atan2": Spec(generic_binary, grow=lambda b, c, o: 3.2),
    "logaddexp": Spec(generic_binary, grow=lambda b, c, o: max(b) + 0.7),
    "xlogy": Spec(s_xlogy, grow=lambda b, c, o: b[0] * (abs(math.log(min(b[1], 1e300) + 0.5)) + 1.0)),
}
