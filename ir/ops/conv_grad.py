"""Gradients (vector-Jacobian products, as IR) of the convolutions of conv.py (see elementwise_grad.py for the
conventions), composed as torch's convolution_backward does:

- input: the transposed convolution of the cotangent with the same weight (conv_transpose2d; conv1d through
  it on a unit height, by `expand_dims` views). conv3d, which has no transposed op, convolves the cotangent
  dilated by the stride (zeros between its rows) and padded by dilation * (kernel - 1) - padding with the
  weight flipped and its channel roles swapped, at stride 1: one copy of the cotangent s^3 times its size, no
  larger than the input's gradient times C_out / C_in. The rows a partial last stride step leaves
  (`output_padding`) are exact when the sizes are static, else covered by padding and a slice.
- weight: a convolution with the batch and channel roles swapped: the input laid out [C_in/groups,
  groups * N, *spatial] convolved with the cotangent [C_out, N, *out] as its weight, with stride and dilation
  exchanged and `groups` groups, giving [C_in/groups, C_out, *kernel'] (kernel' >= kernel: sliced), then
  transposed to the weight's layout.
- bias: the cotangent summed over the batch and spatial axes.

conv_transpose2d is the adjoint of conv2d: its input's gradient is conv2d of the cotangent with its weight, and
its weight's gradient the same swapped-roles convolution with the input and cotangent exchanged."""
from __future__ import annotations

import sympy

from ..registry import vjp
from ..types import dims_equal
from .conv import per_dim


def _swap01(e, v):
    """[A, B, ...] -> [B, A, ...] (a view)."""
    return e("transpose", [v], perm=[1, 0] + list(range(2, v.type.rank)))


def _grouped_batch(e, v, groups):
    """[N, C, *S] -> [C/groups, groups * N, *S]: channels within a group become the batch, and the batch the
    channels of each group."""
    if groups == 1:
        return _swap01(e, v)
    n, c, *sp = v.type.shape
    v = e("reshape", [v], shape=[n, groups, c / groups, *sp])
    v = e("transpose", [v], perm=[2, 1, 0] + list(range(3, v.type.rank)))
    return e("reshape", [v], shape=[c / groups, groups * n, *sp])


def _crop(e, v, sizes):
    """v sliced to `sizes` along its trailing (spatial) axes where it is larger."""
    lead = v.type.rank - len(sizes)
    if all(dims_equal(a, b) for a, b in zip(v.type.shape[lead:], sizes)):
        return v
    return e("slice", [v], slices=[[None, None, None]] * lead + [[0, s, 1] for s in sizes])


def _bias_grad(e, ct):
    return e("sum", [ct], axis=[0] + list(range(2, ct.type.rank)), keepdims=False)


def _weight_grad(e, data, ct, kernel, stride, padding, dilation, groups):
    """d(loss)/d(weight) of a convolution reading `data` [N, C, *S] with cotangent `ct` [N, F, *O]:
    [F, C/groups, *kernel]."""
    nd = len(kernel)
    op = f"conv{nd}d"
    g = e(op, [_grouped_batch(e, data, groups), _swap01(e, ct), None], stride=dilation, padding=padding,
          dilation=stride, groups=groups)                          # [C/groups, F, *kernel']
    return _swap01(e, _crop(e, g, kernel))


def _output_padding(size, out, kernel, stride, padding, dilation):
    """The rows after the last window that a transposed convolution must add back to reach `size`; None when
    it is not a static integer."""
    extra = sympy.simplify(size + 2 * padding - dilation * (kernel - 1) - 1 - (out - 1) * stride)
    return int(extra) if extra.is_Integer else None


def _input_grad_transposed(e, ct, w, x, stride, padding, dilation, groups):
    """conv1d/conv2d: the input's gradient as conv_transpose2d of the cotangent with the weight."""
    nd = x.type.rank - 2
    if nd == 1:   # a unit height: [N, F, 1, O] and [F, C/g, 1, K]
        ct, w = e("expand_dims", [ct], axis=2), e("expand_dims", [w], axis=2)
        stride, padding, dilation = [1] + stride, [0] + padding, [1] + dilation
    size = list(x.type.shape[2:]) if nd == 2 else [1, x.type.shape[2]]
    extra = [_output_padding(*a) for a in zip(size, ct.type.shape[2:], w.type.shape[2:], stride, padding, dilation)]
    exact = all(a is not None for a in extra)
    outpad = extra if exact else [s - 1 for s in stride]          # cover the partial step, then slice
    gx = e("conv_transpose2d", [ct, w, None], stride=stride, padding=padding, dilation=dilation, groups=groups,
           output_padding=outpad)
    if not exact:
        gx = _crop(e, gx, size)
    return e("squeeze", [gx], axis=2) if nd == 1 else gx


def _dilate(e, v, axis, s):
    """Zeros inserted between the entries of v along `axis` (s - 1 after each but the last)."""
    if s == 1:
        return v
    shape = list(v.type.shape)
    v = e("expand_dims", [v], axis=axis + 1)
    v = e("pad", [v], pads=[[0, s - 1]] + [[0, 0]] * (v.type.rank - axis - 2))
    v = e("reshape", [v], shape=shape[:axis] + [shape[axis] * s] + shape[axis + 1:])
    return e("slice", [v], slices=[[None, None, None]] * axis + [[0, (shape[axis] - 1) * s + 1, 1]])


def _input_grad_dilated(e, ct, w, x, stride, padding, dilation, groups):
    """Any spatial rank: the cotangent dilated by the stride and padded, convolved at stride 1 with the weight
    flipped and its channel roles swapped per group."""
    nd = x.type.rank - 2
    size, kernel = list(x.type.shape[2:]), list(w.type.shape[2:])
    v = ct
    for i, s in enumerate(stride):
        v = _dilate(e, v, 2 + i, s)
    pads, cut, exact = [], [], True
    for i, (n, o, k, s, p, d) in enumerate(zip(size, ct.type.shape[2:], kernel, stride, padding, dilation)):
        extra = _output_padding(n, o, k, s, p, d)
        exact = exact and extra is not None
        lo = d * (k - 1) - p
        hi = lo + (extra if extra is not None else s - 1)
        length = v.type.shape[2 + i]
        cut.append([max(-lo, 0), length - max(-hi, 0), 1])
        pads.append([max(lo, 0), max(hi, 0)])
    if any(c[0] for c in cut) or any(not dims_equal(c[1], v.type.shape[2 + j]) for j, c in enumerate(cut)):
        v = e("slice", [v], slices=[[None, None, None]] * 2 + cut)
    if any(a or b for a, b in pads):
        v = e("pad", [v], pads=pads)
    f, cg = w.type.shape[:2]
    wt = e("reshape", [w], shape=[groups, f / groups, cg, *kernel])
    wt = e("transpose", [wt], perm=[0, 2, 1] + list(range(3, 3 + nd)))       # [g, C/g, F/g, *k]
    wt = e("reshape", [wt], shape=[groups * cg, f / groups, *kernel])
    wt = e("flip", [wt], axis=list(range(2, 2 + nd)))
    gx = e(f"conv{nd}d", [v, wt, None], stride=1, padding=0, dilation=dilation, groups=groups)
    return gx if exact else _crop(e, gx, size)


def _conv(e, n, cts):
    (ct,), (x, w, b) = cts, n.inputs
    a = n.attrs
    nd = x.type.rank - 2
    stride, padding, dilation = (per_dim(a[k], nd) for k in ("stride", "padding", "dilation"))
    groups = a["groups"]
    inner = _input_grad_transposed if nd <= 2 else _input_grad_dilated
    gx = inner(e, ct, w, x, stride, padding, dilation, groups)
    gw = _weight_grad(e, x, ct, list(w.type.shape[2:]), stride, padding, dilation, groups)
    return [gx, gw, _bias_grad(e, ct) if b is not None else None]


vjp("conv1d", "conv2d", "conv3d")(_conv)


@vjp("conv_transpose2d")
def _conv_transpose(e, n, cts):
    (ct,), (x, w, b) = cts, n.inputs
    a = n.attrs
    stride, padding, dilation = (per_dim(a[k], 2) for k in ("stride", "padding", "dilation"))
    groups = a["groups"]
    gx = e("conv2d", [ct, w, None], stride=stride, padding=padding, dilation=dilation, groups=groups)
    gx = _crop(e, gx, list(x.type.shape[2:]))                      # rows output_padding added
    gw = _weight_grad(e, ct, x, list(w.type.shape[2:]), stride, padding, dilation, groups)
    return [gx, gw, _bias_grad(e, ct) if b is not None else None]
