"""Attention: sdpa with self- or cross-attention operands, boolean and additive masks, causal, scale."""
from __future__ import annotations

from ..values import Arg, Call, Spec


def s_sdpa(g, ctx, op):
    q = g.float_var(ctx, lambda v: 2 <= v.type.rank <= 4 and v.type.dtype == "f32")
    if q is None:
        q = g.new_input(ctx, "f32", g.rand_shape(ctx, g.ch.int(2, 3), declare=True))
        if q is None:
            return None
        ctx.pool.append(q)
    batch, tq, d = q.type.shape[:-2], q.type.shape[-2], q.type.shape[-1]
    if g.ch.flag(0.4):
        k = v = q
        tk = tq
    else:
        tk = g.rand_dim(ctx, hi=4, declare=True) if g.ch.flag(0.6) else tq
        dv = g.rand_dim(ctx, allow_sym=False, hi=4)
        kb = batch if g.ch.flag(0.7) else batch[len(batch) - g.ch.int(0, len(batch)):]
        k = g.new_tensor(ctx, "f32", kb + (tk, d))
        v = g.new_tensor(ctx, "f32", kb + (tk, dv))
        if k is None or v is None:
            return None
        ctx.pool += [k, v]
    args = [g.squash(Arg.of(q)) if q.bound > 4 else Arg.of(q), Arg.of(k), Arg.of(v)]
    attrs = {}
    kw = {}
    mode = g.ch.int(0, 3)
    if mode == 1:
        m = g.new_input(ctx, "bool", (tq, tk))
        if m is not None:
            args.append(Arg.of(m))
    elif mode == 2:
        m = g.new_input(ctx, "bool", (tq, tk) if g.ch.flag(0.6) else (tk,))
        if m is not None:
            args.append(Arg(f"where({m.name}, 0.0, -inf)", m.type.with_dtype("f32"), True, 1.0))
            if g.ch.flag(0.5):
                kw = {3: "mask"}
    if g.ch.flag(0.4):
        attrs["causal"] = True
    if g.ch.flag(0.3):
        attrs["scale"] = g.ch.choice([0.5, 1.0])
    return Call(args, attrs, kw_inputs=kw, bound=max(a.bound for a in args))


SPECS: dict[str, Spec] = {
    # attention
    "sdpa": Spec(s_sdpa, weight=1.2),
}
