"""Elaboration: shapes (symbolic dims), parameter names, control flow, scan, index notation, tying."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.ir.types import sym


def build(src, **overrides):
    return load_source(src, "<test>", overrides=overrides).graph


def run(src, inputs=None, params=None, **overrides):
    g = build(src, **overrides)
    return g, numpy_ref.run(g, inputs, params, float64=True)


def test_symbolic_dims_stay_symbolic():
    g = build("import nn.core\nmodel m() {\n  input x: f32[B, T, 8]\n  y = reshape(x, [B * T, 8])\n"
              "  output z = reshape(linear(y, 4), [B, T, 4])\n}\n")
    (_, x), = g.inputs
    assert x.type.shape == (sym("B"), sym("T"), 8)
    assert g.outputs[0][1].type.shape == (sym("B"), sym("T"), 4)
    reshape = next(n for n in g.nodes if n.op == "reshape")
    assert reshape.outputs[0].type.shape[0] == sym("B") * sym("T")


def test_param_names_follow_call_paths():
    g = build("import nn.core\ndef block(x: [B, d]) -> [B, d] {\n  return linear(relu(linear(x, d)), d, bias=false) as out\n}\n"
              "model m(n: int = 2) {\n  input x: f32[B, 4]\n  h = x\n  for l in 0..n as blocks { h = block(h) }\n"
              "  output y = linear(h, 3) as head\n}\n")
    assert [p.name for p in g.params] == [
        "blocks.0.block.linear.w", "blocks.0.block.linear.b", "blocks.0.block.out.w",
        "blocks.1.block.linear.w", "blocks.1.block.linear.b", "blocks.1.block.out.w",
        "head.w", "head.b"]


def test_repeated_calls_get_numbered_scopes():
    g = build("import nn.core\nmodel m() {\n  input x: f32[B, 4]\n  output y = linear(linear(x, 4), 4)\n}\n")
    assert [p.name for p in g.params] == ["linear.w", "linear.b", "linear_1.w", "linear_1.b"]


def test_compile_time_control_flow_and_folding():
    src = ("model m(k: int = 3, scale: bool = true) {\n  input x: f32[B, 2]\n  h = x\n"
           "  for i in [1, 2] { h = h * i }\n  if scale and k > 2 { h = h * sqrt(4.0) } else { h = -h }\n"
           "  output y = h * (k // 2) + (1 if k == 3 else 0)\n}\n")
    x = np.ones((2, 2), np.float32)
    _, out = run(src, {"x": x})
    np.testing.assert_allclose(out["y"], x * 2 * 2 * 1 + 1)
    _, out = run(src, {"x": x}, scale=False)
    np.testing.assert_allclose(out["y"], -x * 2 + 1)


def test_fn_hyperparameter():
    src = "model m(act: fn = relu) {\n  input x: f32[B, 3]\n  output y = act(x)\n}\n"
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    assert np.allclose(run(src, {"x": x})[1]["y"], [[0, 0, 2]])
    assert np.allclose(run(src, {"x": x}, act="tanh")[1]["y"], np.tanh(x))


def test_scan_is_not_unrolled_and_matches_a_loop():
    src = ("model m() {\n  input x: f32[B, T, 3]\n  hs, h = scan(x_t in x along 1; h = zeros([B, 3])) {\n"
           "    h = tanh(h * 0.5 + x_t)\n    yield h * 2.0\n  }\n  output hs\n  output h\n}\n")
    g = build(src)
    assert sum(n.op == "scan" for n in g.nodes) == 1
    for T in (1, 5):
        x = np.random.default_rng(T).normal(size=(2, T, 3))
        out = numpy_ref.run(g, {"x": x.astype(np.float32)}, float64=True)
        h = np.zeros((2, 3))
        ys = []
        for t in range(T):
            h = np.tanh(h * 0.5 + x[:, t])
            ys.append(h * 2)
        np.testing.assert_allclose(out["hs"], np.stack(ys, 1), rtol=1e-6)
        np.testing.assert_allclose(out["h"], h, rtol=1e-6)


def test_scan_params_are_shared_and_captures_work():
    src = ("import nn.core\nmodel m() {\n  input x: f32[B, T, 3]\n  bias = ones([3])\n"
           "  hs, h = scan(x_t in x along 1, i in 0..dim(x, 1); h = zeros([B, 3])) {\n"
           "    h = linear(h + x_t, 3) + bias * cast(i, \"f32\")\n    yield h\n  }\n  output h\n}\n")
    g = build(src)
    assert [p.name for p in g.params] == ["linear.w", "linear.b"]
    params = numpy_ref.init_params(g)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    out = numpy_ref.run(g, {"x": x}, params, float64=True)
    h = np.zeros((2, 3))
    for t in range(4):
        h = (h + x[:, t]) @ params["linear.w"] + params["linear.b"] + t
    np.testing.assert_allclose(out["h"], h, rtol=1e-5)


def test_index_notation_matches_einsum_and_general_form():
    src = ("model m() {\n  input x: f32[B, 3]\n  param W: [2, 3, 3] = normal(0, 1)\n"
           "  y[b, o] = sum(j, k) W[o, j, k] * x[b, j] * x[b, k]\n"
           "  z[b, o] = max(j) W[o, j, 0] + x[b, j]\n  s[b] = sum(j) exp(x[b, j])\n  output y\n  output z\n  output s\n}\n")
    g = build(src)
    assert any(n.op == "einsum" for n in g.nodes)
    params = numpy_ref.init_params(g)
    x = np.random.default_rng(1).normal(size=(4, 3))
    out = numpy_ref.run(g, {"x": x.astype(np.float32)}, params, float64=True)
    W = params["W"].astype(np.float64)
    x = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(out["y"], np.einsum("ojk,bj,bk->bo", W, x, x), rtol=1e-6)
    np.testing.assert_allclose(out["z"], np.max(W[None, :, :, 0] + x[:, None, :], axis=2), rtol=1e-6)
    np.testing.assert_allclose(out["s"], np.exp(x).sum(1), rtol=1e-6)


def test_tie_and_shared_param():
    src = ("import nn.core\nmodel m() {\n  input x: f32[B, 4]\n  a = linear(x, 4, bias=false) as enc\n"
           "  b = linear(a, 4, bias=false) as dec\n  tie \"dec.w\" = \"enc.w\"\n  output y = b\n}\n")
    g = build(src)
    assert [p.name for p in g.params] == ["enc.w"]
    params = numpy_ref.init_params(g)
    x = np.ones((2, 4), np.float32)
    out = numpy_ref.run(g, {"x": x}, params, float64=True)
    np.testing.assert_allclose(out["y"], x @ params["enc.w"] @ params["enc.w"], rtol=1e-6)


def test_tensor_indexing_forms():
    src = ("model m() {\n  input x: f32[B, 5, 6]\n  input ids: i64[B, 2]\n  param table: [7, 3] = normal(0, 1)\n"
           "  output a = x[:, 1:4, -1]\n  output b = x[..., 0]\n  output c = x[:, none, 2]\n  output d = table[ids]\n}\n")
    g = build(src)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6)).astype(np.float32)
    ids = rng.integers(0, 7, (2, 2))
    params = numpy_ref.init_params(g)
    out = numpy_ref.run(g, {"x": x, "ids": ids}, params)
    np.testing.assert_array_equal(out["a"], x[:, 1:4, -1])
    np.testing.assert_array_equal(out["b"], x[..., 0])
    np.testing.assert_array_equal(out["c"], x[:, None, 2])
    np.testing.assert_array_equal(out["d"], params["table"][ids])


def test_annotations_reach_nodes_and_params():
    src = ("import nn.core\n@quantize(\"int8\")\ndef q(x: [B, d]) -> [B, d] {\n  return linear(x, d)\n}\n"
           "model m() {\n  input x: f32[B, 4]\n  y = @sparse(\"2:4\") linear(x, 4)\n  output z = q(y)\n}\n")
    g = build(src)
    by_name = {p.name: p for p in g.params}
    assert [str(a) for a in by_name["linear.w"].annotations] == ['@sparse("2:4")']
    assert [str(a) for a in by_name["q.linear.w"].annotations] == ['@quantize("int8")']


def test_symbolic_input_dims_bind_and_check():
    g = build("model m() {\n  input x: f32[B, T]\n  input y: f32[B, T]\n  output z = x + y\n}\n")
    ok = numpy_ref.run(g, {"x": np.ones((3, 5), np.float32), "y": np.ones((3, 5), np.float32)})
    assert ok["z"].shape == (3, 5)
    with pytest.raises(PnetError, match="dim T is 6 here but 5 elsewhere|dim B is"):
        numpy_ref.run(g, {"x": np.ones((3, 5), np.float32), "y": np.ones((3, 6), np.float32)})


def test_flops_are_symbolic():
    from pnet.ir.analysis import flops
    g = build("model m() {\n  input x: f32[B, 8]\n  param w: [8, 4] = zeros()\n  output y = relu(x @ w)\n}\n")
    assert sympy.simplify(flops(g) - (2 * 8 * 4 * sym("B") + 4 * sym("B"))) == 0


@pytest.mark.parametrize("src, message", [
    ("model m() {\n  input x: f32[B, 4]\n  output y = reshape(x, [B, 3])\n}\n", "reshape: [B, 4] has 4*B elements, [B, 3] has 3*B"),
    ("model m(n: int = 2) {\n  input x: f32[B, 4]\n  for i in 0..x { n = n }\n  output y = x\n}\n", "expected an integer, got a tensor"),
    ("model m() {\n  input x: f32[B, 4]\n  param w: [B, 4] = zeros()\n  output y = x + w\n}\n", "parameter 'w' has shape [B, 4]: parameter dims must be known"),
    ("model m() {\n  input x: f32[B, 4]\n  output y = softmax(x, axis=5)\n}\n", "softmax"),
    ("model m() {\n  input x: f32[B, 4]\n  output y = sum(x, bogus=1)\n}\n", "op 'sum' has no attribute 'bogus'"),
    ("model m() {\n  input x: f32[B, 4]\n  a, b = split(x, 3, axis=1)\n  output y = a\n}\n", "split: dim 4 of f32[B, 4] does not split into 3 equal parts"),
    ("model m() {\n  input x: f32[B, 4]\n  output y = x[:, :, 0]\n}\n", "3 indices for a rank-2 tensor"),
])
def test_elaboration_errors(src, message):
    with pytest.raises(PnetError) as info:
        build(src)
    assert message in info.value.message
    assert info.value.loc is not None and info.value.loc.line >= 2


def test_tuple_assignment_evaluates_every_value_before_binding():
    """`a, b = x, y` (and the swap `a, b = b, a`) as in Python; a count mismatch is a located error."""
    from pnet.backends import numpy_ref
    from pnet.dsl.fmt import format_source
    src = "model m() {\n  input x: f32[2]\n  a, b = x * 2.0, x + 1.0\n  a, b = b, a\n  output y = a\n  output z = b\n}\n"
    out = numpy_ref.run(load_source(src).graph, {"x": np.array([1.0, 3.0], np.float32)})
    np.testing.assert_array_equal(out["y"], [2.0, 4.0])
    np.testing.assert_array_equal(out["z"], [2.0, 6.0])
    assert format_source(src) == src
    with pytest.raises(PnetError, match=r"t.pnet:3:3: .*cannot unpack 3 values into 2 names"):
        load_source(src.replace("x * 2.0, x + 1.0", "x, x, x"), "t.pnet")


def test_stack_and_eye_builtins():
    src = ("model m() {\n  input x: f32[2, 3]\n  input y: f32[2, 3]\n  output a = stack([x, y], axis=1)\n"
           "  output b = stack([x, y], axis=-1)\n  output e = eye(3)\n}\n")
    x, y = np.arange(6, dtype=np.float32).reshape(2, 3), -np.ones((2, 3), np.float32)
    out = numpy_ref.run(load_source(src).graph, {"x": x, "y": y})
    np.testing.assert_array_equal(out["a"], np.stack([x, y], axis=1))
    np.testing.assert_array_equal(out["b"], np.stack([x, y], axis=-1))
    np.testing.assert_array_equal(out["e"], np.eye(3, dtype=np.float32))
    with pytest.raises(PnetError, match="non-empty list of tensors"):
        load_source("model m() {\n  input x: f32[2]\n  output a = stack(x)\n}\n")


def test_calls_sharing_a_name_share_the_whole_sub_network():
    """`f(x) as enc` twice shares every parameter of f, those of its unnamed calls and loops included (they were
    `enc.linear_1`, `enc.blocks_1` on the second call: fresh weights, silently)."""
    src = """
import nn.core
def enc(x: [B, d], width: int) -> [B, width] {
  h = relu(linear(x, width))
  for i in 0..2 as blocks {
    h = h + linear(h, width)
  }
  return linear(h, width)
}
model m() {
  input a: f32[B, 4]
  output ya = enc(a, 8) as shared
  output yb = enc(a, 8) as shared
  output yc = enc(a, 8) as other
}
"""
    g = load_source(src).graph
    names = [p.name for p in g.params]
    assert len(names) == 16 and sum(n.startswith("shared.") for n in names) == 8
    out = numpy_ref.run(g, {"a": np.ones((2, 4), np.float32)})
    np.testing.assert_array_equal(out["ya"], out["yb"])
