"""A symbolic dim bound to 0 at run time (empty tensors) on every kernel kind: the torch module and the Triton
kernels give the NumPy reference's result (sum 0, mean NaN, K = 0 products zeros, attention without keys zeros,
logsumexp -inf, empty softmax rows), or, where the reference has no result (max over an empty axis, a slice
past the end, a circular pad or a top-2 of an empty axis), its located error. The Triton launcher used to run one program for zero rows (SIGSEGV)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnet.backends import numpy_ref, torch_backend
from pnet.backends import triton as triton_backend
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.passes.manager import run_passes
from pnet.testing.tolerance import assert_outputs_close

CASES = {
    "pointwise": "input x: f32[B, N]\n  output y = gelu(x) * 2.0 + 1.0",
    "mean_keepdims": "input x: f32[B, N]\n  output y = x + mean(x, axis=0, keepdims=true)",
    "reduce_empty_axis": "input x: f32[B, N]\n  output m = mean(x, axis=1)\n  output s = sum(x, axis=1)\n"
                         "  output p = prod(x, axis=1)\n  output l = logsumexp(x, axis=1)",
    "reduce_empty_rows": "input x: f32[N, 4]\n  output a = sum(x, axis=1)\n  output b = max(x, axis=1)\n"
                         "  output c = logsumexp(x, axis=-1)\n  output d = argmax(x, axis=1)",
    "rows": "input x: f32[B, N, 3]\n  output y = softmax(x, -1)\n  output z = layernorm(x, eps=1e-5)",
    "rows_empty": "input x: f32[B, 3, N]\n  output y = softmax(x, -1)\n  output l = log_softmax(x, -1)",
    "matmul_m0": "input x: f32[N, 4]\n  input w: f32[4, 5]\n  output y = relu(x @ w) + 1.0",
    "matmul_k0": "input x: f32[3, N]\n  input w: f32[N, 5]\n  output y = x @ w + 1.0",
    "conv_n0": "input x: f32[N, 2, 6, 6]\n  input w: f32[3, 2, 3, 3]\n  output y = conv2d(x, w, padding=1)",
    "conv_cin0": "input x: f32[1, N, 6, 6]\n  input w: f32[3, N, 3, 3]\n  output y = conv2d(x, w, padding=1)",
    "movement": "input x: f32[N, 3]\n  input z: f32[2, 3]\n  output y = concat([x, z], axis=0)\n"
                "  output f = flip(x, 0)\n  output p = pad(x, [[1, 1], [0, 0]])",
    "attention_q0": "input q: f32[B, N, 8]\n  input k: f32[B, 5, 8]\n  output a = sdpa(q, k, k)",
    "attention_no_keys": "input q: f32[B, 3, 8]\n  input k: f32[B, N, 8]\n  output a = sdpa(q, k, k)",
    "cumsum": "input x: f32[B, N]\n  output y = cumsum(x, axis=1)\n  output z = cumsum(x, axis=0)",
    "index": "input ids: i64[N]\n  input t: f32[5, 3]\n  input x: f32[N, 3]\n  output y = embedding(t, ids)\n"
             "  output s = segment_mean(x, ids, num_segments=4)",
    "max_no_identity": "input x: f32[B, N]\n  output y = max(x, axis=1)",
    "slice_past_end": "input x: f32[B, N]\n  output y = x[:, 0:1]",
    "pad_circular_empty_axis": "input x: f32[2, N]\n  output y = pad(x, [[0, 0], [1, 1]], mode=\"circular\")",
    "attention_head_dim0": "input q: f32[B, 3, N]\n  input k: f32[B, 4, N]\n  output a = sdpa(q, k, k)",
    "topk_k_past_end": "input x: f32[B, N]\n  v, i = topk(x, k=2, axis=-1)\n  output v",
    "max_empty_result": "input x: f32[N, N]\n  output y = max(x, axis=1)\n  output a = argmax(x, axis=0)",
}


def _run_all(graph, inputs, params):
    """Each backend's outputs, or the PnetError it raised."""
    def attempt(fn):
        try:
            return fn()
        except PnetError as e:
            return e
    module = torch_backend.to_module(graph, params=params)
    return {
        "numpy": attempt(lambda: numpy_ref.run(graph, inputs, params)),
        "torch": attempt(lambda: {k: v.detach().numpy() for k, v in
                                  module(**{k: torch.as_tensor(v) for k, v in inputs.items()}).items()}),
        "triton": attempt(lambda: triton_backend.compile(graph).run(inputs, params)),
        "triton_unfused": attempt(lambda: triton_backend.compile(graph, fuse=False).run(inputs, params)),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_size_dim_matches_the_reference(case):
    graph = run_passes(load_source(f"model m() {{\n  {CASES[case]}\n}}\n", "m.pnet").graph)
    inputs = numpy_ref.random_inputs(graph, 0, {"B": 2, "N": 0})
    params = numpy_ref.init_params(graph, 0)
    got = _run_all(graph, inputs, params)
    ref = got.pop("numpy")
    if isinstance(ref, PnetError):
        assert ref.loc is not None and ref.loc.line == 3
        for backend, out in got.items():
            assert isinstance(out, PnetError) and str(out) == str(ref), backend
        return
    ref64 = numpy_ref.run(graph, inputs, params, float64=True)
    for backend, out in got.items():
        assert not isinstance(out, PnetError), f"{backend}: {out}"
        assert_outputs_close(out, ref, ref64)


def test_defined_empty_results():
    """The reference's choices for empty reductions: sum 0, prod 1, mean NaN, logsumexp -inf."""
    graph = load_source(f"model m() {{\n  {CASES['reduce_empty_axis']}\n}}\n", "m.pnet").graph
    out = numpy_ref.run(graph, {"x": np.zeros((2, 0), np.float32)}, {})
    assert out["s"].tolist() == [0, 0] and out["p"].tolist() == [1, 1]
    assert np.isnan(out["m"]).all() and (out["l"] == -np.inf).all()
