"""Gradient rules of the movement ops (ir/ops/movement_grad.py) and the index ops (ir/ops/index_grad.py) on
hand-written programs covering each op's attributes: the IR gradient run by the reference in float64 against
torch.autograd in float64 on the torch backend's module, and against central finite differences. Every movement
op is linear, so the gradient of its gradient (with respect to the cotangent) must give the forward back: that
checks that the rules are themselves differentiable."""
from __future__ import annotations

import numpy as np
import pytest

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.ir.types import is_float
from pnet.passes.autodiff import grad_graph
from pnet.testing.gradcheck import check_gradients, run_gradient_graph

torch = pytest.importorskip("torch")


def _program(body: str):
    src = "model m() {\n  " + body.strip().replace("\n", "\n  ") + "\n}\n"
    return load_source(src, "m.pnet").graph


def _inputs(g, dims, ints, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {k: v.shape for k, v in numpy_ref.random_inputs(g, 0, dims).items()}
    out = {}
    for name, v in g.inputs:
        if name in ints:
            out[name] = np.asarray(ints[name], dtype=np.int64)
        else:
            out[name] = rng.standard_normal(shapes[name])
    return out


def _wrt(g):
    return [n for n, v in g.inputs if is_float(v.type.dtype)]


def check(body, dims=None, ints=None, fd=True, inputs=None):
    """IR gradients of every float input vs torch autograd and vs central finite differences along a random
    direction; returns the graph and the IR gradients."""
    g = _program(body)
    inputs = inputs if inputs is not None else _inputs(g, dims, ints or {})
    wrt = _wrt(g)
    y = numpy_ref.run(g, inputs, {}, float64=True, dims=dims)["y"]
    rng = np.random.default_rng(1)
    cot = {"y": rng.standard_normal(y.shape)}
    direction = {k: rng.standard_normal(inputs[k].shape) for k in wrt} if fd else False
    got = check_gradients(g, inputs, {}, dims=dims, cotangents=cot, wrt=wrt, direction=direction,
                          rtol=1e-6, atol=1e-8)
    for k in wrt:
        assert got[k].shape == inputs[k].shape, (k, got[k].shape, inputs[k].shape)
    return g, got


def check_linear(body, dims=None, ints=None):
    """A linear op's gradient (with respect to the cotangent) of its gradient is the op itself: with
    grad.x = J^T c, the vjp of grad.x seeded by v is J v = f(v) - f(0) (f(0): a constant pad's value)."""
    g = _program(body)
    (x,) = _wrt(g)
    gg = grad_graph(g, cotangents=["y"], wrt=[x])
    ggg = grad_graph(gg, cotangents=[f"grad.{x}"], wrt=["cotangent.y"])
    inputs = _inputs(g, dims, ints or {})
    y = numpy_ref.run(g, inputs, {}, float64=True, dims=dims)["y"]
    c = np.random.default_rng(2).standard_normal(y.shape)
    got = run_gradient_graph(ggg, inputs, {}, dims=dims, cotangents={"y": c, f"grad.{x}": inputs[x]})
    y0 = numpy_ref.run(g, inputs | {x: np.zeros_like(inputs[x])}, {}, float64=True, dims=dims)["y"]
    np.testing.assert_allclose(got["cotangent.y"], y - y0, rtol=1e-12, atol=1e-12)


# ---- movement ----------------------------------------------------------------------------------------------------
MOVEMENT = {
    "reshape": "input x: f32[3, 4]\noutput y = reshape(x, shape=[2, -1, 3])",
    "reshape-sym": "input x: f32[N, 4]\noutput y = reshape(x, shape=[2, N * 2])",
    "transpose": "input x: f32[2, 3, 4]\noutput y = transpose(x, perm=[2, 0, 1])",
    "transpose-default": "input x: f32[2, 3, 4]\noutput y = transpose(x)",
    "transpose-neg": "input x: f32[2, 3, 4]\noutput y = transpose(x, perm=[-1, -3, 1])",
    "expand_dims": "input x: f32[2, 3]\noutput y = expand_dims(x, axis=1) * 1.5",
    "expand_dims-neg": "input x: f32[2, 3]\noutput y = expand_dims(x, axis=-1)",
    "squeeze-all": "input x: f32[1, 3, 1, 2]\noutput y = squeeze(x)",
    "squeeze-axes": "input x: f32[1, 3, 1, 2]\noutput y = squeeze(x, axis=[-2, 0])",
    "broadcast_to": "input x: f32[3, 1]\noutput y = broadcast_to(x, shape=[2, 3, 4])",
    "broadcast_to-sym": "input x: f32[N]\noutput y = broadcast_to(x, shape=[3, N])",
    "concat": "input x: f32[2, 3]\ninput w: f32[2, 1]\noutput y = concat([x, w, x], axis=-1)",
    "concat-sym": "input x: f32[N, 3]\ninput w: f32[2, 3]\noutput y = concat([w, x], axis=0)",
    "split-unused": "input x: f32[2, 6]\na, b, c = split(x, 3, -1)\noutput y = a * 2.0 + c",
    "split-sizes": "input x: f32[5, 2]\na, b = split(x, [2, 3], axis=0)\noutput y = concat([b, a], axis=0)",
    "split-sym": "input x: f32[N, 2]\na, b, c = split(x, [2, N - 3, 1], axis=0)\n"
                 "output y = concat([c, a * 3.0], axis=0)",
    "slice": "input x: f32[4, 5]\noutput y = x[1:3, 2:]",
    "slice-neg": "input x: f32[4, 5]\noutput y = x[-3:, 1:-1]",
    "slice-strided": "input x: f32[7, 6]\noutput y = x[1:6:2, ::4]",
    "slice-strided-tail": "input x: f32[7, 6]\noutput y = x[5::3, 2:6:3]",
    "slice-empty": "input x: f32[4, 3]\noutput y = x[2:2, 1:]",
    "slice-empty-strided": "input x: f32[4, 3]\noutput y = x[3:3:2]",
    "concat-empty": "input x: f32[2, 3]\ninput w: f32[2, 0]\noutput y = concat([w, x], axis=1)",
    "slice-leading-only": "input x: f32[6, 2, 3]\noutput y = x[::2]",
    "slice-sym": "input x: f32[N, 3]\noutput y = x[1:N - 1, 1:]",
    "slice-sym-strided": "input x: f32[N, 3]\noutput y = x[0:N:2]",
    "pad-constant": "input x: f32[2, 3, 4]\noutput y = pad(x, pads=[[1, 2], [0, 3]], value=1.5)",
    "pad-constant-sym": "input x: f32[N, 3]\noutput y = pad(x, pads=[[2, 1], [1, 0]])",
    "pad-reflect": "input x: f32[2, 4, 5]\noutput y = pad(x, pads=[[3, 1], [2, 4]], mode=\"reflect\")",
    "pad-replicate": "input x: f32[2, 3, 4]\noutput y = pad(x, pads=[[2, 0], [4, 3]], mode=\"replicate\")",
    "pad-circular": "input x: f32[3, 4]\noutput y = pad(x, pads=[[3, 1], [4, 2]], mode=\"circular\")",
    "pad-reflect-long": "input x: f32[2, 3]\noutput y = pad(x, pads=[[7, 2], [5, 9]], mode=\"reflect\")",
    "pad-reflect-long-2": "input x: f32[2]\noutput y = pad(x, pads=[[3, 6]], mode=\"reflect\")",
    "pad-reflect-1": "input x: f32[3, 1]\noutput y = pad(x, pads=[[2, 3]], mode=\"reflect\")",
    "pad-circular-long": "input x: f32[3]\noutput y = pad(x, pads=[[7, 4]], mode=\"circular\")",
    "pad-replicate-long": "input x: f32[2]\noutput y = pad(x, pads=[[5, 4]], mode=\"replicate\")",
    "pad-reflect-sym": "input x: f32[2, N]\noutput y = pad(x, pads=[[1, 2]], mode=\"reflect\")",
    "pad-circular-sym": "input x: f32[N, 2]\noutput y = pad(x, pads=[[2, 1], [0, 1]], mode=\"circular\")",
    "pad-replicate-sym": "input x: f32[N]\noutput y = pad(x, pads=[[3, 2]], mode=\"replicate\")",
    "repeat": "input x: f32[2, 3]\noutput y = repeat(x, repeats=3, axis=1)",
    "repeat-neg": "input x: f32[2, 3, 2]\noutput y = repeat(x, repeats=2, axis=-3)",
    "repeat-1": "input x: f32[2, 3]\noutput y = repeat(x, repeats=1)",
    "tile": "input x: f32[2, 3, 2]\noutput y = tile(x, reps=[2, 1, 3])",
    "tile-ones": "input x: f32[2, 3]\noutput y = tile(x, reps=[1, 1])",
    "flip": "input x: f32[2, 3, 4]\noutput y = flip(x, axis=[0, -1])",
    "flip-int": "input x: f32[2, 3]\noutput y = flip(x, axis=1)",
    "roll": "input x: f32[3, 5]\noutput y = roll(x, shift=2, axis=1)",
    "roll-neg": "input x: f32[3, 5]\noutput y = roll(x, shift=-4, axis=-2)",
}
SYM_DIMS = {"N": 6}


@pytest.mark.parametrize("case", sorted(MOVEMENT))
def test_movement_vjp(case):
    dims = SYM_DIMS if "sym" in case else None
    check(MOVEMENT[case], dims)


@pytest.mark.parametrize("case", sorted(MOVEMENT))
def test_movement_gradient_of_gradient(case):
    if MOVEMENT[case].count("input ") > 1:
        pytest.skip("one input only")
    check_linear(MOVEMENT[case], SYM_DIMS if "sym" in case else None)


def test_movement_rules_stay_views_where_they_can():
    """reshape / transpose / expand_dims / squeeze / flip / roll give their cotangent back with one op each."""
    for op, body in [("reshape", MOVEMENT["reshape"]), ("transpose", MOVEMENT["transpose"]),
                     ("squeeze", MOVEMENT["expand_dims-neg"]), ("flip", MOVEMENT["flip"]),
                     ("roll", MOVEMENT["roll"])]:
        g = _program(body)
        gg = grad_graph(g, cotangents=["y"], wrt=["x"])
        backward = gg.nodes[len(g.nodes):]
        assert [n.op for n in backward] == [op], (body, [n.op for n in backward])


def test_bit_packing_has_no_gradient():
    from pnet.ir import registry
    assert registry.get("pack_bits").no_grad and registry.get("unpack_bits").no_grad
    assert registry.get("one_hot").no_grad


# ---- index -------------------------------------------------------------------------------------------------------
INDEX = {
    "take-axis0": ("input x: f32[5, 3]\ninput i: i64[4]\noutput y = take(x, i)", {"i": [4, 0, 4, 2]}),
    "take-axis1-2d-idx": ("input x: f32[2, 5, 3]\ninput i: i64[2, 3]\noutput y = take(x, i, axis=1)",
                          {"i": [[1, 1, 0], [4, 1, 3]]}),
    "take-neg-axis": ("input x: f32[2, 5]\ninput i: i64[3]\noutput y = take(x, i, axis=-1)", {"i": [3, 3, 0]}),
    "take-scalar-idx": ("input x: f32[2, 5, 3]\ninput i: i64[]\noutput y = take(x, i, axis=1)", {"i": 2}),
    "embedding": ("input t: f32[6, 4]\ninput ids: i64[2, 3]\noutput y = embedding(t, ids)",
                  {"ids": [[5, 1, 1], [0, 5, 5]]}),
    "embedding-rank3": ("input t: f32[4, 2, 3]\ninput ids: i64[3]\noutput y = embedding(t, ids)",
                        {"ids": [3, 0, 3]}),
    "embedding-sym": ("input t: f32[V, 4]\ninput ids: i64[B]\noutput y = embedding(t, ids)",
                      {"ids": [2, 0, 2, 1]}),
    "gather": ("input x: f32[3, 4]\ninput i: i64[3, 6]\noutput y = gather(x, i, axis=1)",
               {"i": [[0, 0, 3, 1, 1, 1], [2, 2, 2, 2, 0, 3], [3, 0, 1, 2, 3, 3]]}),
    "gather-neg-axis0": ("input x: f32[4, 2]\ninput i: i64[3, 2]\noutput y = gather(x, i, axis=-2)",
                         {"i": [[0, 3], [3, 3], [1, 0]]}),
    "scatter_add": ("input x: f32[4, 3]\ninput i: i64[5, 3]\ninput s: f32[5, 3]\noutput y = scatter_add(x, i, s)",
                    {"i": [[0, 1, 3], [0, 0, 3], [2, 1, 1], [3, 3, 3], [0, 2, 1]]}),
    "scatter_add-axis1": ("input x: f32[2, 4]\ninput i: i64[2, 3]\ninput s: f32[2, 3]\n"
                          "output y = scatter_add(x, i, s, axis=-1) * x", {"i": [[0, 0, 3], [2, 1, 2]]}),
    "segment_sum": ("input x: f32[5, 3]\ninput s: i64[5]\noutput y = segment_sum(x, s, num_segments=4)",
                    {"s": [0, 2, 2, 0, 2]}),
    "segment_mean": ("input x: f32[5, 2, 3]\ninput s: i64[5]\noutput y = segment_mean(x, s, num_segments=4)",
                     {"s": [3, 1, 3, 3, 0]}),
    "segment_mean-1d": ("input x: f32[5]\ninput s: i64[5]\noutput y = segment_mean(x, s, num_segments=3)",
                        {"s": [2, 2, 0, 2, 0]}),
    "segment_max": ("input x: f32[6, 3]\ninput s: i64[6]\noutput y = segment_max(x, s, num_segments=4)",
                    {"s": [1, 1, 3, 1, 3, 0]}),
    "segment_max-rank3": ("input x: f32[4, 2, 2]\ninput s: i64[4]\noutput y = segment_max(x, s, num_segments=3)",
                          {"s": [0, 2, 0, 0]}),
    "one_hot": ("input x: f32[3, 4]\ninput i: i64[3]\noutput y = one_hot(i, depth=4, dtype=\"f64\") * x",
                {"i": [1, 3, 0]}),
}


@pytest.mark.parametrize("case", sorted(INDEX))
def test_index_vjp(case):
    body, ints = INDEX[case]
    check(body, {"V": 3, "B": 4} if "sym" in case else None, ints)


@pytest.mark.parametrize("case", sorted(c for c in INDEX if c.split("-")[0] in
                                        ("take", "embedding", "gather", "segment_sum", "segment_mean")))
def test_index_gradient_of_gradient(case):
    body, ints = INDEX[case]
    check_linear(body, {"V": 3, "B": 4} if "sym" in case else None, ints)


def test_segment_max_ties_share_the_gradient_as_torch():
    """Rows tied at their segment's max split its cotangent evenly (torch's scatter_reduce amax backward)."""
    body = "input x: f32[5, 2]\ninput s: i64[5]\noutput y = segment_max(x, s, num_segments=3)"
    x = np.array([[1.0, 2.0], [1.0, -1.0], [0.5, 2.0], [1.0, 2.0], [3.0, 0.25]])
    inputs = {"x": x, "s": np.array([0, 0, 0, 0, 2])}
    _, got = check(body, inputs=inputs, fd=False)
    # segment 0: column 0 ties three ways, column 1 two ways; segment 1 is empty
    g = got["x"]
    assert np.isclose(g[0, 0], g[1, 0]) and np.isclose(g[0, 0], g[3, 0]) and g[2, 0] == 0.0
    assert np.isclose(g[0, 1], g[2, 1]) and g[1, 1] == 0.0


def test_index_gradients_never_reach_the_indices():
    g = _program("input x: f32[5, 3]\ninput i: i64[4]\noutput y = take(x, i)")
    with pytest.raises(PnetError, match="only float values have gradients"):
        grad_graph(g, cotangents=["y"], wrt=["i"])
