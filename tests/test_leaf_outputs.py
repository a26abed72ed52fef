"""Issue 17 item 8: a parameter (or a view of one), an input, a repeated output or a constant used directly as
an output, on every backend: the torch nn.Module, the generated torch source, Triton (interpreter) and the CLI,
each against the NumPy reference with the tolerance rule."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pnet.backends import numpy_ref  # noqa: E402
from pnet.backends.torch_backend import to_module  # noqa: E402
from pnet.backends.torch_source import to_source  # noqa: E402
from pnet.dsl.compile import load_source  # noqa: E402
from pnet.testing.tolerance import assert_outputs_close  # noqa: E402

OUTPUTS = {
    "param": "v",
    "transpose": "v.T",
    "slice": "v[0:2]",
    "broadcast": "broadcast_to(s, [2, 3, 4])",
    "input": "x",
    "constant": "full([2], 3.0)",
}


def program(expr: str) -> str:
    # listed twice, next to a computed output, so aliasing between outputs shows too
    return ("model m() {\n  input x: f32[B, 3]\n  param v: [3, 4] = normal(0, 1)\n  param s: [4] = normal(0, 1)\n"
            f"  output y = {expr}\n  output y_again = {expr}\n  output z = x @ v + s\n}}\n")


def case(expr):
    graph = load_source(program(expr), "<leaf>").graph
    inputs = numpy_ref.random_inputs(graph, seed=1)
    params = numpy_ref.init_params(graph, 0)
    ref32 = numpy_ref.run(graph, inputs, params)
    ref64 = numpy_ref.run(graph, inputs, params, float64=True)
    return graph, inputs, params, ref32, ref64


def plain_numpy(out: dict) -> dict:
    """Outputs as arrays, with no detach: an output still requiring grad under no_grad fails here."""
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("expr", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_torch_module_returns_plain_tensors_under_no_grad(expr):
    graph, inputs, params, ref32, ref64 = case(expr)
    module = to_module(graph, params=params)
    with torch.no_grad():
        got = plain_numpy(module(**{k: torch.from_numpy(v) for k, v in inputs.items()}))
    assert_outputs_close(got, ref32, ref64)


@pytest.mark.parametrize("expr", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_generated_source_returns_plain_tensors_under_no_grad(expr):
    graph, inputs, params, ref32, ref64 = case(expr)
    namespace: dict = {}
    exec(compile(to_source(graph), "<generated>", "exec"), namespace)  # noqa: S102 - our own generated module
    model = namespace["Model"]()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()})
    with torch.no_grad():
        got = plain_numpy(model(**{k: torch.from_numpy(v) for k, v in inputs.items()}))
    assert_outputs_close(got, ref32, ref64)


def test_gradient_reaches_a_parameter_used_as_an_output():
    """With grad enabled the parameter output is not detached: sum(v.T) gives dL/dv = 1 everywhere."""
    graph, inputs, params, _, _ = case("v.T")
    module = to_module(graph, params=params)
    out = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    out["y"].sum().backward()
    np.testing.assert_array_equal(module.v.grad.numpy(), np.ones((3, 4), np.float32))


@pytest.mark.parametrize("expr", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_triton_backend(expr):
    from pnet.backends.triton import compile as triton_compile
    graph, inputs, params, ref32, ref64 = case(expr)
    assert_outputs_close(triton_compile(graph).run(inputs, params), ref32, ref64)


@pytest.mark.parametrize("backend", ["numpy", "torch", "triton"])
def test_cli_runs_a_parameter_output(tmp_path, backend):
    from pnet.cli import main
    src = tmp_path / "leaf.pnet"
    src.write_text(program("v.T"))
    assert main(["run", str(src), "-b", backend, "-o", str(tmp_path / "o.npz")]) == 0
    out = np.load(tmp_path / "o.npz")
    np.testing.assert_array_equal(out["y"], out["y_again"])
    assert out["y"].shape == (4, 3)
