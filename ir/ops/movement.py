"""Data movement: reshape, transpose, expand/squeeze, concat, split, slice, pad, broadcast, repeat, flip.

These never compute; the fusion pass turns most of them into index arithmetic.
"""
from __future__ import annotations

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import REQUIRED, document, register
from ..types import TensorType, broadcast_shapes, dim, dims_equal, fmt_dim, fmt_shape, normalize_axis, numel
from .common import same_dtype

_NOFLOPS = dict(kind="movement", flops=lambda i, o, a: 0)


def _ints(shape):
    return tuple(int(d) for d in shape)


def _reshape_infer(types, attrs):
    t = types[0]
    shape = [dim(d) if not (isinstance(d, int) and d == -1) else -1 for d in attrs["shape"]]
    if shape.count(-1) > 1:
        raise ShapeError("reshape: at most one dim may be -1")
    if -1 in shape:
        known = numel([d for d in shape if not (isinstance(d, int) and d == -1)])
        inferred = sympy.simplify(t.numel / known)
        if not (inferred.is_integer or inferred.is_Integer):
            raise ShapeError(f"reshape: cannot infer -1 reshaping {fmt_shape(t.shape)} to {attrs['shape']}")
        shape[shape.index(-1)] = inferred
    if not dims_equal(numel(shape), t.numel):
        raise ShapeError(f"reshape: {fmt_shape(t.shape)} has {fmt_dim(t.numel)} elements, {fmt_shape(shape)} has {fmt_dim(numel(shape))}")
    attrs["shape"] = list(shape)
    return t.with_shape(shape)


register("reshape", "x", attrs={"shape": REQUIRED}, infer=_reshape_infer, **_NOFLOPS,
         ref=lambda x, shape: x.reshape(_ints(shape)), torch=lambda T, x, shape: x.reshape(_ints(shape)))


def _transpose_infer(types, attrs):
    t = types[0]
    perm = attrs["perm"]
    if perm is None:
        perm = list(range(t.rank))[::-1]
    perm = [normalize_axis(p, t.rank) for p in perm]
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"transpose: {attrs['perm']} is not a permutation of the {t.rank} axes of {t}")
    attrs["perm"] = perm
    return t.with_shape([t.shape[p] for p in perm])


register("transpose", "x", attrs={"perm": None}, infer=_transpose_infer, **_NOFLOPS,
         ref=lambda x, perm: np.transpose(x, perm), torch=lambda T, x, perm: x.permute(*perm) if perm else x)


def _expand_infer(types, attrs):
    t = types[0]
    axis = normalize_axis(attrs["axis"], t.rank + 1)
    attrs["axis"] = axis
    return t.with_shape(t.shape[:axis] + (1,) + t.shape[axis:])


register("expand_dims", "x", attrs={"axis": REQUIRED}, infer=_expand_infer, **_NOFLOPS,
         ref=lambda x, axis: np.expand_dims(x, axis), torch=lambda T, x, axis: x.unsqueeze(axis))


def _squeeze_infer(types, attrs):
    t = types[0]
    axes = attrs["axis"]
    if axes is None:
        axes = [i for i, d in enumerate(t.shape) if d == 1]
    axes = axes if isinstance(axes, (list, tuple)) else [axes]
    axes = sorted({normalize_axis(a, t.rank) for a in axes})
    for a in axes:
        if t.shape[a] != 1:
            raise ShapeError(f"squeeze: axis {a} of {t} has size {fmt_dim(t.shape[a])}, not 1")
    attrs["axis"] = axes
    return t.with_shape([d for i, d in enumerate(t.shape) if i not in axes])


register("squeeze", "x", attrs={"axis": None}, infer=_squeeze_infer, **_NOFLOPS,
         ref=lambda x, axis: np.squeeze(x, tuple(axis)), torch=lambda T, x, axis: x.squeeze(tuple(axis)) if axis else x)


def _concat_infer(types, attrs):
    first = types[0]
    axis = normalize_axis(attrs["axis"], first.rank)
    attrs["axis"] = axis
    same_dtype("concat", *types)
    total = sympy.Integer(0)
    for t in types:
        if t.rank != first.rank or any(i != axis and not dims_equal(a, b) for i, (a, b) in enumerate(zip(first.shape, t.shape))):
            raise ShapeError(f"concat along axis {axis}: shapes {fmt_shape(first.shape)} and {fmt_shape(t.shape)} differ off that axis")
        total += t.shape[axis]
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


register("concat", "*xs", attrs={"axis": 0}, infer=_concat_infer, **_NOFLOPS,
         ref=lambda *xs, axis: np.concatenate(xs, axis=axis), torch=lambda T, *xs, axis: T.cat(xs, dim=axis))


def _split_infer(types, attrs):
    t = types[0]
    axis = normalize_axis(attrs["axis"], t.rank)
    attrs["axis"] = axis
    sizes = attrs["sizes"]
    if isinstance(sizes, (int, np.integer)):
        n = int(sizes)
        each = sympy.simplify(t.shape[axis] / n)
        if n <= 0 or not each.is_integer:
            raise ShapeError(f"split: dim {fmt_dim(t.shape[axis])} of {t} does not split into {n} equal parts")
        sizes = [each] * n
    sizes = [dim(s) for s in sizes]
    if not dims_equal(sum(sizes, sympy.Integer(0)), t.shape[axis]):
        raise ShapeError(f"split: sizes {fmt_shape(sizes)} do not add up to dim {fmt_dim(t.shape[axis])} of {t}")
    attrs["sizes"] = sizes
    return [t.with_shape(t.shape[:axis] + (s,) + t.shape[axis + 1:]) for s in sizes]


def _split_ref(x, sizes, axis):
    bounds = np.cumsum([int(s) for s in sizes])[:-1]
    return tuple(np.split(x, bounds, axis=axis))


register("split", "x", attrs={"sizes": REQUIRED, "axis": 0}, infer=_split_infer, **_NOFLOPS,
         ref=_split_ref, torch=lambda T, x, sizes, axis: tuple(T.split(x, [int(s) for s in sizes], dim=axis)))


def _slice_infer(types, attrs):
    """Static slices: per axis (start, stop, step) with compile-time ints; negative indices count from the end."""
    t = types[0]
    specs = attrs["slices"]
    if len(specs) > t.rank:
        raise ShapeError(f"slice: {len(specs)} slices for a rank-{t.rank} tensor {t}")
    shape = list(t.shape)
    out = []
    for i, (start, stop, step) in enumerate(specs):
        size = t.shape[i]
        step = 1 if step is None else int(step)
        if step <= 0:
            raise ShapeError("slice: step must be positive")
        start = 0 if start is None else start
        stop = size if stop is None else stop
        for bound in (start, stop):
            if _neg(bound) and size.is_number and -bound > size:
                raise ShapeError(f"slice bound {bound} out of range for dim {i} of {t}")
        start = size + start if _neg(start) else dim(start)
        stop = size + stop if _neg(stop) else dim(stop)
        length = sympy.ceiling((stop - start) / step)
        if length.is_number and (length < 0 or (size.is_number and (start > size or stop > size))):
            raise ShapeError(f"slice [{_fmt(start)}:{_fmt(stop)}] out of range for dim {i} of {t}")
        shape[i] = length
        out.append([start, stop, step])
    attrs["slices"] = out
    return t.with_shape(shape)


def _neg(v):
    return isinstance(v, (int, np.integer)) and v < 0


def _fmt(v):
    return fmt_dim(dim(v))


def slice_range_error(in_shape, slices) -> str | None:
    """The error for slice bounds outside the run-time sizes, else None: symbolic bounds (and dims bound to 0)
    are only known at run time, and a slice past the end must not silently shorten."""
    for axis, (a, b, c) in enumerate(slices):
        if not 0 <= int(a) <= int(b) <= in_shape[axis]:
            return f"slice {int(a)}:{int(b)} out of range for axis {axis} of size {in_shape[axis]}"
    return None


def _slice_ref(x, slices):
    msg = slice_range_error(x.shape, slices)
    if msg:
        from ...errors import PnetError
        raise PnetError(msg)
    idx = tuple(slice(int(a), int(b), int(c)) for a, b, c in slices)
    return x[idx]


register("slice", "x", attrs={"slices": REQUIRED}, infer=_slice_infer, **_NOFLOPS,
         ref=_slice_ref, torch=lambda T, x, slices: x[tuple(slice(int(a), int(b), int(c)) for a, b, c in slices)])


def _pad_infer(types, attrs):
    """`pads`: [[before, after], ...] for the trailing axes (like the last len(pads) dims)."""
    t = types[0]
    pads = attrs["pads"]
    if len(pads) > t.rank:
        raise ShapeError(f"pad: {len(pads)} pad pairs for a rank-{t.rank} tensor {t}")
    lead = t.rank - len(pads)
    shape = list(t.shape)
    for i, (a, b) in enumerate(pads):
        if int(a) < 0 or int(b) < 0:
            raise ShapeError("pad: amounts must be non-negative")
        shape[lead + i] = shape[lead + i] + a + b
    attrs["pads"] = [[int(a), int(b)] for a, b in pads]
    return t.with_shape(shape)


def pad_range_error(in_shape, pads, mode) -> str | None:
    """reflect / replicate / circular padding copies elements of the axis: none to copy on an axis bound to 0."""
    lead = len(in_shape) - len(pads)
    for i, (a, b) in enumerate(pads):
        if mode != "constant" and (a or b) and in_shape[lead + i] == 0:
            return f"pad: mode '{mode}' has no element to copy on axis {lead + i} of size 0"
    return None


def _pad_ref(x, pads, value, mode):
    msg = pad_range_error(x.shape, pads, mode)
    if msg:
        from ...errors import PnetError
        raise PnetError(msg)
    full = [(0, 0)] * (x.ndim - len(pads)) + [tuple(p) for p in pads]
    if mode == "constant":
        return np.pad(x, full, mode="constant", constant_values=value)
    return np.pad(x, full, mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode])


def _pad_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of every padded position along one axis (numpy's reflect/edge/wrap rules)."""
    return np.pad(np.arange(n), (before, after), mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode])


def _pad_torch(T, x, pads, value, mode):
    if mode == "constant":
        flat = [v for a, b in reversed(pads) for v in (a, b)]
        return T.nn.functional.pad(x, flat, value=value)
    # torch's reflect/replicate/circular pads only some ranks: gather along each axis instead
    out = x
    for i, (a, b) in enumerate(pads):
        ax = x.ndim - len(pads) + i
        if a or b:
            idx = T.as_tensor(_pad_index(out.shape[ax], a, b, mode), device=x.device)
            out = T.index_select(out, ax, idx)
    return out


register("pad", "x", attrs={"pads": REQUIRED, "value": 0.0, "mode": "constant"}, infer=_pad_infer, **_NOFLOPS,
         ref=_pad_ref, torch=_pad_torch)


def _broadcast_infer(types, attrs):
    t = types[0]
    shape = tuple(dim(d) for d in attrs["shape"])
    out = broadcast_shapes(t.shape, shape)
    if not all(dims_equal(a, b) for a, b in zip(out, shape)) or len(out) != len(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast {fmt_shape(t.shape)} to {fmt_shape(shape)}")
    attrs["shape"] = list(shape)
    return t.with_shape(shape)


register("broadcast_to", "x", attrs={"shape": REQUIRED}, infer=_broadcast_infer, **_NOFLOPS,
         ref=lambda x, shape: np.broadcast_to(x, _ints(shape)).copy(),
         torch=lambda T, x, shape: x.expand(*_ints(shape)) if shape else x.reshape(()))


def _repeat_infer(types, attrs):
    t = types[0]
    axis = normalize_axis(attrs["axis"], t.rank)
    attrs["axis"] = axis
    r = int(attrs["repeats"])
    if r < 1:
        raise ShapeError("repeat: repeats must be >= 1")
    return t.with_shape(t.shape[:axis] + (t.shape[axis] * r,) + t.shape[axis + 1:])


register("repeat", "x", attrs={"repeats": REQUIRED, "axis": 0}, infer=_repeat_infer, **_NOFLOPS,
         ref=lambda x, repeats, axis: np.repeat(x, repeats, axis=axis),
         torch=lambda T, x, repeats, axis: T.repeat_interleave(x, repeats, dim=axis))


def _tile_infer(types, attrs):
    t = types[0]
    reps = [int(r) for r in attrs["reps"]]
    if len(reps) != t.rank:
        raise ShapeError(f"tile: {len(reps)} repeat counts for a rank-{t.rank} tensor {t}")
    return t.with_shape([d * r for d, r in zip(t.shape, reps)])


register("tile", "x", attrs={"reps": REQUIRED}, infer=_tile_infer, **_NOFLOPS,
         ref=lambda x, reps: np.tile(x, reps), torch=lambda T, x, reps: x.repeat(*reps) if reps else x.clone())


def _flip_infer(types, attrs):
    t = types[0]
    axes = attrs["axis"] if isinstance(attrs["axis"], (list, tuple)) else [attrs["axis"]]
    attrs["axis"] = sorted({normalize_axis(a, t.rank) for a in axes})
    return t


register("flip", "x", attrs={"axis": REQUIRED}, infer=_flip_infer, **_NOFLOPS,
         ref=lambda x, axis: np.flip(x, tuple(axis)).copy(), torch=lambda T, x, axis: T.flip(x, tuple(axis)))


def _roll_infer(types, attrs):
    attrs["axis"] = normalize_axis(attrs["axis"], types[0].rank)
    return types[0]


register("roll", "x", attrs={"shift": REQUIRED, "axis": REQUIRED}, infer=_roll_infer, **_NOFLOPS,
         ref=lambda x, shift, axis: np.roll(x, int(shift), axis=axis),
         torch=lambda T, x, shift, axis: T.roll(x, int(shift), dims=axis))


# One-line docs of the ops above, for `pnet ops NAME` and the op reference in docs/language.md.
_DOCS = {
    "reshape": "the same elements in a new `shape` (one dim may be -1: inferred)",
    "transpose": "axes permuted by `perm` (none: reversed)",
    "expand_dims": "a new axis of size 1 at `axis`",
    "squeeze": "size-1 axes removed (`axis`, or none: every size-1 axis)",
    "concat": "the tensors in `xs` joined along `axis`: concat([a, b], axis=-1)",
    "split": "parts of x along `axis`: `sizes` is a number of equal parts or a list of sizes; q, k, v = split(x, 3, -1)",
    "slice": "x[start:stop:step] per leading axis, `slices` a list of [start, stop, step] (the `x[a:b]` syntax)",
    "pad": "x padded on its trailing axes by `pads` [[before, after], ...]; mode constant (`value`), reflect, replicate or circular",
    "broadcast_to": "x broadcast numpy-style to `shape`",
    "repeat": "each element repeated `repeats` times along `axis` (np.repeat, torch.repeat_interleave)",
    "tile": "x tiled `reps` times per axis (np.tile), one count per axis",
    "flip": "x reversed along `axis` (an int or a list)",
    "roll": "x shifted circularly by `shift` along `axis`",
}
document(_DOCS)
