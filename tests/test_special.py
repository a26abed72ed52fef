"""Special functions (ir/ops/special.py, issue 21): atan, atan2, asin, acos, lgamma, digamma, erfinv, log1p, expm1,
logaddexp, xlogy. The float64 references against known values (math) and torch's own float64 functions, the
special values (NaN, +-inf, +-0, poles, domain edges) as torch gives them, the torch lowering and the Triton kernels
(under the interpreter) against the reference by the tolerance rule, the gradients against torch.autograd and
finite differences, and bad input as a located error."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import op_ref, op_torch, op_triton
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.testing.gradcheck import along, check_gradients, directional_derivative, ir_gradients, torch_gradients
from pnet.testing.tolerance import check_close

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNARY = ["atan", "asin", "acos", "lgamma", "digamma", "erfinv", "log1p", "expm1"]
BINARY = ["atan2", "logaddexp", "xlogy"]
TORCH_FN = {"atan": torch.atan, "asin": torch.asin, "acos": torch.acos, "lgamma": torch.lgamma,
            "digamma": torch.digamma, "erfinv": torch.special.erfinv, "log1p": torch.log1p, "expm1": torch.expm1,
            "atan2": torch.atan2, "logaddexp": torch.logaddexp, "xlogy": torch.xlogy}
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e-40, -1e-40, 1.0, -1.0]
EULER = 0.5772156649015329


def _domain(op, n, rng):
    """n float64 values where `op` is finite, spread over its interesting range."""
    x = rng.standard_normal(n) * 3
    if op in ("asin", "acos"):
        return np.tanh(x)
    if op == "erfinv":
        return np.concatenate([np.tanh(x[: n // 2]), np.sign(x[n // 2:]) * (1 - np.logspace(-7, -1, n - n // 2))])
    if op == "log1p":
        return np.concatenate([np.abs(x[: n // 2]) - 0.999, x[n // 2:] * 1e-6])
    if op == "expm1":
        return np.concatenate([x[: n // 2] * 5, x[n // 2:] * 1e-6])
    if op in ("lgamma", "digamma"):   # positive, near the roots, negative off the poles, large
        q = n // 4
        neg = -np.abs(x[:q]) * 4
        neg = np.where(np.abs(neg - np.round(neg)) < 0.05, neg + 0.3, neg)
        return np.concatenate([np.abs(x[q:2 * q]) + 1e-3, np.linspace(0.9, 2.1, q), neg,
                               np.exp(np.abs(x[3 * q:]) * 4)])
    return x


def _args(op, n, rng):
    if op in UNARY:
        return (_domain(op, n, rng),)
    a, b = rng.standard_normal(n) * 3, rng.standard_normal(n) * 3
    if op == "xlogy":
        a[::5] = 0.0
        b = np.abs(b) + 1e-3
    if op == "logaddexp":
        a, b = a * 30, b * 30
    return a, b


# ---- the float64 references -----------------------------------------------------------------------------------
KNOWN = [
    ("atan", (1.0,), math.pi / 4), ("atan", (-1e300,), -math.pi / 2),
    ("atan2", (1.0, -1.0), 3 * math.pi / 4), ("atan2", (0.0, -0.0), math.pi), ("atan2", (-0.0, -0.0), -math.pi),
    ("atan2", (np.inf, -np.inf), 3 * math.pi / 4), ("atan2", (-2.0, 0.0), -math.pi / 2),
    ("asin", (0.5,), math.pi / 6), ("asin", (-1.0,), -math.pi / 2), ("acos", (-1.0,), math.pi), ("acos", (0.5,), math.pi / 3),
    ("lgamma", (0.5,), 0.5 * math.log(math.pi)), ("lgamma", (-0.5,), math.log(2 * math.sqrt(math.pi))),
    ("lgamma", (10.0,), math.log(362880)), ("lgamma", (1.0,), 0.0), ("lgamma", (2.0,), 0.0),
    ("digamma", (1.0,), -EULER), ("digamma", (0.5,), -EULER - 2 * math.log(2)),
    ("digamma", (-0.5,), -EULER - 2 * math.log(2) + 2), ("digamma", (5.0,), 1 + 1 / 2 + 1 / 3 + 1 / 4 - EULER),
    ("digamma", (1e-8,), -1e8 - EULER + math.pi ** 2 / 6 * 1e-8),
    ("erfinv", (0.5,), 0.4769362762044699), ("erfinv", (math.erf(0.3),), 0.3), ("erfinv", (-math.erf(1.0),), -1.0),
    ("log1p", (1e-20,), 1e-20), ("log1p", (math.e - 1,), 1.0), ("expm1", (1e-20,), 1e-20), ("expm1", (1.0,), math.e - 1),
    ("logaddexp", (1000.0, 1000.0), 1000 + math.log(2)), ("logaddexp", (0.0, math.log(3)), math.log(4)),
    ("xlogy", (0.0, 0.0), 0.0), ("xlogy", (2.0, math.e), 2.0), ("xlogy", (0.0, -1.0), 0.0), ("xlogy", (3.0, 1.0), 0.0),
]


@pytest.mark.parametrize("op, args, want", KNOWN, ids=[f"{k[0]}{k[1]}" for k in KNOWN])
def test_reference_known_values(op, args, want):
    got = op_ref(op, *[np.array([a], np.float64) for a in args])
    np.testing.assert_allclose(got, [want], rtol=2e-15, atol=0)


@pytest.mark.parametrize("op", UNARY + BINARY)
def test_reference_matches_torch_float64(op):
    """Independent float64 implementations (torch's) agree to ~1e-13 over each op's range."""
    args = _args(op, 400, np.random.default_rng(0))
    got = op_ref(op, *args)
    want = TORCH_FN[op](*[torch.from_numpy(a) for a in args]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_erfinv_inverts_erf_into_the_tails():
    """erf(erfinv(x)) = x to a few ulps, and in the tails erfc(erfinv(x)) = 1 - x (exact for x >= 1/2), relative."""
    mid = np.linspace(-0.5, 0.5, 201)
    back = np.array([math.erf(v) for v in op_ref("erfinv", mid)])
    np.testing.assert_allclose(back, mid, rtol=1e-15, atol=1e-17)
    x = 1 - np.logspace(-16, np.log10(0.5), 200)
    y = op_ref("erfinv", x)
    np.testing.assert_allclose([math.erfc(v) for v in y], 1 - x, rtol=2e-14)   # 1 - x: exact (Sterbenz)
    np.testing.assert_array_equal(op_ref("erfinv", -x), -y)


def _same_nonfinite(got, want):
    for f in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(f(got), f(want))


@pytest.mark.parametrize("op", UNARY)
def test_unary_special_values_as_torch(op):
    x = np.array(SPECIALS + [-1.0, -2.0, -3.0, 2.0, 1.5, -1.5, 0.5, -0.5, 1e30, -1e30], np.float64)
    got = op_ref(op, x)
    want = TORCH_FN[op](torch.from_numpy(x)).numpy()
    _same_nonfinite(got, want)
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-13)


@pytest.mark.parametrize("op", BINARY)
def test_binary_special_values_as_torch(op):
    v = np.array(SPECIALS + [2.0, -3.0], np.float64)
    a, b = np.meshgrid(v, v, indexing="ij")
    got = op_ref(op, a, b)
    want = TORCH_FN[op](torch.from_numpy(a), torch.from_numpy(b)).numpy()
    _same_nonfinite(got, want)
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-15)


def test_poles_and_signed_zeros():
    assert op_ref("digamma", np.array([0.0]))[0] == -np.inf and op_ref("digamma", np.array([-0.0]))[0] == np.inf
    assert np.isnan(op_ref("digamma", np.array([-3.0, -np.inf]))).all()
    assert (op_ref("lgamma", np.array([0.0, -0.0, -4.0, -np.inf, np.inf])) == np.inf).all()
    np.testing.assert_array_equal(op_ref("erfinv", np.array([1.0, -1.0])), [np.inf, -np.inf])
    assert np.isnan(op_ref("xlogy", np.array([0.0]), np.array([np.nan])))[0]
    assert np.signbit(op_ref("erfinv", np.array([-0.0]))[0])


# ---- backends against the reference -----------------------------------------------------------------------------
def _compare(op, got, args32, dtype_name):
    """`got` against the float64 reference by the tolerance rule, leaving out elements that overflow (or not) in
    the float32 reference only (digamma(1e-40) = -1e40: -inf in f32), as the differential tester does."""
    r32 = op_ref(op, *args32)
    r64 = op_ref(op, *[a.astype(np.float64) for a in args32])
    keep = np.ones(r64.shape, bool)
    for f in (np.isnan, np.isposinf, np.isneginf):
        keep &= f(r32.astype(np.float64)) == f(r64)
    check_close(f"{op} ({dtype_name})", np.asarray(got)[keep], r32[keep], r64[keep])


def _with_specials(args, dtype):
    out = []
    for i, a in enumerate(args):
        sp = np.array(SPECIALS, np.float64)
        if len(args) == 2:   # every pair of special values
            sp = np.repeat(sp, len(SPECIALS)) if i == 0 else np.tile(sp, len(SPECIALS))
        out.append(np.concatenate([a, sp]).astype(dtype))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("op", UNARY + BINARY)
def test_torch_lowering_matches_reference(op, dtype):
    rng = np.random.default_rng(1)
    args = _with_specials(_args(op, 200, rng), dtype)
    if dtype == np.float16 and op in ("lgamma", "digamma"):   # in f16's range
        args = [np.where(np.abs(a) > 1000, a / 1e3, a).astype(dtype) for a in args]
    _compare(op, op_torch(op, *args), args, np.dtype(dtype).name)


@pytest.mark.parametrize("op", UNARY + BINARY)
def test_triton_kernel_matches_reference(op):
    """One fused pointwise kernel (prelude.py's tl.* helpers, no fallback), within the f32 rule, special values
    included; a second, rank-2 broadcasting case for the binary ops."""
    rng = np.random.default_rng(2)
    args = _with_specials(_args(op, 96, rng), np.float32)
    kinds, got = op_triton(op, *args)
    assert kinds == ["pointwise"], kinds
    _compare(op, got, args, "f32")
    if op in BINARY:
        a, b = (x.astype(np.float32) for x in _args(op, 24, rng))
        a, b = a.reshape(4, 6), b[:6].reshape(1, 6)
        kinds, got = op_triton(op, a, b)
        _compare(op, got, (a, b), "f32 broadcast")


def test_triton_with_a_literal_operand():
    src = ("model m() {\n  input x: f32[5]\n  output a = atan2(x, -1.0)\n  output b = logaddexp(2.0, x)\n"
           "  output c = xlogy(x, 2.0)\n}\n")
    from pnet.backends import numpy_ref
    from pnet.backends import triton as triton_backend
    g = load_source(src, "m.pnet").graph
    x = {"x": np.array([0.0, -0.0, 1.5, -np.inf, np.nan], np.float32)}
    got = triton_backend.compile(g).run(x, {})
    r32, r64 = numpy_ref.run(g, x, {}), numpy_ref.run(g, x, {}, float64=True)
    for k in ("a", "b", "c"):
        check_close(k, got[k], r32[k], r64[k])


# ---- gradients ---------------------------------------------------------------------------------------------------
GRAD_INPUTS = {   # away from poles and domain edges, where finite differences are well conditioned
    "atan": (np.linspace(-3, 3, 7),), "asin": (np.linspace(-0.9, 0.9, 7),), "acos": (np.linspace(-0.9, 0.9, 7),),
    "lgamma": (np.array([-2.5, -0.3, 0.2, 0.7, 1.4, 3.0, 12.5]),), "erfinv": (np.linspace(-0.95, 0.95, 7),),
    "log1p": (np.array([-0.9, -1e-3, 0.0, 1e-8, 0.5, 3.0, 40.0]),), "expm1": (np.linspace(-5, 5, 7),),
    "atan2": (np.array([1.0, -2.0, 0.5, -0.1, 3.0, 0.0, 2.0]), np.array([0.5, 1.0, -2.0, -0.3, 0.2, 1.0, 0.0])),
    "logaddexp": (np.array([1.0, -2.0, 30.0, 0.0, -40.0, 5.0, 5.0]), np.array([0.5, 1.0, -2.0, 0.0, -41.0, 5.0, 50.0])),
    "xlogy": (np.array([0.0, 0.0, 1.5, -2.0, 0.0, 3.0, 0.5]), np.array([2.0, 0.0, 0.5, 3.0, -1.0, 1.0, 7.0])),
}


def _grad_graph(op, n_in):
    ins = "".join(f"  input {c}: f64[7]\n" for c in "ab"[:n_in])
    return load_source(f"model m() {{\n{ins}  output y = {op}({', '.join('ab'[:n_in])})\n}}\n", "m.pnet").graph


@pytest.mark.parametrize("op", sorted(GRAD_INPUTS))
def test_gradient_matches_torch_and_finite_differences(op):
    args = GRAD_INPUTS[op]
    g = _grad_graph(op, len(args))
    inputs = dict(zip("ab", args))
    fd = op != "xlogy"   # xlogy's x == 0, y <= 0 points are a kink by definition (torch's masked gradient)
    check_gradients(g, inputs, direction=fd)
    if op == "xlogy":   # the gradient where x == 0: log(y) for y > 0, 0 for y <= 0 (torch's masked rule)
        got = ir_gradients(g, inputs, cotangents={"y": np.ones(7)}, wrt=["a", "b"])
        np.testing.assert_allclose(got["a"][:2], [math.log(2.0), 0.0])
        assert got["a"][4] == 0.0


def test_digamma_gradient_is_trigamma():
    """Known trigamma values to 1e-14 (torch's polygamma(1) is off by up to 3e-10 near 1/2: compared at 1e-8),
    reflection included, and finite differences."""
    x = np.array([0.5, 1.0, 1.5, 2.0, 3.0, -0.5, -1.5, 25.0])
    z = math.pi ** 2
    exact = [z / 2, z / 6, z / 2 - 4, z / 6 - 1, z / 6 - 1.25, z / 2 + 4, z / 2 + 4 + 4 / 9]
    g = load_source("model m() {\n  input a: f64[8]\n  output y = digamma(a)\n}\n", "m.pnet").graph
    got = ir_gradients(g, {"a": x}, cotangents={"y": np.ones(8)}, wrt=["a"])["a"]
    np.testing.assert_allclose(got[:7], exact, rtol=1e-14)
    want = torch_gradients(g, {"a": x}, cotangents={"y": np.ones(8)}, wrt=["a"])["a"]
    np.testing.assert_allclose(got, want, rtol=1e-8)
    v = np.random.default_rng(0).standard_normal(8)
    numeric = directional_derivative(g, {"a": x}, cotangents={"y": np.ones(8)}, direction={"a": v})
    assert np.isclose(along({"a": got}, {"a": v}), numeric, rtol=1e-6)


def test_second_derivative_through_the_trigamma_rule():
    """grad of grad: lgamma'' = trigamma, whose own rule (stop_gradient on its floor) is differentiable."""
    from pnet.backends import numpy_ref
    src = "model m() {\n  input x: f64[3]\n  g = grad(sum(lgamma(x)), x)\n  output h = grad(sum(g), x)\n}\n"
    out = numpy_ref.run(load_source(src, "m.pnet").graph, {"x": np.array([1.0, 0.5, -0.5])}, {}, float64=True)
    np.testing.assert_allclose(out["h"], [math.pi ** 2 / 6, math.pi ** 2 / 2, math.pi ** 2 / 2 + 4], rtol=1e-13)


# ---- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ("  input x: i32[3]\n  output y = lgamma(x)\n", r"m.pnet:3:14: error: lgamma: lgamma expects a float tensor, got i32\[3\]"),
    ("  input x: i32[3]\n  output y = atan2(x, x)\n", r"m.pnet:3:14: error: atan2: atan2 expects float tensors, got i32\[3\] and i32\[3\]"),
    ("  input x: f32[3]\n  input z: f32[4]\n  output y = xlogy(x, z)\n", r"m.pnet:4:14: error: xlogy: cannot broadcast shapes \[3\] and \[4\]"),
    ("  input x: f32[3]\n  output y = erfinv(x, x)\n", r"m.pnet:3:14: error: op 'erfinv' takes 1 tensor input, got more"),
])
def test_bad_input_is_a_located_one_line_error(body, message):
    with pytest.raises(PnetError, match=message) as e:
        load_source("model m() {\n" + body + "}\n", "m.pnet")
    assert "\n" not in str(e.value).strip()
