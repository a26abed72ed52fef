"""Tensor types: a dtype name and a shape of sympy integer expressions (symbolic dims stay symbolic)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
import operator

import re
import warnings

import numpy as np
import sympy
from sympy.parsing.sympy_parser import parse_expr

from ..errors import ShapeError

# dtype name -> numpy dtype used by the reference (bf16 has no numpy type: the reference computes it in f32).
DTYPES: dict[str, np.dtype] = {
    "f64": np.dtype("float64"), "f32": np.dtype("float32"), "f16": np.dtype("float16"),
    "bf16": np.dtype("float32"), "i64": np.dtype("int64"), "i32": np.dtype("int32"),
    "i8": np.dtype("int8"), "u8": np.dtype("uint8"), "bool": np.dtype("bool"),
    "c64": np.dtype("complex64"), "c128": np.dtype("complex128"),   # complex (ir/ops/fft.py); c128: c64 under --float64
}
NP_NAMES = {np.dtype("float64"): "f64", np.dtype("float32"): "f32", np.dtype("float16"): "f16", np.dtype("int64"): "i64",
            np.dtype("int32"): "i32", np.dtype("int8"): "i8", np.dtype("uint8"): "u8", np.dtype("bool"): "bool",
            np.dtype("int16"): "i32", np.dtype("uint16"): "i32", np.dtype("uint32"): "i64", np.dtype("uint64"): "i64",
            np.dtype("complex64"): "c64", np.dtype("complex128"): "c128"}
FLOAT_DTYPES = ("f64", "f32", "f16", "bf16")


def round_to_bf16(x) -> np.ndarray:
    """Values rounded to the nearest bf16 (ties to even; overflow to +-inf; NaN, +-0 and subnormals kept), held
    as float32, the reference's bf16 storage: add half a bf16 ulp (less one, plus the kept lowest bit) to the
    float32 bits and cut the low 16, as torch and the Triton kernels (`_round_bf16`) round."""
    x = np.asarray(x, dtype=np.float32)
    u = np.atleast_1d(x).view(np.uint32)    # arrays wrap silently (NaN bits may carry out; NaN is restored below)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(x), x, r.reshape(x.shape)).astype(np.float32, copy=False)
INT_DTYPES = ("i64", "i32", "i8", "u8")
BYTES = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "i64": 8, "i32": 4, "i8": 1, "u8": 1, "bool": 1, "c64": 8, "c128": 16}
COMPLEX_DTYPES = ("c64", "c128")
_FLOAT_RANK = {"f16": 1, "bf16": 1, "f32": 2, "f64": 3}
_INT_RANK = {"bool": 0, "u8": 1, "i8": 1, "i32": 2, "i64": 3}

Dim = sympy.Expr


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def is_complex(dtype: str) -> bool:
    """c64 / c128: not floats (is_float is False), so every float-only type rule refuses them."""
    return dtype in COMPLEX_DTYPES


def real_dtype(dtype: str) -> str:
    """The real dtype of a complex one's parts (c64 -> f32, c128 -> f64); others unchanged."""
    return {"c64": "f32", "c128": "f64"}.get(dtype, dtype)


def complex_dtype(dtype: str) -> str:
    """The complex dtype holding parts of `dtype` (f64 -> c128, any other -> c64)."""
    return "c128" if dtype in ("f64", "c128") else "c64"


def promote(a: str, b: str) -> str:
    """Result dtype of a binary op: float beats int, wider beats narrower (f16 with bf16 gives f32)."""
    if a == b:
        return a
    if is_complex(a) or is_complex(b):   # complex beats everything; c128 where either side is 64-bit per part
        return "c128" if "c128" in (a, b) or "f64" in (a, b) else "c64"
    if is_float(a) and is_float(b):
        if {a, b} == {"f16", "bf16"}:
            return "f32"
        return a if _FLOAT_RANK[a] >= _FLOAT_RANK[b] else b
    if is_float(a):
        return a
    if is_float(b):
        return b
    if _INT_RANK[a] == _INT_RANK[b]:  # i8 with u8: a wider signed type holds both (symmetric)
        return "i32"
    return a if _INT_RANK[a] > _INT_RANK[b] else b


_symbols: dict[str, sympy.Symbol] = {}


def sym(name: str) -> sympy.Symbol:
    """The symbolic dim called `name` (positive integer), one object per name."""
    if name not in _symbols:
        _symbols[name] = sympy.Symbol(name, integer=True, positive=True)
    return _symbols[name]


def dim(value) -> Dim:
    """Any int-like (int, numpy int, sympy expr, dim name) as a sympy dim."""
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, str):
        return sym(value)
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            return sympy.Integer(int(value))
        raise ShapeError(f"dimension must be an integer, got {value!r}")
    return sympy.Integer(int(value))


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMPY_FUNCS = {"floor": sympy.floor, "ceiling": sympy.ceiling, "Mod": sympy.Mod, "Max": sympy.Max, "Min": sympy.Min}


def parse_dim(text: str) -> Dim:
    """Parse printed dim text such as `B*T` or `2*d + 1` back into a sympy expression. Every name
    is a dim symbol (so `S`, `N`, `E` are dims, not sympy's singletons)."""
    # every name is replaced by an alias before sympy (which evals the text) sees it: a dim may be named like a
    # Python keyword (`lambda`), and no attribute or dunder name can reach the eval
    aliases: dict[str, str] = {}
    aliased = _NAME.sub(lambda m: aliases.setdefault(m.group(0), f"_pnet_name{len(aliases)}"), text)
    names = {a: _SYMPY_FUNCS.get(n) or sym(n) for n, a in aliases.items()}
    return parse_expr(aliased, local_dict=names, global_dict={"Integer": sympy.Integer, "Symbol": sympy.Symbol,
                                                              "Rational": sympy.Rational, "Float": sympy.Float})


def dims_equal(a: Dim, b: Dim) -> bool:
    return sympy.simplify(a - b) == 0


def fmt_dim(d: Dim) -> str:
    return str(d).replace(" ", "")


def source_literal(v) -> str:
    """A compile-time value as .pnet source text (the formatter, annotations, the program generator):
    true/false/none, escaped strings, floats that stay floats, lists, and dims as their expressions."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, sympy.Basic):
        return str(int(v)) if v.is_Integer else fmt_dim(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(source_literal(x) for x in v) + "]"
    return str(v)


def unescape(body: str) -> str:
    """A string literal's body with its backslash escapes resolved (non-ASCII text kept as is)."""
    if "\\" not in body:
        return body
    with warnings.catch_warnings():  # an unknown escape ("\\e") stays as written, like Python's own strings
        warnings.simplefilter("ignore", DeprecationWarning)
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def numel(shape) -> Dim:
    return reduce(operator.mul, shape, sympy.Integer(1))


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype '{self.dtype}'")
        object.__setattr__(self, "shape", tuple(dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> Dim:
        return numel(self.shape)

    @property
    def nbytes(self) -> Dim:
        return self.numel * BYTES[self.dtype]

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(fmt_dim(d) for d in self.shape)}]"


def fmt_shape(shape) -> str:
    return "[" + ", ".join(fmt_dim(d) for d in shape) + "]"


def broadcast_shapes(*shapes) -> tuple:
    """numpy broadcasting over symbolic dims; raises ShapeError naming both shapes and the dim."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        size = sympy.Integer(1)
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if size == 1:
                size = d
            elif not dims_equal(size, d):
                shown = " and ".join(fmt_shape(x) for x in shapes)
                raise ShapeError(f"cannot broadcast shapes {shown}: dim {i - rank} is {fmt_dim(size)} vs {fmt_dim(d)}")
        out.append(size)
    return tuple(out)


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ShapeError(f"{what} must be an integer, got {axis!r}")
    if not -rank <= axis < rank:  # a scalar has no axes at all
        raise ShapeError(f"{what} {axis} out of range for a rank-{rank} tensor")
    return int(axis) % rank


def concrete(d: Dim, bindings: dict | None = None) -> int:
    """A dim's integer value, substituting symbolic dims from `bindings` (name -> int)."""
    if bindings:
        d = d.subs({sym(k): v for k, v in bindings.items()})
    if not d.is_Integer:
        raise ShapeError(f"dimension {fmt_dim(d)} is not bound to a number")
    return int(d)


def map_leaves(v, fn):
    """`fn` applied to every leaf of an attribute value (nested dicts, lists and tuples keep their shape)."""
    if isinstance(v, dict):
        return {k: map_leaves(x, fn) for k, x in v.items()}
    if isinstance(v, list):
        return [map_leaves(x, fn) for x in v]
    if isinstance(v, tuple):
        return tuple(map_leaves(x, fn) for x in v)
    return fn(v)


def concretize(v, bindings):
    """Replace sympy dims inside attribute values with ints; a float scalar computed from dims (the value of
    `1.0 / P`, which holds a sympy Float) with its float value."""
    def leaf(x):
        if not isinstance(x, sympy.Basic):
            return x
        if x.has(sympy.Float):
            bound = x.subs({sym(k): n for k, n in (bindings or {}).items()})
            if bound.is_number:
                return float(bound)
        return concrete(x, bindings)
    return map_leaves(v, leaf)
