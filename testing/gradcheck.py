"""Checking a model's gradients, like torch.autograd.gradcheck: the gradients pnet's autodiff pass builds
(`passes/autodiff.py`), run by the reference interpreter in float64, against torch.autograd in float64 on the torch
backend's module of the same graph, and against central finite differences of the reference along a direction.

The loss is <outputs, cotangents>: `cotangents` maps output names to arrays of their shapes (one output `y`:
{"y": c}), so a non-scalar output is differentiated without a reduction written in the model. `wrt` names the
inputs and parameters to differentiate (default: `default_wrt`, the float inputs and trainable float params).

    from pnet.dsl.compile import load_file
    from pnet.testing.gradcheck import check_gradients
    graph = load_file("model.pnet").graph
    grads = check_gradients(graph, inputs)          # raises AssertionError on a disagreement

`ir_gradients`, `torch_gradients` and `directional_derivative` are the three sides, for a test that compares them
its own way. tests/test_autodiff*.py and the fuzzer's `grad` property (testing/fuzz_grad.py) use them.
"""
from __future__ import annotations

import numpy as np

from ..backends import numpy_ref
from ..ir.analysis import frozen_params
from ..ir.types import is_float
from .tolerance import assert_outputs_close

H = 1e-6   # the finite-difference step (central differences in float64)


def default_wrt(graph) -> list[str]:
    """The float inputs and the trainable float parameters (torch freezes batchnorm's running statistics)."""
    frozen = frozen_params(graph)
    return [n for n, v in graph.inputs if is_float(v.type.dtype)] + \
        [p.name for p in graph.params if is_float(p.value.type.dtype) and p.name not in frozen]


def _params(graph, params: dict | None) -> dict:
    """`params`, or the reference's seeded ones (float64) when None, so every side runs the same weights."""
    if params is not None:
        return params
    return {k: v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in numpy_ref.init_params(graph, 0).items()}


def run_gradient_graph(gg, inputs: dict, params: dict | None = None, *, dims: dict | None = None,
                       cotangents: dict) -> dict:
    """Run a graph made by grad_graph on the reference in float64, with `cotangents` (output name -> array) fed
    as its `cotangent.NAME` inputs; returns its `grad.NAME` outputs as NAME -> gradient."""
    feeds = inputs | {f"cotangent.{k}": v for k, v in cotangents.items()}
    out = numpy_ref.run(gg, feeds, _params(gg, params), float64=True, dims=dims)
    return {k[len("grad."):]: v for k, v in out.items() if k.startswith("grad.")}


def ir_gradients(graph, inputs: dict, params: dict | None = None, *, dims: dict | None = None, cotangents: dict,
                 wrt: list[str]) -> dict:
    """The autodiff pass's gradients of <outputs, cotangents> with respect to `wrt`, run by the reference in
    float64: name -> gradient."""
    from ..passes.autodiff import grad_graph
    gg = grad_graph(graph, cotangents=list(cotangents), wrt=list(wrt))
    return run_gradient_graph(gg, inputs, _params(graph, params), dims=dims, cotangents=cotangents)


def torch_gradients(graph, inputs: dict, params: dict | None = None, *, cotangents: dict, wrt: list[str],
                    torch_fn=None) -> dict:
    """torch.autograd's gradients (float64) of sum(output * cotangent) over the named outputs of the torch
    backend's module of `graph` (or of `torch_fn(**inputs)`, a tensor for the one output or a dict), with respect
    to `wrt` (inputs, or the module's parameters): name -> gradient, zeros where torch gives none."""
    import torch
    from ..backends import torch_backend
    module = torch_backend.to_module(graph, "f64", params=_params(graph, params))
    leaves = {}
    for name, v in inputs.items():
        t = torch.tensor(np.asarray(v))
        leaves[name] = t.double().requires_grad_(True) if name in wrt else t
    out = module.run_named(leaves) if torch_fn is None else torch_fn(**leaves)
    if not isinstance(out, dict):
        (only,) = cotangents
        out = {only: out}
    loss = sum((out[k].double() * torch.from_numpy(np.asarray(c, np.float64))).sum() for k, c in cotangents.items())
    named = dict(module.named_parameters())
    missing = [n for n in wrt if n not in leaves and n not in named]
    if missing:
        raise ValueError(f"not an input or a trainable parameter of the torch module: {', '.join(missing)}")
    targets = [leaves[n] if n in leaves else named[n] for n in wrt]
    got = torch.autograd.grad(loss, targets, allow_unused=True) if loss.requires_grad else [None] * len(targets)
    return {n: np.zeros(t.shape) if g is None else g.detach().numpy() for n, t, g in zip(wrt, targets, got)}


def directional_derivative(graph, inputs: dict, params: dict | None = None, *, dims: dict | None = None,
                           cotangents: dict, direction: dict, h: float = H) -> float:
    """d/dt <outputs(x + t v), cotangents> at t = 0 by central differences of the reference in float64, with v
    `direction` (name -> array, for inputs and parameters; the others stay put)."""
    params = _params(graph, params)

    def loss(t):
        moved_in = {k: v + t * direction[k] if k in direction else v for k, v in inputs.items()}
        moved_p = {k: v + t * direction[k] if k in direction else v for k, v in params.items()}
        out = numpy_ref.run(graph, moved_in, moved_p, float64=True, dims=dims)
        return sum(float(np.sum(out[k] * c)) for k, c in cotangents.items())
    return (loss(h) - loss(-h)) / (2 * h)


def along(grads: dict, direction: dict) -> float:
    """<grads, direction>: the directional derivative the gradients predict."""
    return sum(float(np.sum(grads[k] * direction[k])) for k in direction)


def check_gradients(graph, inputs: dict, params: dict | None = None, *, dims: dict | None = None,
                    cotangents: dict | None = None, wrt: list[str] | None = None, direction: dict | bool = True,
                    rtol: float = 1e-5, atol: float = 1e-6, torch_fn=None, seed: int = 0) -> dict:
    """Assert that the IR gradients (`ir_gradients`) have their values' shapes and agree with torch.autograd's
    (`torch_gradients`) within the float64 tolerance rule (testing/tolerance.py), and that <grads, direction>
    agrees with the finite-difference `directional_derivative` (np.isclose with `rtol`, `atol`). `cotangents`:
    default, standard normal for every float output; `wrt`: default `default_wrt(graph)`; `direction`: a dict, True
    (standard normal, drawn after the cotangents from `seed`) or False (no finite-difference check). Returns the IR
    gradients."""
    params = _params(graph, params)
    rng = np.random.default_rng(seed)
    if cotangents is None:
        ref = numpy_ref.run(graph, inputs, params, float64=True, dims=dims)
        cotangents = {k: rng.standard_normal(np.shape(ref[k])) for k, v in graph.outputs if is_float(v.type.dtype)}
    wrt = default_wrt(graph) if wrt is None else wrt
    got = ir_gradients(graph, inputs, params, dims=dims, cotangents=cotangents, wrt=wrt)
    want = torch_gradients(graph, inputs, params, cotangents=cotangents, wrt=wrt, torch_fn=torch_fn)
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in got:
        assert got[k].shape == np.shape(want[k]), (k, got[k].shape, np.shape(want[k]))
    assert_outputs_close(got, want, want, "f64")
    if direction is True:
        direction = {k: rng.standard_normal(np.shape(got[k])) for k in wrt}
    if direction is not False:
        numeric = directional_derivative(graph, inputs, params, dims=dims, cotangents=cotangents, direction=direction)
        analytic = along(got, direction)
        assert np.isclose(analytic, numeric, rtol=rtol, atol=atol), (analytic, numeric)
    return got
