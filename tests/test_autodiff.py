"""Gradients in the compiler (issue 20): every differentiable op's IR gradient rule (OpDef.vjp), run by the
reference in float64, agrees with torch.autograd in float64 and with central finite differences, on programs
the differential tester's generator builds around the op; ops without a gradient say so."""
from __future__ import annotations

import numpy as np
import pytest

from pnet.backends import numpy_ref, torch_backend
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.ir import registry
from pnet.ir.types import is_float
from pnet.passes.autodiff import GradError, grad_graph
from pnet.testing.generate import try_generate_op
from pnet.testing.gradcheck import along, default_wrt, directional_derivative, ir_gradients, torch_gradients
from pnet.testing.tolerance import assert_outputs_close

torch = pytest.importorskip("torch")

# ops whose outputs are never floats: no gradient flows out of them, so they need no rule
NEVER_FLOAT = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not", "argmax", "argmin",
               "arange", "pack_bits", "quantize", "qmatmul", "qconv1d", "qconv2d", "qconv3d"}
SKIP_KINDS = {"control", "source"}
# torch's float64 backward of these multiplies by a float32 constant (hardsigmoid: 1/6 rounded to f32, a relative
# error of 3e-8): compared at that precision; the finite-difference test holds pnet's to float64
TORCH_F32_CONSTANT = {"hardsigmoid"}
# digamma: torch's float64 polygamma(1) truncates its series (relative error up to 3e-10 near 1/2; pnet's trigamma,
# special_grad.py, is within 1e-14): compared at the same precision
TORCH_F32_CONSTANT |= {"digamma"}
# straight-through estimators: their gradient is the identity's inside the range, not the step's derivative
STRAIGHT_THROUGH = {"fake_quant"}


# gradients that differ from the derivative by design (tested on their own below), the sparse layouts only the
# sparsity pass makes, and dequantize, which the generator only applies to quantize's integers with a literal
# scale (no float path): tests/test_autodiff_linalg.py differentiates those three; sdpa_grad, which only autodiff
# emits (sdpa's rule): its own gradient (second order) is checked in tests/test_autodiff_nn.py and
# tests/test_attention_backward.py
NOT_GENERATED = {"stop_gradient", "straight_through", "nm_matmul", "bsr_matmul", "dequantize", "sdpa_grad"}


def _differentiable_ops() -> list[str]:
    return sorted(n for n, o in registry.all_ops().items()
                  if o.vjp is not None and o.kind not in SKIP_KINDS and n not in NOT_GENERATED)


def test_every_op_declares_its_gradient():
    """Each op has a gradient rule, or says why it has none (no_grad), or never outputs a float."""
    missing = [n for n, o in registry.all_ops().items()
               if o.vjp is None and not o.no_grad and n not in NEVER_FLOAT and o.kind not in SKIP_KINDS]
    assert not missing, f"ops without a gradient rule or a no_grad reason: {', '.join(sorted(missing))}"


def _program(op: str):
    """A generated program applying `op` whose every op on the path has a gradient, with its graph, inputs and
    params (float64), and the names to differentiate."""
    def graph_of(prog):
        """The program with the op's first float result as its output `y` (the generator may have output an
        integer result, such as topk's indices)."""
        g = load_source(prog.source, "<grad>", overrides=prog.load_overrides()).graph
        node = next(n for n in g.nodes if n.op == op)
        if all(v.type.dtype in ("c64", "c128") for v in node.outputs):   # fft, rfft, ...: the real value its chain
            g.outputs = [("y", g.outputs[-1][1])]                          # ends in (samplers/fft.py)
            return g
        g.outputs = [("y", next(v for v in node.outputs if is_float(v.type.dtype)))]
        return g

    def accept(prog):
        try:
            grad_graph(graph_of(prog), cotangents=["y"], wrt=default_wrt(graph_of(prog)))
            return True
        except (PnetError, StopIteration):
            return False
    prog = try_generate_op(op, seeds=range(60), accept=accept)
    if prog is None:
        pytest.fail(f"no generated program applies {op} with a gradient on every op")
    g = graph_of(prog)
    inputs = numpy_ref.random_inputs(g, 1, prog.dims)
    params = numpy_ref.init_params(g, 2)
    return g, _f64(inputs), _f64(params), prog.dims


def _f64(arrays: dict) -> dict:
    return {k: v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v for k, v in arrays.items()}


@pytest.mark.parametrize("op", _differentiable_ops())
def test_vjp_matches_torch_autograd(op):
    g, inputs, params, dims = _program(op)
    y = numpy_ref.run(g, inputs, params, float64=True, dims=dims)["y"]
    cot = {"y": np.random.default_rng(3).standard_normal(y.shape)}
    got = ir_gradients(g, inputs, params, dims=dims, cotangents=cot, wrt=default_wrt(g))
    want = torch_gradients(g, inputs, params, cotangents=cot, wrt=list(got))
    assert set(want) == set(got)
    if op in TORCH_F32_CONSTANT:
        for k in got:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-7, atol=1e-12)
    else:
        assert_outputs_close(got, want, want, "f64")


@pytest.mark.parametrize("op", _differentiable_ops())
def test_vjp_matches_finite_differences(op):
    """<grad, v> against (f(x + h v) - f(x - h v)) / 2h along one random direction v of every differentiated
    value at once, with the loss <y, cotangent>."""
    if op in STRAIGHT_THROUGH:
        pytest.skip(f"{op}'s gradient is straight-through by definition (tests/test_autodiff_linalg.py checks it)")
    g, inputs, params, dims = _program(op)
    y = numpy_ref.run(g, inputs, params, float64=True, dims=dims)["y"]
    rng = np.random.default_rng(4)
    cot = {"y": rng.standard_normal(y.shape)}
    grads = ir_gradients(g, inputs, params, dims=dims, cotangents=cot, wrt=default_wrt(g))
    direction = {k: rng.standard_normal(np.shape(inputs.get(k, params.get(k)))) for k in grads}
    numeric = directional_derivative(g, inputs, params, dims=dims, cotangents=cot, direction=direction, h=1e-6)
    analytic = along(grads, direction)
    assert np.isclose(analytic, numeric, rtol=1e-4, atol=1e-6), (analytic, numeric)


def test_an_op_without_a_gradient_is_a_located_error():
    g = load_source("model m() {\n  input x: f32[3]\n  output y = sum(floor(x) * x)\n}\n", "m.pnet").graph
    with pytest.raises(GradError) as err:
        grad_graph(g, wrt=["x"])
    assert str(err.value).startswith("m.pnet:3:")
    assert "floor has no gradient: a step function" in str(err.value) and "stop_gradient" in str(err.value)


def test_the_loss_must_be_a_float_scalar():
    g = load_source("model m() {\n  input x: f32[3]\n  output y = x * 2.0\n}\n", "m.pnet").graph
    with pytest.raises(GradError, match=r"the loss 'y' must be a scalar, got f32\[3\]"):
        grad_graph(g, wrt=["x"])


def test_forward_values_are_shared_not_recomputed():
    """The backward reads the forward's values: exp(x)'s gradient uses the forward exp node, and the graph of
    y = sum(exp(x)) with its gradient holds one exp."""
    g = load_source("model m() {\n  input x: f32[3]\n  output y = sum(exp(x))\n}\n", "m.pnet").graph
    gg = grad_graph(g, wrt=["x"])
    assert [n.op for n in gg.nodes].count("exp") == 1
    out = numpy_ref.run(gg, {"x": np.array([0.0, 1.0, -1.0], np.float32)}, {})
    np.testing.assert_allclose(out["grad.x"], np.exp([0.0, 1.0, -1.0]), rtol=1e-6)


def test_stop_gradient_and_straight_through_steer_the_gradient_on_both_backends():
    """straight_through(sign(x), tanh(3x)) is sign(x) forward and tanh(3x)'s gradient backward (BiPer, binary
    nets); stop_gradient(x) is a constant: the reference's IR gradient and torch autograd agree on both."""
    src = ("model m() {\n  input x: f32[3, 4]\n"
           "  output y = straight_through(sign(x), tanh(x * 3.0)) * stop_gradient(x) + x\n}\n")
    g = load_source(src, "m.pnet").graph
    rng = np.random.default_rng(0)
    x, cot = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out = numpy_ref.run(grad_graph(g, cotangents=["y"], wrt=["x"]), {"x": x, "cotangent.y": cot}, {}, float64=True)
    np.testing.assert_array_equal(out["y"], np.sign(x) * x + x)
    want = cot * (3 * (1 - np.tanh(3 * x) ** 2) * x + 1)
    np.testing.assert_allclose(out["grad.x"], want, rtol=1e-12)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_backend.to_module(g, "f64")(x=tx)
    ty = ty["y"] if isinstance(ty, dict) else ty
    np.testing.assert_array_equal(ty.detach().numpy(), out["y"])
    (ty * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(tx.grad.numpy(), want, rtol=1e-12)


def test_a_gradient_blocked_by_an_integer_output_is_a_located_error():
    """x reaches the loss only through quantize's i8 output: not a silent zero, an error naming quantize; a
    float path beside a comparison (where(x > 0, x, 0)) and a stop_gradient are fine."""
    blocked = "model m() {\n  input x: f32[3]\n  output y = sum(dequantize(quantize(x, 0.1), 0.1))\n}\n"
    with pytest.raises(GradError) as err:
        grad_graph(load_source(blocked, "m.pnet").graph, wrt=["x"])
    assert str(err.value).startswith("m.pnet:3:29: error: no gradient reaches 'x': its path to the loss goes "
                                     "through quantize, whose output i8[3] is not a float")
    for ok in ("sum(where(x > 0.0, x, 0.0))", "sum(stop_gradient(x) + z)"):
        src = f"model m() {{\n  input x: f32[3]\n  input z: f32[3]\n  output y = {ok}\n}}\n"
        grad_graph(load_source(src, "m.pnet").graph, wrt=["x"])


PINN = """model pinn() {
  input x: f32[8, 1]
  param w1: [1, 16] = normal(0, 1)
  param w2: [16, 1] = normal(0, 0.25)
  u = tanh(x @ w1) @ w2
  du = grad(sum(u), x)
  d2u = grad(sum(du), x)
  output residual = mean(square(d2u + u))
  output du
  output d2u
}
"""


def test_grad_in_the_language_nests_and_matches_torch_double_backward():
    """A physics-informed residual u'' + u: grad of grad inside the forward pass, on the reference (float64)
    against torch.autograd.grad with create_graph=True; the torch module then trains through it."""
    el = load_source(PINN, "pinn.pnet")
    g = el.graph
    params = _f64(numpy_ref.init_params(g, 0))
    x = np.linspace(-1, 1, 8).reshape(8, 1)
    out = numpy_ref.run(g, {"x": x}, params, float64=True)
    tx = torch.tensor(x, requires_grad=True)
    w1, w2 = (torch.tensor(params[k]) for k in ("w1", "w2"))
    u = torch.tanh(tx @ w1) @ w2
    du, = torch.autograd.grad(u.sum(), tx, create_graph=True)
    d2u, = torch.autograd.grad(du.sum(), tx)
    np.testing.assert_allclose(out["du"], du.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["d2u"], d2u.numpy(), rtol=1e-10, atol=1e-14)
    module = torch_backend.to_module(g, "f64", params=params)
    res = module(x=torch.tensor(x))
    res = res["residual"] if isinstance(res, dict) else res[0]
    res.backward()   # the residual depends on the weights through both gradients: torch differentiates the IR's
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_grad_takes_a_list_and_refuses_a_non_scalar():
    src = ("model m() {\n  input a: f32[3]\n  input b: f32[3]\n  ga, gb = grad(sum(a * b), [a, b])\n"
           "  output ga\n  output gb\n}\n")
    out = numpy_ref.run(load_source(src, "m.pnet").graph, {"a": np.array([1.0, 2, 3]), "b": np.array([4.0, 5, 6])}, {})
    np.testing.assert_array_equal(out["ga"], [4, 5, 6])
    np.testing.assert_array_equal(out["gb"], [1, 2, 3])
    bad = "model m() {\n  input a: f32[3]\n  output g = grad(a * 2.0, a)\n}\n"
    with pytest.raises(PnetError, match=r"m.pnet:3:14: error: grad: the value to differentiate must be a float "
                                         r"scalar, got f32\[3\]"):
        load_source(bad, "m.pnet")
