"""Gradient rules of the softmax family, the normalizations (ir/ops/nn_grad.py) and sdpa (ir/ops/attention_grad.py)
on hand-written programs covering each op's attributes: the IR gradient run by the reference in float64 against
torch.autograd in float64 on the torch backend's module, and against central finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from pnet.backends import numpy_ref, torch_backend
from pnet.dsl.compile import load_source
from pnet.ir import registry
from pnet.ir.types import is_float
from pnet.passes.autodiff import grad_graph
from pnet.testing.gradcheck import check_gradients, ir_gradients, run_gradient_graph, torch_gradients
from pnet.testing.tolerance import assert_outputs_close

torch = pytest.importorskip("torch")


def _program(body: str):
    src = "model m() {\n  " + body.strip().replace("\n", "\n  ") + "\n}\n"
    return load_source(src, "m.pnet").graph


def _inputs(g, dims, positive=(), masks=None, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in g.inputs:
        shape = numpy_ref.random_inputs(g, 0, dims)[name].shape
        if v.type.dtype == "bool":
            out[name] = rng.random(shape) < 0.6
        elif name in positive:
            out[name] = rng.random(shape) + 0.5
        else:
            out[name] = rng.standard_normal(shape)
    out |= masks or {}
    return out


def _float_inputs(g):
    return [n for n, v in g.inputs if is_float(v.type.dtype)]


def check(body, dims=None, positive=(), masks=None, torch_fn=None, fd=True):
    """IR gradients of every float input vs torch autograd (the torch backend's module, or `torch_fn`) and vs
    central finite differences along a random direction."""
    g = _program(body)
    inputs = _inputs(g, dims, positive, masks)
    wrt = _float_inputs(g)
    y = numpy_ref.run(g, inputs, {}, float64=True, dims=dims)["y"]
    rng = np.random.default_rng(1)
    cot = {"y": rng.standard_normal(y.shape)}
    # -inf mask entries stay put (the gradients, asserted finite below, then add nothing there)
    direction = {k: rng.standard_normal(inputs[k].shape) * np.isfinite(inputs[k]) for k in wrt} if fd else False
    got = check_gradients(g, inputs, {}, dims=dims, cotangents=cot, wrt=wrt, direction=direction,
                          rtol=1e-5, atol=1e-6, torch_fn=torch_fn)
    assert all(np.isfinite(v).all() for v in got.values()), got
    return got


# ---- softmax family ------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
def test_softmax_family(op, axis):
    check(f"input x: f32[3, 4, 5]\noutput y = {op}(x, axis={axis})")


def test_softmax_inside_a_chain():
    check("input x: f32[2, 6]\ninput w: f32[6]\noutput y = log_softmax(softmax(x * w, axis=-1) * 3.0, axis=-1)")


# ---- layernorm / rmsnorm ---------------------------------------------------------------------------------
@pytest.mark.parametrize("axis, pshape", [(-1, "5"), ("[-2, -1]", "4, 5"), ("[1, 2]", "4, 5"), ("[0, 1, 2]", "3, 4, 5")])
@pytest.mark.parametrize("args", ["x, w, b", "x, w", "x", "x, b=b"])
def test_layernorm(axis, pshape, args):
    params = [a.split("=")[0] for a in args.split(", ")[1:]]
    decl = "input x: f32[3, 4, 5]\n" + "".join(f"input {p}: f32[{pshape}]\n" for p in params)
    check(decl + f"output y = layernorm({args}, axis={axis}, eps=1e-3)")


@pytest.mark.parametrize("axis, pshape", [(-1, "5"), ("[-2, -1]", "4, 5")])
@pytest.mark.parametrize("with_w", [True, False])
def test_rmsnorm(axis, pshape, with_w):
    decl = "input x: f32[3, 4, 5]\n" + (f"input w: f32[{pshape}]\n" if with_w else "")
    check(decl + f"output y = rmsnorm({'x, w' if with_w else 'x'}, axis={axis}, eps=1e-4)")


# ---- groupnorm / batchnorm -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, groups", [("2, 6, 3, 2", 3), ("2, 6, 3, 2", 1), ("2, 6, 3, 2", 6), ("4, 6", 2),
                                           ("2, 4, 5", 2), ("1, 4, 2, 2, 2", 2)])
@pytest.mark.parametrize("args", ["x, w, b", "x, w", "x"])
def test_groupnorm(shape, groups, args):
    c = shape.split(", ")[1]
    decl = f"input x: f32[{shape}]\n" + "".join(f"input {p}: f32[{c}]\n" for p in args.split(", ")[1:])
    check(decl + f"output y = groupnorm({args}, groups={groups}, eps=1e-3)")


def _batchnorm_torch(eps):
    """batchnorm as its formula in torch (F.batch_norm in eval mode has no gradient for the statistics)."""
    def fn(x, m, v, w=None, b=None):
        ch = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - m.reshape(ch)) / torch.sqrt(v.reshape(ch) + eps)
        y = y * w.reshape(ch) if w is not None else y
        return y + b.reshape(ch) if b is not None else y
    return fn


@pytest.mark.parametrize("shape", ["3, 4, 2, 2", "5, 4", "2, 4, 3"])
@pytest.mark.parametrize("args", ["x, m, v, w, b", "x, m, v"])
def test_batchnorm_running_statistics(shape, args):
    decl = f"input x: f32[{shape}]\n" + "".join(f"input {p}: f32[4]\n" for p in args.split(", ")[1:])
    check(decl + f"output y = batchnorm({args}, eps=1e-3)", positive=("v",), torch_fn=_batchnorm_torch(1e-3))


def test_batchnorm_running_statistics_match_torch_batch_norm_for_x_w_b():
    """The gradients torch's own batch_norm gives (x, w, b) agree with the module's."""
    g = _program("input x: f32[3, 4, 2]\ninput m: f32[4]\ninput v: f32[4]\ninput w: f32[4]\ninput b: f32[4]\n"
                 "output y = batchnorm(x, m, v, w, b)")
    inputs = _inputs(g, None, positive=("v",))
    cot = {"y": np.random.default_rng(2).standard_normal((3, 4, 2))}
    got = ir_gradients(g, inputs, {}, cotangents=cot, wrt=["x", "w", "b"])
    want = torch_gradients(g, inputs, {}, cotangents=cot, wrt=["x", "w", "b"])
    assert_outputs_close(got, want, want, "f64")


@pytest.mark.parametrize("shape, axes", [("4, 3, 2, 2", "[0, 2, 3]"), ("6, 3", "[0]")])
def test_batchnorm_batch_statistics(shape, axes):
    """Training-mode batch norm: the statistics computed from x; the gradient composes through mean and var
    (torch: F.batch_norm with training=True)."""
    if registry.get("mean").vjp is None or registry.get("var").vjp is None:
        pytest.skip("mean and var have no gradient rule yet (the reductions' family)")
    body = (f"input x: f32[{shape}]\ninput w: f32[3]\ninput b: f32[3]\n"
            f"output y = batchnorm(x, mean(x, axis={axes}), var(x, axis={axes}), w, b, eps=1e-3)")
    check(body, torch_fn=lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-3))


# ---- sdpa ------------------------------------------------------------------------------------------------
SDPA = {
    "plain": "input q: f32[2, 3, 4]\ninput k: f32[2, 5, 4]\ninput v: f32[2, 5, 6]\noutput y = sdpa(q, k, v)",
    "rank2": "input q: f32[3, 4]\ninput k: f32[5, 4]\ninput v: f32[5, 4]\noutput y = sdpa(q, k, v, scale=0.3)",
    "scale": "input q: f32[2, 3, 4]\ninput k: f32[2, 5, 4]\ninput v: f32[2, 5, 6]\noutput y = sdpa(q, k, v, scale=0.7)",
    "causal_square": "input q: f32[2, 4, 3]\ninput k: f32[2, 4, 3]\ninput v: f32[2, 4, 3]\n"
                     "output y = sdpa(q, k, v, causal=true)",
    "causal_more_queries": "input q: f32[2, 5, 3]\ninput k: f32[2, 3, 3]\ninput v: f32[2, 3, 2]\n"
                           "output y = sdpa(q, k, v, causal=true)",
    "causal_more_keys": "input q: f32[2, 2, 3]\ninput k: f32[2, 5, 3]\ninput v: f32[2, 5, 2]\n"
                        "output y = sdpa(q, k, v, causal=true, scale=0.5)",
    "gqa_broadcast": "input q: f32[2, 3, 4, 5]\ninput k: f32[2, 1, 6, 5]\ninput v: f32[1, 1, 6, 3]\n"
                     "output y = sdpa(q, k, v)",
    "bool_mask": "input q: f32[2, 3, 4]\ninput k: f32[2, 5, 4]\ninput v: f32[2, 5, 4]\ninput m: bool[2, 3, 5]\n"
                 "output y = sdpa(q, k, v, m)",
    "bool_mask_causal": "input q: f32[2, 4, 4]\ninput k: f32[2, 4, 4]\ninput v: f32[2, 4, 4]\ninput m: bool[4]\n"
                        "output y = sdpa(q, k, v, m, causal=true)",
    "float_mask": "input q: f32[2, 3, 4]\ninput k: f32[2, 5, 4]\ninput v: f32[2, 5, 4]\ninput m: f32[2, 3, 5]\n"
                  "output y = sdpa(q, k, v, m)",
    "float_mask_broadcast": "input q: f32[2, 3, 4]\ninput k: f32[2, 5, 4]\ninput v: f32[2, 5, 4]\n"
                            "input m: f32[1, 5]\noutput y = sdpa(q, k, v, m, causal=true)",
    "float_mask_rank1": "input q: f32[2, 2, 3, 4]\ninput k: f32[2, 2, 5, 4]\ninput v: f32[2, 2, 5, 4]\n"
                        "input m: f32[5]\noutput y = sdpa(q, k, v, m)",
}

# bool masks with an all-False row (query 1 attends to nothing: output 0, gradients 0), a float mask with -inf
# entries and a fully masked row
_BOOL = np.random.default_rng(5).random((2, 3, 5)) < 0.6
_BOOL[:, 1, :] = False
_BOOL[:, 0, 0] = True
_FLOAT = np.random.default_rng(6).standard_normal((2, 3, 5))
_FLOAT[0, 2, :] = -np.inf
_FLOAT[1, 0, 1:3] = -np.inf
MASKS = {"bool_mask": {"m": _BOOL}, "float_mask": {"m": _FLOAT},
         "bool_mask_causal": {"m": np.array([True, False, True, True])}}


@pytest.mark.parametrize("case", sorted(SDPA))
def test_sdpa(case):
    got = check(SDPA[case], masks=MASKS.get(case))
    if case in ("bool_mask", "float_mask"):   # an empty row: no gradient to its query, none from it to k, v
        row = (slice(None), 1) if case == "bool_mask" else (0, 2)
        assert np.all(got["q"][row] == 0)


def test_sdpa_symbolic_head_dim():
    """The default scale 1/sqrt(d) with d a symbolic dim."""
    body = "input q: f32[2, 3, D]\ninput k: f32[2, 5, D]\ninput v: f32[2, 5, 4]\noutput y = sdpa(q, k, v)"
    check(body, dims={"D": 6})


# ---- gradients of gradients --------------------------------------------------------------------------------
SECOND_ORDER = {
    "softmax": "input x: f32[3, 5]\noutput y = softmax(x, axis=0)",
    "log_softmax": "input x: f32[3, 5]\noutput y = log_softmax(x, axis=-1)",
    "layernorm": "input x: f32[3, 4]\ninput w: f32[4]\ninput b: f32[4]\noutput y = layernorm(x, w, b, eps=1e-3)",
    "rmsnorm": "input x: f32[3, 4]\ninput w: f32[4]\noutput y = rmsnorm(x, w, eps=1e-3)",
    "groupnorm": "input x: f32[2, 4, 3]\ninput w: f32[4]\ninput b: f32[4]\noutput y = groupnorm(x, w, b, groups=2)",
    "batchnorm": "input x: f32[3, 4, 2]\ninput m: f32[4]\ninput v: f32[4]\ninput w: f32[4]\ninput b: f32[4]\n"
                 "output y = batchnorm(x, m, v, w, b)",
    "sdpa": "input q: f32[2, 3, 4]\ninput k: f32[2, 5, 4]\ninput v: f32[2, 5, 3]\noutput y = sdpa(q, k, v, causal=true)",
    "sdpa_float_mask": "input q: f32[3, 4]\ninput k: f32[5, 4]\ninput v: f32[5, 3]\ninput m: f32[3, 5]\n"
                       "output y = sdpa(q, k, v, m)",
}


@pytest.mark.parametrize("case", sorted(SECOND_ORDER))
def test_second_order(case):
    """The rules are IR of differentiable ops: d<grad_x(<y, c1>), c2>/d(inputs) against torch's double backward
    (create_graph=True) on the same module."""
    g = _program(SECOND_ORDER[case])
    inputs = _inputs(g, None, positive=("v",) if case == "batchnorm" else ())
    wrt = _float_inputs(g)
    first = wrt[0]
    rng = np.random.default_rng(7)
    y = numpy_ref.run(g, inputs, {}, float64=True)["y"]
    c1, c2 = rng.standard_normal(y.shape), rng.standard_normal(inputs[first].shape)
    gg = grad_graph(g, cotangents=["y"], wrt=[first])
    gg.outputs = [("dx" if name == f"grad.{first}" else name, v) for name, v in gg.outputs]
    ggg = grad_graph(gg, cotangents=["dx"], wrt=wrt)
    got = run_gradient_graph(ggg, inputs, {}, cotangents={"y": c1, "dx": c2})

    fn = _batchnorm_torch(1e-5) if case == "batchnorm" else None
    leaves = {k: torch.tensor(v, requires_grad=k in wrt) for k, v in inputs.items()}
    ty = fn(**leaves) if fn else torch_backend.to_module(g, "f64")(**leaves)
    ty = ty["y"] if isinstance(ty, dict) else ty
    (gx,) = torch.autograd.grad((ty * torch.tensor(c1)).sum(), leaves[first], create_graph=True)
    (gx * torch.tensor(c2)).sum().backward()
    want = {k: leaves[k].grad.numpy() if leaves[k].grad is not None else np.zeros(inputs[k].shape) for k in wrt}
    assert set(got) == set(want)
    assert_outputs_close(got, want, want, "f64")
