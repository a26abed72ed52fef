"""Ops in ir/ops/{elementwise,reduce,linalg,movement}.py.

For every op: the NumPy reference against an independent formulation (Python loops over indices, per-element
`math` formulas, float64), the type rule against the reference's output, and the torch lowering against the
reference. Shapes and attributes are chosen by hypothesis and kept tiny. Structure and helpers follow
tests/test_ops_nn.py.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import pnet.ir.ops
import pnet.ir.registry as registry
from pnet.errors import PnetError, ShapeError
from pnet.ir.registry import all_ops, get
from pnet.ir.types import DTYPES, TensorType, fmt_shape, sym

try:
    import torch
except ImportError:  # the reference and type-rule checks still run; see test_torch_is_installed
    torch = None

# no `explain` phase: on a failure it re-runs the test many times over, for a note the messages below make moot
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
MODULES = ("elementwise", "reduce", "linalg", "movement")
_DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items() if k != "bf16"}


# ---- helpers ----------------------------------------------------------------------------------------
def ttype(a: np.ndarray) -> TensorType:
    return TensorType(_DTYPE_NAMES[np.asarray(a).dtype], np.shape(a))


def concrete(value):
    """Attrs as the backends hand them to ref/torch: sympy integers become python ints."""
    if isinstance(value, dict):
        return {k: concrete(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(concrete(v) for v in value)
    if isinstance(value, sympy.Basic):
        return int(value)
    return value


def run(name, *arrays, **given):
    """Type-check and evaluate op `name` on arrays; check the inferred types against the reference's outputs
    and the torch lowering against the reference. Returns the output(s) (0-d results as 0-d arrays)."""
    op = get(name)
    attrs = op.bind_attrs(copy.deepcopy(given))
    types = op.infer_types([None if a is None else ttype(a) for a in arrays], attrs)
    attrs = concrete(attrs)
    out = op.ref(*arrays, **attrs)
    single = not isinstance(out, tuple)
    outs = (out,) if single else out
    assert len(outs) == len(types)
    # a NumPy scalar is what numpy returns for 0-d results; every consumer of ref wraps it with np.asarray
    assert all(isinstance(o, (np.ndarray, np.generic)) for o in outs), (name, [type(o) for o in outs])
    outs = tuple(np.asarray(o) for o in outs)
    for t, o in zip(types, outs):
        assert tuple(int(d) for d in t.shape) == o.shape, \
            f"{name}: the type rule says shape {t} but the reference returned shape {o.shape}"
        assert DTYPES[t.dtype] == o.dtype, \
            f"{name}{tuple(str(ttype(a)) for a in arrays if a is not None)}: the type rule says {t} " \
            f"but the reference returned dtype {o.dtype}"
    check_torch(op, arrays, attrs, outs, [t.dtype for t in types])
    return outs[0] if single else outs


_TOL = {"f64": (1e-9, 1e-6), "f32": (1e-6, 1e-6), "f16": (2e-3, 1e-3), "bf16": (1e-2, 1e-2)}


def check_torch(op, arrays, attrs, expected, dtypes):
    if torch is None:
        return
    tensors = [None if a is None else torch.from_numpy(np.array(a, order="C")) for a in arrays]
    got = op.torch(torch, *tensors, **attrs)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for g, e, dt in zip(got, expected, dtypes):
        want_dtype = getattr(torch, {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
                                     "i64": "int64", "i32": "int32", "i8": "int8", "u8": "uint8",
                                     "bool": "bool"}[dt])
        assert g.dtype == want_dtype, f"{op.name}: the type rule says {dt} but the torch lowering gave {g.dtype}"
        g = g.detach()
        g = (g.float() if g.dtype == torch.bfloat16 else g).numpy()
        assert g.shape == e.shape, (op.name, g.shape, e.shape)
        if np.issubdtype(e.dtype, np.floating):
            rtol, atol = _TOL[dt]
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=op.name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=op.name)


def close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


@st.composite
def rngs(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def shapes(min_rank=1, max_rank=3, lo=1, hi=4):
    return st.lists(st.integers(lo, hi), min_size=min_rank, max_size=max_rank).map(tuple)


def broadcastable(draw, shape, min_rank=0):
    """A shape that broadcasts to `shape`: some dims set to 1, some leading dims dropped."""
    drop = draw(st.integers(0, len(shape) - min_rank))
    return tuple(1 if draw(st.booleans()) else d for d in shape[drop:])


def src_index(out_idx, in_shape):
    """Broadcasting by hand: the input position an output position reads (trailing-aligned, size-1 dims read 0)."""
    lead = len(out_idx) - len(in_shape)
    return tuple(0 if d == 1 else out_idx[lead + j] for j, d in enumerate(in_shape))


def pointwise(fn, out_shape, *arrays, dtype=np.float64):
    """fn applied per element (Python scalars in, one Python scalar out) with broadcasting done by hand."""
    want = np.empty(out_shape, dtype=dtype)
    for o in np.ndindex(*out_shape):
        want[o] = fn(*(a[src_index(o, a.shape)].item() for a in arrays))
    return want


def axis_form(draw, axis, rank):
    """An axis as a non-negative or a negative index."""
    return axis - rank if draw(st.booleans()) else axis


def mixed_values(rng, shape):
    """Normal values with some exact zeros and halves mixed in (edges for relu/sign/round/heaviside)."""
    x = rng.normal(size=shape) * 3
    x = np.where(rng.uniform(size=shape) < 0.15, 0.0, x)
    return np.where(rng.uniform(size=shape) < 0.15, np.round(x * 2) / 2, x)


# ---- binary arithmetic --------------------------------------------------------------------------------
def _floor_div(a, b):
    return a // b if isinstance(a, int) and isinstance(b, int) else a / b


BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": _floor_div,
    "maximum": lambda a, b: a if a >= b else b, "minimum": lambda a, b: a if a <= b else b,
    "mod": lambda a, b: a % b,  # Python's % is floor-mod (sign of the divisor) for ints and floats
}


@st.composite
def binary_case(draw, min_rank=0):
    out = draw(shapes(min_rank, 3))
    a_shape, b_shape = broadcastable(draw, out), broadcastable(draw, out)
    if draw(st.booleans()):
        a_shape, b_shape = b_shape, a_shape
    return np.broadcast_shapes(a_shape, b_shape), a_shape, b_shape, draw(rngs())


@SETTINGS
@given(case=binary_case())
def test_binary_float(case):
    out, a_shape, b_shape, rng = case
    a = rng.normal(size=a_shape) * 3
    b = rng.choice([-1.0, 1.0], size=b_shape) * rng.uniform(0.3, 3, size=b_shape)  # away from zero
    b = np.where(rng.uniform(size=b_shape) < 0.2, 2.0, b)
    for name, fn in BINARY.items():
        close(run(name, a, b), pointwise(fn, out, a, b))


@pytest.mark.parametrize("dtype", ["i64", "i32"])
@SETTINGS
@given(case=binary_case())
def test_binary_int_floor_semantics(dtype, case):
    """div and mod on ints floor (numpy/torch semantics, like Python's // and %), never truncate."""
    out, a_shape, b_shape, rng = case
    a = rng.integers(-20, 21, size=a_shape).astype(DTYPES[dtype])
    b = (rng.choice([-1, 1], size=b_shape) * rng.integers(1, 6, size=b_shape)).astype(DTYPES[dtype])
    for name, fn in BINARY.items():
        same(run(name, a, b), pointwise(fn, out, a, b, dtype=DTYPES[dtype]))


def test_int_div_mod_signs():
    a, b = np.array([7, -7, 7, -7, 6, -6]), np.array([2, 2, -2, -2, 3, -3])
    same(run("div", a, b), [3, -4, -4, 3, 2, 2])
    same(run("mod", a, b), [1, 1, -1, -1, 0, 0])
    same(run("mod", np.array([5.5, -5.5]), np.array([2.0, 2.0])), [1.5, 0.5])


@SETTINGS
@given(case=binary_case(), int_base=st.booleans())
def test_pow(case, int_base):
    out, a_shape, b_shape, rng = case
    # float exponents: positive float bases
    base = rng.uniform(0.1, 4, size=a_shape)
    expo = rng.uniform(-2.5, 2.5, size=b_shape)
    close(run("pow", base, expo), pointwise(lambda x, y: x ** y, out, base, expo))
    # int exponents: any sign of base (float base: negative exponents too)
    expo = rng.integers(0 if int_base else -3, 4, size=b_shape)
    if int_base:
        base = rng.integers(-5, 6, size=a_shape)
        same(run("pow", base, expo), pointwise(lambda x, y: x ** y, out, base, expo, dtype=np.int64))
    else:
        base = rng.choice([-1.0, 1.0], size=a_shape) * rng.uniform(0.3, 3, size=a_shape)
        close(run("pow", base, expo), pointwise(lambda x, y: x ** y, out, base, expo))
        close(run("pow", base, expo.astype(np.float64)), pointwise(lambda x, y: x ** y, out, base, expo))


# ---- comparisons, logical ops, where -------------------------------------------------------------------
COMPARE = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
           "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}


@SETTINGS
@given(case=binary_case(), dtypes=st.sampled_from([("f64", "f64"), ("i64", "i64"), ("f32", "f32"), ("i32", "i32"),
                                                  ("f64", "i64")]))
def test_comparisons(case, dtypes):
    out, a_shape, b_shape, rng = case
    a = rng.integers(-2, 3, size=a_shape).astype(DTYPES[dtypes[0]])  # small integers: plenty of ties
    b = rng.integers(-2, 3, size=b_shape).astype(DTYPES[dtypes[1]])
    for name, fn in COMPARE.items():
        got = run(name, a, b)
        assert got.dtype == np.bool_
        same(got, pointwise(fn, out, a, b, dtype=bool))


@SETTINGS
@given(case=binary_case())
def test_logical(case):
    out, a_shape, b_shape, rng = case
    a, b = rng.uniform(size=a_shape) < 0.5, rng.uniform(size=b_shape) < 0.5
    same(run("logical_and", a, b), pointwise(lambda x, y: x and y, out, a, b, dtype=bool))
    same(run("logical_or", a, b), pointwise(lambda x, y: x or y, out, a, b, dtype=bool))
    same(run("logical_not", a), pointwise(lambda x: not x, a_shape, a, dtype=bool))


@SETTINGS
@given(out=shapes(0, 3), rng=rngs(), data=st.data(), ints=st.booleans())
def test_where(out, rng, data, ints):
    c_shape, a_shape, b_shape = (broadcastable(data.draw, out) for _ in range(3))
    full = np.broadcast_shapes(c_shape, a_shape, b_shape)
    c = rng.uniform(size=c_shape) < 0.5
    a, b = (rng.integers(-9, 9, size=s) if ints else rng.normal(size=s) for s in (a_shape, b_shape))
    same(run("where", c, a, b), pointwise(lambda k, x, y: x if k else y, full, c, a, b, dtype=a.dtype))


# ---- unary math ------------------------------------------------------------------------------------------
def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def _gelu(v, approximate):
    if approximate == "tanh":
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _softplus(v, beta, threshold):
    return v if beta * v > threshold else math.log1p(math.exp(beta * v)) / beta


def _clamp(v, lo, hi):
    v = v if lo is None or v >= lo else lo
    return v if hi is None or v <= hi else hi


# name -> (domain, attrs strategy, per-element formula (v, **attrs))
UNARY_FLOAT = {
    "neg": ("any", {}, lambda v: -v),
    "abs": ("any", {}, lambda v: abs(v)),
    "sign": ("any", {}, lambda v: float((v > 0) - (v < 0))),
    "exp": ("any", {}, math.exp),
    "log": ("pos", {}, math.log),
    "sqrt": ("pos", {}, math.sqrt),
    "rsqrt": ("pos", {}, lambda v: 1 / math.sqrt(v)),
    "reciprocal": ("nonzero", {}, lambda v: 1 / v),
    "square": ("any", {}, lambda v: v * v),
    "sin": ("any", {}, math.sin),
    "cos": ("any", {}, math.cos),
    "tanh": ("any", {}, math.tanh),
    "erf": ("any", {}, math.erf),
    "floor": ("any", {}, lambda v: float(math.floor(v))),
    "round": ("any", {}, lambda v: float(round(v))),  # Python rounds half to even, like numpy and torch
    "sigmoid": ("any", {}, _sigmoid),
    "relu": ("any", {}, lambda v: v if v > 0 else 0.0),
    "leaky_relu": ("any", {"alpha": st.sampled_from([0.01, 0.2, 1.5])}, lambda v, alpha: v if v >= 0 else alpha * v),
    "elu": ("any", {"alpha": st.sampled_from([1.0, 0.5, 2.0])},
            lambda v, alpha: v if v > 0 else alpha * (math.exp(v) - 1)),
    "gelu": ("any", {"approximate": st.sampled_from(["none", "tanh"])}, _gelu),
    "silu": ("any", {}, lambda v: v * _sigmoid(v)),
    "softplus": ("any", {"beta": st.sampled_from([1.0, 2.0, 0.5]), "threshold": st.sampled_from([20.0, 1.0, 3.0])},
                 _softplus),
    "hardswish": ("any", {}, lambda v: v * min(max(v + 3, 0.0), 6.0) / 6),
    "hardsigmoid": ("any", {}, lambda v: min(max(v + 3, 0.0), 6.0) / 6),
    "heaviside": ("any", {}, lambda v: 1.0 if v > 0 else 0.0),
    "clamp": ("any", {"min": st.sampled_from([-1.0, 0.0, -2.5]), "max": st.sampled_from([None, 1.0, 2.5])}, _clamp),
    "scale": ("any", {"factor": st.sampled_from([2.0, -0.5, 3])}, lambda v, factor: v * factor),
}
_ATTR_NAMES = {"clamp": {"min": "lo", "max": "hi"}}


def _domain(rng, shape, domain):
    if domain == "pos":
        return rng.uniform(0.1, 5, size=shape)
    if domain == "nonzero":
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 4, size=shape)
    return mixed_values(rng, shape)


@SETTINGS
@given(shape=shapes(0, 3), rng=rngs(), data=st.data())
def test_unary_float(shape, rng, data):
    for name, (domain, attr_st, fn) in UNARY_FLOAT.items():
        x = _domain(rng, shape, domain)
        attrs = {k: data.draw(s, label=f"{name}.{k}") for k, s in attr_st.items()}
        kw = {_ATTR_NAMES.get(name, {}).get(k, k): v for k, v in attrs.items()}
        got = run(name, x, **attrs)
        close(got, pointwise(lambda v: fn(v, **kw), shape, x))


def test_clamp_one_sided():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    close(run("clamp", x, max=0.25), [-3.0, -0.5, 0.0, 0.25, 0.25])
    close(run("clamp", x, min=-1.0), [-1.0, -0.5, 0.0, 0.5, 3.0])


def test_clamp_without_bounds_is_the_identity():
    """min and max both default to None: the type rule and the reference accept it (the identity)."""
    x = np.array([-3.0, 0.0, 3.0])
    close(run("clamp", x), x)


@pytest.mark.parametrize("dtype", ["i64", "i32"])
@SETTINGS
@given(shape=shapes(0, 3), rng=rngs(), lo=st.sampled_from([None, -2, 0]), hi=st.sampled_from([None, 1, 3]),
       factor=st.sampled_from([2, -3, 0]))
def test_unary_int(dtype, shape, rng, lo, hi, factor):
    x = rng.integers(-6, 7, size=shape).astype(DTYPES[dtype])
    want = lambda fn: pointwise(fn, shape, x, dtype=x.dtype)  # noqa: E731
    same(run("neg", x), want(lambda v: -v))
    same(run("abs", x), want(abs))
    same(run("sign", x), want(lambda v: (v > 0) - (v < 0)))
    same(run("square", x), want(lambda v: v * v))
    same(run("relu", x), want(lambda v: max(v, 0)))
    same(run("heaviside", x), want(lambda v: int(v > 0)))
    same(run("scale", x, factor=factor), want(lambda v: v * factor))
    if lo is not None or hi is not None:
        same(run("clamp", x, min=lo, max=hi), want(lambda v: _clamp(v, lo, hi)))


@pytest.mark.parametrize("name, attrs", [("scale", {"factor": 2.5}), ("clamp", {"min": 0.5})])
def test_int_tensor_with_float_attribute(name, attrs):
    """scale/clamp keep an int tensor's dtype, so a fractional attribute on ints is a type error
    (rather than a silent truncation in one backend and a float result in another)."""
    op = get(name)
    with pytest.raises(ShapeError, match=f"{name}: .* on an integer tensor"):
        op.infer_types([TensorType("i64", (5,))], op.bind_attrs(attrs))
    whole = {k: 2.0 for k in attrs}  # integral floats are fine
    got = run(name, np.array([-3, -1, 0, 2, 5]), **whole)
    assert got.dtype == np.int64


FLOAT_ONLY = [n for n in UNARY_FLOAT if n not in ("neg", "abs", "sign", "square", "relu", "heaviside", "clamp",
                                                  "scale")]


@pytest.mark.parametrize("name", FLOAT_ONLY)
def test_float_only_ops_reject_ints(name):
    op = get(name)
    with pytest.raises(ShapeError, match=name):
        op.infer_types([TensorType("i64", (3,))], op.bind_attrs({}))


@pytest.mark.parametrize("dtype", ["f16", "f32"])
@pytest.mark.parametrize("name", sorted(UNARY_FLOAT))
def test_unary_keeps_narrow_floats(name, dtype):
    """f16/f32 in -> the same dtype out in the reference and torch (run() checks both against the type rule)."""
    rng = np.random.default_rng(3)
    domain, attr_st, fn = UNARY_FLOAT[name]
    x = _domain(rng, (3, 4), domain)
    x = np.clip(x, -4, 4).astype(DTYPES[dtype])
    attrs = {"factor": 2.0} if name == "scale" else {"min": -1.0} if name == "clamp" else {}
    kw = {_ATTR_NAMES.get(name, {}).get(k, k): v for k, v in get(name).bind_attrs(attrs).items()}
    got = run(name, x, **attrs)
    want = pointwise(lambda v: fn(v, **kw), x.shape, x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=_TOL[dtype][0] * 4, atol=_TOL[dtype][1] * 4)


def test_extreme_inputs_are_stable():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        close(run("sigmoid", x), [0.0, _sigmoid(-50.0), 0.5, _sigmoid(50.0), 1.0])
        close(run("silu", x), [-0.0, -50.0 * _sigmoid(-50.0), 0.0, 50.0 * _sigmoid(50.0), 1000.0])
        close(run("softplus", x), [0.0, math.log1p(math.exp(-50.0)), math.log(2), 50.0, 1000.0])
        close(run("logsumexp", np.array([[1000.0, 1000.0], [-1000.0, -1000.0]]), axis=-1),
              [1000.0 + math.log(2), -1000.0 + math.log(2)])
    with np.errstate(divide="ignore"):  # log(0) for the all -inf row
        close(run("logsumexp", np.array([[-np.inf, -np.inf], [-np.inf, 0.0]]), axis=1), [-np.inf, 0.0])


# ---- casts and constants ----------------------------------------------------------------------------------
def _to_float(v, dtype):
    """Round a Python float to f32/f16 by packing it (independent of numpy's astype)."""
    fmt = {"f32": "f", "bf16": "f", "f16": "e"}.get(dtype)
    return float(v) if fmt is None else struct.unpack(fmt, struct.pack(fmt, float(v)))[0]


def _cast_value(v, dst):
    if dst == "bool":
        return v != 0
    if dst in ("i64", "i32", "i8", "u8"):
        return int(v)  # float -> int truncates toward zero
    return _to_float(v, dst)


CASTS = [(s, d) for s in ("f64", "f32", "f16", "i64", "i32", "bool")
         for d in ("f64", "f32", "f16", "bf16", "i64", "i32", "i8", "u8", "bool")]


@pytest.mark.parametrize("src, dst", CASTS, ids=[f"{s}->{d}" for s, d in CASTS])
@settings(SETTINGS, max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # 54 pairs; the id names one
@given(shape=shapes(0, 2), rng=rngs())
def test_cast(src, dst, shape, rng):
    lo, hi = (0, 200) if dst == "u8" else (-100, 100) if dst == "i8" else (-1000, 1000)
    if src == "bool":
        x = rng.uniform(size=shape) < 0.5
    elif src.startswith("i"):
        x = rng.integers(lo, hi, size=shape).astype(DTYPES[src])
    else:  # fractions of both signs (truncation), exact zeros, and integers
        x = rng.uniform(lo, hi, size=shape)
        x = np.where(rng.uniform(size=shape) < 0.2, 0.0, x)
        x = np.where(rng.uniform(size=shape) < 0.2, np.trunc(x), x).astype(DTYPES[src])
    got = run("cast", x, dtype=dst)
    same(got, pointwise(lambda v: _cast_value(v, dst), shape, x, dtype=DTYPES[dst]))


def test_cast_truncates_toward_zero():
    same(run("cast", np.array([-2.7, -0.5, 0.5, 2.7, 3.0]), dtype="i64"), [-2, 0, 0, 2, 3])


@SETTINGS
@given(shape=shapes(0, 3), rng=rngs(), dtype=st.sampled_from(["f32", "f64", "i64", "i32", "bool"]),
       nested=st.booleans())
def test_const(shape, rng, dtype, nested):
    if nested and shape:  # a nested list for the trailing dims, broadcast over the leading ones
        inner = shape[1:]
        vals = rng.integers(-3, 4, size=inner)
        value = vals.tolist()
        want = np.empty(shape, dtype=DTYPES[dtype])
        for idx in np.ndindex(*shape):
            want[idx] = vals[idx[1:]]
    else:
        value = {"bool": True, "i64": 7, "i32": -2}.get(dtype, 1.5)
        want = np.empty(shape, dtype=DTYPES[dtype])
        for idx in np.ndindex(*shape):
            want[idx] = value
    same(run("const", value=value, dtype=dtype, shape=list(shape)), want)


@SETTINGS
@given(n=st.integers(0, 9), dtype=st.sampled_from(["i64", "i32", "f32", "f64"]))
def test_arange(n, dtype):
    got = run("arange", n=n, dtype=dtype)
    same(got, np.array([i for i in range(n)], dtype=DTYPES[dtype]))


# ---- mixed dtypes -----------------------------------------------------------------------------------------
PAIRS = [("f64", "f32"), ("f32", "f16"), ("i64", "i32"), ("bool", "i32"), ("bool", "f32"), ("f16", "i8"),
         ("f32", "i32"), ("f32", "i64"), ("f16", "i32"), ("i8", "u8")]


@pytest.mark.parametrize("a, b", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_mixed_dtypes(a, b):
    """One promotion rule for every binary op: the type rule is symmetric, and the reference and torch agree
    with it."""
    rng = np.random.default_rng(4)
    x = (rng.uniform(size=(2, 3)) < 0.5) if a == "bool" else rng.integers(1, 4, size=(2, 3)).astype(DTYPES[a])
    y = (rng.uniform(size=(3, 3)) < 0.5) if b == "bool" else rng.integers(1, 4, size=(3, 3)).astype(DTYPES[b])
    ab = get("add").infer_types([ttype(x), ttype(y[0])], {})[0].dtype
    ba = get("add").infer_types([ttype(y[0]), ttype(x)], {})[0].dtype
    assert ab == ba, f"add({a}, {b}) is {ab} but add({b}, {a}) is {ba}"
    failures = []
    cond = np.array([True, False, True])
    for name, args, kw in [("add", (x, y[0]), {}), ("mul", (y[0], x), {}), ("maximum", (x, y[0]), {}),
                           ("where", (cond, x, y[0]), {}), ("matmul", (x, y), {}),
                           ("einsum", (x, y), {"equation": "ij,jk->ik"})]:
        if name in ("matmul", "einsum") and "bool" in (a, b):
            continue
        try:
            run(name, *args, **kw)
        except Exception as err:  # noqa: BLE001 - collect every op's failure for this pair
            failures.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0]}")
    assert not failures, "\n".join(failures)


# ---- reductions ------------------------------------------------------------------------------------------
def reduce_loops(x, axes, keepdims, fn):
    """fn (on the list of values) for every position of the kept index space."""
    kept = [i for i in range(x.ndim) if i not in axes]
    out_shape = tuple(1 if i in axes else x.shape[i] for i in range(x.ndim)) if keepdims else \
        tuple(x.shape[i] for i in kept)
    want = np.empty(out_shape, dtype=np.float64)
    for k in itertools.product(*(range(x.shape[i]) for i in kept)):
        vals = []
        for r in itertools.product(*(range(x.shape[i]) for i in axes)):
            idx = [0] * x.ndim
            for i, v in zip(kept, k):
                idx[i] = v
            for i, v in zip(axes, r):
                idx[i] = v
            vals.append(x[tuple(idx)].item())
        pos = tuple(k[kept.index(i)] if i in kept else 0 for i in range(x.ndim)) if keepdims else k
        want[pos] = fn(vals)
    return want


@st.composite
def axis_case(draw, max_rank=4, hi=4):
    shape = draw(shapes(1, max_rank, hi=hi))
    rank = len(shape)
    kind = draw(st.sampled_from(["none", "int", "list", "list"]))
    if kind == "none":
        return shape, None, tuple(range(rank))
    if kind == "int":
        a = draw(st.integers(0, rank - 1))
        return shape, axis_form(draw, a, rank), (a,)
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=0, max_size=rank, unique=True))
    return shape, [axis_form(draw, a, rank) for a in axes], tuple(sorted(axes))


def _lse(vals):
    top = max(vals)
    return top + math.log(sum(math.exp(v - top) for v in vals))


def _var(vals, correction):
    mean = sum(vals) / len(vals)
    return sum((v - mean) ** 2 for v in vals) / (len(vals) - correction)


@SETTINGS
@given(case=axis_case(), rng=rngs(), keepdims=st.booleans(), correction=st.integers(0, 1))
def test_float_reductions(case, rng, keepdims, correction):
    shape, axis, axes = case
    x = rng.normal(size=shape) * 2
    count = int(np.prod([shape[a] for a in axes]))
    correction = correction if count > correction else 0
    attrs = {"keepdims": keepdims} if keepdims or rng.uniform() < 0.5 else {}
    if axis is not None or rng.uniform() < 0.5:
        attrs["axis"] = axis
    for name, fn in [("sum", math.fsum), ("mean", lambda v: math.fsum(v) / len(v)), ("max", max), ("min", min),
                     ("prod", math.prod), ("logsumexp", _lse)]:
        close(run(name, x, **attrs), reduce_loops(x, axes, keepdims, fn))
    if not axes:  # var/std over no axes: test_reductions_over_no_axes
        return
    close(run("var", x, correction=correction, **attrs), reduce_loops(x, axes, keepdims, lambda v: _var(v, correction)))
    close(run("std", x, correction=correction, **attrs),
          reduce_loops(x, axes, keepdims, lambda v: math.sqrt(_var(v, correction))))


@pytest.mark.parametrize("name", ["var", "std", "sum", "mean", "max", "prod", "logsumexp"])
@pytest.mark.parametrize("shape, axis", [((2, 3), []), ((), None)], ids=["axis=[]", "rank0"])
def test_reductions_over_no_axes(name, shape, axis):
    """Reducing over no axes (axis=[] or a rank-0 input): var/std are 0, the others the input itself."""
    x = np.random.default_rng(6).normal(size=shape)
    want = np.zeros(shape) if name in ("var", "std") else x
    close(run(name, x, axis=axis), want)


@SETTINGS
@given(case=axis_case(3, hi=3), rng=rngs(), keepdims=st.booleans())
def test_int_reductions(case, rng, keepdims):
    shape, axis, axes = case
    x = rng.integers(-2, 3, size=shape)
    for name, fn in [("sum", sum), ("max", max), ("min", min), ("prod", math.prod)]:
        got = run(name, x, axis=axis, keepdims=keepdims)
        same(got, reduce_loops(x, axes, keepdims, fn).astype(x.dtype))


@SETTINGS
@given(shape=shapes(1, 3, hi=5), rng=rngs(), data=st.data(), keepdims=st.booleans(), ints=st.booleans())
def test_argmax_argmin_first_wins(shape, rng, data, keepdims, ints):
    x = rng.integers(-2, 3, size=shape)  # small integers: plenty of ties
    x = x if ints else x.astype(np.float64)
    a = data.draw(st.integers(0, len(shape) - 1))
    axis = axis_form(data.draw, a, len(shape))

    def first(vals, better):
        best = 0
        for i, v in enumerate(vals):
            if better(v, vals[best]):  # strictly better only: the first of equal values wins
                best = i
        return best

    got = run("argmax", x, axis=axis, keepdims=keepdims)
    same(got, reduce_loops(x, (a,), keepdims, lambda v: first(v, lambda p, q: p > q)).astype(np.int64))
    got = run("argmin", x, axis=axis, keepdims=keepdims)
    same(got, reduce_loops(x, (a,), keepdims, lambda v: first(v, lambda p, q: p < q)).astype(np.int64))


def test_argmax_default_axis_is_last():
    same(run("argmax", np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 7.0]])), [1, 0])


@pytest.mark.parametrize("name, attrs", [("sum", {}), ("prod", {}), ("max", {"axis": 0}), ("min", {"keepdims": True}),
                                         ("cumsum", {}), ("argmax", {})])
@pytest.mark.parametrize("dtype", ["i32"])
def test_narrow_int_reductions_keep_dtype(name, attrs, dtype):
    """The type rule keeps the input's int dtype (argmax: i64); the reference and torch must too."""
    x = np.array([[1, 2, 0], [3, 1, 2]], dtype=DTYPES[dtype])
    fn = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}.get(name)
    got = run(name, x, **attrs)
    if name == "cumsum":
        same(got, [[1, 3, 3], [3, 4, 6]])
    elif name == "argmax":
        same(got, [1, 0])
    else:
        same(got, fn(x.astype(np.int64), axis=attrs.get("axis"), keepdims=attrs.get("keepdims", False)))


@pytest.mark.parametrize("dtype", ["f64", "i64"])
@SETTINGS
@given(shape=shapes(1, 3, hi=5), rng=rngs(), data=st.data())
def test_cumsum(dtype, shape, rng, data):
    x = rng.integers(-5, 6, size=shape).astype(DTYPES[dtype]) if dtype != "f64" else rng.normal(size=shape)
    a = data.draw(st.integers(0, len(shape) - 1))
    attrs = {"axis": axis_form(data.draw, a, len(shape))} if a != len(shape) - 1 or data.draw(st.booleans()) else {}
    want = np.empty(shape, dtype=x.dtype)
    for idx in np.ndindex(*shape):
        acc = 0
        for j in range(idx[a] + 1):
            acc += x[idx[:a] + (j,) + idx[a + 1:]].item()
        want[idx] = acc
    (close if dtype == "f64" else same)(run("cumsum", x, **attrs), want)


# ---- matmul / einsum --------------------------------------------------------------------------------------
@st.composite
def matmul_case(draw):
    ra, rb = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    out_batch = draw(shapes(max(ra, rb, 2) - 2, max(ra, rb, 2) - 2, hi=3))
    a_batch = tuple(1 if draw(st.booleans()) else d for d in out_batch[len(out_batch) - max(ra - 2, 0):])
    b_batch = tuple(1 if draw(st.booleans()) else d for d in out_batch[len(out_batch) - max(rb - 2, 0):])
    a_shape = a_batch + (m, k) if ra > 1 else (k,)
    b_shape = b_batch + (k, n) if rb > 1 else (k,)
    return a_shape, b_shape, draw(rngs()), draw(st.sampled_from(["f64", "i64"]))


@SETTINGS
@given(case=matmul_case())
def test_matmul(case):
    a_shape, b_shape, rng, dtype = case
    a, b = ((rng.integers(-3, 4, size=s) if dtype == "i64" else rng.normal(size=s)) for s in (a_shape, b_shape))
    A = a if a.ndim > 1 else a[None, :]
    Bm = b if b.ndim > 1 else b[:, None]
    batch = np.broadcast_shapes(A.shape[:-2], Bm.shape[:-2])
    m, k, n = A.shape[-2], A.shape[-1], Bm.shape[-1]
    full = np.zeros(batch + (m, n), dtype=a.dtype)
    for p in np.ndindex(*batch):
        pa, pb = src_index(p, A.shape[:-2]), src_index(p, Bm.shape[:-2])
        for i in range(m):
            for j in range(n):
                full[p + (i, j)] = sum(A[pa + (i, c)].item() * Bm[pb + (c, j)].item() for c in range(k))
    want = full.reshape(batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ()))
    (same if dtype == "i64" else close)(run("matmul", a, b), want)


EINSUM = ["ij,jk->ik", "bij,bjk->bik", "i,i->", "i,j->ij", "ij->ji", "ii->i", "ii->", "ijk->k", "i->",
          "bhqd,bhkd->bhqk", "ij,jk,kl->il", " ij , ij -> ij ", "ab,ab->"]


@pytest.mark.parametrize("equation", EINSUM)
@SETTINGS
@given(rng=rngs(), data=st.data())
def test_einsum(equation, rng, data):
    eq = equation.replace(" ", "")
    ins, out = eq.split("->")
    ins = ins.split(",")
    labels = sorted(set("".join(ins)))
    size = {c: data.draw(st.integers(1, 3), label=c) for c in labels}
    arrays = []
    for spec in ins:  # operands of an elementwise equation may carry size-1 dims that broadcast
        shp = tuple(1 if len(ins) > 1 and out == ins[0] == ins[1] and data.draw(st.booleans()) else size[c]
                    for c in spec)
        arrays.append(rng.normal(size=shp))
    size = {c: max(x.shape[i] for spec, x in zip(ins, arrays) for i, d in enumerate(spec) if d == c) for c in labels}
    want = np.zeros(tuple(size[c] for c in out))
    for assign in itertools.product(*(range(size[c]) for c in labels)):
        at = dict(zip(labels, assign))
        term = 1.0
        for spec, x in zip(ins, arrays):
            term *= x[tuple(0 if d == 1 else at[c] for c, d in zip(spec, x.shape))]
        want[tuple(at[c] for c in out)] += term
    close(run("einsum", *arrays, equation=equation), want)


# ---- movement ---------------------------------------------------------------------------------------------
def unravel(k, shape):
    idx = []
    for d in reversed(shape):
        idx.append(k % d)
        k //= d
    return tuple(reversed(idx))


@SETTINGS
@given(shape=shapes(0, 4), rng=rngs(), data=st.data())
def test_reshape(shape, rng, data):
    x = rng.normal(size=shape)
    n = x.size
    factors, p, m = [], 2, n
    while m > 1:
        while m % p == 0:
            factors.append(p)
            m //= p
        p += 1
    rank = data.draw(st.integers(0 if n == 1 else 1, 4))
    new = [1] * rank
    for f in factors:
        new[data.draw(st.integers(0, rank - 1))] *= f
    target = list(new)
    if rank and data.draw(st.booleans()):
        target[data.draw(st.integers(0, rank - 1))] = -1
    want = np.empty(new)
    for k in range(n):
        want[unravel(k, new)] = x[unravel(k, shape)]
    close(run("reshape", x, shape=target), want)


@SETTINGS
@given(shape=shapes(1, 4), rng=rngs(), data=st.data())  # rank 0: test_rank0_movement
def test_transpose(shape, rng, data):
    x = rng.normal(size=shape)
    rank = len(shape)
    if data.draw(st.booleans()):
        perm, attrs = list(range(rank))[::-1], {}
    else:
        perm = data.draw(st.permutations(list(range(rank))))
        attrs = {"perm": [axis_form(data.draw, p, rank) for p in perm]}
    out_shape = tuple(shape[p] for p in perm)
    want = np.empty(out_shape)
    for o in np.ndindex(*out_shape):
        idx = [0] * rank
        for i, p in enumerate(perm):
            idx[p] = o[i]
        want[o] = x[tuple(idx)]
    close(run("transpose", x, **attrs), want)


@SETTINGS
@given(shape=shapes(0, 3), rng=rngs(), data=st.data())
def test_expand_dims_and_squeeze(shape, rng, data):
    x = rng.normal(size=shape)
    rank = len(shape)
    a = data.draw(st.integers(0, rank))
    axis = a - (rank + 1) if data.draw(st.booleans()) else a
    want = np.empty(shape[:a] + (1,) + shape[a:])
    for o in np.ndindex(*want.shape):
        want[o] = x[o[:a] + o[a + 1:]]
    close(run("expand_dims", x, axis=axis), want)

    # squeeze: some size-1 axes inserted into x, then removed (all of them, or a chosen subset)
    y_shape = list(shape)
    for _ in range(data.draw(st.integers(0, 2))):
        y_shape.insert(data.draw(st.integers(0, len(y_shape))), 1)
    y = rng.normal(size=y_shape)
    ones = [i for i, d in enumerate(y_shape) if d == 1]
    if data.draw(st.booleans()):
        drop, attrs = ones, {}
    else:
        drop = sorted(data.draw(st.lists(st.sampled_from(ones), unique=True)) if ones else [])
        forms = [axis_form(data.draw, i, len(y_shape)) for i in drop]
        attrs = {"axis": forms[0] if len(forms) == 1 and data.draw(st.booleans()) else forms}
    keep = [i for i in range(len(y_shape)) if i not in drop]
    want = np.empty(tuple(y_shape[i] for i in keep))
    for o in np.ndindex(*want.shape):
        idx = [0] * len(y_shape)
        for i, v in zip(keep, o):
            idx[i] = v
        want[o] = y[tuple(idx)]
    close(run("squeeze", y, **attrs), want)


@SETTINGS
@given(shape=shapes(1, 3), rng=rngs(), data=st.data())
def test_concat_and_split(shape, rng, data):
    rank = len(shape)
    a = data.draw(st.integers(0, rank - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda s: sum(s) > 0))
    parts = [rng.normal(size=shape[:a] + (s,) + shape[a + 1:]) for s in sizes]
    attrs = {"axis": axis_form(data.draw, a, rank)} if a or data.draw(st.booleans()) else {}
    total = sum(sizes)
    out_shape = shape[:a] + (total,) + shape[a + 1:]
    want = np.empty(out_shape)
    for o in np.ndindex(*out_shape):
        j, off = o[a], 0
        for part, s in zip(parts, sizes):
            if j < off + s:
                want[o] = part[o[:a] + (j - off,) + o[a + 1:]]
                break
            off += s
    close(run("concat", *parts, **attrs), want)
    x = want

    got = run("split", x, sizes=sizes, **attrs)
    assert len(got) == len(sizes)
    off = 0
    for g, s in zip(got, sizes):
        part = np.empty(shape[:a] + (s,) + shape[a + 1:])
        for o in np.ndindex(*part.shape):
            part[o] = x[o[:a] + (o[a] + off,) + o[a + 1:]]
        close(g, part)
        off += s
    # an int: that many equal parts
    n = data.draw(st.sampled_from([d for d in range(1, total + 1) if total % d == 0]))
    got = run("split", x, sizes=n, **attrs)
    assert len(got) == n and all(g.shape[a] == total // n for g in got)
    close(np.concatenate(got, axis=a), x)


@st.composite
def slice_case(draw):
    shape = draw(shapes(1, 3, hi=6))
    specs, ranges = [], []
    for n in shape[:draw(st.integers(1, len(shape)))]:
        start = draw(st.one_of(st.none(), st.integers(-n, n)))
        s0 = 0 if start is None else start + n if start < 0 else start
        e0 = draw(st.integers(s0, n))
        form = draw(st.sampled_from(["pos", "neg", "none"]))
        stop = e0 - n if form == "neg" and e0 < n else None if form == "none" and e0 == n else e0
        step = draw(st.one_of(st.none(), st.integers(1, 3)))
        specs.append([start, stop, step])
        ranges.append(list(range(s0, e0, step or 1)))
    for n in shape[len(specs):]:
        ranges.append(list(range(n)))
    return shape, specs, ranges, draw(rngs())


@SETTINGS
@given(case=slice_case())
def test_slice(case):
    shape, specs, ranges, rng = case
    x = rng.normal(size=shape)
    want = np.empty(tuple(len(r) for r in ranges))
    for o in np.ndindex(*want.shape):
        want[o] = x[tuple(r[i] for r, i in zip(ranges, o))]
    close(run("slice", x, slices=specs), want)


def test_slice_start_before_the_beginning():
    """A start below -size: the type rule must either reject it or give the shape the reference gives."""
    x = np.arange(3.0)
    op = get("slice")
    attrs = op.bind_attrs({"slices": [[-7, 3, 1]]})
    try:
        (t,) = op.infer_types([ttype(x)], attrs)
    except ShapeError:
        return
    try:
        got = op.ref(x, **concrete(attrs)).shape
    except PnetError as err:
        got = f"an error ({err})"
    assert tuple(int(d) for d in t.shape) == got, \
        f"slice [-7:3] of f64[3]: the type rule accepts it as {t}, the reference gives {got}"


def _pad_src(o, n, before, mode):
    """The input position output position o reads along one padded axis, or None for the constant."""
    i = o - before
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "replicate":
        return 0 if i < 0 else n - 1
    if mode == "circular":
        return i % n
    while not 0 <= i < n:  # reflect: mirror about the edge elements, which are not repeated
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def padded(x, pads, mode, value=0.0):
    lead = x.ndim - len(pads)
    full = [(0, 0)] * lead + [tuple(p) for p in pads]
    want = np.empty(tuple(n + a + b for n, (a, b) in zip(x.shape, full)))
    for o in np.ndindex(*want.shape):
        src = [_pad_src(oi, n, a, mode) for oi, n, (a, _) in zip(o, x.shape, full)]
        want[o] = value if None in src else x[tuple(src)]
    return want


@st.composite
def pad_case(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    npairs = draw(st.integers(1, 3))
    if mode in ("reflect", "replicate"):  # the ranks torch's reflect/replicate padding accept (the rest: below)
        rank = npairs + draw(st.integers(1, 2))
    else:
        rank = draw(st.integers(npairs, 4))
    shape = tuple(draw(st.integers(2 if mode == "reflect" else 1, 3)) for _ in range(rank))
    pads = []
    for n in shape[rank - npairs:]:  # reflect: pads < n (as torch); circular: pads <= n
        hi = {"reflect": n - 1, "circular": n}.get(mode, 3)
        pads.append([draw(st.integers(0, hi)), draw(st.integers(0, hi))])
    value = draw(st.sampled_from([0.0, -1.5, 2.0]))
    return shape, pads, mode, value, draw(rngs())


@SETTINGS
@given(case=pad_case())
def test_pad(case):
    shape, pads, mode, value, rng = case
    x = rng.normal(size=shape)
    attrs = {"pads": pads}
    if mode != "constant" or value != 0.0:
        attrs["mode"] = mode
        attrs["value"] = value
    close(run("pad", x, **attrs), padded(x, pads, mode, value))


@pytest.mark.parametrize("shape, pads, mode", [
    ((5,), [[1, 2]], "reflect"),                   # a vector
    ((5,), [[1, 2]], "replicate"),
    ((3, 4), [[1, 1], [2, 1]], "replicate"),        # every axis of a matrix
    ((2, 3, 4, 5), [[1, 1]], "reflect"),           # only the last axis of a rank-4 tensor
    ((2, 3, 4), [[1, 1], [1, 1], [1, 1]], "replicate"),
], ids=["vec-reflect", "vec-replicate", "matrix-replicate-2axes", "rank4-reflect-1axis", "rank3-replicate-3axes"])
def test_pad_reflect_replicate_any_rank(shape, pads, mode):
    """The type rule accepts pads for any trailing axes of any rank; the torch lowering must handle them too."""
    x = np.random.default_rng(5).normal(size=shape)
    close(run("pad", x, pads=pads, mode=mode), padded(x, pads, mode))


@SETTINGS
@given(out=shapes(1, 4), rng=rngs(), data=st.data())  # rank-0 targets: test_rank0_movement
def test_broadcast_to(out, rng, data):
    shape = broadcastable(data.draw, out)
    x = rng.normal(size=shape)
    close(run("broadcast_to", x, shape=list(out)), pointwise(lambda v: v, out, x))


@pytest.mark.parametrize("name, attrs", [
    ("transpose", {}), ("transpose", {"perm": []}), ("broadcast_to", {"shape": []}), ("reshape", {"shape": []}),
    ("expand_dims", {"axis": 0}), ("squeeze", {}), ("flip", {"axis": []}), ("tile", {"reps": []}),
], ids=lambda v: str(v) if isinstance(v, str) else repr(v)[1:-1].replace("'", ""))
def test_rank0_movement(name, attrs):
    """The type rules accept rank-0 tensors for these; the lowerings must handle them too."""
    x = np.array(2.5)
    got = run(name, x, **attrs)
    close(got.reshape(-1), [2.5])


@SETTINGS
@given(shape=shapes(1, 3), rng=rngs(), data=st.data())
def test_repeat_tile_flip_roll(shape, rng, data):
    x = rng.normal(size=shape)
    rank = len(shape)
    a = data.draw(st.integers(0, rank - 1))
    r = data.draw(st.integers(1, 3))
    attrs = {"axis": axis_form(data.draw, a, rank)} if a or data.draw(st.booleans()) else {}
    want = np.empty(shape[:a] + (shape[a] * r,) + shape[a + 1:])
    for o in np.ndindex(*want.shape):
        want[o] = x[o[:a] + (o[a] // r,) + o[a + 1:]]  # each element r times in a row
    close(run("repeat", x, repeats=r, **attrs), want)

    reps = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    want = np.empty(tuple(d * k for d, k in zip(shape, reps)))
    for o in np.ndindex(*want.shape):
        want[o] = x[tuple(i % d for i, d in zip(o, shape))]  # the whole tensor reps times
    close(run("tile", x, reps=reps), want)

    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    forms = [axis_form(data.draw, i, rank) for i in axes]
    want = np.empty(shape)
    for o in np.ndindex(*shape):
        want[o] = x[tuple(d - 1 - i if ax in axes else i for ax, (i, d) in enumerate(zip(o, shape)))]
    close(run("flip", x, axis=forms[0] if len(forms) == 1 and data.draw(st.booleans()) else forms), want)

    shift = data.draw(st.integers(-7, 7))
    want = np.empty(shape)
    for o in np.ndindex(*shape):
        want[o] = x[o[:a] + ((o[a] - shift) % shape[a],) + o[a + 1:]]
    close(run("roll", x, shift=shift, axis=axis_form(data.draw, a, rank)), want)


# ---- symbolic dims ------------------------------------------------------------------------------------------
def _f(*shape, dtype="f32"):
    return TensorType(dtype, shape)


B, T, N = (sym(s) for s in "BTN")


def _subs(value, bindings):
    if isinstance(value, dict):
        return {k: _subs(v, bindings) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_subs(v, bindings) for v in value)
    if isinstance(value, sympy.Basic):
        return int(value.subs(bindings))
    return value


# (op, symbolic input types, attrs, bindings)
SYMBOLIC = [
    ("add", [_f(B, 1, 3), _f(T, 1)], {}, {B: 2, T: 4}),
    ("mul", [_f(B, T), _f(1, T, dtype="f64")], {}, {B: 2, T: 3}),
    ("lt", [_f(B, T), _f(T)], {}, {B: 2, T: 3}),
    ("where", [_f(B, 1, dtype="bool"), _f(1, T), _f(B, T)], {}, {B: 3, T: 2}),
    ("exp", [_f(B, T)], {}, {B: 2, T: 3}),
    ("cast", [_f(B, 2)], {"dtype": "i64"}, {B: 3}),
    ("const", [], {"value": 1.0, "shape": [B, 2]}, {B: 3}),
    ("arange", [], {"n": T}, {T: 5}),
    ("sum", [_f(B, T, 3)], {"axis": [1], "keepdims": True}, {B: 2, T: 3}),
    ("mean", [_f(B, T, 3)], {"axis": [0, -1]}, {B: 2, T: 3}),
    ("var", [_f(B, T)], {"axis": -1, "correction": 1}, {B: 2, T: 3}),
    ("argmax", [_f(B, T)], {"axis": 0}, {B: 2, T: 3}),
    ("cumsum", [_f(B, T)], {}, {B: 2, T: 3}),
    ("matmul", [_f(B, T, 4), _f(4, N)], {}, {B: 2, T: 3, N: 2}),
    ("matmul", [_f(B, 1, T, 4), _f(N, 4, 2)], {}, {B: 2, T: 3, N: 2}),
    ("einsum", [_f(B, T, 4), _f(B, 4, N)], {"equation": "btk,bkn->btn"}, {B: 2, T: 3, N: 2}),
    ("reshape", [_f(B, 6)], {"shape": [B, 2, 3]}, {B: 2}),
    ("reshape", [_f(B, 6)], {"shape": [-1]}, {B: 2}),
    ("reshape", [_f(B, 6)], {"shape": [-1, 3]}, {B: 3}),
    ("reshape", [_f(B, T, 2)], {"shape": [B * T, -1]}, {B: 3, T: 2}),
    ("transpose", [_f(B, T, 3)], {"perm": [2, 0, 1]}, {B: 2, T: 3}),
    ("expand_dims", [_f(B, T)], {"axis": -1}, {B: 2, T: 3}),
    ("squeeze", [_f(B, 1, T)], {"axis": 1}, {B: 2, T: 3}),
    ("concat", [_f(B, 3), _f(T, 3)], {"axis": 0}, {B: 2, T: 1}),
    ("split", [_f(2 * B, 3)], {"sizes": 2}, {B: 2}),
    ("split", [_f(B, 6)], {"sizes": 3, "axis": -1}, {B: 2}),
    ("split", [_f(B + T, 2)], {"sizes": [T, B]}, {B: 2, T: 3}),
    ("slice", [_f(B, T)], {"slices": [[1, None, None], [0, -1, 2]]}, {B: 3, T: 6}),
    ("pad", [_f(B, T)], {"pads": [[1, 2]]}, {B: 2, T: 3}),
    ("broadcast_to", [_f(1, T)], {"shape": [B, T]}, {B: 2, T: 3}),
    ("repeat", [_f(B, 3)], {"repeats": 2}, {B: 2}),
    ("tile", [_f(B, 3)], {"reps": [2, 1]}, {B: 2}),
    ("flip", [_f(B, T)], {"axis": 0}, {B: 2, T: 3}),
    ("roll", [_f(B, T)], {"shift": 1, "axis": 1}, {B: 2, T: 3}),
]


@pytest.mark.parametrize("name, types, attrs, bindings", SYMBOLIC, ids=[f"{c[0]}-{i}" for i, c in enumerate(SYMBOLIC)])
def test_symbolic_dims(name, types, attrs, bindings):
    """infer with symbols, then substitute numbers == infer on the numbers == the reference's output."""
    op = get(name)
    outs = op.infer_types(types, op.bind_attrs(copy.deepcopy(attrs)))
    assert any(not d.is_number for t in outs for d in t.shape)  # the symbols survive
    con_types = [t.with_shape([d.subs(bindings) for d in t.shape]) for t in types]
    con_attrs = _subs(attrs, bindings)
    con_outs = op.infer_types(con_types, op.bind_attrs(copy.deepcopy(con_attrs)))
    assert len(outs) == len(con_outs)
    for s, c in zip(outs, con_outs):
        assert s.dtype == c.dtype
        assert [sympy.simplify(d.subs(bindings)) for d in s.shape] == list(c.shape), (str(s), str(c))
    arrays = _sample_arrays(con_types, np.random.default_rng(2))
    got = run(name, *arrays, **con_attrs)
    got = got if isinstance(got, tuple) else (got,)
    for c, g in zip(con_outs, got):
        assert tuple(int(d) for d in c.shape) == g.shape


def test_symbolic_broadcast():
    add = get("add")
    assert add.infer_types([_f(B, 3), _f(1, 3)], {})[0].shape == (B, 3)
    assert add.infer_types([_f(1, 3), _f(B, 1)], {})[0].shape == (B, 3)
    assert add.infer_types([_f(B, T), _f(B, T)], {})[0].shape == (B, T)
    assert add.infer_types([_f(2 * B), _f(B + B)], {})[0].shape == (2 * B,)
    with pytest.raises(ShapeError) as err:
        add.infer_types([_f(B, 3), _f(T, 3)], {})
    assert "[B, 3]" in str(err.value) and "[T, 3]" in str(err.value), str(err.value)


def test_symbolic_reshape():
    op = get("reshape")
    x = _f(B, 6)
    assert op.infer_types([x], op.bind_attrs({"shape": [B, 2, 3]}))[0].shape == (B, 2, 3)
    assert op.infer_types([x], op.bind_attrs({"shape": [-1]}))[0].shape == (6 * B,)
    assert op.infer_types([x], op.bind_attrs({"shape": [-1, 3]}))[0].shape == (2 * B, 3)
    assert op.infer_types([x], op.bind_attrs({"shape": [2, B, -1]}))[0].shape == (2, B, 3)
    with pytest.raises(ShapeError):
        op.infer_types([x], op.bind_attrs({"shape": [4, -1]}))  # 6B/4 is not a whole number for every B
    with pytest.raises(ShapeError) as err:
        op.infer_types([x], op.bind_attrs({"shape": [B, 5]}))
    assert "[B, 6]" in str(err.value) and "[B, 5]" in str(err.value), str(err.value)


def test_symbolic_split():
    op = get("split")
    outs = op.infer_types([_f(2 * B, 3)], op.bind_attrs({"sizes": 2}))
    assert [t.shape for t in outs] == [(B, 3), (B, 3)]
    outs = op.infer_types([_f(B + T, 3)], op.bind_attrs({"sizes": [B, T]}))
    assert [t.shape for t in outs] == [(B, 3), (T, 3)]
    with pytest.raises(ShapeError):
        op.infer_types([_f(B, 3)], op.bind_attrs({"sizes": 2}))  # B/2 need not be whole
    with pytest.raises(ShapeError):
        op.infer_types([_f(B, 3)], op.bind_attrs({"sizes": [B, 1]}))


def test_symbolic_matmul_mismatch():
    with pytest.raises(ShapeError) as err:
        get("matmul").infer_types([_f(B, 4), _f(T, 5)], {})
    assert "[B, 4]" in str(err.value) and "[T, 5]" in str(err.value), str(err.value)


# ---- type rules ---------------------------------------------------------------------------------------------
def _registered_by(module: str) -> list[str]:
    """The names a module of ir/ops registers: the module is executed again with a recording `register`."""
    names = []
    path = Path(pnet.ir.ops.__file__).parent / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"{pnet.ir.ops.__name__}._scan_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    real = registry.register
    registry.register = lambda name, *a, **k: names.append(name)
    try:
        spec.loader.exec_module(mod)
    finally:
        registry.register = real
    return names


def _my_ops():
    names = [n for m in MODULES for n in _registered_by(m)]
    assert names and len(names) == len(set(names))
    ops = all_ops()
    return {n: ops[n] for n in names}


def _b(*shape):
    return TensorType("bool", shape)


def _i(*shape, dtype="i64"):
    return TensorType(dtype, shape)


SAMPLES = {
    **{n: ([_f(2, 3), _f(3)], {}) for n in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod")},
    **{n: ([_f(2, 3), _f(2, 1)], {}) for n in COMPARE},
    "logical_and": ([_b(2, 3), _b(3)], {}), "logical_or": ([_b(2, 1), _b(3)], {}), "logical_not": ([_b(4)], {}),
    "where": ([_b(2, 3), _f(3), _f(2, 1)], {}),
    **{n: ([_f(2, 3)], {}) for n in UNARY_FLOAT},
    "scale": ([_f(2, 3)], {"factor": 0.5}), "clamp": ([_f(2, 3)], {"min": 0.75, "max": 1.5}),
    "gelu": ([_f(2, 3)], {"approximate": "tanh"}),
    "cast": ([_f(2, 3)], {"dtype": "i32"}),
    "const": ([], {"value": 2.5, "shape": [2, 3]}), "arange": ([], {"n": 5, "dtype": "f32"}),
    **{n: ([_f(2, 3, 4)], {"axis": [0, 2]}) for n in ("sum", "mean", "max", "min", "prod", "logsumexp")},
    "var": ([_f(2, 3, 4)], {"axis": -1, "correction": 1}), "std": ([_f(2, 3, 4)], {"keepdims": True}),
    "argmax": ([_f(2, 3)], {"axis": 0}), "argmin": ([_f(2, 3)], {"keepdims": True}),
    "cumsum": ([_f(2, 3)], {"axis": 0}),
    "matmul": ([_f(2, 3, 4), _f(4, 5)], {}), "einsum": ([_f(3, 4), _f(4, 5)], {"equation": "ij,jk->ik"}),
    "reshape": ([_f(2, 6)], {"shape": [3, -1]}), "transpose": ([_f(2, 3, 4)], {"perm": [1, 2, 0]}),
    "expand_dims": ([_f(2, 3)], {"axis": 1}), "squeeze": ([_f(2, 1, 3)], {}),
    "concat": ([_f(2, 3), _f(1, 3)], {}), "split": ([_f(4, 3)], {"sizes": [1, 3]}),
    "slice": ([_f(4, 6)], {"slices": [[1, None, 2], [-4, -1, None]]}),
    "pad": ([_f(2, 3, 4)], {"pads": [[1, 0], [2, 1]], "mode": "reflect"}),
    "broadcast_to": ([_f(3)], {"shape": [2, 3]}), "repeat": ([_f(2, 3)], {"repeats": 2, "axis": 1}),
    "tile": ([_f(2, 3)], {"reps": [2, 2]}), "flip": ([_f(2, 3)], {"axis": [0, 1]}),
    "roll": ([_f(2, 3)], {"shift": -1, "axis": 1}),
}


def _sample_arrays(types, rng):
    arrays = []
    for t in types:
        shape = tuple(int(d) for d in t.shape)
        if t.dtype.startswith(("i", "u")):
            arrays.append(rng.integers(1, 4, size=shape).astype(DTYPES[t.dtype]))
        elif t.dtype == "bool":
            arrays.append(rng.uniform(size=shape) < 0.7)
        else:  # positive: valid for log/sqrt/pow/div
            arrays.append(np.abs(rng.normal(size=shape)).astype(DTYPES[t.dtype]) + 0.5)
    return arrays


def test_every_op_has_a_sample():
    mine = set(_my_ops())
    assert mine == set(SAMPLES), (sorted(mine - set(SAMPLES)), sorted(set(SAMPLES) - mine))


def test_every_op_has_a_reference_check():
    """Every op appears in a value test of this file (as a quoted name), not only in SAMPLES."""
    text = Path(__file__).read_text().split("\nSAMPLES = {")[0]
    missing = [n for n in _my_ops() if f'"{n}"' not in text and n not in UNARY_FLOAT and n not in BINARY
               and n not in COMPARE]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_keeps_float32_and_counts_flops(name):
    """float32 in -> float32 out (run() checks every output dtype against the type rule), torch agrees in f32,
    and the FLOP count is a non-negative number."""
    types, attrs = SAMPLES[name]
    run(name, *_sample_arrays(types, np.random.default_rng(1)), **attrs)
    op = get(name)
    bound = op.bind_attrs(copy.deepcopy(attrs))
    outs = op.infer_types(types, bound)
    flops = op.count_flops(types, outs, bound)
    assert flops.is_Integer and flops >= 0


@pytest.mark.parametrize("name, types, attrs, want", [
    ("add", [_f(2, 3), _f(3)], {}, 6),
    ("sigmoid", [_f(2, 3)], {}, 4 * 6),
    ("gelu", [_f(5)], {}, 8 * 5),
    ("sum", [_f(2, 3, 4)], {"axis": 0}, 24),
    ("logsumexp", [_f(2, 3)], {}, 3 * 6),
    ("matmul", [_f(2, 3, 4), _f(4, 5)], {}, 2 * (2 * 3 * 5) * 4),
    ("matmul", [_f(4), _f(4, 5)], {}, 2 * 5 * 4),
    ("einsum", [_f(3, 4), _f(4, 5)], {"equation": "ij,jk->ik"}, 2 * 3 * 4 * 5),
    ("transpose", [_f(2, 3)], {}, 0),
    ("cast", [_f(2, 3)], {"dtype": "f64"}, 0),
    ("matmul", [_f(B, T, 4), _f(4, N)], {}, 2 * B * T * N * 4),
])
def test_flops_formulas(name, types, attrs, want):
    op = get(name)
    bound = op.bind_attrs(attrs)
    outs = op.infer_types(types, bound)
    assert sympy.simplify(op.count_flops(types, outs, bound) - want) == 0


def test_attrs_are_canonical():
    op = get("sum")
    attrs = op.bind_attrs({"axis": [-1, 0, -3]})
    op.infer_types([_f(2, 3, 4)], attrs)
    assert attrs["axis"] == [0, 2]
    attrs = op.bind_attrs({})
    op.infer_types([_f(2, 3)], attrs)
    assert attrs["axis"] == [0, 1]
    op = get("transpose")
    attrs = op.bind_attrs({})
    op.infer_types([_f(2, 3, 4)], attrs)
    assert attrs["perm"] == [2, 1, 0]
    op = get("einsum")
    attrs = op.bind_attrs({"equation": " ij, jk -> ik"})
    op.infer_types([_f(2, 3), _f(3, 4)], attrs)
    assert attrs["equation"] == "ij,jk->ik"
    op = get("split")
    attrs = op.bind_attrs({"sizes": 3, "axis": -1})
    op.infer_types([_f(2, 6)], attrs)
    assert attrs["sizes"] == [2, 2, 2] and attrs["axis"] == 1
    op = get("slice")
    attrs = op.bind_attrs({"slices": [[-3, None, None]]})
    op.infer_types([_f(5)], attrs)
    assert attrs["slices"] == [[2, 5, 1]]


# (op, input types, attrs, extra strings the message must hold): each must raise ShapeError naming both shapes
BAD = [
    ("add", [_f(2, 3), _f(4, 3)], {}, []),
    ("mul", [_f(3), _f(4)], {}, []),
    ("mod", [_i(2, 3), _i(3, 2)], {}, []),
    ("lt", [_f(2, 3), _f(3, 2)], {}, []),
    ("logical_and", [_b(2), _b(3)], {}, []),
    ("where", [_b(2, 3), _f(4), _f(3)], {}, []),
    ("matmul", [_f(2, 3), _f(4, 5)], {}, []),
    ("matmul", [_f(3), _f(4)], {}, []),
    ("matmul", [_f(2, 4, 5), _f(3, 5, 6)], {}, []),                      # batch dims 2 vs 3
    ("einsum", [_f(2, 3), _f(4, 5)], {"equation": "ij,jk->ik"}, []),     # j: 3 vs 4
    ("concat", [_f(2, 3), _f(2, 4)], {"axis": 0}, []),
    ("reshape", [_f(2, 3)], {"shape": [4, 2]}, ["[4, 2]"]),
    ("broadcast_to", [_f(3)], {"shape": [2, 4]}, ["[2, 4]"]),
    ("broadcast_to", [_f(2, 3)], {"shape": [3]}, ["[3]"]),
    ("split", [_f(3, 2)], {"sizes": [1, 1]}, ["[1, 1]"]),
]


@pytest.mark.parametrize("name, types, attrs, extra", BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD)])
def test_bad_shapes_name_both_shapes(name, types, attrs, extra):
    op = get(name)
    with pytest.raises(ShapeError) as err:
        op.infer_types(types, op.bind_attrs(attrs))
    shown = [fmt_shape(t.shape) for t in types if t is not None]
    msg = str(err.value)
    named = [s for s in shown if s in msg]
    assert len(named) >= min(2, len(shown)), f"the message names {named} of {shown}: {msg}"
    for s in extra:
        assert s in msg, msg


@pytest.mark.parametrize("name, types, attrs", [
    ("transpose", [_f(2, 3)], {"perm": [0, 0]}),
    ("transpose", [_f(2, 3)], {"perm": [0]}),
    ("squeeze", [_f(2, 3)], {"axis": 0}),
    ("expand_dims", [_f(2, 3)], {"axis": 3}),
    ("expand_dims", [_f(2, 3)], {"axis": -4}),
    ("split", [_f(4, 3)], {"sizes": 3}),
    ("split", [_f(4, 3)], {"sizes": 0}),
    ("slice", [_f(4)], {"slices": [[0, 4, 0]]}),
    ("slice", [_f(4)], {"slices": [[0, 5, 1]]}),
    ("slice", [_f(4)], {"slices": [[0, 4, 1], [0, 1, 1]]}),
    ("pad", [_f(4)], {"pads": [[-1, 0]]}),
    ("pad", [_f(4)], {"pads": [[1, 0], [1, 1]]}),
    ("tile", [_f(2, 3)], {"reps": [2]}),
    ("repeat", [_f(2, 3)], {"repeats": 0}),
    ("reshape", [_f(2, 3)], {"shape": [-1, -1]}),
    ("reshape", [_f(2, 3)], {"shape": [4, -1]}),
    ("sum", [_f(2, 3)], {"axis": 2}),
    ("mean", [_f(2, 3)], {"axis": [0, -3]}),
    ("argmax", [_f(2, 3)], {"axis": 2}),
    ("argmax", [_f(2, 3)], {"axis": None}),
    ("cumsum", [_f(2, 3)], {"axis": -3}),
    ("flip", [_f(2, 3)], {"axis": 2}),
    ("roll", [_f(2, 3)], {"shift": 1, "axis": 2}),
    ("concat", [_f(2, 3), _f(2, 3)], {"axis": 2}),
    ("concat", [_f(2, 3), _f(2, 3, 1)], {"axis": 0}),
    ("cast", [_f(2)], {"dtype": "f8"}),
    ("einsum", [_f(2, 3), _f(3, 4)], {"equation": "ij,jk"}),
    ("einsum", [_f(2, 3)], {"equation": "ij,jk->ik"}),
    ("einsum", [_f(2, 3), _f(3, 4)], {"equation": "ij,jk->iz"}),
    ("einsum", [_f(2, 3), _f(3, 4)], {"equation": "ijk,jk->i"}),
    ("matmul", [_f(), _f(3)], {}),
])
def test_bad_attrs(name, types, attrs):
    op = get(name)
    with pytest.raises(ShapeError):
        op.infer_types(types, op.bind_attrs(attrs))


@pytest.mark.parametrize("name, types, attrs", [
    ("exp", [_i(3)], {}),
    ("gelu", [_i(3, dtype="i32")], {}),
    ("mean", [_i(3)], {}),
    ("logsumexp", [_i(3, dtype="i32")], {}),
    ("var", [_i(3)], {}),
    ("std", [_i(3)], {}),
])
def test_bad_dtypes_name_the_op(name, types, attrs):
    """Like the other op families (tests/test_ops_nn.py::test_bad_dtypes): the message names the op."""
    op = get(name)
    with pytest.raises(ShapeError, match=name):
        op.infer_types(types, op.bind_attrs(attrs))


@pytest.mark.parametrize("name, types, attrs", [
    ("logical_and", [_f(3), _b(3)], {}),
    ("logical_or", [_b(3), _i(3)], {}),
    ("logical_not", [_f(3)], {}),
    ("where", [_f(3), _f(3), _f(3)], {}),
    ("concat", [_f(3), _f(3, dtype="f64")], {}),
])
def test_bad_dtypes(name, types, attrs):
    op = get(name)
    with pytest.raises(ShapeError):
        op.infer_types(types, op.bind_attrs(attrs))


def test_attribute_errors():
    with pytest.raises(PnetError, match="needs attribute 'shape'"):
        get("reshape").bind_attrs({})
    with pytest.raises(PnetError, match="has no attribute 'axes'"):
        get("sum").bind_attrs({"axes": 0})
    with pytest.raises(ShapeError, match="takes 2 tensor inputs, got 1"):
        get("add").check_arity(1)
    with pytest.raises(ShapeError, match="at least 1"):
        get("concat").check_arity(0)


def test_torch_is_installed():
    pytest.importorskip("torch")
