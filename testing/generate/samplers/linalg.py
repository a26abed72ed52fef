"""Contractions: matmul (with `.T`, a pool value or a new weight) and einsum (random equations)."""
from __future__ import annotations

from ....ir.types import dims_equal
from ..config import BOUND_LIMIT
from ..values import Arg, Call, Spec


def s_matmul(g, ctx, op):
    a = g.float_var(ctx, lambda v: v.type.rank >= 1, make_rank=2)
    if a is None:
        return None
    K = a.type.shape[-1]
    mode = g.ch.int(0, 3)
    if mode == 0 and a.type.rank >= 2:
        b = Arg(f"{a.name}.T", a.type.with_shape(a.type.shape[:-2] + (a.type.shape[-1], a.type.shape[-2])),
                a.exact, a.bound)
    elif mode == 1:
        v = g.float_var(ctx, lambda v: v.type.rank >= 1 and dims_equal(v.type.shape[-2 if v.type.rank >= 2 else -1], K)
                        and v is not a)
        if v is None:
            return None
        b = Arg.of(v)
    else:
        n = g.rand_dim(ctx, allow_sym=False)
        shape = (K,) if mode == 3 and g.ch.flag(0.5) else (K, n)
        if a.type.rank >= 3 and g.ch.flag(0.3):
            shape = a.type.shape[:-2] + shape
        v = g.new_tensor(ctx, a.type.dtype, shape)
        if v is None:
            return None
        ctx.pool.append(v)
        b = Arg.of(v)
    if a.type.dtype != b.type.dtype and g.ch.flag(0.5):
        return None
    k = g.rt(K)
    args = [Arg.of(a), b]
    if a.bound * b.bound * k > BOUND_LIMIT:
        args = [g.squash(x) for x in args]
    bound = args[0].bound * args[1].bound * k
    text = f"{args[0].paren()} @ {args[1].paren()}" if g.ch.flag(0.6) else None
    return Call(args, {}, text=text, bound=bound)


def s_einsum(g, ctx, op):
    a = g.float_var(ctx, lambda v: 1 <= v.type.rank <= 3 and v.type.dtype == "f32")
    if a is None:
        return None
    letters = "abcdefgh"
    la = letters[:a.type.rank]
    sizes = dict(zip(la, a.type.shape))
    operands = [(Arg.of(a), la)]
    if g.ch.flag(0.75):
        lb = [c for c in la if g.ch.flag(0.6)]
        for _ in range(g.ch.int(0 if lb else 1, 2)):
            c = letters[len(sizes)]
            sizes[c] = g.rand_dim(ctx, allow_sym=False, hi=4)
            lb.append(c)
        lb = g.ch.shuffled(lb)
        shape = tuple(sizes[c] for c in lb)
        v = g.new_tensor(ctx, "f32", shape)
        if v is None:
            return None
        ctx.pool.append(v)
        operands.append((Arg.of(v), "".join(lb)))
    used = sorted(set("".join(s for _, s in operands)))
    out = "".join(g.ch.shuffled(used)[:g.ch.int(0, len(used))])
    eq = ",".join(s for _, s in operands) + "->" + out
    args = [x for x, _ in operands]
    k = 1
    for c in used:
        if c not in out:
            k *= g.rt(sizes[c])
    bound = k
    for x in args:
        bound *= x.bound
    if bound > BOUND_LIMIT:
        args = [g.squash(x) for x in args]
        bound = k
    text = f"einsum({', '.join(x.expr for x in args)}, equation=\"{eq}\")" if g.ch.flag(0.5) else None
    return Call(args, {"equation": eq}, text=text, bound=bound)


SPECS: dict[str, Spec] = {
    # contractions
    "matmul": Spec(s_matmul, weight=2.0), "einsum": Spec(s_einsum, weight=1.2),
}
