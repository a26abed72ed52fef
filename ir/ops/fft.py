"""Complex values and the discrete Fourier transform: a complex dtype (c64; c128 is what c64 runs in under
--float64), `complex(re, im)`, `real`, `imag`, `conj`, `angle` and `abs` (|z| of a complex z is its modulus, a
real tensor), and the FFTs `fft` / `ifft` / `rfft` / `irfft` along one axis and `fft2` / `ifft2` / `rfft2` /
`irfft2` over two, with NumPy's `norm` ("backward": the forward transform unscaled and the inverse 1/n; "ortho":
both 1/sqrt(n); "forward": the forward 1/n and the inverse unscaled). Enough for Fourier neural operators and
complex-valued layers.

Which ops take complex operands is a list (`COMPLEX_OPS`, registry.allow_complex): the arithmetic (add, sub,
mul, div, neg, scale, where: complex multiply and divide), sum and mean, matmul and einsum, and the movement
ops (slices, concat, pads, reshapes: dtype-agnostic). Any other op given a complex tensor is a located one-line
type error (relu, exp, softmax, comparisons, max, casts...): take real(z), imag(z), abs(z) or angle(z) first.
Parameters stay real: a complex weight is complex(w_re, w_im) of two real params.

Every reference is numpy.fft (pocketfft), rounded to c64 / f32 (c128 / f64 under --float64); the torch lowerings
are torch.fft. The Triton backend has no complex dtype: every op with a complex operand or result runs through
its torch lowering, counted as a fallback in the plan (passes/fuse.py). Gradients: fft_grad.py."""
from __future__ import annotations

import math

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import OPS, allow_complex, register
from ..types import (TensorType, broadcast_shapes, complex_dtype, fmt_dim, is_complex, is_float, normalize_axis,
                     promote, real_dtype)

NORMS = ("backward", "ortho", "forward")
DUAL_NORM = {"backward": "forward", "forward": "backward", "ortho": "ortho"}   # the adjoint's scaling


# ---- dtypes of the references -----------------------------------------------------------------------------------
def _np_complex(x) -> np.dtype:
    """complex128 for a float64 / complex128 array (the float64 reference), else complex64."""
    return np.dtype(np.complex128) if x.dtype in (np.float64, np.complex128) else np.dtype(np.complex64)


def _np_real(x) -> np.dtype:
    return np.dtype(np.float64) if x.dtype in (np.float64, np.complex128) else np.dtype(np.float32)


def _widen(x):
    """f16 (and bf16's f32 storage) computed in f32: numpy.fft and torch.fft have no half transforms."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _torch_widen(T, x):
    return x.float() if x.dtype in (T.float16, T.bfloat16) else x


# ---- complex construction and parts -----------------------------------------------------------------------------
def _complex_infer(types, attrs):
    a, b = types
    for t in (a, b):
        if not is_float(t.dtype):
            raise ShapeError(f"complex(re, im) expects real float tensors, got {a} and {b}")
    return TensorType(complex_dtype(promote(a.dtype, b.dtype)), broadcast_shapes(a.shape, b.shape))


def _complex_ref(re, im):
    re, im = np.broadcast_arrays(re, im)
    out = np.empty(re.shape, _np_complex(np.empty(0, np.result_type(re, im))))
    out.real, out.imag = re, im        # not re + 1j * im: 1j * inf would make a NaN real part
    return out


def _complex_torch(T, re, im):
    dt = T.promote_types(re.dtype, im.dtype)
    dt = T.float64 if dt == T.float64 else T.float32
    re, im = T.broadcast_tensors(re.to(dt), im.to(dt))
    return T.complex(re.contiguous(), im.contiguous())


def _complex_only(name, out_real):
    def infer(types, attrs):
        t = types[0]
        if not is_complex(t.dtype):
            raise ShapeError(f"{name} expects a complex tensor (c64), got {t}")
        return t.with_dtype(real_dtype(t.dtype)) if out_real else t
    return infer


register("complex", "re, im", infer=_complex_infer, ref=_complex_ref, torch=_complex_torch,
         flops=lambda i, o, a: 0, doc="the complex tensor re + i im (both real floats, broadcasting): c64")
register("real", "z", infer=_complex_only("real", True), ref=lambda z: np.ascontiguousarray(z.real),
         torch=lambda T, z: T.real(z).contiguous(), flops=lambda i, o, a: 0, doc="the real part of a complex tensor")
register("imag", "z", infer=_complex_only("imag", True), ref=lambda z: np.ascontiguousarray(z.imag),
         torch=lambda T, z: T.imag(z).contiguous(), flops=lambda i, o, a: 0,
         doc="the imaginary part of a complex tensor")
register("conj", "z", infer=_complex_only("conj", False), ref=np.conj,
         torch=lambda T, z: T.conj(z).resolve_conj(), doc="the complex conjugate re - i im")
register("angle", "z", infer=_complex_only("angle", True),
         ref=lambda z: np.arctan2(z.imag, z.real).astype(_np_real(z)),
         torch=lambda T, z: T.atan2(T.imag(z), T.real(z)), flops=lambda i, o, a: 12 * o[0].numel,
         doc="the argument atan2(imag, real) of a complex tensor, in [-pi, pi]")

# abs (elementwise.py) of a complex tensor is its modulus, a real tensor: the type rule and reference extended here
_abs = OPS["abs"]
_abs_infer, _abs_ref = _abs.infer, _abs.ref


def _abs_complex_infer(types, attrs):
    t = types[0]
    return t.with_dtype(real_dtype(t.dtype)) if is_complex(t.dtype) else _abs_infer(types, attrs)


def _abs_complex_ref(x, **kw):
    return np.abs(x).astype(_np_real(x)) if np.iscomplexobj(x) else _abs_ref(x, **kw)


_abs.infer, _abs.ref = _abs_complex_infer, _abs_complex_ref


# ---- the transforms ----------------------------------------------------------------------------------------------
def _log2(n) -> sympy.Expr:
    if n.is_Integer:
        return sympy.Integer(max(1, math.ceil(math.log2(max(int(n), 1)))))
    return sympy.ceiling(sympy.log(sympy.Max(n, 2), 2))   # (a dim bound to 0 or 1: one pass, as above)


def _check_norm(op, norm):
    if norm not in NORMS:
        raise ShapeError(f"{op}: norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}")


def _axes(op, attrs, t):
    """The transformed axes, non-negative: [axis] (1-D) or the two of `axes` (2-D)."""
    if "axes" in attrs:
        axes = attrs["axes"]
        if not isinstance(axes, (list, tuple)) or len(axes) != 2:
            raise ShapeError(f"{op}: axes must be a list of two axes, got {axes!r}")
        out = [normalize_axis(a, t.rank, f"{op}: axis") for a in axes]
        if out[0] == out[1]:
            raise ShapeError(f"{op}: axes {axes} name one axis twice")
        return out
    return [normalize_axis(attrs["axis"], t.rank, f"{op}: axis")]


def _n_attr(op, n):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, sympy.Basic)) or (isinstance(n, int) and n < 1):
        raise ShapeError(f"{op}: n must be a positive integer, got {n!r}")
    return sympy.Integer(n) if isinstance(n, int) else n


def _fft_infer(op, kind):
    """kind: "c2c" (fft, ifft: real or complex in, complex out), "r2c" (rfft: real in, n // 2 + 1 along the last
    transformed axis), "c2r" (irfft: complex in, n out, n = 2 (m - 1) by default)."""
    def infer(types, attrs):
        t = types[0]
        _check_norm(op, attrs["norm"])
        if kind == "r2c" and not is_float(t.dtype):
            raise ShapeError(f"{op} expects a real float tensor, got {t} (use fft for a complex one)")
        if kind == "c2r" and not is_complex(t.dtype):
            raise ShapeError(f"{op} expects a complex tensor (c64), got {t} (rfft's output)")
        if kind == "c2c" and not (is_float(t.dtype) or is_complex(t.dtype)):
            raise ShapeError(f"{op} expects a float or complex tensor, got {t}")
        axes = _axes(op, attrs, t)
        shape = list(t.shape)
        for a in axes:
            if shape[a].is_Integer and int(shape[a]) == 0:
                raise ShapeError(f"{op}: axis {a} of {t} has length 0")
        last = axes[-1]
        if kind == "r2c":
            shape[last] = sympy.floor(shape[last] / 2) + 1
            return TensorType(complex_dtype(t.dtype), tuple(shape))
        if kind == "c2r":
            n = _n_attr(op, attrs["n"])
            shape[last] = n if n is not None else 2 * (shape[last] - 1)
            if shape[last].is_Integer and int(shape[last]) < 1:
                raise ShapeError(f"{op}: {t} gives {fmt_dim(shape[last])} output points along axis {last} "
                                 "(give n, the output length)")
            return TensorType(real_dtype(t.dtype), tuple(shape))
        return TensorType(complex_dtype(t.dtype), tuple(shape))
    return infer


def _fft_flops(kind):
    """5 n log2 n per complex transform of length n (half for a real one), over every transformed axis."""
    def flops(i, o, attrs):
        big = i[0] if kind != "c2r" else o[0]          # the real side of rfft / irfft, the full length
        axes = _axes("fft", attrs, big)
        per = sum((_log2(big.shape[a]) for a in axes), sympy.Integer(0))
        return (5 if kind == "c2c" else 3) * big.numel * per
    return flops


def _check_len(op, x, axes):
    for a in axes:
        if x.shape[a] == 0:
            raise ShapeError(f"{op}: axis {a} of a tensor of shape {list(x.shape)} has length 0")


def _ref(op, fn, out_real=False, two=False):
    def ref(x, norm, axis=None, axes=None, n=None):
        x = _widen(x)
        ax = [int(a) % x.ndim for a in (axes if two else [axis])]
        _check_len(op, x, ax)
        kw = {"norm": norm}
        if n is not None:
            kw["s" if two else "n"] = ([x.shape[ax[0]], int(n)] if two else int(n))
        with np.errstate(all="ignore"):
            out = fn(x, axes=ax, **kw) if two else fn(x, axis=ax[0], **kw)
        return out.astype(_np_real(x) if out_real else _np_complex(x), copy=False)
    return ref


def _torch_empty(T, x, fn_name, axes, n):
    """The result over an empty batch (torch's MKL transforms refuse one; numpy gives an empty array)."""
    shape, last = list(x.shape), int(axes[-1]) % x.ndim
    real = T.float64 if x.dtype in (T.float64, T.complex128) else T.float32
    if fn_name.startswith("irfft"):
        shape[last] = int(n) if n is not None else 2 * (shape[last] - 1)
        return T.zeros(shape, dtype=real, device=x.device)
    if fn_name.startswith("rfft"):
        shape[last] = shape[last] // 2 + 1
    return T.zeros(shape, dtype=T.complex128 if real == T.float64 else T.complex64, device=x.device)


def _torch(fn_name, two=False, c2r=False):
    def lower(T, x, norm, axis=None, axes=None, n=None):
        x = _torch_widen(T, x)
        if x.numel() == 0:
            return _torch_empty(T, x, fn_name, axes if two else [axis], n)
        fn = getattr(T.fft, fn_name)
        if two:
            dims = tuple(int(a) for a in axes)
            s = None if n is None else (x.shape[dims[0]], int(n))
            return fn(x, s=s, dim=dims, norm=norm) if c2r else fn(x, dim=dims, norm=norm)
        if c2r:
            return fn(x, n=None if n is None else int(n), dim=int(axis), norm=norm)
        return fn(x, dim=int(axis), norm=norm)
    return lower


_ONE = {"axis": -1, "norm": "backward"}
_TWO = {"axes": [-2, -1], "norm": "backward"}
_FFT_DOCS = {
    "fft": "the discrete Fourier transform along `axis` (real or complex x; complex out), numpy.fft.fft",
    "ifft": "the inverse of fft along `axis`: sum x_k exp(+2 pi i k n / N), 1/N with norm=\"backward\"",
    "rfft": "fft of a real x along `axis`, keeping the n // 2 + 1 non-negative frequencies",
    "irfft": "the inverse of rfft: complex x (m points along `axis`) to n real points (n = 2 (m - 1) unless given)",
    "fft2": "fft over the two `axes` (default the last two)",
    "ifft2": "ifft over the two `axes`",
    "rfft2": "rfft over the two `axes`: fft along the first, rfft (half spectrum) along the second",
    "irfft2": "the inverse of rfft2: n real points along the second axis (2 (m - 1) unless given)",
}
for _name, _kind, _two in [("fft", "c2c", False), ("ifft", "c2c", False), ("rfft", "r2c", False),
                           ("irfft", "c2r", False), ("fft2", "c2c", True), ("ifft2", "c2c", True),
                           ("rfft2", "r2c", True), ("irfft2", "c2r", True)]:
    _attrs = dict(_TWO if _two else _ONE)
    if _kind == "c2r":
        _attrs = {"n": None, **_attrs}
    _np_fn = getattr(np.fft, _name if not _two else _name[:-1] + "n")   # fftn over `axes` (fft2's keyword is axes)
    register(_name, "x", attrs=_attrs, infer=_fft_infer(_name, _kind), ref=_ref(_name, _np_fn, _kind == "c2r", _two),
             torch=_torch(_name, _two, _kind == "c2r"), kind="contraction",   # a DFT is a product with a fixed matrix
             flops=_fft_flops(_kind), doc=_FFT_DOCS[_name])

FFT_OPS = ("fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2")
# the ops whose operand or result is always complex: never a Triton kernel (cli/ops.py says so)
ALWAYS_COMPLEX = ("complex", "real", "imag", "conj", "angle") + FFT_OPS
# the ops that take complex operands (everything else refuses them in registry.OpDef.infer_types)
COMPLEX_OPS = ("real", "imag", "conj", "angle", "abs", "add", "sub", "mul", "div", "neg", "scale", "where",
               "sum", "mean", "matmul", "einsum", "reshape", "transpose", "expand_dims", "squeeze", "concat",
               "split", "slice", "pad", "broadcast_to", "repeat", "tile", "flip", "roll") + FFT_OPS
allow_complex(*COMPLEX_OPS)
