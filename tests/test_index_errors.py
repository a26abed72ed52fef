"""An index outside [0, n) (negative ones included: no wrap-around, as the reference decides) is the same
located error on every backend: the NumPy reference, the torch module called directly, the Triton kernels
(a device-side flag, masked lanes), and the CLI (exit 2)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from pnet.backends import numpy_ref, torch_backend
from pnet.backends import triton as triton_backend
from pnet.dsl.compile import load_source
from pnet.errors import PnetError

# op -> (program, the valid range n of its index input `ids`)
PROGRAMS = {
    "embedding": ("model m() {\n  input ids: i64[K]\n  param t: f32[5, 3] = normal()\n  output y = embedding(t, ids)\n}\n", 5),
    "take": ("model m() {\n  input ids: i64[K]\n  input x: f32[2, 5, 3]\n  output y = take(x, ids, axis=1)\n}\n", 5),
    "gather": ("model m() {\n  input ids: i64[2, K]\n  input x: f32[2, 5]\n  output y = gather(x, ids, axis=1)\n}\n", 5),
    "scatter_add": ("model m() {\n  input ids: i64[K, 3]\n  input x: f32[5, 3]\n  input s: f32[K, 3]\n"
                    "  output y = scatter_add(x, ids, s)\n}\n", 5),
    "segment_sum": ("model m() {\n  input ids: i64[K]\n  input x: f32[K, 3]\n  output y = segment_sum(x, ids, num_segments=5)\n}\n", 5),
    "segment_mean": ("model m() {\n  input ids: i64[K]\n  input x: f32[K, 3]\n  output y = segment_mean(x, ids, num_segments=5)\n}\n", 5),
    "segment_max": ("model m() {\n  input ids: i64[K]\n  input x: f32[K, 3]\n  output y = segment_max(x, ids, num_segments=5)\n}\n", 5),
}
K = 3


def _inputs(graph, bad: list, pos: list) -> dict:
    """Seeded valid inputs, then the ids at positions `pos` replaced by the `bad` ones."""
    inputs = numpy_ref.random_inputs(graph, 0, {"K": K})
    ids = inputs["ids"].copy()
    for b, p in zip(bad, pos):
        ids.reshape(-1)[p % ids.size] = b
    inputs["ids"] = ids
    return inputs


def _error(run) -> PnetError:
    with pytest.raises(PnetError) as info:
        run()
    return info.value


def _errors(op: str, bad: list, pos: list) -> list[PnetError]:
    graph = load_source(PROGRAMS[op][0], "m.pnet").graph
    inputs = _inputs(graph, bad, pos)
    params = numpy_ref.init_params(graph, 0)
    module = torch_backend.to_module(graph, params=params)
    compiled = triton_backend.compile(graph)
    return [_error(lambda: numpy_ref.run(graph, inputs, params)),
            _error(lambda: module(**{k: torch.as_tensor(v) for k, v in inputs.items()})),
            _error(lambda: compiled.run(inputs, params))]


@pytest.mark.parametrize("op", sorted(PROGRAMS))
@settings(max_examples=3, deadline=None)
@given(bad=st.lists(st.one_of(st.integers(-50, -1), st.integers(5, 50)), min_size=1, max_size=3),
       pos=st.lists(st.integers(0, 5), min_size=3, max_size=3, unique=True))
def test_every_backend_raises_the_same_located_error(op, bad, pos):
    """Several bad ids: every backend names the first in the index tensor's order (the reference's), whatever
    order the Triton lanes run in."""
    errors = _errors(op, bad, pos)
    ids = _inputs(load_source(PROGRAMS[op][0], "m.pnet").graph, bad, pos)["ids"].reshape(-1)
    first = next(int(i) for i in ids if not 0 <= i < 5)
    want = f"{op}: index {first} out of range [0, 5)"
    for e in errors:
        assert e.message == want
        assert e.loc is not None and (e.loc.file, e.loc.line) == ("m.pnet", PROGRAMS[op][0].count("\n") - 1)
    assert len({str(e) for e in errors}) == 1


@pytest.mark.parametrize("op", ["embedding", "gather", "segment_sum"])
def test_valid_edge_indices_still_agree(op):
    """0 and n - 1 are in range: the checks must not reject them, and every backend returns the reference."""
    graph = load_source(PROGRAMS[op][0], "m.pnet").graph
    inputs = _inputs(graph, [4], [0])
    inputs["ids"].reshape(-1)[-1] = 0
    params = numpy_ref.init_params(graph, 0)
    want = numpy_ref.run(graph, inputs, params)["y"]
    got_torch = torch_backend.to_module(graph, params=params)(**{k: torch.as_tensor(v) for k, v in inputs.items()})["y"]
    got_triton = triton_backend.compile(graph).run(inputs, params)["y"]
    np.testing.assert_allclose(got_torch.detach().numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(got_triton, want, rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "torch", "triton"])
def test_cli_exits_2_on_an_out_of_range_id(backend, tmp_path):
    src = tmp_path / "emb.pnet"
    src.write_text(PROGRAMS["embedding"][0])
    np.savez(tmp_path / "in.npz", ids=np.array([0, 9, 1]))
    r = subprocess.run([sys.executable, "-m", "pnet", "run", str(src), "-b", backend, "-i", str(tmp_path / "in.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert f"{src}:4:14: error: embedding: index 9 out of range [0, 5)" in r.stderr


@pytest.mark.parametrize("src, table", [
    ("model m() {\n  input ids: i64[2]\n  input x: f32[2, N]\n  output y = segment_max(x, ids, num_segments=3)\n}\n", (2, 0)),
    ("model m() {\n  input ids: i64[2]\n  input x: f32[N, 4]\n  output y = take(x, ids, axis=1)\n}\n", (0, 4)),
    ("model m() {\n  input ids: i64[2]\n  input x: f32[4, N]\n  output y = embedding(x, ids)\n}\n", (4, 0)),
])
def test_ids_are_checked_when_no_element_moves(src, table):
    """An empty data operand (a dim bound to 0): the Triton kernel has nothing to launch, but the ids are still
    checked, as the reference and torch check them."""
    graph = load_source(src, "m.pnet").graph
    inputs = {"ids": np.array([0, 5]), "x": np.zeros(table, np.float32)}
    module = torch_backend.to_module(graph)
    errors = [_error(lambda: numpy_ref.run(graph, inputs, {})),
              _error(lambda: module(**{k: torch.as_tensor(v) for k, v in inputs.items()})),
              _error(lambda: triton_backend.compile(graph).run(inputs, {}))]
    assert len({str(e) for e in errors}) == 1 and "index 5 out of range" in str(errors[0])
