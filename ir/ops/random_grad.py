"""Gradients of the random ops of random.py. A sample carries no gradient to its (integer) counter; bernoulli
gives p a zero gradient, as torch's derivatives.yaml does; dropout's is the same mask times 1/(1-p): the rule
emits dropout of the cotangent with the same key, seed, p and counter, which re-draws the same mask."""
from __future__ import annotations

from ..registry import no_grad, vjp

no_grad("a random sample has no differentiable input (its values depend only on the seed, key and counter)",
        "rand_uniform", "rand_normal", "randint", "gumbel")


@vjp("bernoulli")
def _bernoulli(e, n, cts):
    p = n.inputs[0]
    return [e.full(0.0, p.type), None]


@vjp("dropout")
def _dropout(e, n, cts):
    counter = n.inputs[1] if len(n.inputs) > 1 else None
    return [e("dropout", [cts[0], counter], **n.attrs), None]
