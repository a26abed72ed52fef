"""How a float weight becomes integers: symmetric scales (per channel or group-wise, absmax or the clip with the
least error), round to nearest or GPTQ, sign / ternary weights with a per-channel scale, and packing of
sub-byte widths. Pure NumPy on arrays; the QWeight it returns is what the rewrite puts in the graph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ir.graph import Param, Value
from ...ir.ops.quant import _dequantize_np, _pack_np, _quantize_np, expand_np, qrange
from .schemes import CLIP_RATIOS, STORAGE_BITS, Options


def weight_scale(w: np.ndarray, bits: int, channel_axis: int, group_axis: int | None, group_size: int,
                 method: str = "absmax") -> np.ndarray:
    """Symmetric scales, keepdims over the non-channel axes; group-wise along `group_axis` when it splits."""
    qmax = qrange(bits)[1]
    a = np.abs(w.astype(np.float64))
    shape = list(w.shape)
    if group_axis is not None and group_size < shape[group_axis] and shape[group_axis] % group_size == 0:
        ng = shape[group_axis] // group_size
        split = shape[:group_axis] + [ng, group_size] + shape[group_axis + 1:]
        a = a.reshape(split)
        axes = tuple(i for i in range(len(split)) if i != channel_axis + (1 if channel_axis > group_axis else 0)
                     and i != group_axis)
        s = a.max(axis=axes, keepdims=True) / qmax
        s = s.reshape([d if i in (channel_axis, group_axis) else 1 for i, d in
                       enumerate(shape[:group_axis] + [ng] + shape[group_axis + 1:])])
    else:
        axes = tuple(i for i in range(w.ndim) if i != channel_axis)
        s = a.mean(axis=axes, keepdims=True) if method == "absmean" else (a.max(axis=axes, keepdims=True) / qmax)
    s = s.astype(np.float32)
    s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
    if method == "mse":
        s = _search_clip(w, s, bits)
    return s


def _search_clip(w: np.ndarray, s: np.ndarray, bits: int) -> np.ndarray:
    """Per scale entry, the clip ratio (of the absmax scale) with the least squared rounding + clipping error."""
    best, best_err = s, None
    for r in CLIP_RATIOS:
        c = (s * np.float32(r)).astype(np.float32)
        e = (_dequantize_np(_quantize_np(w, c, None, bits, True), c, dtype="f32") - w).astype(np.float64) ** 2
        # the error summed over each scale entry's block
        err = _block_sum(e, s.shape)
        if best_err is None:
            best, best_err = c, err
        else:
            better = err < best_err
            best, best_err = np.where(better, c, best), np.where(better, err, best_err)
    return best.astype(np.float32)


def _block_sum(e: np.ndarray, sshape) -> np.ndarray:
    shape = list(e.shape)
    split, axes = [], []
    for i, (dx, ds) in enumerate(zip(shape, sshape)):
        if ds == dx:
            split.append(dx)
        elif ds == 1:
            axes.append(len(split))
            split.append(dx)
        else:
            split += [ds, dx // ds]
            axes.append(len(split) - 1)
    return e.reshape(split).sum(axis=tuple(axes)).reshape(sshape)


def _squeeze_leading(s: np.ndarray) -> np.ndarray:
    while s.ndim > 1 and s.shape[0] == 1:
        s = s[0]
    return s


def _binary_weights(w: np.ndarray, channel_axis: int, ternary: bool):
    axes = tuple(i for i in range(w.ndim) if i != channel_axis)
    a = np.abs(w.astype(np.float64))
    if ternary:
        thr = 0.7 * a.mean(axis=axes, keepdims=True)
        keep = a > thr
        q = (np.sign(w) * keep).astype(np.int8)
        cnt = np.maximum(keep.sum(axis=axes, keepdims=True), 1)
        alpha = (a * keep).sum(axis=axes, keepdims=True) / cnt
    else:
        q = np.where(w >= 0, 1, -1).astype(np.int8)
        alpha = a.mean(axis=axes, keepdims=True)
    alpha = np.where(alpha > 0, alpha, 1.0).astype(np.float32)
    return q, alpha


@dataclass
class QWeight:
    """A quantized parameter: its new params and how to get it back as a float value."""
    scheme: str
    channel_axis: int
    qname: str
    sname: str
    q: np.ndarray                 # the integer values, unpacked (i8)
    scale: np.ndarray             # broadcastable against the weight
    stored: np.ndarray            # what the param holds (packed for w4)
    packed_axis: int | None = None
    bits: int = 8                 # of storage, when packed
    float_value: Value | None = None   # dequantized in the graph, made on first need
    int_value: Value | None = None     # the i8 weight in the graph
    scale_value: Value | None = None
    stored_value: Value | None = None  # the param as stored (packed bytes for sub-byte widths)


def gptq(w_kn: np.ndarray, hessian: np.ndarray, scale_kn: np.ndarray, bits: int, damp: float = 0.01) -> np.ndarray | None:
    """GPTQ (Frantar et al., 2023) with fixed scales: quantize the rows of W [K, N] (K = input features) in
    order, spreading each row's rounding error over the rows not yet quantized through the Cholesky factor
    of the inverse Hessian H = X^T X of the calibration inputs, so that x @ Q (not Q entry by entry)
    approximates x @ W. Returns the int8 values, or None when H cannot be factored."""
    w = w_kn.astype(np.float64).copy()
    k = w.shape[0]
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) <= 0                        # features never active in the calibration data
    h[dead, dead] = 1.0
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).T   # upper: H^-1 = u^T u
    except np.linalg.LinAlgError:
        return None
    lo, hi = qrange(bits, narrow=True)
    s = scale_kn.astype(np.float64)
    q = np.empty(w.shape, np.int8)
    for i in range(k):
        qi = np.clip(np.rint(w[i] / s[i]), lo, hi)
        q[i] = qi
        err = (w[i] - qi * s[i]) / u[i, i]
        w[i + 1:] -= np.outer(u[i, i + 1:], err)
    return q


def _quantize_weight(p: Param, w: np.ndarray, opts: Options, channel_axis: int, group_axis: int,
                     hessian: tuple | None = None) -> QWeight:
    """`hessian`: (H, transposed) of the dense layer using `w`, from calibration data: GPTQ rounding."""
    scheme = opts.scheme
    if scheme in ("binary", "ternary"):
        q, s = _binary_weights(w, channel_axis, scheme == "ternary")
    else:
        bits = 4 if scheme == "w4" else 8
        per_channel = scheme == "w8a8"
        s = weight_scale(w.astype(np.float32), bits, channel_axis, None if per_channel else group_axis, opts.group_size,
                         method="mse" if opts.weight_observer == "mse" else "absmax")
        q = _quantize_np(w.astype(np.float32), s, None, bits, True)
        if hessian is not None and w.ndim == 2:
            h, transposed = hessian
            full = np.broadcast_to(expand_np(s, w.shape), w.shape)
            g = gptq(w.T if transposed else w, h, full.T if transposed else full, bits)
            if g is not None:
                q = g.T.copy() if transposed else g
    s = _squeeze_leading(s)
    stored, packed_axis = q, None
    bits = STORAGE_BITS.get(scheme, 8)
    if bits < 8:   # packed 8/bits to a byte along the first axis (the group axis preferred) that they divide
        fits = [i for i in [group_axis] + list(range(w.ndim)) if w.shape[i] % (8 // bits) == 0]
        if fits:
            packed_axis = fits[0]
            stored = _pack_np(q, bits=bits, axis=packed_axis)
    base = p.name
    return QWeight(scheme, channel_axis, base + (f".q{bits}" if packed_axis is not None else ".q"), base + ".scale",
                   q, s, stored, packed_axis, bits)


def _rel(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float(np.linalg.norm(a - b))
