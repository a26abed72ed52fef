"""Movement ops (exact in, exact out): reshape/flatten, transposes, squeeze/unsqueeze, concat, split, subscripts
and slices, pad, broadcast_to, tile."""
from __future__ import annotations

import math

import sympy

from ....ir.types import dims_equal
from ..values import Arg, Call, Spec, TypedCall, free_names, lit
from .common import divisors


def s_reshape(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    syms = [d for d in x.type.shape if not d.is_Integer]
    conc = math.prod(int(d) for d in x.type.shape if d.is_Integer)
    factors = []
    rest = conc
    while rest > 1 and len(factors) < 3:
        f = g.ch.choice([d for d in divisors(rest) if d > 1]) if g.ch.flag(0.8) else rest
        factors.append(f)
        rest //= f
    if rest > 1:
        factors.append(rest)
    parts = [sympy.Integer(f) for f in factors] + list(syms)
    if len(syms) >= 2 and g.ch.flag(0.3):
        parts = [f for f in parts if f not in syms[:2]] + [syms[0] * syms[1]]
    if g.ch.flag(0.2):
        parts.append(sympy.Integer(1))
    parts = g.ch.shuffled(parts)
    if not parts:
        parts = [sympy.Integer(1)]
    if x.type.rank >= 2 and g.ch.flag(0.2):
        start = g.ch.int(0, x.type.rank - 2)
        return Call([Arg.of(x)], {"shape": list(x.type.shape[:start]) + [math.prod(x.type.shape[start:])]},
                    text=f"flatten({x.name}, {start})" if g.ch.flag(0.5) else None)
    shape = list(parts)
    ints = [i for i, d in enumerate(shape) if d.is_Integer]
    if ints and g.ch.flag(0.3):
        shape[g.ch.choice(ints)] = -1
    return Call([Arg.of(x)], {"shape": shape})


def s_transpose(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    r = x.type.rank
    perm = g.ch.shuffled(range(r))
    mode = g.ch.int(0, 4)
    if mode == 1 and r >= 2:
        return Call([Arg.of(x)], {"perm": list(range(r - 2)) + [r - 1, r - 2]}, text=f"{x.name}.T")
    if mode == 2:
        return Call([Arg.of(x)], {"perm": perm}, text=f"permute({x.name}, {', '.join(map(str, perm))})" if r >= 2 else None)
    if mode == 3 and r >= 2:
        a, b = g.ch.shuffled(range(r))[:2]
        p = list(range(r))
        p[a], p[b] = p[b], p[a]
        return Call([Arg.of(x)], {"perm": p}, text=f"swapaxes({x.name}, {a}, {b})")
    if mode == 4:
        return Call([Arg.of(x)], {}, text=f"transpose({x.name})")
    return Call([Arg.of(x)], {"perm": perm})


def s_squeeze(g, ctx, op):
    x = g.pick(ctx, lambda v: any(d == 1 for d in v.type.shape), dtype_class=None)
    if x is None:
        x = g.pick(ctx, dtype_class=None)
        if x is None:
            return None
        ax = g.ch.int(0, x.type.rank)
        return Call([Arg(f"unsqueeze({x.name}, {ax})", x.type.with_shape(x.type.shape[:ax] + (1,) + x.type.shape[ax:]),
                         x.exact or not x.float, x.bound)], {"axis": ax})
    ones = [i for i, d in enumerate(x.type.shape) if d == 1]
    attrs = {} if g.ch.flag(0.3) else {"axis": g.ch.choice(ones)}
    return Call([Arg.of(x)], attrs)


def s_concat(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    r = x.type.rank
    axis = g.ch.int(-r, r - 1)
    ax = axis % r
    parts = [Arg.of(x)]
    for _ in range(g.ch.int(1, 2)):
        def ok(v):
            return v.type.dtype == x.type.dtype and v.type.rank == r and all(
                i == ax or dims_equal(a, b) for i, (a, b) in enumerate(zip(v.type.shape, x.type.shape)))
        cands = [v for v in ctx.pool if ok(v)]
        if cands and g.ch.flag(0.6):
            parts.append(Arg.of(g.ch.choice(cands)))
        else:
            shape = list(x.type.shape)
            shape[ax] = sympy.Integer(g.ch.int(1, 3))
            v = g.new_tensor(ctx, x.type.dtype, tuple(shape))
            if v is None:
                parts.append(Arg.of(x))
            else:
                ctx.pool.append(v)
                parts.append(Arg.of(v))
    return Call(parts, {"axis": axis}, text=f"concat([{', '.join(p.expr for p in parts)}], {axis})" if g.ch.flag(0.3) else None)


def s_split(g, ctx, op):
    x = g.pick(ctx, lambda v: any(d.is_Integer and int(d) >= 2 for d in v.type.shape), dtype_class=None)
    if x is None:
        return None
    axes = [i for i, d in enumerate(x.type.shape) if d.is_Integer and int(d) >= 2]
    ax = g.ch.choice(axes)
    n = int(x.type.shape[ax])
    if g.ch.flag(0.5):
        k = g.ch.choice([d for d in divisors(n) if d > 1])
        sizes = k
        count = k
    else:
        cut = sorted(set(g.ch.int(1, n - 1) for _ in range(g.ch.int(1, 2))))
        bounds = [0] + cut + [n]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        count = len(sizes)
    keep = [g.ch.flag(0.7) for _ in range(count)]
    keep[g.ch.int(0, count - 1)] = True
    axis = ax if g.ch.flag(0.6) else ax - x.type.rank
    text = f"split({x.name}, {lit(sizes)}, axis={axis})"
    return Call([Arg.of(x)], {"sizes": sizes, "axis": axis}, text=text, keep=keep)


def s_slice(g, ctx, op):
    """Subscripts `x[1:3, ..., 0, none]` (slice + squeeze + expand_dims) or the op itself."""
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    items, slices, out_shape = [], [], []
    for d in x.type.shape:
        n = g.rt(d)
        conc = d.is_Integer
        mode = g.ch.int(0, 4)
        if mode == 0:
            items.append(":")
            slices.append([None, None, None])
            out_shape.append(d)
        elif mode == 1:   # an integer drops the axis
            k = g.ch.int(0, n - 1) if conc else 0
            if g.ch.flag(0.3):
                k = k - n if conc else -1
            items.append(str(k))
            slices.append(None)
        elif mode == 2 and conc and n >= 2:
            a = g.ch.int(0, n - 1)
            b = g.ch.int(a + 1, n)
            s = g.ch.int(1, 2)
            sa = str(a) if a or g.ch.flag(0.5) else ""
            sb = str(b) if b != n or g.ch.flag(0.5) else ""
            if g.ch.flag(0.2) and b < n:
                sb = str(b - n)
            items.append(f"{sa}:{sb}" + (f":{s}" if s > 1 else ""))
            slices.append([a, b, s])
            out_shape.append(sympy.Integer(-(-(b - a) // s)))
        elif mode == 3 and not conc and g.ch.flag(0.5):
            items.append("::2")
            slices.append([None, None, 2])
            out_shape.append(sympy.ceiling(d / 2))
        else:
            items.append(":")
            slices.append([None, None, None])
            out_shape.append(d)
    pos = 0
    if g.ch.flag(0.2):
        k = g.ch.int(0, len(items))
        pos = sum(1 for s in slices[:k] if s is not None)
        items.insert(k, "none")
    if all(s is not None and s == [None, None, None] for s in slices) and "none" not in items:
        return None
    if g.ch.flag(0.25) and all(s is not None for s in slices) and "none" not in items:
        # the op called by name
        return Call([Arg.of(x)], {"slices": slices})
    # trailing full slices may become `...`
    if len(items) >= 2 and items[-1] == ":" and g.ch.flag(0.3):
        while len(items) >= 2 and items[-1] == ":":
            items.pop()
        items.append("...")
    text = f"{x.name}[{', '.join(items)}]"
    # the result type (the elaborator checks it again)
    shape = []
    it = iter(out_shape)
    for s in slices:
        if s is not None:
            shape.append(next(it))
    if "none" in items:
        shape.insert(pos, sympy.Integer(1))
    return TypedCall(text, x.type.with_shape(tuple(shape)), x)


def s_pad(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class="float")
    if x is None:
        return None
    k = g.ch.int(1, min(2, x.type.rank))
    trailing = x.type.shape[-k:]
    mode = g.ch.choice(["constant", "constant", "reflect", "replicate", "circular"])
    pads = []
    for d in trailing:
        n = g.rt(d)
        hi = {"reflect": n - 1, "circular": n}.get(mode, 2)
        hi = min(hi, 2)
        if hi < 0:
            return None
        pads.append([g.ch.int(0, hi), g.ch.int(0, hi)])
    attrs = {"pads": pads}
    if mode != "constant" or g.ch.flag(0.3):
        attrs["mode"] = mode
    if mode == "constant" and g.ch.flag(0.4):
        attrs["value"] = g.ch.choice([1.5, -1.0])
    return Call([Arg.of(x)], attrs)


def s_broadcast_to(g, ctx, op):
    x = g.pick(ctx, dtype_class=None)
    if x is None:
        return None
    shape = [g.rand_dim(ctx, hi=4) if d == 1 and g.ch.flag(0.7) else d for d in x.type.shape]
    for _ in range(g.ch.int(0 if shape != list(x.type.shape) else 1, 2)):
        shape.insert(0, g.rand_dim(ctx, hi=3))
    if ctx.symbols is not None and free_names(shape) - ctx.symbols:
        return None
    return Call([Arg.of(x)], {"shape": shape})


def s_tile(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    return Call([Arg.of(x)], {"reps": [g.ch.int(1, 2) for _ in x.type.shape]})


SPECS: dict[str, Spec] = {
    # movement: exact in, exact out
    "reshape": Spec(s_reshape, keeps_exact=True, weight=1.5), "transpose": Spec(s_transpose, keeps_exact=True),
    "expand_dims": Spec(keeps_exact=True), "squeeze": Spec(s_squeeze, keeps_exact=True),
    "concat": Spec(s_concat, keeps_exact=True), "split": Spec(s_split, keeps_exact=True),
    "slice": Spec(s_slice, keeps_exact=True, weight=1.5), "pad": Spec(s_pad, keeps_exact=True),
    "broadcast_to": Spec(s_broadcast_to, keeps_exact=True), "repeat": Spec(keeps_exact=True),
    "tile": Spec(s_tile, keeps_exact=True), "flip": Spec(keeps_exact=True), "roll": Spec(keeps_exact=True),
}
