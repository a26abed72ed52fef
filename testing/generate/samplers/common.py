"""Helpers several sampler families share: divisors, a fresh [N, C, *spatial] input, a parameter joined to the
pool, and the bound rule of ops whose outputs stay within [-1, 1]."""
from __future__ import annotations

import sympy


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def spatial_input(g, ctx, nd, small=False):
    """A float [N, C, *spatial] value: from the pool, or a new input."""
    v = g.float_var(ctx, lambda v: v.type.rank == nd + 2 and v.type.shape[1].is_Integer
                    and all(g.rt(d) >= 2 for d in v.type.shape[2:]))
    if v is not None and g.ch.flag(0.7):
        return v
    n = g.symbol() if ctx.can_declare_inputs and g.ch.flag(0.5) else sympy.Integer(g.ch.int(1, 2))
    c = sympy.Integer(g.ch.int(1, 4))
    hi = 4 if nd == 3 else 7
    spatial = tuple(sympy.Integer(g.ch.int(2, hi)) for _ in range(nd))
    v = g.new_input(ctx, "f32", (n, c) + spatial)
    if v is None:
        return None
    ctx.pool.append(v)
    return v


def param_for(g, ctx, shape, init=None):
    v = g.new_param(ctx, shape, init, None)
    if v is not None:
        ctx.pool.append(v)
    return v


ONE = lambda bounds, call, outs: 1.0  # noqa: E731  (a Spec.grow rule: the output stays within [-1, 1])
