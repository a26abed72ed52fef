"""Gradients (vector-Jacobian products, as IR) of the reductions of reduce.py, the pools, sort and topk of nn.py,
dynamic_scale (quant.py) and topk_mask (sparse.py); see elementwise_grad.py for the conventions. The formulas
follow torch's derivatives (tools/autograd/derivatives.yaml):

- sum / mean / global_avg_pool broadcast the cotangent back (mean divides by the count, a symbolic dim included);
- max / min split the gradient evenly among the tied extrema (torch's amax/amin and full max/min);
- prod: ct * prod / x where no factor is zero; with exactly one zero factor, that factor gets the product of the
  others and the rest 0; with two or more, every factor gets 0 (torch's prod_backward, computed without dividing
  by a zero);
- logsumexp: ct * exp(x - y); var: ct * 2 (x - mean) / (n - correction); std: var's with ct / (2 std), 0 where
  std = 0 (torch masks it);
- cumsum: the reverse cumulative sum (flip, cumsum, flip, as torch);
- sort / topk: the values' cotangent scattered back to the positions the indices name (scatter_add into zeros);
- topk_mask: the cotangent where the entry was kept (the where() of torch's lowering);
- dynamic_scale: torch's autograd of its lowering (abs, amax or mean, the 0 -> 1 guard): the scale's cotangent
  goes to the largest-magnitude entries (split among ties, times sign) or evenly to all (absmean);
- avg_pool: each window's ct / kernel size spread over the window (padded zeros count, so the divisor is
  constant), placed by a col2im of pads, a broadcast or concat and a reshape per spatial axis; max_pool: the whole ct
  of a window to its first maximum in scan order (torch's argmax index), by a scatter_add at those positions.

NaN: max/min give no gradient to a NaN maximum and max_pool gives it to the window's first real element (torch:
to the NaN); no other rule special-cases NaN.
argmax / argmin output integers and need no rule."""
from __future__ import annotations

import sympy

from ..registry import vjp
from ..types import dims_equal
from .common import norm_axes
from .quant import qrange


def _k(e, value, like):
    """A scalar constant of `like`'s dtype (a symbolic count stays a sympy expression, bound at run time)."""
    symbolic = isinstance(value, sympy.Basic) and not value.is_number
    return e.const(value if symbolic else float(value), like.type.dtype)


def _axes(n):
    x = n.inputs[0]
    return list(norm_axes(n.attrs["axis"], x.type.rank))


def _count(x, axes):
    """How many elements a reduction over `axes` of x combines (a sympy number or expression)."""
    return sympy.Mul(*[x.type.shape[a] for a in axes]) if axes else sympy.Integer(1)


def _keep(e, v, axes, keepdims):
    """A reduced value with its reduced axes back as size 1 (expand_dims: views), to broadcast against x."""
    if keepdims:
        return v
    for a in sorted(axes):
        v = e("expand_dims", [v], axis=a)
    return v


def _spread(e, v, t):
    """`v` (x's rank, size 1 on reduced axes) broadcast to exactly type t's shape."""
    if v.type.rank == t.rank and all(dims_equal(a, b) for a, b in zip(v.type.shape, t.shape)):
        return v
    return e("broadcast_to", [v], shape=list(t.shape))


def _scale_by_count(e, v, n):
    """v / n for a count n (a multiplication by 1/n when n is a number)."""
    if n.is_number:
        return v if n == 1 else e("mul", [v, _k(e, 1 / float(n), v)])
    return e("div", [v, _k(e, n, v)])


# ---- sum / mean / global_avg_pool ------------------------------------------------------------------------------
@vjp("sum")
def _sum(e, n, cts):
    x, axes = n.inputs[0], _axes(n)
    return [_spread(e, _keep(e, cts[0], axes, n.attrs["keepdims"]), x.type)]


@vjp("mean")
def _mean(e, n, cts):
    x, axes = n.inputs[0], _axes(n)
    g = _scale_by_count(e, _keep(e, cts[0], axes, n.attrs["keepdims"]), _count(x, axes))
    return [_spread(e, g, x.type)]


@vjp("global_avg_pool")
def _global_avg_pool(e, n, cts):
    x = n.inputs[0]
    axes = list(range(2, x.type.rank))
    g = _scale_by_count(e, _keep(e, cts[0], axes, False), _count(x, axes))
    return [_spread(e, g, x.type)]


# ---- max / min -------------------------------------------------------------------------------------------------
def _evenly(e, mask, ctk, axes):
    """ctk (keepdims) split evenly among the positions of `mask` in each reduced group, 0 elsewhere."""
    count = e("sum", [e("cast", [mask], dtype=ctk.type.dtype)], axis=axes, keepdims=True)
    return e("where", [mask, e("div", [ctk, count]), _k(e, 0, ctk)])


@vjp("max", "min")
def _extremum(e, n, cts):
    """torch: the gradient split evenly among the values equal to the result (ties share it)."""
    x, axes, keepdims = n.inputs[0], _axes(n), n.attrs["keepdims"]
    mask = e("eq", [x, _keep(e, n.output, axes, keepdims)])
    return [_evenly(e, mask, _keep(e, cts[0], axes, keepdims), axes)]


# ---- prod / logsumexp / var / std ------------------------------------------------------------------------------
@vjp("prod")
def _prod(e, n, cts):
    """torch's prod_backward: ct * (product of the other factors). Computed from the product of the nonzero
    factors p and the count of zero factors z: a nonzero factor gets p / x if z = 0, else 0; a zero factor gets
    p if it is the only zero (z = 1), else 0. No division by zero happens."""
    x, axes, keepdims = n.inputs[0], _axes(n), n.attrs["keepdims"]
    zero, one = _k(e, 0, x), _k(e, 1, x)
    is_zero = e("eq", [x, zero])
    safe = e("where", [is_zero, one, x])
    p = e("mul", [_keep(e, cts[0], axes, keepdims), e("prod", [safe], axis=axes, keepdims=True)])
    zeros = e("sum", [e("cast", [is_zero], dtype=x.type.dtype)], axis=axes, keepdims=True)
    at_nonzero = e("where", [e("eq", [zeros, zero]), e("div", [p, safe]), zero])
    at_zero = e("where", [e("eq", [zeros, one]), p, zero])
    return [e("where", [is_zero, at_zero, at_nonzero])]


@vjp("logsumexp")
def _logsumexp(e, n, cts):
    x, axes, keepdims = n.inputs[0], _axes(n), n.attrs["keepdims"]
    w = e("exp", [e("sub", [x, _keep(e, n.output, axes, keepdims)])])
    return [e("mul", [_keep(e, cts[0], axes, keepdims), w])]


def _var_backward(e, x, ctk, axes, correction):
    """ct * 2 (x - mean) / (n - correction), ctk with keepdims."""
    dof = _count(x, axes) - correction
    scale = (_k(e, 2 / float(dof), ctk) if dof.is_number and dof != 0
             else e("div", [_k(e, 2, ctk), _k(e, dof, ctk)]))
    centered = e("sub", [x, e("mean", [x], axis=axes, keepdims=True)])
    return e("mul", [centered, e("mul", [ctk, scale])])


@vjp("var")
def _var(e, n, cts):
    x, axes, keepdims = n.inputs[0], _axes(n), n.attrs["keepdims"]
    if not axes:   # a variance over no axis is 0 whatever x is (torch's lowering: zeros_like)
        return [e.full(0.0, x.type)]
    return [_var_backward(e, x, _keep(e, cts[0], axes, keepdims), axes, n.attrs["correction"])]


@vjp("std")
def _std(e, n, cts):
    """var's gradient with ct / (2 std), masked to 0 where std = 0 (torch's std_backward)."""
    x, axes, keepdims = n.inputs[0], _axes(n), n.attrs["keepdims"]
    if not axes:
        return [e.full(0.0, x.type)]
    ct, y = cts[0], n.output
    zero = _k(e, 0, y)
    g = e("where", [e("eq", [y, zero]), zero, e("div", [ct, e("mul", [y, _k(e, 2, y)])])])
    return [_var_backward(e, x, _keep(e, g, axes, keepdims), axes, n.attrs["correction"])]


# ---- cumsum / sort / topk / topk_mask --------------------------------------------------------------------------
@vjp("cumsum")
def _cumsum(e, n, cts):
    axis = n.attrs["axis"]
    rev = e("cumsum", [e("flip", [cts[0]], axis=axis)], axis=axis)
    return [e("flip", [rev], axis=axis)]


@vjp("sort", "topk")
def _sort(e, n, cts):
    """The values' cotangent back at the positions the indices came from (torch: zeros.scatter(dim, idx, ct));
    the i64 indices carry none."""
    x, ct = n.inputs[0], cts[0]
    if ct is None:
        return [None]
    return [e("scatter_add", [e.full(0.0, x.type), n.outputs[1], ct], axis=n.attrs["axis"])]


@vjp("topk_mask")
def _topk_mask(e, n, cts):
    """ct where the entry was kept. Kept: a nonzero output, or a zero input among the first k - (nonzero count)
    zeros of its line (topk_mask keeps the k largest magnitudes, ties to the lower index, so a zero is kept only
    when fewer than k entries are nonzero, in index order)."""
    x, y, ct, axis, k = n.inputs[0], n.output, cts[0], n.attrs["axis"], n.attrs["k"]
    zero = _k(e, 0, x)
    is_zero = e("eq", [x, zero])
    as_int = e("cast", [is_zero], dtype="i64")
    zeros_upto = e("cumsum", [as_int], axis=axis)                       # zeros at or before each position
    nonzero = e("sum", [e("cast", [e("ne", [x, zero])], dtype="i64")], axis=[axis], keepdims=True)
    rank_ok = e("le", [e("add", [nonzero, zeros_upto]), e.const(k, "i64")])   # its rank among zeros < k - nonzero
    kept = e("logical_or", [e("ne", [y, _k(e, 0, y)]), e("logical_and", [is_zero, rank_ok])])
    return [e("where", [kept, ct, _k(e, 0, ct)])]


# ---- dynamic_scale ---------------------------------------------------------------------------------------------
@vjp("dynamic_scale")
def _dynamic_scale(e, n, cts):
    """torch's autograd of where(s > 0, s, 1), s = amax|x| / qmax or mean|x|: the gradient of s times sign(x)
    (0 at 0, torch's abs).
    Where s = 0 every |x| of the group is 0, so sign(x) already makes it 0 (the guard needs no mask)."""
    x, ct = n.inputs[0], cts[0]
    axes = list(norm_axes(n.attrs["axis"], x.type.rank))
    if n.attrs["method"] == "absmean":
        g = _spread(e, _scale_by_count(e, ct, _count(x, axes)), x.type)
    else:
        mag = e("abs", [x])
        top = e("max", [mag], axis=axes, keepdims=True)
        ctq = e("mul", [ct, _k(e, 1 / float(qrange(n.attrs["bits"])[1]), ct)])
        g = _evenly(e, e("eq", [mag, top]), ctq, axes)
    # g sign(x), as wheres: sign has no gradient, and this keeps the rule differentiable (twice: 0 a.e.)
    zero = _k(e, 0, x)
    return [e("where", [e("gt", [x, zero]), g, e("where", [e("lt", [x, zero]), e("neg", [g]), _k(e, 0, g)])])]


# ---- pools -----------------------------------------------------------------------------------------------------
def _place(e, c, axis, k, stride, size, pad):
    """col2im along one axis for k equal taps: c (length `out` on `axis`) is the cotangent of each tap a in [0, k)
    of window i, at padded position a + stride i; returns the sum each position receives, cropped to the input's
    [pad, pad + size). Taps a = q stride + r share phase r: phase r sums its t_r taps shifted by q (pads of the
    small output-sized tensor), then the phases are interleaved by a reshape of a broadcast (every phase alike:
    kernel a multiple of the stride, e.g. kernel = stride) or of a concat on a new axis."""
    s, rank = stride, c.type.rank
    ax = axis % rank
    Q = -(-k // s)                   # taps in phase 0 (the most); a phase spans out + Q - 1 windows
    trail = [[0, 0]] * (rank - 1 - ax)
    phase = {}

    def taps(t):                     # t taps of a phase, shifted by q = 0 .. t-1
        if t not in phase:
            acc = None
            for q in range(t):
                v = c if Q == 1 else e("pad", [c], pads=[[q, Q - 1 - q]] + trail, value=0.0, mode="constant")
                acc = v if acc is None else e("add", [acc, v])
            phase[t] = acc if acc is not None else e.full(0.0, taps(Q).type)   # a stride longer than the kernel
        return phase[t]

    counts = [max(0, -(-(k - r) // s)) for r in range(s)]
    line = taps(counts[0])
    if s > 1:
        shape = list(line.type.shape)
        if len(set(counts)) == 1:
            stacked = e("broadcast_to", [e("expand_dims", [line], axis=ax + 1)],
                        shape=shape[:ax + 1] + [s] + shape[ax + 1:])
        else:
            stacked = e("concat", [e("expand_dims", [taps(t)], axis=ax + 1) for t in counts], axis=ax + 1)
        line = e("reshape", [stacked], shape=shape[:ax] + [shape[ax] * s] + shape[ax + 1:])
    # the windows reach at most s - 1 positions past the line's end (into the padding): zeros there
    short = sympy.sympify(pad + size - line.type.shape[ax])
    extra = (max(int(short), 0) if short.is_number else s - 1)
    if extra:
        line = e("pad", [line], pads=[[0, extra]] + trail, value=0.0, mode="constant")
    if pad == 0 and dims_equal(line.type.shape[ax], size):
        return line
    return e("slice", [line], slices=[[None, None, 1]] * ax + [[pad, pad + size, 1]])


def _pool_attrs(n):
    nd = n.inputs[0].type.rank - 2
    per = (lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * nd)
    return nd, per(n.attrs["kernel"]), per(n.attrs["stride"]), per(n.attrs["padding"])


def _avg_pool(e, n, cts):
    """Each window's ct / (kernel size) to every position of it (torch's count_include_pad=True)."""
    x = n.inputs[0]
    nd, kernel, stride, padding = _pool_attrs(n)
    c = _scale_by_count(e, cts[0], sympy.Integer(sympy.Mul(*kernel)))
    size = x.type.shape[2:]
    for d in reversed(range(nd)):   # the last spatial axis first: spread along it, then along the one before
        c = _place(e, c, d - nd, kernel[d], stride[d], size[d], padding[d])
    return [c]


def _window_starts(e, out, size, stride, padding):
    """i64 [*out]: the flat position (over x's spatial dims `size`) of each window's first tap (negative or past a
    row inside the padding), and the offset from it to the window's first real element (torch's initial index).
    Constants when the sizes are numbers, else built from aranges."""
    nd = len(out)
    if all(d.is_number for d in (*out, *size)):
        def flat(fn):
            rows = [[]]
            for d in range(nd):
                rows = [r + [fn(i * stride[d] - padding[d])] for r in rows for i in range(int(out[d]))]
            vals = [sum(v * int(sympy.Mul(*size[d + 1:])) for d, v in enumerate(r)) for r in rows]
            for d in reversed(range(1, nd)):   # nested row-major: [out0][out1]...
                m = int(out[d])
                vals = [vals[i:i + m] for i in range(0, len(vals), m)]
            return e("const", [], value=vals, dtype="i64", shape=[int(o) for o in out])
        return flat(lambda v: v), flat(lambda v: max(v, 0) - v)
    base = first = None
    for d in range(nd):
        start = e("add", [e("mul", [e("arange", [], n=out[d], dtype="i64"), e.const(stride[d], "i64")]),
                          e.const(-padding[d], "i64")])
        clamped = e("maximum", [start, e.const(0, "i64")])
        if base is not None:
            row = e.const(size[d], "i64")
            base = e("add", [e("mul", [e("expand_dims", [base], axis=-1), row]), start])
            first = e("add", [e("mul", [e("expand_dims", [first], axis=-1), row]), clamped])
        else:
            base, first = start, clamped
    return base, e("sub", [first, base])


def _max_pool(e, n, cts):
    """torch's max_pool backward: the whole ct of a window to one position, its first maximum in scan order
    (row-major offsets; a window of -inf only: its first real element, torch's initial index), by a scatter_add
    of ct at those flat positions (an i64 tensor of the output's size, as torch's saved indices).
    The taps are strided views of x padded with NaN, so a pad never equals the maximum (which a real element of
    the window holds); going through the taps backwards, `where(tap == y, tap offset, index)` leaves the first."""
    import itertools
    x, y, ct = n.inputs[0], n.output, cts[0]
    nd, kernel, stride, padding = _pool_attrs(n)
    out, size = y.type.shape[2:], x.type.shape[2:]
    xp = x
    if any(padding):
        xp = e("pad", [x], pads=[[p, p] for p in padding], value=float("nan"), mode="constant")
    base, idx = _window_starts(e, out, size, stride, padding)   # idx: offsets from each window's first tap
    for off in reversed(list(itertools.product(*[range(k) for k in kernel]))):
        slices = [[None, None, 1]] * 2 + [[a, a + s * (o - 1) + 1, s] for a, s, o in zip(off, stride, out)]
        tap = e("slice", [xp], slices=slices)
        shift = sympy.sympify(sum(a * sympy.Mul(*size[d + 1:]) for d, a in enumerate(off)))
        shift = int(shift) if shift.is_number else shift
        idx = e("where", [e("eq", [tap, y]), e.const(shift, "i64"), idx])
    idx = e("add", [idx, base])
    lead = list(x.type.shape[:2])
    flat_out, flat_in = sympy.Mul(*out), sympy.Mul(*size)
    if nd > 1:
        idx, ct = (e("reshape", [v], shape=lead + [flat_out]) for v in (idx, ct))
    g = e("scatter_add", [e.full(0.0, x.type.with_shape(lead + [flat_in])), idx, ct], axis=2)
    return [e("reshape", [g], shape=list(x.type.shape)) if nd > 1 else g]


vjp("avg_pool1d", "avg_pool2d")(_avg_pool)
vjp("max_pool1d", "max_pool2d")(_max_pool)
