"""Pointwise ops: arithmetic, comparisons, activations, math functions, casts, constants."""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, document, register
from ..types import DTYPES, NP_NAMES, TensorType, broadcast_shapes, is_float, promote
from .common import arith_binary, compare_binary, float_unary, numeric_unary

_erf = np.frompyfunc(math.erf, 1, 1)  # libm's erf per element: exact to the last ulp (an oracle), no scipy import


def erf(x):
    x = np.asarray(x)
    return np.asarray(_erf(x), dtype=np.float64).astype(x.dtype)


def _cast_like(fn):
    """Keep the input's dtype (numpy would upcast f16 to f64 in some ufunc paths)."""
    def wrapped(x, **kw):
        return np.asarray(fn(x, **kw)).astype(x.dtype, copy=False)
    return wrapped


# ---- binary arithmetic -------------------------------------------------------------------------
def result_dtype(*arrays) -> np.dtype:
    """The numpy dtype of pnet's promotion rule (ir.types.promote), not numpy's own."""
    names = [NP_NAMES[np.dtype(a.dtype)] for a in arrays]
    out = names[0]
    for n in names[1:]:
        out = promote(out, n)
    return DTYPES[out]


def torch_common(T, *xs):
    """Operands cast to pnet's promoted dtype (torch would widen i8 with u8 to int16, which pnet lacks)."""
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = T.promote_types(dtype, x.dtype)
    if dtype == T.int16:
        dtype = T.int32
    return [x.to(dtype) for x in xs]


def tl_max(a, b) -> str:
    """Triton's maximum with NaN propagating, as NumPy and torch do (tl.maximum's default drops a NaN)."""
    return f"tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)"


def tl_min(a, b) -> str:
    return f"tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)"


def _binary(name, fn, torch_fn, triton_fn, flops=1, triton_int=None, torch_promotes=False):
    """`torch_promotes`: torch_fn casts its operands itself (a top-level function, which torch_source can copy)."""
    register(name, "a, b", infer=arith_binary(name), ref=lambda a, b: fn(a, b).astype(result_dtype(a, b), copy=False),
             torch=torch_fn if torch_promotes else lambda T, a, b: torch_fn(T, *torch_common(T, a, b)),
             triton=triton_fn, triton_int=triton_int,
             flops=lambda i, o, at: flops * o[0].numel)


def torch_int_divmod(T, a, b):
    """NumPy's integer floor division and mod: x // 0 = x % 0 = 0 (torch raises), INT_MIN // -1 wraps to INT_MIN."""
    zero = b == 0
    safe = T.where(zero, T.ones_like(b), b)
    return (T.div(a, safe, rounding_mode="floor").masked_fill(zero, 0), T.remainder(a, safe).masked_fill(zero, 0))


def torch_div(T, a, b):
    a, b = torch_common(T, a, b)
    return a / b if a.is_floating_point() or a.is_complex() else torch_int_divmod(T, a, b)[0]


def torch_mod(T, a, b):
    a, b = torch_common(T, a, b)
    return T.remainder(a, b) if a.is_floating_point() else torch_int_divmod(T, a, b)[1]


def _int_div(a, b):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return np.floor_divide(a, b)
    return np.divide(a, b)


_binary("add", np.add, lambda T, a, b: a + b, lambda a, b: f"({a} + {b})")
_binary("sub", np.subtract, lambda T, a, b: a - b, lambda a, b: f"({a} - {b})")
_binary("mul", np.multiply, lambda T, a, b: a * b, lambda a, b: f"({a} * {b})")
_binary("div", _int_div, torch_div, torch_promotes=True,
        triton_fn=lambda a, b: f"tl.div_rn(({a}) * 1.0, ({b}) * 1.0)",  # correctly rounded, as in NumPy (a GPU's `/` may not be)
        triton_int=lambda a, b: f"_floordiv_int({a}, {b})")
_binary("pow", np.power, lambda T, a, b: T.pow(a, b), lambda a, b: f"_pow({a}, {b})")
_binary("maximum", np.maximum, lambda T, a, b: T.maximum(a, b), lambda a, b: tl_max(a, b))
_binary("minimum", np.minimum, lambda T, a, b: T.minimum(a, b), lambda a, b: tl_min(a, b))
_binary("mod", np.mod, torch_mod, torch_promotes=True, triton_fn=lambda a, b: f"_mod_float({a}, {b})",
        triton_int=lambda a, b: f"_mod_int({a}, {b})")

for _name, _fn, _sym in [("lt", np.less, "<"), ("le", np.less_equal, "<="), ("gt", np.greater, ">"),
                         ("ge", np.greater_equal, ">="), ("eq", np.equal, "=="), ("ne", np.not_equal, "!=")]:
    register(_name, "a, b", infer=compare_binary, ref=_fn,
             torch=lambda T, a, b, _op=_sym: eval(f"a {_op} b"),  # noqa: S307 - a fixed operator table
             triton=lambda a, b, _op=_sym: f"({a} {_op} {b})")


def _bool_binary(types, attrs):
    for t in types:
        if t.dtype != "bool":
            raise ShapeError(f"logical ops expect bool tensors, got {t}")
    return compare_binary(types, attrs)


register("logical_and", "a, b", infer=_bool_binary, ref=np.logical_and, torch=lambda T, a, b: a & b,
         triton=lambda a, b: f"({a} & {b})")
register("logical_or", "a, b", infer=_bool_binary, ref=np.logical_or, torch=lambda T, a, b: a | b,
         triton=lambda a, b: f"({a} | {b})")
register("logical_not", "a", infer=lambda t, a: _bool_binary([t[0], t[0]], a), ref=np.logical_not,
         torch=lambda T, a: ~a, triton=lambda a: f"({a} == 0)")


def _where_infer(types, attrs):
    c, a, b = types
    if c.dtype != "bool":
        raise ShapeError(f"where: condition must be bool, got {c}")
    return TensorType(promote(a.dtype, b.dtype), broadcast_shapes(c.shape, a.shape, b.shape))


register("where", "cond, a, b", infer=_where_infer,
         ref=lambda c, a, b: np.where(c, a, b).astype(result_dtype(a, b), copy=False),
         torch=lambda T, c, a, b: T.where(c, *torch_common(T, a, b)), triton=lambda c, a, b: f"tl.where({c}, {a}, {b})")

# ---- unary math ----------------------------------------------------------------------------------
def _int_attrs_only(name):
    """clamp/scale of an integer tensor keep its dtype, so their attributes must be integers."""
    def infer(types, attrs):
        t = numeric_unary(name)(types, attrs)
        if not is_float(t.dtype):
            for k, v in attrs.items():
                if isinstance(v, float) and not v.is_integer():
                    raise ShapeError(f"{name}: {k}={v} on an integer tensor {t} (cast it to a float dtype first)")
        return t
    return infer


def _unary(name, fn, torch_fn, triton_fn, float_only=True, attrs=None, flops=1, doc=""):
    infer = float_unary(name) if float_only else (_int_attrs_only(name) if attrs else numeric_unary(name))
    register(name, "x", infer=infer, ref=_cast_like(fn),
             torch=torch_fn, triton=triton_fn, attrs=attrs, flops=lambda i, o, at: flops * o[0].numel, doc=doc)


def _like_ints(x, *values):
    """Attribute numbers as ints for an integer tensor (so torch keeps its dtype; the type rule
    already refused fractional ones)."""
    if x.is_floating_point():
        return values
    return [None if v is None else int(v) for v in values]


def _clamp_expr(x, lo, hi):
    out = x if lo is None else tl_max(x, repr(float(lo)))
    return out if hi is None else tl_min(out, repr(float(hi)))


def _sigmoid(x):
    # split by sign so neither branch overflows
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1 + ex)
    return out


def _softplus(x, beta=1.0, threshold=20.0):
    bx = beta * x
    return np.where(bx > threshold, x, np.logaddexp(0, bx) / beta)


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if approximate != "none":
        raise ShapeError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


_unary("neg", np.negative, lambda T, x: -x, lambda x: f"(-{x})", float_only=False)
_unary("abs", np.abs, lambda T, x: T.abs(x), lambda x: f"tl.abs({x})", float_only=False)  # |z| of complex: fft.py


def torch_sign(T, x):
    """sign(NaN) = NaN, as NumPy (torch.sign gives 0)."""
    return T.where(T.isnan(x), x, T.sign(x)) if x.is_floating_point() else T.sign(x)


_unary("sign", np.sign, torch_sign, lambda x: f"_sign({x})", float_only=False)
_unary("exp", np.exp, lambda T, x: T.exp(x), lambda x: f"tl.exp({x})")
_unary("log", np.log, lambda T, x: T.log(x), lambda x: f"tl.log({x})")
_unary("sqrt", np.sqrt, lambda T, x: T.sqrt(x), lambda x: f"tl.sqrt({x})")
_unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda T, x: T.rsqrt(x), lambda x: f"(1.0 / tl.sqrt({x}))")
_unary("reciprocal", lambda x: 1 / x, lambda T, x: T.reciprocal(x), lambda x: f"(1.0 / {x})")
_unary("square", np.square, lambda T, x: x * x, lambda x: f"({x} * {x})", float_only=False)
_unary("sin", np.sin, lambda T, x: T.sin(x), lambda x: f"tl.sin({x})")
_unary("cos", np.cos, lambda T, x: T.cos(x), lambda x: f"tl.cos({x})")
_unary("tanh", np.tanh, lambda T, x: T.tanh(x), lambda x: f"_tanh({x})")
_unary("erf", erf, lambda T, x: T.erf(x), lambda x: f"_erf({x})")
_unary("floor", np.floor, lambda T, x: T.floor(x), lambda x: f"tl.floor({x})")
_unary("round", np.round, lambda T, x: T.round(x), lambda x: f"_round_even({x})", doc="round half to even, like numpy and torch")
_unary("sigmoid", _sigmoid, lambda T, x: T.sigmoid(x), lambda x: f"tl.sigmoid({x})", flops=4)
_unary("relu", lambda x: np.maximum(x, 0), lambda T, x: T.relu(x), lambda x: tl_max(x, "0.0"), float_only=False)
_unary("leaky_relu", lambda x, alpha: np.where(x >= 0, x, alpha * x),
       lambda T, x, alpha: T.nn.functional.leaky_relu(x, alpha),
       lambda x, alpha: f"tl.where({x} >= 0, {x}, {alpha!r} * {x})", attrs={"alpha": 0.01})
_unary("elu", lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
       lambda T, x, alpha: T.nn.functional.elu(x, alpha),
       lambda x, alpha: f"tl.where({x} > 0, {x}, {alpha!r} * (tl.exp({tl_min(x, '0.0')}) - 1.0))", attrs={"alpha": 1.0}, flops=3)


def torch_gelu(T, x, approximate):
    """gelu(+inf) = +inf, as the reference's x * Phi(x) (torch's erf kernel gives NaN there)."""
    return T.where(x == float("inf"), x, T.nn.functional.gelu(x, approximate=approximate))


_unary("gelu", _gelu, torch_gelu,
       lambda x, approximate: f"_gelu_tanh({x})" if approximate == "tanh" else f"_gelu({x})",
       attrs={"approximate": "none"}, flops=8)
_unary("silu", lambda x: x * _sigmoid(x), lambda T, x: T.nn.functional.silu(x), lambda x: f"({x} * tl.sigmoid({x}))", flops=5)
_unary("softplus", _softplus, lambda T, x, beta, threshold: T.nn.functional.softplus(x, beta, threshold),
       lambda x, beta, threshold: f"_softplus({x}, {float(beta)!r}, {float(threshold)!r})",
       attrs={"beta": 1.0, "threshold": 20.0}, flops=4)
_unary("hardswish", lambda x: x * np.clip(x + 3, 0, 6) / 6, lambda T, x: T.nn.functional.hardswish(x), lambda x: f"({x} * {tl_min(tl_max(f'{x} + 3.0', '0.0'), '6.0')} / 6.0)", flops=4)
_unary("hardsigmoid", lambda x: np.clip(x + 3, 0, 6) / 6, lambda T, x: T.nn.functional.hardsigmoid(x), lambda x: f"({tl_min(tl_max(f'{x} + 3.0', '0.0'), '6.0')} / 6.0)", flops=3)
_unary("heaviside", lambda x: (x > 0).astype(x.dtype), lambda T, x: (x > 0).to(x.dtype), lambda x: f"tl.where({x} > 0, 1.0, 0.0)", float_only=False,
       doc="step function: 1 where x > 0 else 0 (spiking neurons)")
_unary("clamp", lambda x, min, max: np.clip(x, -np.inf if min is None else min, np.inf if max is None else max),
       lambda T, x, min, max: x if min is None and max is None else T.clamp(x, *_like_ints(x, min, max)),
       lambda x, min, max: _clamp_expr(x, min, max), float_only=False, attrs={"min": None, "max": None})
_unary("scale", lambda x, factor: x * factor, lambda T, x, factor: x * _like_ints(x, factor)[0], lambda x, factor: f"({x} * {float(factor)!r})", float_only=False,
       attrs={"factor": REQUIRED}, doc="multiply by a compile-time constant")


# ---- casts and constants -------------------------------------------------------------------------
def _cast_infer(types, attrs):
    if attrs["dtype"] not in DTYPES:
        raise ShapeError(f"cast: unknown dtype '{attrs['dtype']}'")
    return types[0].with_dtype(attrs["dtype"])


_TORCH_DTYPE = {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16", "i64": "int64",
                "i32": "int32", "i8": "int8", "u8": "uint8", "bool": "bool"}


def torch_dtype(T, name):
    """A pnet dtype name as a torch dtype (generated torch source passes torch dtypes already)."""
    return name if isinstance(name, T.dtype) else getattr(T, _TORCH_DTYPE[name])


def _cast_triton(x, dtype):
    if dtype == "bool":
        return f"({x} != 0)"
    if dtype in ("f64",):
        return f"{x}.to(tl.float64)"
    if dtype in ("f16", "bf16"):  # kernels compute floats in f32, holding the value rounded as the dtype would
        return f"_round_{dtype}({x}.to(tl.float32))"
    if dtype == "f32":
        return f"{x}.to(tl.float32)"
    return f"{x}.to(tl.{ {'i64': 'int64', 'i32': 'int32', 'i8': 'int8', 'u8': 'uint8'}[dtype] })"


register("cast", "x", attrs={"dtype": REQUIRED}, infer=_cast_infer, triton=_cast_triton,
         ref=lambda x, dtype: x.astype(DTYPES[dtype]),  # the float64 reference rewrites float casts to f64
         torch=lambda T, x, dtype: x.to(torch_dtype(T, dtype)), flops=lambda i, o, a: 0)


def _const_infer(types, attrs):
    return TensorType(attrs["dtype"], tuple(attrs["shape"]))


register("const", "", kind="source", attrs={"value": REQUIRED, "dtype": "f32", "shape": ()},
         infer=_const_infer, doc="a constant filled with `value` (a scalar, or a nested list matching shape)",
         ref=lambda value, dtype, shape: np.broadcast_to(np.asarray(value, dtype=DTYPES[dtype]), tuple(int(d) for d in shape)).copy(),
         torch=lambda T, value, dtype, shape: T.full(tuple(int(d) for d in shape), value, dtype=torch_dtype(T, dtype))
         if not isinstance(value, (list, tuple)) else T.tensor(value, dtype=torch_dtype(T, dtype)).expand(*[int(d) for d in shape]),
         flops=lambda i, o, a: 0)

register("arange", "", kind="source", attrs={"n": REQUIRED, "dtype": "i64"},
         infer=lambda t, a: TensorType(a["dtype"], (a["n"],)),
         ref=lambda n, dtype: np.arange(int(n), dtype=DTYPES[dtype]),
         torch=lambda T, n, dtype: T.arange(int(n), dtype=torch_dtype(T, dtype)), flops=lambda i, o, a: 0)


# One-line docs of the ops above, for `pnet ops NAME` and the op reference in docs/language.md.
_DOCS = {
    "add": "a + b, broadcasting numpy-style (the `+` operator)",
    "sub": "a - b, broadcasting (the `-` operator)",
    "mul": "a * b, broadcasting (the `*` operator)",
    "div": "a / b (the `/` operator): true division of floats; integers floor-divide, and x // 0 = 0",
    "pow": "a ** b, broadcasting (the `**` operator)",
    "maximum": "the larger of a and b per element; NaN propagates",
    "minimum": "the smaller of a and b per element; NaN propagates",
    "mod": "a % b with the sign of b, as numpy (the `%` operator); integer x % 0 = 0",
    "lt": "a < b as a bool tensor",
    "le": "a <= b as a bool tensor",
    "gt": "a > b as a bool tensor",
    "ge": "a >= b as a bool tensor",
    "eq": "a == b as a bool tensor",
    "ne": "a != b as a bool tensor",
    "logical_and": "a and b, on bool tensors",
    "logical_or": "a or b, on bool tensors",
    "logical_not": "not a, on a bool tensor",
    "where": "a where cond is true, else b (cond a bool tensor; all three broadcast)",
    "neg": "-x",
    "abs": "|x|",
    "sign": "-1, 0 or 1 by the sign of x; sign(NaN) = NaN",
    "exp": "e ** x",
    "log": "natural logarithm",
    "sqrt": "square root",
    "rsqrt": "1 / sqrt(x)",
    "reciprocal": "1 / x",
    "square": "x * x",
    "sin": "sine (radians)",
    "cos": "cosine (radians)",
    "tanh": "hyperbolic tangent",
    "erf": "the error function",
    "floor": "the largest integer <= x, as a float",
    "sigmoid": "1 / (1 + exp(-x)), computed without overflow",
    "relu": "max(x, 0)",
    "leaky_relu": "x where x >= 0, else alpha * x",
    "elu": "x where x > 0, else alpha * (exp(x) - 1)",
    "gelu": "x * Phi(x) (the exact erf form), or its tanh approximation with approximate=\"tanh\"",
    "silu": "x * sigmoid(x) (swish)",
    "softplus": "log(1 + exp(beta * x)) / beta; x itself where beta * x > threshold",
    "hardswish": "x * clamp(x + 3, 0, 6) / 6",
    "hardsigmoid": "clamp(x + 3, 0, 6) / 6",
    "clamp": "x limited to [min, max] (none: no bound on that side)",
    "cast": "x converted to `dtype` (f64, f32, f16, bf16, i64, i32, i8, u8, bool)",
    "arange": "0, 1, ..., n - 1 as a rank-1 tensor of `dtype`",
}
document(_DOCS)
