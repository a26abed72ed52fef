"""Lowering of composite ops, before fusion, into ops the Triton backend has kernels for (so they fuse
into neighbours instead of running as torch fallbacks). Every rewrite keeps the op's dtype and shape
(symbolic dims included) and its semantics within the tolerance rule; new nodes carry the original
node's loc, scope and annotations. An op whose attributes a rewrite does not cover stays as it is.

- batchnorm is a per-channel affine map: y = (x - mean) * rsqrt(var + eps) * w + b, with the [C]
  vectors reshaped to broadcast along axis 1. With running statistics (graph inputs/params) its
  parameter-only part is hoisted to the top of the graph so the per-element part can join the
  producing conv's epilogue; with statistics computed in the graph (batch statistics,
  `batchnorm(x, mean(x, axes), var(x, axes))`, or sliced params) the same map stays in place.
- global_avg_pool is a mean over the spatial axes 2.. .
- groupnorm: reshape to [N, G, C/G * spatial], layernorm (no affine) over the last axis (the same
  biased-variance normalization), reshape back, then the per-channel affine.
- matmul with a rank-1 float operand: expand_dims to rank 2 (a: [K] -> [1, K], b: [K] -> [K, 1]),
  matmul, squeeze the added axis (numpy's rule).
- avg_pool2d / max_pool2d with stride == kernel, no padding and spatial dims that the kernel
  provably divides: reshape [N, C, H/kh, kh, W/kw, kw] and mean / max over axes (3, 5). Other
  windows (numeric output size, at most 25 taps): pad (zeros for avg, replicated edges for max),
  then the max / mean of the kh * kw strided slices (views) in one pointwise kernel.
- adaptive_{avg,max}_pool{1,2,3}d when every spatial dim is a multiple of its output size (torch's windows are
  then the regular tiles): reshape [N, C, o1, k1, ...] and mean / max over the k axes.
- dynamic_scale: abs -> max (or mean) over the axes with keepdims -> / qmax -> where(s > 0, s, 1).
- quantize / dequantize / fake_quant with group-wise (block) scales: each blocked axis D is reshaped to
  [S, D/S] and the scale gets a 1 there, so it broadcasts like any operand.
- topk_mask: topk of |x| (a stable key sort), the k-th value and index as the cutoff, a pointwise keep mask.
- prod over axes of numeric size (at most 16 elements per product): the mul chain of the slices.
- einsum (float operands of one dtype, no repeated index within an operand, equal index sizes):
  operands are contracted pairwise, opt_einsum/TorchInductor style (greedy: the pair with the
  smallest result first). Per pair, indices only one side has and nothing later needs are summed
  out first; then with contracted indices the pair is a (batched, broadcasting) matmul:
  A -> [batch, left[:-1], 1.., l, k], B -> [batch, 1.., right[:-1], k, r] by transpose +
  expand_dims (views), several contracted indices merged into one k by a reshape (a view when the
  operand is contiguous there, else a copy kernel); with none it is a broadcasting mul.
  A one-operand einsum is a sum + transpose. The result is transposed to the output order.
"""
from __future__ import annotations

import sympy

from ..ir import registry
from ..ir.analysis import table_lookup
from ..ir.builder import Emitter
from ..ir.graph import Graph, Node, Uses, Value, clone
from ..ir.types import concretize, dims_equal, is_float, numel


def decompose(graph: Graph) -> Graph:
    g = clone(graph)
    _decompose(g)
    _sink_index_maps(g)
    return g


# views and copies that move a gathered table's entries without changing them: applied to the index instead
INDEX_MOVES = {"transpose", "reshape", "expand_dims", "squeeze", "slice", "broadcast_to", "flip", "roll", "repeat", "tile"}


def _sink_index_maps(g: Graph):
    """move(take(theta, C)) == take(theta, move(C)) for a rank-1 theta: fold the move into the literal index
    (computed here by the op's reference), so the table is read through one index tensor of the consumer's
    shape and never materialized (fuse.py plans such a take as an indexed operand)."""
    import numpy as np
    uses = Uses(g)  # the replaced values' readers come later and never among the emitted nodes
    out = []
    for n in g.nodes:
        src = n.inputs[0].producer if n.inputs and n.inputs[0] is not None else None
        if n.op not in INDEX_MOVES or len(n.inputs) != 1 or not table_lookup(src) \
                or not all(d.is_number for d in n.outputs[0].type.shape):
            out.append(n)
            continue
        c = src.inputs[1].producer
        moved = np.asarray(registry.get(n.op).ref(np.asarray(c.attrs["value"], np.int64), **concretize(n.attrs, {})))
        e = Emitter(n)
        idx = e("const", [], value=moved.tolist(), dtype="i32" if moved.size and moved.max() < 2**31 else "i64",
                shape=list(moved.shape))
        y = e("take", [src.inputs[0], idx], axis=0)
        out += e.nodes
        uses.replace(n.outputs[0], y)
    g.nodes = out


def _decompose(g: Graph):
    start = {v for _, v in g.inputs} | {p.value for p in g.params}
    uses = Uses(g)  # the replaced values' readers come later and never among the emitted nodes
    hoisted: list[Node] = []
    out: list[Node] = []
    for n in g.nodes:
        if n.body is not None:
            _decompose(n.body)
        rule = _RULES.get(n.op)
        y = None
        if rule is not None and len(n.outputs) == 1:
            e = Emitter(n)
            try:
                y = rule(e, n)
            except Exception:  # a shape the rewrite's ops refuse: keep the op as it is
                y = None
            if y is not None:
                y = e.like(y, n.outputs[0]) if _same(y, n.outputs[0]) else None
            if y is not None and not e.nodes:
                y = None
        if y is None:
            out.append(n)
            continue
        for m in e.nodes:  # nodes computing only from graph inputs/params go to the top
            if all(v is None or v in start for v in m.inputs):
                hoisted.append(m)
                start.update(m.outputs)
            else:
                out.append(m)
        uses.replace(n.outputs[0], y)
    g.nodes = hoisted + out


def _same(y: Value, out: Value) -> bool:
    a, b = y.type, out.type
    return (a.rank == b.rank and all(dims_equal(p, q) for p, q in zip(a.shape, b.shape))
            and is_float(a.dtype) == is_float(b.dtype))


# ---- rules: each returns the replacement value, or None to keep the op -------------------------------
def _batchnorm(e: Emitter, n: Node):
    x, mean, var, w, b = (list(n.inputs) + [None] * 5)[:5]
    rank = x.type.rank
    eps = e.const(float(n.attrs["eps"]), var.type.dtype)
    scale = e("rsqrt", [e("add", [e.channel(var, rank), eps])])
    if w is not None:
        scale = e("mul", [scale, e.channel(w, rank)])
    y = e("mul", [e("sub", [x, e.channel(mean, rank)]), scale])
    if b is not None:
        y = e("add", [y, e.channel(b, rank)])
    return y


def _global_avg_pool(e: Emitter, n: Node):
    x = n.inputs[0]
    if x.type.rank <= 2:
        return None
    return e("mean", [x], axis=list(range(2, x.type.rank)), keepdims=False)


def _groupnorm(e: Emitter, n: Node):
    x, w, b = (list(n.inputs) + [None] * 3)[:3]
    shape = tuple(x.type.shape)
    groups = sympy.sympify(n.attrs["groups"])
    rest = sympy.simplify(shape[1] / groups * numel(shape[2:]))
    xg = e("reshape", [x], shape=[shape[0], groups, rest])
    y = e("layernorm", [xg, None, None], axis=[2], eps=n.attrs["eps"])
    y = e("reshape", [y], shape=list(shape))
    if w is not None:
        y = e("mul", [y, e.channel(w, len(shape))])
    if b is not None:
        y = e("add", [y, e.channel(b, len(shape))])
    return y


def _matmul(e: Emitter, n: Node):
    a, b = n.inputs
    if a.type.rank >= 2 and b.type.rank >= 2:
        return None
    if not (is_float(a.type.dtype) and is_float(b.type.dtype)):
        return None
    a2 = e("expand_dims", [a], axis=0) if a.type.rank == 1 else a
    b2 = e("expand_dims", [b], axis=1) if b.type.rank == 1 else b
    y = e("matmul", [a2, b2])
    r = y.type.rank
    axes = ([r - 2] if a.type.rank == 1 else []) + ([r - 1] if b.type.rank == 1 else [])
    return e("squeeze", [y], axis=axes)


def _pool(reduce_op):
    def rule(e: Emitter, n: Node):
        x = n.inputs[0]
        (kh, kw), stride, padding = n.attrs["kernel"], list(n.attrs["stride"]), list(n.attrs["padding"])
        if not all(isinstance(v, int) for v in [kh, kw] + stride + padding):
            return None
        from ..ir.ops.conv import divides
        N, C, H, W = x.type.shape
        if stride == [kh, kw] and padding == [0, 0] and divides(kh, H) and divides(kw, W):
            xr = e("reshape", [x], shape=[N, C, sympy.simplify(H / kh), kh, sympy.simplify(W / kw), kw])
            return e(reduce_op, [xr], axis=[3, 5], keepdims=False)
        return _window_pool(e, n, reduce_op)
    return rule


def _adaptive_pool(reduce_op):
    """adaptive_{avg,max}_pool{1,2,3}d whose every spatial dim is a multiple of its output size: torch's windows
    are then the regular tiles, so a reshape [N, C, o1, k1, o2, k2, ...] and a row reduction over the k axes."""
    def rule(e: Emitter, n: Node):
        from ..ir.ops.conv import divides
        x = n.inputs[0]
        out = n.outputs[0].type.shape[2:]
        if not all(o.is_number and divides(int(o), d) for o, d in zip(out, x.type.shape[2:])):
            return None
        shape = list(x.type.shape[:2])
        for o, d in zip(out, x.type.shape[2:]):
            shape += [o, sympy.simplify(d / o)]
        xr = e("reshape", [x], shape=shape)
        return e(reduce_op, [xr], axis=[3 + 2 * i for i in range(len(out))], keepdims=False)
    return rule


def _window_pool(e: Emitter, n: Node, reduce_op: str):
    """Any window: the max / mean of the kh * kw strided slices of the padded input (views), one
    pointwise kernel. Max pads by replicating the edge instead of with -inf: padding is at most half
    the kernel, so a window that holds a padded position also holds the edge element it copies."""
    x = n.inputs[0]
    (kh, kw), (sh, sw), (ph, pw) = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
    oh, ow = n.outputs[0].type.shape[2:]
    if kh * kw > 25 or not (oh.is_number and ow.is_number):
        return None
    oh, ow = int(oh), int(ow)
    xp = x
    if ph or pw:
        xp = (e("pad", [x], pads=[[ph, ph], [pw, pw]], mode="replicate") if reduce_op == "max"
              else e("pad", [x], pads=[[ph, ph], [pw, pw]], value=0.0, mode="constant"))
    acc = None
    for ky in range(kh):
        for kx in range(kw):
            tap = e("slice", [xp], slices=[[None, None, 1], [None, None, 1], [ky, ky + sh * (oh - 1) + 1, sh],
                                           [kx, kx + sw * (ow - 1) + 1, sw]])
            acc = tap if acc is None else e("maximum" if reduce_op == "max" else "add", [acc, tap])
    if reduce_op == "mean":
        acc = e("mul", [acc, e.const(1.0 / (kh * kw), x.type.dtype)])
    return acc


def _prod(e: Emitter, n: Node):
    """A product over few numeric-size axes: the mul chain of the slices (views), one pointwise kernel."""
    import itertools
    x = n.inputs[0]
    axes, keepdims = list(n.attrs["axis"]), n.attrs["keepdims"]
    sizes = [x.type.shape[a] for a in axes]
    if not axes or not is_float(x.type.dtype) or not all(d.is_number for d in sizes) or numel(sizes) > 16:
        return None
    acc = None
    for idx in itertools.product(*(range(int(d)) for d in sizes)):
        at = dict(zip(axes, idx))
        tap = e("slice", [x], slices=[[at[a], at[a] + 1, 1] if a in at else [None, None, 1] for a in range(x.type.rank)])
        if not keepdims:
            tap = e("squeeze", [tap], axis=axes)
        acc = tap if acc is None else e("mul", [acc, tap])
    return acc


# ---- einsum ---------------------------------------------------------------------------------------
def _einsum(e: Emitter, n: Node):
    lhs, out = n.attrs["equation"].split("->")
    specs = lhs.split(",")
    xs = list(n.inputs)
    dtype = n.outputs[0].type.dtype
    if not is_float(dtype) or any(v.type.dtype != dtype for v in xs):
        return None
    if any(len(set(s)) != len(s) for s in specs) or len(set(out)) != len(out):
        return None  # diagonals (a repeated index) are left to the fallback
    sizes: dict[str, object] = {}
    for s, v in zip(specs, xs):
        for ch, d in zip(s, v.type.shape):
            if ch in sizes and not dims_equal(sizes[ch], d):
                return None  # an index broadcast from size 1
            sizes[ch] = d
    # greedy pair order (opt_einsum's greedy): contract the pair whose result is smallest first
    free = {sym: 64 for d in sizes.values() for sym in sympy.sympify(d).free_symbols}

    def est(letters):
        return float(sympy.sympify(numel([sizes[c] for c in letters])).subs(free))

    ops = list(zip(xs, specs))
    while len(ops) > 1:
        best = None
        for i in range(len(ops)):
            for j in range(i + 1, len(ops)):
                others = set(out) | set("".join(s for k, (_, s) in enumerate(ops) if k not in (i, j)))
                cost = est((set(ops[i][1]) | set(ops[j][1])) & others)
                if best is None or cost < best[0]:
                    best = (cost, i, j, others)
        _, i, j, keep = best
        ops[i] = _contract2(e, *ops[i], *ops[j], keep)
        del ops[j]
    cur, spec = ops[0]
    cur, spec = _sum_out(e, cur, spec, set(out))
    perm = [spec.index(ch) for ch in out]
    if perm != list(range(len(perm))):
        cur = e("transpose", [cur], perm=perm)
    return cur


def _sum_out(e: Emitter, v: Value, spec: str, keep: set):
    axes = [i for i, ch in enumerate(spec) if ch not in keep]
    if not axes:
        return v, spec
    return e("sum", [v], axis=axes, keepdims=False), "".join(ch for ch in spec if ch in keep)


def _align(e: Emitter, v: Value, spec: str, order: list):
    """`v` (indexed by `spec`) transposed to the letters of `order`, with a size-1 axis at each None."""
    perm = [spec.index(ch) for ch in order if ch is not None]
    if perm != list(range(len(perm))):
        v = e("transpose", [v], perm=perm)
    for i, ch in enumerate(order):
        if ch is None:
            v = e("expand_dims", [v], axis=i)
    return v


def _merge(e: Emitter, v: Value, start: int, count: int) -> Value:
    shape = list(v.type.shape)
    return e("reshape", [v], shape=shape[:start] + [sympy.simplify(numel(shape[start:start + count]))] + shape[start + count:])


def _orders(sa: str, sb: str, keep: set):
    batch = [c for c in sa if c in sb and c in keep]
    contr = [c for c in sa if c in sb and c not in keep]
    left = [c for c in sa if c not in sb]
    right = [c for c in sb if c not in sa]
    lrow, rcol = (left[-1] if left else None), (right[-1] if right else None)
    a_order = batch + left[:-1] + [None] * len(right[:-1]) + [lrow] + contr
    b_order = batch + [None] * len(left[:-1]) + right[:-1] + contr + [rcol]
    return a_order, b_order


def _transposes(sa: str, sb: str, keep: set) -> int:
    """How many operands the matmul form of (sa, sb) must transpose (each may cost a copy)."""
    def moved(spec, order):
        perm = [spec.index(c) for c in order if c is not None]
        return perm != sorted(perm)
    a_order, b_order = _orders(sa, sb, keep)
    return moved(sa, a_order) + moved(sb, b_order)


def _contract2(e: Emitter, a: Value, sa: str, b: Value, sb: str, keep: set):
    a, sa = _sum_out(e, a, sa, keep | set(sb))
    b, sb = _sum_out(e, b, sb, keep | set(sa))
    if _transposes(sb, sa, keep) < _transposes(sa, sb, keep):  # the orientation that keeps operands in place
        a, sa, b, sb = b, sb, a, sa
    batch = [c for c in sa if c in sb and c in keep]
    contr = [c for c in sa if c in sb and c not in keep]
    left = [c for c in sa if c not in sb]
    right = [c for c in sb if c not in sa]
    if contr:
        lrow, rcol = (left[-1] if left else None), (right[-1] if right else None)
        a_order = batch + left[:-1] + [None] * len(right[:-1]) + [lrow] + contr
        b_order = batch + [None] * len(left[:-1]) + right[:-1] + contr + [rcol]
        a2, b2 = _align(e, a, sa, a_order), _align(e, b, sb, b_order)
        if len(contr) > 1:  # several contracted indices: one merged K axis (a view when contiguous)
            a2 = _merge(e, a2, a2.type.rank - len(contr), len(contr))
            b2 = _merge(e, b2, b2.type.rank - len(contr) - 1, len(contr))
        y = e("matmul", [a2, b2])
        res = batch + left[:-1] + right[:-1] + [lrow, rcol]
        drop = [i for i, ch in enumerate(res) if ch is None]
        if drop:
            y = e("squeeze", [y], axis=drop)
        return y, "".join(ch for ch in res if ch is not None)
    order = batch + left + right + contr
    y = e("mul", [_align(e, a, sa, [c if c in sa else None for c in order]),
                  _align(e, b, sb, [c if c in sb else None for c in order])])
    if contr:
        y = e("sum", [y], axis=list(range(len(order) - len(contr), len(order))), keepdims=False)
    return y, "".join(batch + left + right)


def _dynamic_scale(e: Emitter, n: Node):
    """absmax: max|x| over the axes / qmax; absmean: mean|x|; a zero scale becomes 1 (ir/ops/quant.py):
    a reduction kernel and a pointwise one (the division is correctly rounded, as in the reference)."""
    from ..ir.ops.common import norm_axes
    from ..ir.ops.quant import qrange
    x = n.inputs[0]
    a = n.attrs
    axes = norm_axes(a["axis"], x.type.rank)
    if not axes:
        return None
    dtype = x.type.dtype
    mag = e("abs", [x])
    if a["method"] == "absmean":
        s = e("mean", [mag], axis=list(axes), keepdims=True)
    else:
        s = e("div", [e("max", [mag], axis=list(axes), keepdims=True), e.const(float(qrange(a["bits"])[1]), dtype)])
    return e("where", [e("gt", [s, e.const(0.0, dtype)]), s, e.const(1.0, dtype)])


def _block_scaled(e: Emitter, n: Node):
    """quantize / dequantize / fake_quant with group-wise scales (a scale dim S that is a proper divisor of
    the tensor's dim D covers blocks of D/S): split each such axis into [S, D/S] and give the scale a
    1 there, so the scale broadcasts like any operand (reshapes of contiguous values are views)."""
    x, scale, zp = (list(n.inputs) + [None] * 3)[:3]
    shape, rank = list(x.type.shape), x.type.rank
    lead = [sympy.Integer(1)] * (rank - scale.type.rank)
    sshape = lead + list(scale.type.shape)
    blocks = {d for d in range(rank) if sshape[d] != 1 and not dims_equal(sshape[d], shape[d])}
    if not blocks or (zp is not None and list(zp.type.shape) != list(scale.type.shape)):
        return None
    split, ssplit = [], []
    for d in range(rank):
        if d in blocks:
            split += [sshape[d], sympy.simplify(shape[d] / sshape[d])]
            ssplit += [sshape[d], 1]
        else:
            split.append(shape[d])
            ssplit.append(sshape[d])
    operands = [e("reshape", [x], shape=split), e("reshape", [scale], shape=ssplit)]
    if zp is not None:
        operands.append(e("reshape", [zp], shape=ssplit))
    y = e(n.op, operands, **n.attrs)
    return e("reshape", [y], shape=shape)


def _topk_mask(e: Emitter, n: Node):
    """Keep the k largest |x| along the axis (ties: lower index; NaN counts as largest): with (t, j) the value
    and index of the k-th of `topk(|x|)` (a stable key sort), x_i is kept iff its key ranks at or before
    (t, j): |x_i| is NaN (when t is not), or |x_i| > t, or |x_i| == t and i <= j; zero elsewhere."""
    from ..ir.ops.common import normalize_axis
    x = n.inputs[0]
    if not is_float(x.type.dtype) or x.type.rank == 0:
        return None
    k, axis, rank = int(n.attrs["k"]), normalize_axis(n.attrs["axis"], x.type.rank), x.type.rank
    mag = e("abs", [x])
    vals = e("topk", [mag], k=k, axis=axis, largest=True)
    idx = vals.producer.outputs[1]
    kth = [[None, None, 1]] * rank
    kth[axis] = [k - 1, k, 1]
    t, j = e("slice", [vals], slices=kth), e("slice", [idx], slices=kth)
    pos = e("arange", [], n=x.type.shape[axis], dtype=idx.type.dtype)
    for _ in range(rank - 1 - axis):
        pos = e("expand_dims", [pos], axis=-1)
    nan_x, nan_t = e("ne", [mag, mag]), e("ne", [t, t])
    tie = e("logical_and", [e("eq", [mag, t]), e("le", [pos, j])])
    above = e("logical_or", [nan_x, e("logical_or", [e("gt", [mag, t]), tie])])
    keep = e("where", [nan_t, e("logical_and", [nan_x, e("le", [pos, j])]), above])
    return e("where", [keep, x, e.const(0.0, x.type.dtype)])


_RULES = {
    "topk_mask": _topk_mask,
    "dynamic_scale": _dynamic_scale,
    "quantize": _block_scaled,
    "dequantize": _block_scaled,
    "fake_quant": _block_scaled,
    "batchnorm": _batchnorm,
    "global_avg_pool": _global_avg_pool,
    "groupnorm": _groupnorm,
    "matmul": _matmul,
    "avg_pool2d": _pool("mean"),
    "max_pool2d": _pool("max"),
    "einsum": _einsum,
    "prod": _prod,
}
_RULES.update({f"adaptive_{kind}_pool{nd}d": _adaptive_pool("mean" if kind == "avg" else "max")
               for nd in (1, 2, 3) for kind in ("avg", "max")})

# random ops (ir/ops/random.py): the counter (each element's flat index) made an explicit operand
from ..ir.ops.random import RANDOM_OPS, with_counter  # noqa: E402
_RULES.update(dict.fromkeys(RANDOM_OPS, with_counter))
