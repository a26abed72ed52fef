"""Gradients (vector-Jacobian products, as IR) of the data-movement ops of movement.py (see elementwise_grad.py
for the conventions). A movement op only moves elements, so its gradient moves the cotangent back: the inverse
view (reshape back, inverse permutation, squeeze what expand_dims added, flip / roll back), the slices of a
concat, the concat of a split's parts (zeros for a part nothing differentiates), a broadcast or a repeat summed
back over its copies, and for slice and pad the adjoint placement: a slice's cotangent is put back into zeros
at its positions (a strided slice first spreads its elements `step` apart), a pad's cotangent is cut to the
interior, and reflect / replicate / circular padding adds each padded position's cotangent to the element it
copied (slices, flips and sums; past torch's limits, pads longer than the axis fold modulo the period, which
needs a concrete axis length). pack_bits / unpack_bits move bits of integers: no gradient."""
from __future__ import annotations

import sympy

from ..registry import no_grad, vjp
from ..types import dim, dims_equal


def _zero(d) -> bool:
    return dims_equal(dim(d), 0)


def _slice_axis(e, y, axis, start, stop, step=1):
    """y[start:stop:step] along `axis` (other axes whole)."""
    specs = [[None, None, None]] * axis + [[start, stop, step]]
    return e("slice", [y], slices=specs)


def _place(e, y, axis, before, after):
    """y with `before` zeros ahead of it and `after` zeros behind it along `axis` (the adjoint of a slice);
    a pad when both counts are concrete, else a concat with zero blocks of symbolic length."""
    before, after = sympy.simplify(dim(before)), sympy.simplify(dim(after))
    if before.is_Integer and after.is_Integer:
        if before == 0 and after == 0:
            return y
        pads = [[int(before), int(after)]] + [[0, 0]] * (y.type.rank - axis - 1)
        return e("pad", [y], pads=pads)
    parts = []
    for size in (before, None, after):
        if size is None:
            parts.append(y)
        elif not _zero(size):
            shape = list(y.type.shape)
            shape[axis] = size
            parts.append(e.full(0.0, y.type.with_shape(shape)))
    return e("concat", parts, axis=axis)


# ---- views and their inverses --------------------------------------------------------------------------------
@vjp("reshape")
def _reshape(e, n, cts):
    return [e("reshape", [cts[0]], shape=list(n.inputs[0].type.shape))]


@vjp("transpose")
def _transpose(e, n, cts):
    perm = n.attrs["perm"]
    inverse = sorted(range(len(perm)), key=lambda i: perm[i])
    return [e("transpose", [cts[0]], perm=inverse)]


@vjp("expand_dims")
def _expand_dims(e, n, cts):
    return [e("squeeze", [cts[0]], axis=[n.attrs["axis"]])]


@vjp("squeeze")
def _squeeze(e, n, cts):
    ct = cts[0]
    for a in n.attrs["axis"]:   # ascending: each axis lands where the input had it
        ct = e("expand_dims", [ct], axis=a)
    return [ct]


@vjp("broadcast_to")
def _broadcast_to(e, n, cts):
    return [e.sum_to(cts[0], n.inputs[0].type)]


@vjp("flip")
def _flip(e, n, cts):
    return [e("flip", [cts[0]], axis=list(n.attrs["axis"]))]


@vjp("roll")
def _roll(e, n, cts):
    return [e("roll", [cts[0]], shift=-int(n.attrs["shift"]), axis=n.attrs["axis"])]


# ---- joins and parts ---------------------------------------------------------------------------------------------
@vjp("concat")
def _concat(e, n, cts):
    axis = n.attrs["axis"]
    if len(n.inputs) == 1:
        return [cts[0]]
    return e.node("split", [cts[0]], sizes=[x.type.shape[axis] for x in n.inputs], axis=axis).outputs


@vjp("split")
def _split(e, n, cts):
    parts = [c if c is not None else e.full(0.0, o.type) for c, o in zip(cts, n.outputs)]
    return [parts[0] if len(parts) == 1 else e("concat", parts, axis=n.attrs["axis"])]


# ---- copies summed back ------------------------------------------------------------------------------------------
@vjp("repeat")
def _repeat(e, n, cts):
    """Each element repeated r times in a row: the cotangent as [.., n, r, ..], summed over the r axis."""
    (ct,), x = cts, n.inputs[0]
    axis, r = n.attrs["axis"], int(n.attrs["repeats"])
    if r == 1:
        return [ct]
    shape = list(x.type.shape)
    split = e("reshape", [ct], shape=shape[:axis] + [shape[axis], r] + shape[axis + 1:])
    return [e("sum", [split], axis=[axis + 1], keepdims=False)]


@vjp("tile")
def _tile(e, n, cts):
    """x tiled r times along an axis: the cotangent as [.., r, d, ..], summed over the r axis."""
    (ct,), x = cts, n.inputs[0]
    shape, axes = [], []
    for d, r in zip(x.type.shape, n.attrs["reps"]):
        if int(r) != 1:
            axes.append(len(shape))
            shape.append(int(r))
        shape.append(d)
    if not axes:
        return [ct]
    return [e("sum", [e("reshape", [ct], shape=shape)], axis=axes, keepdims=False)]


# ---- slice and pad -------------------------------------------------------------------------------------------------
@vjp("slice")
def _slice(e, n, cts):
    """The cotangent put back at the sliced positions, zeros elsewhere. A strided slice's elements are first
    spread `step` apart (a new axis padded to `step` and merged), then placed at `start`."""
    (ct,), x = cts, n.inputs[0]
    for axis, (start, stop, step) in enumerate(n.attrs["slices"]):
        size, m, step = x.type.shape[axis], ct.type.shape[axis], int(step)
        if step > 1:
            if _zero(m):
                return [e.full(0.0, x.type)]
            spread = e("pad", [e("expand_dims", [ct], axis=axis + 1)],
                       pads=[[0, step - 1]] + [[0, 0]] * (ct.type.rank - axis - 1))
            shape = list(ct.type.shape)
            shape[axis] = m * step
            span = (m - 1) * step + 1     # from the first picked element to the last
            ct = _slice_axis(e, e("reshape", [spread], shape=shape), axis, 0, span)
        else:
            span = stop - start
        ct = _place(e, ct, axis, start, size - start - span)
    return [ct]


@vjp("pad")
def _pad(e, n, cts):
    (ct,), x = cts, n.inputs[0]
    pads, mode = n.attrs["pads"], n.attrs["mode"]
    lead = x.type.rank - len(pads)
    if mode == "constant":
        specs = [[None, None, None]] * lead + [[a, a + d, 1] for (a, _), d in zip(pads, x.type.shape[lead:])]
        return [e("slice", [ct], slices=specs)]
    for i, (a, b) in enumerate(pads):
        if a or b:
            ct = _unpad(e, ct, lead + i, x.type.shape[lead + i], a, b, mode)
    return [ct]


def _unpad(e, ct, axis, d, a, b, mode):
    """The adjoint of padding one axis of length d by (a, b) copies of its elements (reflect, replicate,
    circular): each padded position's cotangent added to the element it copied."""
    g = _slice_axis(e, ct, axis, a, a + d)
    left = _slice_axis(e, ct, axis, 0, a) if a else None
    right = _slice_axis(e, ct, axis, a + d, a + d + b) if b else None
    if mode == "replicate":   # the edge element, as often as it was copied
        for part, before, after in ((left, 0, d - 1), (right, d - 1, 0)):
            if part is not None:
                g = e("add", [g, _place(e, e("sum", [part], axis=[axis], keepdims=True), axis, before, after)])
        return g
    concrete = dim(d).is_Integer
    if concrete and mode == "reflect" and int(d) == 1:   # every position copies the one element
        return e("sum", [ct], axis=[axis], keepdims=True)
    limit = d - 1 if mode == "reflect" else d
    if concrete and max(a, b) > int(limit):
        return _fold(e, ct, axis, int(d), a, b, mode)
    if mode == "circular":   # left: the last a elements, right: the first b
        parts = ((left, d - a, 0), (right, 0, d - b))
    else:   # reflect: left mirrors elements 1..a, right mirrors d-1-b..d-2 (flipped)
        parts = ((left, 1, d - 1 - a), (right, d - 1 - b, 1))
        parts = tuple((e("flip", [p], axis=[axis]) if p is not None else None, s, t) for p, s, t in parts)
    for part, before, after in parts:
        if part is not None:
            g = e("add", [g, _place(e, part, axis, before, after)])
    return g


def _fold(e, ct, axis, d, a, b, mode):
    """Pads longer than the axis: padded position p copies element q = (p - a) mod P of the periodic extension
    (P = d for circular, 2 (d - 1) for reflect, where q >= d mirrors to P - q): the cotangent is aligned to
    the period with zeros, cut into [.., m, P, ..] and summed over m, then reflect folds P - q onto q."""
    period = d if mode == "circular" else 2 * (d - 1)
    total = a + d + b
    front = -a % period
    back = -(total + front) % period
    ct = _place(e, ct, axis, front, back)
    shape = list(ct.type.shape)
    shape[axis:axis + 1] = [(total + front + back) // period, period]
    g = e("sum", [e("reshape", [ct], shape=shape)], axis=[axis], keepdims=False)
    if mode == "circular" or d == 2:
        return g
    mirrored = e("flip", [_slice_axis(e, g, axis, d, period)], axis=[axis])
    return e("add", [_slice_axis(e, g, axis, 0, d), _place(e, mirrored, axis, 1, 1)])


no_grad("bit packing of integers: no float flows through it", "pack_bits", "unpack_bits")
