"""Dense linear algebra (ir/ops/dense_linalg.py, issue 21 item 3): solve, inv, cholesky, triangular_solve, eigh, qr,
slogdet, matrix_exp. Each reference against an independent oracle (the defining identity, known values, torch's
own function), the torch lowering and the Triton backend (a counted torch fallback) against the reference, the
non-finite semantics alike on every backend, the gradients against torch.autograd and finite differences, and bad
input as one located error."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.ir import registry
from pnet.testing.gradcheck import check_gradients
from tests.conftest import op_ref

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPS = ("solve", "inv", "cholesky", "triangular_solve", "eigh", "qr", "slogdet", "matrix_exp")
RNG = np.random.default_rng(0)


def _spd(shape, dtype=np.float64):
    x = RNG.standard_normal(shape)
    n = shape[-1]
    return (x @ np.swapaxes(x, -1, -2) + n * np.eye(n)).astype(dtype)


def _dominant(shape, dtype=np.float64):
    return (np.tanh(RNG.standard_normal(shape)) + (shape[-1] + 1) * np.eye(shape[-1])).astype(dtype)


def _torch(op, *args, **attrs):
    o = registry.get(op)
    out = o.torch(torch, *[torch.from_numpy(np.ascontiguousarray(a)) for a in args], **o.bind_attrs(attrs))
    return tuple(t.numpy() for t in out) if isinstance(out, tuple) else out.numpy()


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


# ---- the references against independent oracles -----------------------------------------------------------------
def test_solve_and_inv_satisfy_their_definitions():
    a = _dominant((2, 3, 4, 4))
    b = RNG.standard_normal((2, 3, 4, 2))
    np.testing.assert_allclose(a @ op_ref("solve", a, b), b, atol=1e-12)
    x = op_ref("solve", a, b[..., 0])                          # a batch of vectors
    assert x.shape == (2, 3, 4)
    np.testing.assert_allclose(np.einsum("...ij,...j->...i", a, x), b[..., 0], atol=1e-12)
    x = op_ref("solve", a[0, 0], b)                            # a broadcast over b's batch
    np.testing.assert_allclose(a[0, 0] @ x, b, atol=1e-12)
    np.testing.assert_allclose(op_ref("inv", a) @ a, np.broadcast_to(np.eye(4), a.shape), atol=1e-12)
    np.testing.assert_allclose(op_ref("inv", np.diag([2.0, 4.0, -0.5])), np.diag([0.5, 0.25, -2.0]))


def test_cholesky_reads_the_lower_triangle():
    a = _spd((3, 4, 4))
    low = op_ref("cholesky", a)
    np.testing.assert_allclose(low @ np.swapaxes(low, -1, -2), a, atol=1e-12)
    assert np.all(np.triu(low, 1) == 0) and np.all(np.diagonal(low, axis1=-2, axis2=-1) > 0)
    np.testing.assert_allclose(op_ref("cholesky", a, upper=True), np.swapaxes(low, -1, -2))
    junk = np.tril(a) + np.triu(RNG.standard_normal(a.shape), 1)      # the upper triangle is never read
    np.testing.assert_array_equal(op_ref("cholesky", junk), low)
    np.testing.assert_allclose(op_ref("cholesky", np.diag([4.0, 9.0])), np.diag([2.0, 3.0]))


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("unit", [False, True])
def test_triangular_solve_matches_torch_semantics(upper, left, unit):
    a = RNG.standard_normal((2, 4, 4)) + 3 * np.eye(4)
    b = RNG.standard_normal((2, 4, 3) if left else (2, 3, 4))
    x = op_ref("triangular_solve", a, b, upper=upper, left=left, unitriangular=unit)
    t = (np.triu(a, 1) if upper else np.tril(a, -1)) + np.eye(4) if unit else (np.triu if upper else np.tril)(a)
    np.testing.assert_allclose(t @ x if left else x @ t, b, atol=1e-12)
    want = torch.linalg.solve_triangular(torch.from_numpy(a), torch.from_numpy(b), upper=upper, left=left,
                                         unitriangular=unit).numpy()
    np.testing.assert_allclose(x, want, atol=1e-12)


def test_eigh_is_an_orthonormal_eigenbasis_with_signs_fixed():
    a = _spd((3, 5, 5))
    w, v = op_ref("eigh", a)
    np.testing.assert_allclose(a @ v, v * w[..., None, :], atol=1e-10)
    np.testing.assert_allclose(np.swapaxes(v, -1, -2) @ v, np.broadcast_to(np.eye(5), a.shape), atol=1e-12)
    assert np.all(np.diff(w, axis=-1) > 0)
    big = np.take_along_axis(v, np.abs(v).argmax(axis=-2)[..., None, :], axis=-2)
    assert np.all(big > 0)
    w2, v2 = op_ref("eigh", np.array([[2.0, 1.0], [1.0, 2.0]]))          # known: 1, 3; (1, -1)/sqrt2, (1, 1)/sqrt2
    np.testing.assert_allclose(w2, [1.0, 3.0])
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(np.abs(v2), [[s, s], [s, s]])


@pytest.mark.parametrize("shape", [(2, 5, 3), (3, 3), (2, 3, 5)])
def test_qr_is_orthonormal_times_upper(shape):
    a = RNG.standard_normal(shape)
    q, r = op_ref("qr", a)
    k = min(shape[-2:])
    assert q.shape == shape[:-1] + (k,) and r.shape == shape[:-2] + (k, shape[-1])
    np.testing.assert_allclose(q @ r, a, atol=1e-12)
    np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, np.broadcast_to(np.eye(k), q.shape[:-2] + (k, k)), atol=1e-12)
    assert np.all(np.tril(r, -1) == 0)


def test_slogdet_known_values():
    sign, logdet = op_ref("slogdet", np.array([np.diag([2.0, 3.0]), np.diag([-2.0, 3.0]), np.zeros((2, 2))]))
    np.testing.assert_array_equal(sign, [1.0, -1.0, 0.0])
    np.testing.assert_allclose(logdet[:2], [math.log(6), math.log(6)])
    assert logdet[2] == -np.inf
    a = RNG.standard_normal((4, 5, 5))
    sign, logdet = op_ref("slogdet", a)
    np.testing.assert_allclose(sign * np.exp(logdet), torch.linalg.det(torch.from_numpy(a)).numpy(), rtol=1e-12)


def test_matrix_exp_known_values_and_torch():
    t = 0.7
    rot = op_ref("matrix_exp", np.array([[0.0, t], [-t, 0.0]]))
    np.testing.assert_allclose(rot, [[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]], atol=1e-15)
    np.testing.assert_allclose(op_ref("matrix_exp", np.array([[0.0, 1.0], [0.0, 0.0]])), [[1, 1], [0, 1]])
    np.testing.assert_allclose(op_ref("matrix_exp", np.diag([1.0, -2.0, 0.5])), np.diag(np.exp([1.0, -2.0, 0.5])),
                               rtol=1e-15)
    t = 60.0                                                   # needs scaling and squaring (1-norm >> theta_13)
    np.testing.assert_allclose(op_ref("matrix_exp", np.array([[0.0, t], [-t, 0.0]])),
                               [[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]], atol=1e-12)
    for scale in (0.01, 1.0, 8.0):
        a = scale * RNG.standard_normal((3, 4, 4))
        want = torch.linalg.matrix_exp(torch.from_numpy(a)).numpy()
        np.testing.assert_allclose(op_ref("matrix_exp", a), want, rtol=1e-11, atol=1e-12 * np.abs(want).max())
    assert op_ref("matrix_exp", np.zeros((0, 3, 3))).shape == (0, 3, 3)


# ---- torch lowering and Triton backend against the reference ----------------------------------------------------
def _cases(dtype):
    a = _dominant((2, 3, 3), dtype)
    spd = _spd((2, 3, 3), dtype)
    b = RNG.standard_normal((2, 3, 2)).astype(dtype)
    return [("solve", (a, b), {}), ("solve", (a, b[..., 0]), {}), ("inv", (a,), {}), ("cholesky", (spd,), {}),
            ("cholesky", (spd,), {"upper": True}), ("triangular_solve", (a, b), {}),
            ("triangular_solve", (a, np.swapaxes(b, -1, -2).copy()), {"upper": True, "left": False}),
            ("eigh", (spd,), {}), ("qr", (RNG.standard_normal((2, 4, 3)).astype(dtype),), {}), ("slogdet", (a,), {}),
            ("matrix_exp", (np.tanh(a),), {})]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_lowering_matches_the_reference(dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for op, args, attrs in _cases(dtype):
        got, want = _tuple(_torch(op, *args, **attrs)), _tuple(op_ref(op, *args, **attrs))
        for g, w in zip(got, want):
            assert g.dtype == w.dtype == dtype, op
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{op} {attrs}")


def test_non_finite_and_singular_matrices_give_nan_alike():
    a = _spd((4, 3, 3))
    a[0, 0, 2] = np.nan          # upper triangle: cholesky and eigh do not read it
    a[1, 2, 0] = np.inf
    a[2] = 0.0                   # singular, not positive definite
    b = RNG.standard_normal((4, 3, 2))
    b[3, 1, 1] = np.nan          # one column of one right-hand side
    for op, args in [("solve", (a, b)), ("inv", (a,)), ("cholesky", (a,)), ("eigh", (a,)), ("qr", (a,)),
                     ("slogdet", (a,)), ("matrix_exp", (a,)), ("triangular_solve", (a, b))]:
        want, got = _tuple(op_ref(op, *args)), _tuple(_torch(op, *args))
        for w, g in zip(want, got):
            np.testing.assert_array_equal(np.isnan(w), np.isnan(g), err_msg=op)
            np.testing.assert_allclose(g[np.isfinite(w)], w[np.isfinite(w)], rtol=1e-10, atol=1e-10, err_msg=op)
    x = op_ref("solve", a, b)
    assert np.isnan(x[:3]).all() and np.isnan(x[3, :, 1]).all() and np.isfinite(x[3, :, 0]).all()
    low = op_ref("cholesky", a)
    assert np.isfinite(low[0]).all() and np.isnan(low[1:3]).all()
    sign, logdet = op_ref("slogdet", a)
    assert sign[2] == 0 and logdet[2] == -np.inf and np.isnan(sign[:2]).all()


def test_triton_backend_runs_them_as_counted_fallbacks():
    from pnet.backends import triton as triton_backend
    from pnet.cli.ops import triton_lowering
    src = """model m() {
  input a: f32[2, 3, 3]
  input b: f32[2, 3, 2]
  input c: f32[4, 3]
  s = a @ a.T + 3.0 * one_hot(arange(n=3), depth=3)
  x = solve(s, b)
  w, v = eigh(s)
  q, r = qr(c)
  sg, ld = slogdet(s)
  output y = relu(x) + triangular_solve(cholesky(s), b)
  output z = inv(s) + matrix_exp(tanh(a)) + v
  output u = q @ r
  output t = ld + w[:, 0]
}
"""
    graph = load_source(src, "m.pnet").graph
    compiled = triton_backend.compile(graph)
    totals = compiled.plan.totals()
    assert set(OPS) <= set(totals["fallback_ops"]) and totals["fallbacks"] >= len(OPS)
    inputs = {"a": RNG.standard_normal((2, 3, 3)).astype(np.float32), "b": RNG.standard_normal((2, 3, 2)).astype(np.float32),
              "c": RNG.standard_normal((4, 3)).astype(np.float32)}
    from pnet.backends import numpy_ref
    want = numpy_ref.run(graph, inputs, {})
    got = compiled.run(inputs, {})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4, err_msg=k)
    for op in OPS:
        assert triton_lowering(registry.get(op)).startswith("no kernel: runs through its torch lowering")


# ---- gradients ------------------------------------------------------------------------------------------------------
EYE = "one_hot(arange(n=3), depth=3)"
GRAD_PROGRAMS = {
    "solve": ("a: f32[2, 3, 3]", "b: f32[2, 3, 2]", f"solve(a + 4.0 * {EYE}, b)"),
    "solve_vector": ("a: f32[2, 3, 3]", "b: f32[2, 3]", f"solve(a + 4.0 * {EYE}, b)"),
    "solve_broadcast": ("a: f32[3, 3]", "b: f32[2, 3, 2]", f"solve(a + 4.0 * {EYE}, b)"),
    "inv": ("a: f32[2, 3, 3]", None, f"inv(a + 4.0 * {EYE})"),
    "cholesky": ("a: f32[2, 3, 3]", None, f"cholesky(a @ a.T + 3.0 * {EYE})"),
    "cholesky_lower_only": ("a: f32[2, 3, 3]", None, f"cholesky(a + 6.0 * {EYE}, upper=true)"),
    "triangular_solve": ("a: f32[2, 3, 3]", "b: f32[2, 3, 2]", f"triangular_solve(a + 4.0 * {EYE}, b)"),
    "triangular_solve_right": ("a: f32[2, 3, 3]", "b: f32[2, 2, 3]",
                               f"triangular_solve(a + 4.0 * {EYE}, b, upper=true, left=false)"),
    "triangular_solve_unit": ("a: f32[2, 3, 3]", "b: f32[3, 2]", "triangular_solve(a, b, unitriangular=true)"),
    "matrix_exp": ("a: f32[2, 3, 3]", None, "matrix_exp(a)"),
}


@pytest.mark.parametrize("name", sorted(GRAD_PROGRAMS))
def test_gradient_matches_torch_and_finite_differences(name):
    a, b, expr = GRAD_PROGRAMS[name]
    inputs = "\n".join(f"  input {d}" for d in (a, b) if d)
    g = load_source(f"model m() {{\n{inputs}\n  output y = {expr}\n}}\n", "m.pnet").graph
    feeds = {k: RNG.standard_normal(tuple(int(d) for d in v.type.shape)) for k, v in g.inputs}
    check_gradients(g, feeds)


@pytest.mark.parametrize("call, shape", [("eigh(a)", "[2, 3, 3]"), ("qr(a)", "[2, 4, 3]"), ("qr(a)", "[3, 3]"),
                                         ("slogdet(a)", "[2, 3, 3]")])
def test_gradient_of_both_outputs(call, shape):
    src = f"model m() {{\n  input a: f32{shape}\n  u, v = {call}\n  output y = u\n  output z = v\n}}\n"
    g = load_source(src, "m.pnet").graph
    check_gradients(g, {"a": RNG.standard_normal(tuple(int(d) for d in shape[1:-1].split(",")))})


def test_qr_gradient_of_a_wide_matrix_is_a_located_error():
    from pnet.passes.autodiff import grad_graph
    g = load_source("model m() {\n  input a: f32[3, 4]\n  q, r = qr(a)\n  output y = sum(q)\n}\n", "m.pnet").graph
    with pytest.raises(PnetError) as err:
        grad_graph(g, wrt=["a"])
    assert str(err.value).startswith("m.pnet:3:") and "rows >= columns" in str(err.value)


# ---- bad input --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decl, call, message", [
    ("a: f32[3, 4]", "inv(a)", "inv: a must be a square matrix [..., n, n], got f32[3, 4]"),
    ("a: f32[3]", "cholesky(a)", "cholesky: a must be a square matrix"),
    ("a: i32[3, 3]", "matrix_exp(a)", "matrix_exp: a must be f32 or f64, got i32[3, 3]"),
    ("a: f32[3, 3]\n  input b: f32[4, 2]", "solve(a, b)", "solve: b must be [..., 3, k]"),
    ("a: f32[3, 3]\n  input b: f64[3, 2]", "solve(a, b)", "solve: a and b must have one dtype"),
    ("a: f32[2, 3, 3]\n  input b: f32[4, 3, 1]", "solve(a, b)", "solve: batch dims of"),
    ("a: f32[3, 3]\n  input b: f32[3, 2]", "triangular_solve(a, b, left=false)", "triangular_solve: b must be [..., k, 3]"),
    ("a: f32[B, N]", "qr(a)", "qr: min(m, n) of f32[B, N] is not known at compile time"),
])
def test_bad_input_is_one_located_error(decl, call, message):
    src = f"model m() {{\n  input {decl}\n  output y = {call}\n}}\n"
    with pytest.raises(PnetError) as err:
        load_source(src, "m.pnet")
    text = str(err.value)
    assert text.startswith("m.pnet:") and message in text and "Traceback" not in text
    assert len(text.splitlines()[0]) < 300


def test_every_op_is_documented_and_counts_flops():
    from pnet.ir.types import TensorType
    for op in OPS:
        o = registry.get(op)
        assert o.doc and o.torch is not None and o.vjp is not None
    t = TensorType("f32", (2, 3, 3))
    assert registry.get("inv").count_flops([t], [t], {}) == 2 * 2 * 27
