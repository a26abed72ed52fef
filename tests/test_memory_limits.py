"""Issue 17 items 13 and 12 (folding): sizes are checked from the shapes before anything is allocated, on every
backend and in `pnet check`, with a one-line error naming the tensor; constant folding never materialises a
large constant; random inputs and parameters are drawn straight into their own dtype."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pnet.backends import memory, numpy_ref
from pnet.cli import main
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.passes.manager import run_passes
from pnet.testing.tolerance import assert_outputs_close

DENSE = """model dense(hidden: int = 8) {
  input x: f32[B, 4]
  param w: [4, hidden] = normal(0, 1)
  output y = x @ w
}
"""
BIG_PARAM = """model bigp() {
  input x: f32[B, 4]
  param w: [4, 1000000000000] = normal(0, 1)
  output y = x @ w
}
"""


def cli(tmp_path, capsys, source, *argv):
    path = tmp_path / "m.pnet"
    path.write_text(source)
    code = main([argv[0], str(path), *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend", ["numpy", "torch", "triton"])
@pytest.mark.parametrize("argv, named", [
    (["--set", "B=1000000000000"], "input x of shape [1000000000000, 4] f32 needs 16.0 TB"),
    (["--set", "hidden=1000000000"], "parameter w of shape [4, 1000000000] f32 needs 16.0 GB"),
], ids=["huge-dim", "huge-hyperparameter"])
def test_run_refuses_before_allocating(tmp_path, capsys, monkeypatch, backend, argv, named):
    monkeypatch.setenv("PNET_MAX_BYTES", "1G")
    code, _, err = cli(tmp_path, capsys, DENSE, "run", "-b", backend, *argv, "-o", str(tmp_path / "o.npz"))
    assert code == 2, err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and named in line[0] and "the limit is 1.0 GB (set PNET_MAX_BYTES" in line[0], err


def test_a_huge_parameter_is_refused_by_default_and_counted_by_check(tmp_path, capsys, monkeypatch):
    code, _, err = cli(tmp_path, capsys, BIG_PARAM, "run")
    assert code == 2 and "m.pnet:3:3: error: parameter w of shape [4, 1000000000000] f32 needs 16.0 TB" in err
    monkeypatch.setattr(numpy_ref, "init_param", lambda *a, **k: pytest.fail("check allocated a parameter"))
    code, out, _ = cli(tmp_path, capsys, BIG_PARAM, "check")
    assert code == 0 and "params 4,000,000,000,000" in out


def test_an_intermediate_value_too_big_is_refused_on_every_backend(monkeypatch):
    """Inputs and params fit, the product does not: the same located error from numpy, torch and triton."""
    from pnet.backends import run as run_backend
    g = load_source("model m() {\n  input a: f32[B, 1]\n  input b: f32[1, B]\n  output y = a @ b\n}\n", "<m>").graph
    inputs = {"a": np.ones((1000, 1), np.float32), "b": np.ones((1, 1000), np.float32)}
    monkeypatch.setenv("PNET_MAX_BYTES", "1M")
    errors = set()
    for backend in ("numpy", "torch", "triton"):
        with pytest.raises(PnetError) as e:
            run_backend(backend, g, inputs, {})
        errors.add(e.value.render())
    assert len(errors) == 1
    assert "<m>:4:14: error: the result of matmul of shape [1000, 1000] f32 needs 4.0 MB" in errors.pop()


def test_a_bad_limit_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PNET_MAX_BYTES", "lots")
    code, _, err = cli(tmp_path, capsys, DENSE, "run")
    assert code == 2 and "PNET_MAX_BYTES='lots'" in err


def test_limit_units():
    for raw, want in [("123", 123), ("2K", 2000), ("1.5G", 1_500_000_000), ("1e9", 10**9), ("4GB", 4 * 10**9)]:
        with pytest.MonkeyPatch.context() as m:
            m.setenv("PNET_MAX_BYTES", raw)
            assert memory.max_bytes() == want, raw


# ---- drawing in the tensor's own dtype -----------------------------------------------------------------------
def test_draws_are_chunked_into_the_dtype_with_the_same_values(monkeypatch):
    g = load_source("model m() {\n  input x: f32[5, 7]\n  input k: i32[9]\n  param w: [6, 5] = normal(0.5, 2)\n"
                    "  param u: [13] = uniform(-1, 1)\n  output y = x\n  output z = k\n}\n", "<m>").graph
    whole = numpy_ref.random_inputs(g, 3), numpy_ref.init_params(g, 3)
    monkeypatch.setattr(numpy_ref, "_CHUNK", 4)   # many chunks: the generator's stream must not change
    chunked = numpy_ref.random_inputs(g, 3), numpy_ref.init_params(g, 3)
    for a, b in zip(whole, chunked):
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert chunked[0]["x"].dtype == np.float32 and chunked[1]["w"].dtype == np.float32


def test_a_param_is_drawn_without_a_float64_copy(monkeypatch):
    monkeypatch.setattr(numpy_ref, "_CHUNK", 1 << 16)   # float64 scratch: 0.5 MB a chunk
    g = load_source("model m() {\n  input x: f32[4]\n  param w: [1000, 1000] = normal(0, 1)\n  output y = x\n}\n",
                    "<m>").graph
    tracemalloc.start()
    try:
        w = numpy_ref.init_params(g, 0)["w"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.dtype == np.float32
    assert peak < 1.25 * w.nbytes, peak   # a float64 draw first would peak at 3x (8 + 4 bytes an element)


# ---- constant folding ------------------------------------------------------------------------------------------
def test_check_does_not_fold_a_huge_constant(tmp_path, capsys):
    src = "model f() {\n  input x: f32[B, 4]\n  output y = x + sum(zeros([100000, 100000, 100000]))\n}\n"
    tracemalloc.start()
    try:
        code, out, err = cli(tmp_path, capsys, src, "check")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert peak < 50_000_000, peak


def test_elementwise_ops_of_fills_fold_to_a_fill():
    """ones([300, 400]) * 2 + 1 is a fill of 3.0 (no array); its sum, too big to fold, stays an op; same result."""
    src = "model f() {\n  input x: f32[B, 400]\n  output y = x + sum(ones([300, 400]) * 2.0 + 1.0, axis=0)\n}\n"
    g = load_source(src, "<f>").graph
    folded = run_passes(g)
    fills = [n for n in folded.nodes if n.op == "const" and list(n.attrs["shape"]) == [300, 400]]
    assert len(fills) == 1 and fills[0].attrs["value"] == 3.0
    assert [n.op for n in folded.nodes if n.op != "const"] == ["sum", "add"]
    inputs = numpy_ref.random_inputs(g, 0)
    assert_outputs_close(numpy_ref.run(folded, inputs), numpy_ref.run(g, inputs),
                         numpy_ref.run(g, inputs, float64=True))
