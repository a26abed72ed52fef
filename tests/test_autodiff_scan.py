"""The gradient of `scan` (ir/ops/control_grad.py: a recompute scan, then a reverse scan over the flipped
sequences) on hand-written recurrences: RNN and LSTM-like bodies, several carries and yields, no yield, lengths 0
and 1, a sequence axis other than 0 and 1, integer carries and step counters, captured values and parameters used
at every step, a body passing values through unchanged, nested scans; the IR gradient run by the reference in
float64 against torch.autograd in float64 on the torch backend's module and against central finite differences
(pnet.testing.gradcheck); one gradient graph through the Triton backend (interpreted); examples/lstm.pnet's
gradient with respect to its parameters."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pnet.backends import numpy_ref, torch_backend
from pnet.dsl.compile import load_file, load_source
from pnet.errors import PnetError
from pnet.passes.autodiff import grad_graph
from pnet.passes.verify import verify
from pnet.ir.types import is_float
from pnet.testing.gradcheck import check_gradients, default_wrt

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def _graph(body: str, header: str = "model m() {"):
    src = header + "\n  " + body.strip().replace("\n", "\n  ") + "\n}\n"
    return load_source(src, "m.pnet").graph


def _inputs(g, dims=None, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, a in numpy_ref.random_inputs(g, 0, dims).items():
        out[name] = rng.standard_normal(a.shape) if np.issubdtype(a.dtype, np.floating) else a
    return out


def check(body, dims=None, header="model m() {", seed=0, fd=True):
    """Every float input's and parameter's gradient (cotangents on every float output) against torch and finite
    differences (unless not `fd`: stop_gradient); the gradient graph verifies. Returns the IR gradients."""
    g = _graph(body, header)
    verify(grad_graph(g, cotangents=[n for n, v in g.outputs if is_float(v.type.dtype)], wrt=default_wrt(g)))
    return check_gradients(g, _inputs(g, dims, seed), dims=dims, seed=seed, direction=fd)


RNN = """
input x: f64[2, 5, 3]
input h0: f64[2, 4]
input W: f64[4, 4]
input U: f64[3, 4]
hs, h = scan(x_t in x along 1; h = h0) {
  h = tanh(h @ W + x_t @ U)
  yield h
}
output hs
output h
"""


def test_rnn():
    check(RNN)


def test_rnn_with_params():
    check("""
input x: f32[2, 4, 3]
param W: [4, 4] = normal(0, 0.5)
param U: [3, 4] = normal(0, 0.5)
param b: [4] = normal(0, 0.5)
h0 = zeros([2, 4])
hs, h = scan(x_t in x along 1; h = h0) {
  h = tanh(h @ W + x_t @ U + b)
  yield h
}
output hs
output h
""")


def test_lstm_like_two_carries():
    check("""
input x: f32[3, 4, 2]
param Wx: [2, 9] = normal(0, 0.5)
param Wh: [3, 9] = normal(0, 0.5)
hs, h, c = scan(x_t in x along 1; h = zeros([3, 3]), c = zeros([3, 3])) {
  i, f, g = split(x_t @ Wx + h @ Wh, 3, axis=-1)
  c = sigmoid(f) * c + sigmoid(i) * tanh(g)
  h = tanh(c) * 0.5
  yield h
}
output hs
output h
output c
""")


def test_several_yields_and_sequences():
    check("""
input x: f64[4, 2, 3]
input z: f64[4, 3]
input h0: f64[2, 3]
a, b, c, h = scan(x_t in x, z_t in z; h = h0) {
  h = sin(h * x_t + z_t)
  yield h * 2.0, x_t * z_t, exp(h) + h
}
output a
output b
output c
output h
""")


def test_no_yield():
    check("""
input x: f64[2, 3, 4]
input h0: f64[2, 4]
input w: f64[4]
h = scan(x_t in x along 1; h = h0) {
  h = tanh(h * w + x_t)
}
output h
""")


@pytest.mark.parametrize("T", [0, 1, 2])
def test_lengths(T):
    got = check(RNN.replace("f64[2, 5, 3]", f"f64[2, {T}, 3]"))
    if T == 0:   # the carry's cotangent passes through; the sequence and the weights get zeros
        assert got["x"].shape == (2, 0, 3)
        assert not got["W"].any() and not got["U"].any()


def test_symbolic_length():
    check(RNN.replace("f64[2, 5, 3]", "f64[2, T, 3]"), dims={"T": 3})


def test_sequence_axis_2_and_out_axis():
    """The sequence runs along axis 2 (so do the yields), a second sequence along axis 0."""
    check("""
input x: f64[2, 3, 5]
input z: f64[5, 3]
input h0: f64[2, 3]
ys, zs, h = scan(x_t in x along 2, z_t in z; h = h0) {
  h = tanh(h + x_t * z_t)
  yield h, h * x_t
}
output ys
output zs
output h
""")


def test_negative_axis():
    check("""
input x: f64[2, 4, 3]
input h0: f64[2, 4]
ys, h = scan(x_t in x along -1; h = h0) {
  h = cos(h) * x_t
  yield h
}
output ys
output h
""")


def test_captured_value_from_outside_and_passthrough():
    """A captured input used every step, a carry the body does not change, a yielded sequence slice and
    a yielded captured value."""
    check("""
input x: f64[4, 3]
input a: f64[3]
input k0: f64[3]
input h0: f64[3]
s, t, u, h, k = scan(x_t in x; h = h0, k = k0) {
  h = h * a + x_t * k
  yield x_t, a, h
}
output s
output t
output u
output h
output k
""")


def test_integer_carry_and_step_counter():
    check("""
input x: f64[5, 3]
input h0: f64[3]
ys, h, n = scan(x_t in x, i in 0..5; h = h0, n = full([], 0, "i64")) {
  h = h * 0.5 + x_t * cast(i, "f64") + cast(n, "f64")
  n = n + i * 2
  yield h
}
output ys
output h
output n
""")


def test_carry_unused_by_the_gradient():
    """A linear recurrence: the backward step reads no carry (no recompute scan)."""
    g = _graph("""
input x: f64[5, 3]
input h0: f64[3]
ys, h = scan(x_t in x; h = h0) {
  h = h + x_t * 2.0
  yield h
}
output ys
output h
""")
    gg = grad_graph(g, cotangents=["ys", "h"], wrt=["x", "h0"])
    assert sum(n.op == "scan" for n in gg.nodes) == 2   # the forward and the reverse scan
    check_gradients(g, _inputs(g))


def test_nested_scan():
    check("""
input x: f64[3, 2, 4]
input w: f64[4]
input h0: f64[4]
ys, h = scan(x_t in x; h = h0) {
  inner, g = scan(r in x_t; g = h) {
    g = tanh(g * w + r)
    yield g
  }
  h = g + sum(inner, axis=0)
  yield h
}
output ys
output h
""")


def test_stop_gradient_in_body():
    check("""
input x: f64[4, 3]
input h0: f64[3]
ys, h = scan(x_t in x; h = h0) {
  h = tanh(stop_gradient(h) * 0.5 + h * x_t)
  yield h
}
output ys
output h
""", fd=False)


def test_stdlib_gru():
    check("""
input x: f32[2, 3, 4]
hs, h = gru(x, 5)
output hs
output h
""", header="import nn.rnn\nmodel m() {")


def test_gradient_inside_forward_pass():
    """grad(...) of a scan written in the program."""
    g = _graph("""
input x: f32[4, 3]
input w: f32[3]
ys, h = scan(x_t in x; h = zeros([3])) {
  h = tanh(h * w + x_t)
  yield h
}
output y = grad(sum(ys) + sum(h), w)
""")
    inputs = _inputs(g)
    got = numpy_ref.run(g, inputs, {}, float64=True)["y"]
    tx, tw = torch.tensor(inputs["x"]), torch.tensor(inputs["w"], requires_grad=True)
    h, loss = torch.zeros(3, dtype=torch.float64), 0
    for t in range(4):
        h = torch.tanh(h * tw + tx[t])
        loss = loss + h.sum()
    loss = loss + h.sum()
    (want,) = torch.autograd.grad(loss, tw)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10)


def test_lstm_example_params():
    g = load_file(str(ROOT / "examples" / "lstm.pnet"), overrides={"vocab": 7, "d": 4, "hidden": 5}).graph
    rng = np.random.default_rng(0)
    inputs = {"ids": rng.integers(0, 7, (2, 3))}
    check_gradients(g, inputs)


def test_triton_backend_runs_the_gradient_graph(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from pnet.backends import triton as triton_backend
    g = _graph(RNN.replace("f64", "f32"))
    gg = grad_graph(g, cotangents=["hs", "h"], wrt=["x", "h0", "W", "U"])
    inputs = {k: v.astype(np.float32) for k, v in _inputs(g).items()}
    rng = np.random.default_rng(1)
    feeds = inputs | {"cotangent.hs": rng.standard_normal((2, 5, 4)).astype(np.float32),
                      "cotangent.h": rng.standard_normal((2, 4)).astype(np.float32)}
    want = numpy_ref.run(gg, feeds, {}, float64=True)
    got = triton_backend.compile(gg).run(feeds, {})
    for k in ["grad.x", "grad.h0", "grad.W", "grad.U"]:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-4, atol=1e-4)


def test_second_order_through_scan():
    """The reverse scan is a scan too: a gradient written in the program is differentiated again."""
    g = _graph("""
input x: f32[3, 2]
input w: f32[2]
ys, h = scan(x_t in x; h = zeros([2])) {
  h = tanh(h * w + x_t)
  yield h
}
output y = grad(sum(ys * ys) + sum(h), w)
""")
    check_gradients(g, _inputs(g))


def test_op_without_gradient_in_body_is_an_error():
    g = _graph("""
input x: f32[3, 2]
input h0: f32[2]
ys, h = scan(x_t in x; h = h0) {
  h = floor(h + x_t)
  yield h
}
output ys
""")
    with pytest.raises(PnetError, match=r"floor has no gradient") as err:
        grad_graph(g, cotangents=["ys"], wrt=["x"])
    assert err.value.loc.line == 5


def test_gradient_graph_on_torch_backend_and_after_the_pipeline():
    """examples/lstm.pnet's gradient graph: the torch backend runs its scans as the reference does, and the default
    pipeline (canonicalize, fold, cse, dce, ...) keeps its values."""
    from pnet.passes.manager import run_passes
    g = load_file(str(ROOT / "examples" / "lstm.pnet"), overrides={"vocab": 7, "d": 4, "hidden": 5}).graph
    gg = grad_graph(g, cotangents=["logits", "h_last"])
    rng = np.random.default_rng(0)
    feeds = {"ids": rng.integers(0, 7, (2, 3)), "cotangent.logits": rng.standard_normal((2, 3, 7)),
             "cotangent.h_last": rng.standard_normal((2, 5))}
    params = {k: v.astype(np.float64) for k, v in numpy_ref.init_params(g, 0).items()}
    want = numpy_ref.run(gg, feeds, params, float64=True)
    module = torch_backend.to_module(gg, "f64", params=params)
    got = module.run_named({k: torch.tensor(v) for k, v in feeds.items()})
    opt = numpy_ref.run(run_passes(gg), feeds, params, float64=True)
    for k in want:
        np.testing.assert_allclose(got[k].detach().numpy(), want[k], rtol=1e-10, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(opt[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)
