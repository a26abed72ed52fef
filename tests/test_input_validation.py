"""Every backend validates its inputs the same way (numpy_ref.check_inputs / bind_dims: one function, one
message): a wrong shape, a symbolic dim given two sizes, a missing input. The Triton backend used to crash on
a wrong shape (exit 3) and to run inconsistent dims silently."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from pnet.backends import numpy_ref, torch_backend
from pnet.backends import triton as triton_backend
from pnet.dsl.compile import load_source
from pnet.errors import PnetError

SRC = "model m() {\n  input x: f32[N, 3]\n  input ids: i64[N]\n  output y = x * 2.0\n  output z = ids + 1\n}\n"
BAD = {
    "wrong_shape": ({"x": np.zeros((2, 4), np.float32), "ids": np.zeros(2, np.int64)},
                    "input 'x' should have shape [2, 3] (f32[N, 3]), got [2, 4]"),
    "inconsistent_dim": ({"x": np.zeros((2, 3), np.float32), "ids": np.zeros(3, np.int64)},
                         "input 'ids' has shape [3]: dim N is 3 here but 2 elsewhere"),
    "wrong_rank": ({"x": np.zeros((2, 3, 1), np.float32), "ids": np.zeros(2, np.int64)},
                   "input 'x' should have rank 2 (f32[N, 3]), got shape [2, 3, 1]"),
}


def _message(run) -> str:
    with pytest.raises(PnetError) as info:
        run()
    return info.value.message


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_backend_refuses_bad_inputs_with_the_same_message(case):
    graph = load_source(SRC, "m.pnet").graph
    inputs, want = BAD[case]
    module = torch_backend.to_module(graph)
    got = {"numpy": _message(lambda: numpy_ref.run(graph, inputs, {})),
           "torch": _message(lambda: module(**{k: torch.as_tensor(v) for k, v in inputs.items()})),
           "triton": _message(lambda: triton_backend.compile(graph).run(inputs, {}))}
    assert got == {"numpy": want, "torch": want, "triton": want}


def test_triton_refuses_a_missing_input():
    graph = load_source(SRC, "m.pnet").graph
    assert _message(lambda: triton_backend.compile(graph).run({"x": np.zeros((2, 3), np.float32)}, {})) == \
        "missing input: ids"


@pytest.mark.parametrize("backend", ["numpy", "torch", "triton"])
def test_cli_exits_2_on_a_wrong_input_shape(backend, tmp_path):
    src = tmp_path / "m.pnet"
    src.write_text(SRC)
    np.savez(tmp_path / "in.npz", **BAD["wrong_shape"][0])
    r = subprocess.run([sys.executable, "-m", "pnet", "run", str(src), "-b", backend, "-i", str(tmp_path / "in.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert BAD["wrong_shape"][1] in r.stderr
