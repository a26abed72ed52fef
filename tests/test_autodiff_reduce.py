"""Gradient rules of the reductions, cumsum, sort / topk, the pools, dynamic_scale and topk_mask
(ir/ops/reduce_grad.py) on hand-written programs covering each op's attributes (axes, keepdims, negative axes,
corrections, kernels / strides / padding, ties, zeros, symbolic dims): the IR gradient run by the reference in
float64 against torch.autograd in float64 on the torch backend's module, and (away from ties and kinks) against
central finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from pnet.backends import numpy_ref, torch_backend
from pnet.dsl.compile import load_source
from pnet.ir.types import is_float
from pnet.passes.autodiff import grad_graph
from pnet.testing.gradcheck import check_gradients, run_gradient_graph

torch = pytest.importorskip("torch")


def _program(body: str):
    src = "model m() {\n  " + body.strip().replace("\n", "\n  ") + "\n}\n"
    return load_source(src, "m.pnet").graph


def _inputs(g, dims, ties, seed):
    """Standard normal inputs, or small integers (ties, zeros) with `ties`."""
    rng = np.random.default_rng(seed)
    shapes = {k: v.shape for k, v in numpy_ref.random_inputs(g, 0, dims).items()}
    if ties:
        return {name: rng.integers(-2, 3, shapes[name]).astype(np.float64) for name, _ in g.inputs}
    return {name: rng.standard_normal(shapes[name]) for name, _ in g.inputs}


def check(body, dims=None, ties=False, fd=None, inputs=None, seed=0):
    """IR gradients of every float input vs torch autograd, and (default: without ties) vs central finite
    differences along a random direction; returns the IR gradients."""
    g = _program(body)
    inputs = inputs if inputs is not None else _inputs(g, dims, ties, seed)
    wrt = [n for n, v in g.inputs if is_float(v.type.dtype)]
    y = numpy_ref.run(g, inputs, {}, float64=True, dims=dims)["y"]
    rng = np.random.default_rng(1)
    cot = {"y": rng.standard_normal(y.shape)}
    fd = fd if fd is not None else not ties
    direction = {k: rng.standard_normal(inputs[k].shape) for k in wrt} if fd else False
    got = check_gradients(g, inputs, {}, dims=dims, cotangents=cot, wrt=wrt, direction=direction,
                          rtol=1e-6, atol=1e-8)
    for k in wrt:
        assert got[k].shape == inputs[k].shape, (k, got[k].shape, inputs[k].shape)
    return got


AXES = ["", ", axis=0", ", axis=-1", ", axis=[0, 2]", ", axis=[-1, 1], keepdims=true", ", keepdims=true",
        ", axis=[]"]


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "prod", "logsumexp"])
@pytest.mark.parametrize("axes", AXES)
def test_reductions(op, axes):
    check(f"input x: f64[2, 3, 4]\noutput y = {op}(x{axes})")


@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("axes", AXES[:-1])
@pytest.mark.parametrize("correction", [0, 1])
def test_var_std(op, axes, correction):
    check(f"input x: f64[2, 3, 4]\noutput y = {op}(x{axes}, correction={correction})")


@pytest.mark.parametrize("op", ["var", "std"])
def test_var_std_over_no_axis_is_zero(op):
    """Over no axis the result is 0 whatever x is."""
    got = check(f"input x: f64[2, 3]\noutput y = {op}(x, axis=[]) + x")
    assert np.isfinite(got["x"]).all()


def test_std_of_a_constant_line_has_zero_gradient():
    """torch masks std's gradient where std = 0 (rather than 0 / 0)."""
    x = np.array([[1.0, 1.0, 1.0], [0.5, -1.0, 2.5]])
    got = check("input x: f64[2, 3]\noutput y = std(x, axis=1)", inputs={"x": x}, fd=False)
    assert not got["x"][0].any() and got["x"][1].all()


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("axes", ["", ", axis=1", ", axis=[0, -1], keepdims=true"])
def test_max_min_split_ties_evenly(op, axes):
    check(f"input x: f64[3, 4, 5]\noutput y = {op}(x{axes})", ties=True)


def test_max_tie_halves():
    got = check("input x: f64[4]\noutput y = max(x)", inputs={"x": np.array([1.0, 3.0, 3.0, 2.0])}, fd=False)
    assert got["x"][0] == 0 and got["x"][1] == got["x"][2] != 0


@pytest.mark.parametrize("axes", ["", ", axis=1", ", axis=[0, 2], keepdims=true", ", axis=-1"])
def test_prod_with_zeros(axes):
    """Rows with no zero, one zero and two zeros: the product of the other factors, never a division by 0."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, (3, 4, 3))
    x[1, 2, 0] = 0.0
    x[2, 0, 1] = x[2, 3, 1] = 0.0
    x[0, 1, 2] = x[0, 1, 0] = 0.0
    got = check(f"input x: f64[3, 4, 3]\noutput y = prod(x{axes})", inputs={"x": x}, fd=False)
    assert np.isfinite(got["x"]).all()


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cumsum(axis):
    check(f"input x: f64[3, 4, 5]\noutput y = cumsum(x, axis={axis})")


@pytest.mark.parametrize("attrs", ["", ", axis=0", ", descending=true", ", axis=1, descending=true"])
@pytest.mark.parametrize("ties", [False, True])
def test_sort(attrs, ties):
    check(f"input x: f64[3, 5]\nv, i = sort(x{attrs})\noutput y = v", ties=ties)


@pytest.mark.parametrize("attrs", ["k=2", "k=3, axis=0", "k=1, largest=false", "k=4, axis=-1, largest=false", "k=0"])
@pytest.mark.parametrize("ties", [False, True])
def test_topk(attrs, ties):
    check(f"input x: f64[4, 5]\nv, i = topk(x, {attrs})\noutput y = v * 2.0", ties=ties)


def test_topk_values_and_indices_both_used():
    check("input x: f64[4, 5]\nv, i = topk(x, k=2)\noutput y = v + cast(i, dtype=\"f64\")")


@pytest.mark.parametrize("attrs", ["k=2", "k=3, axis=0", "k=5", "k=0", "k=4, axis=-1"])
@pytest.mark.parametrize("ties", [False, True])
def test_topk_mask(attrs, ties):
    """With ties there are zeros; k=4 or 5 keeps some of them (kept zeros pass the gradient, as torch's where)."""
    check(f"input x: f64[4, 5]\noutput y = topk_mask(x, {attrs})", ties=ties)


def test_topk_mask_keeps_zeros_in_index_order():
    x = np.array([[0.0, 2.0, 0.0, 0.0, -1.0]])
    got = check("input x: f64[1, 5]\noutput y = topk_mask(x, k=3)", inputs={"x": x}, fd=False)
    assert (got["x"][0] != 0).tolist() == [True, True, False, False, True]


@pytest.mark.parametrize("attrs", ["", ", axis=0", ", axis=[]", ", axis=[0, 2]", ", bits=4", ", method=\"absmean\"",
                                   ", axis=[], method=\"absmean\"", ", axis=1, method=\"absmean\""])
@pytest.mark.parametrize("ties", [False, True])
def test_dynamic_scale(attrs, ties):
    check(f"input x: f64[3, 4, 5]\noutput y = dynamic_scale(x{attrs}) * 3.0", ties=ties)


def test_dynamic_scale_of_zeros_has_zero_gradient():
    got = check("input x: f64[2, 3]\noutput y = dynamic_scale(x)", inputs={"x": np.zeros((2, 3))}, fd=False)
    assert not got["x"].any()


POOL1 = ["kernel=2", "kernel=3, stride=1", "kernel=3, stride=2, padding=1", "kernel=2, stride=3",
         "kernel=4, stride=3, padding=2", "kernel=1", "kernel=5, stride=2, padding=2", "kernel=4, stride=2"]
POOL2 = ["kernel=2", "kernel=3, stride=2, padding=1", "kernel=[2, 3], stride=[1, 2], padding=[1, 1]",
         "kernel=[3, 2], stride=[3, 1]", "kernel=[1, 3], stride=[2, 3], padding=[0, 1]", "kernel=2, stride=1"]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("attrs", POOL1)
def test_pool1d(kind, attrs):
    check(f"input x: f64[2, 3, 11]\noutput y = {kind}_pool1d(x, {attrs})")


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("attrs", POOL2)
def test_pool2d(kind, attrs):
    check(f"input x: f64[2, 2, 7, 8]\noutput y = {kind}_pool2d(x, {attrs})")


@pytest.mark.parametrize("attrs", POOL2 + ["kernel=3, stride=1, padding=1"])
def test_max_pool2d_ties_go_to_the_first_maximum(attrs):
    check(f"input x: f64[2, 2, 7, 8]\noutput y = max_pool2d(x, {attrs})", ties=True)


@pytest.mark.parametrize("attrs", POOL1)
def test_max_pool1d_ties(attrs):
    check(f"input x: f64[2, 3, 11]\noutput y = max_pool1d(x, {attrs})", ties=True)


def test_max_pool_all_minus_inf_window_goes_to_a_real_element():
    """A window of -inf only (its padded positions too): torch gives the gradient to its first real element."""
    x = np.full((1, 1, 4), -np.inf)
    x[0, 0, 3] = 1.0
    got = check("input x: f64[1, 1, 4]\noutput y = max_pool1d(x, kernel=3, stride=2, padding=1)",
                inputs={"x": x}, fd=False)
    assert got["x"][0, 0, 0] != 0


@pytest.mark.parametrize("shape", ["[2, 3]", "[2, 3, 5]", "[2, 3, 4, 5]", "[1, 2, 3, 2, 2]"])
def test_global_avg_pool(shape):
    check(f"input x: f64{shape}\noutput y = global_avg_pool(x)")


# ---- symbolic dims: counts and pool geometry known only at run time ------------------------------------------
@pytest.mark.parametrize("body", [
    "input x: f64[B, N]\noutput y = mean(x, axis=1)",
    "input x: f64[B, N]\noutput y = x * mean(x, axis=0, keepdims=true)",
    "input x: f64[B, N]\noutput y = var(x, axis=-1, correction=1)",
    "input x: f64[B, N]\noutput y = std(x)",
    "input x: f64[B, N, 3]\noutput y = sum(x, axis=[0, 1])",
    "input x: f64[B, C, H]\noutput y = avg_pool1d(x, kernel=3, stride=2, padding=1)",
    "input x: f64[B, C, H, W]\noutput y = max_pool2d(x, kernel=3, stride=2, padding=1)",
    "input x: f64[B, C, H, W]\noutput y = avg_pool2d(x, kernel=2)",
    "input x: f64[B, C, H, W]\noutput y = global_avg_pool(x)",
    "input x: f64[B, N]\noutput y = dynamic_scale(x, axis=0, method=\"absmean\")",
])
def test_symbolic_dims(body):
    for dims in ({"B": 2, "N": 5, "C": 2, "H": 7, "W": 6}, {"B": 3, "N": 4, "C": 1, "H": 8, "W": 9}):
        check(body, dims=dims)


@pytest.mark.parametrize("body", [
    "logsumexp(x * x, axis=1)", "var(x, axis=0, correction=1)", "std(x, axis=-1)", "prod(x, axis=1)",
    "mean(x * x, axis=0)", "cumsum(x * x, axis=1)", "max(x * x, axis=1)", "sum(x * x)",
    "avg_pool1d(expand_dims(x * x, axis=0), kernel=3, stride=2, padding=1)",
    "max_pool1d(expand_dims(x * x, axis=0), kernel=2)", "dynamic_scale(x * x, method=\"absmean\")",
])
def test_second_order(body):
    """The rules are IR, so they differentiate again: the gradient graph, differentiated once more with respect to
    x, agrees with torch's double backward."""
    g = _program(f"input x: f64[3, 4]\noutput y = {body}")
    gg = grad_graph(g, cotangents=["y"], wrt=["x"])
    gg.outputs = [("gx", dict(gg.outputs)["grad.x"])]
    ggg = grad_graph(gg, cotangents=["gx"], wrt=["x"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    y = numpy_ref.run(g, {"x": x}, {}, float64=True)["y"]
    c1, c2 = rng.standard_normal(y.shape), rng.standard_normal(x.shape)
    got = run_gradient_graph(ggg, {"x": x}, {}, cotangents={"y": c1, "gx": c2})
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_backend.to_module(g, "f64")(x=tx)
    ty = ty["y"] if isinstance(ty, dict) else ty
    (gx,) = torch.autograd.grad((ty * torch.tensor(c1)).sum(), tx, create_graph=True)
    (gxx,) = torch.autograd.grad((gx * torch.tensor(c2)).sum(), tx, allow_unused=True)
    want = np.zeros_like(x) if gxx is None else gxx.detach().numpy()
    np.testing.assert_allclose(got["x"], want, rtol=1e-9, atol=1e-11)
