"""Issue 17 item 16: weight and input files are validated from their headers before any data is read; NaN/Inf
in weights is a one-line warning; a bad PNET_CACHE or cache entry is a usage error; a cache entry is imported
from the bytes whose checksum was verified."""
from __future__ import annotations

import io
import sys
import zipfile

import numpy as np
import pytest

from pnet import weights
from pnet.backends import numpy_ref
from pnet.cli import main
from pnet.dsl.compile import load_source
from pnet.errors import UsageError
from pnet.testing.tolerance import assert_outputs_close

MODEL = "model m() {\n  input x: f32[B, 3]\n  param w: [3, 2] = normal(0, 1)\n  output y = x @ w\n}\n"


@pytest.fixture
def graph():
    return load_source(MODEL, "<m>").graph


def add_header_only_member(path, name, shape, descr="<f4"):
    """A zip member whose .npy header claims `shape` but holds no data (a huge array costs nothing to test)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(name + ".npy", buf.getvalue())


def no_data_reads(monkeypatch):
    monkeypatch.setattr(weights, "_read_data", lambda path: pytest.fail("array data read before validation"))


def test_an_extra_huge_array_is_refused_from_its_header(tmp_path, graph, monkeypatch):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.ones((3, 2), np.float32))
    add_header_only_member(path, "extra", (20000, 20000))
    no_data_reads(monkeypatch)
    with pytest.raises(UsageError, match="unexpected parameter 'extra'"):
        weights.load_params(path, graph)


@pytest.mark.parametrize("shape, descr, message", [
    ((30000, 30000), "<f4", r"parameter 'w' has shape \[30000, 30000\], the model wants \[3, 2\]"),
    ((3, 2), "<f8", "parameter 'w' is float64, the model wants f32"),
])
def test_a_wrong_shape_or_dtype_is_refused_from_its_header(tmp_path, graph, monkeypatch, shape, descr, message):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    add_header_only_member(path, "w", shape, descr)
    no_data_reads(monkeypatch)
    with pytest.raises(UsageError, match=message):
        weights.load_params(path, graph)


def test_object_arrays_are_refused(tmp_path, graph):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    add_header_only_member(path, "w", (3, 2), "|O")
    with pytest.raises(UsageError, match="holds Python objects"):
        weights.load_params(path, graph)


def test_safetensors_headers_are_checked_first(tmp_path, graph, monkeypatch):
    pytest.importorskip("safetensors")
    path = tmp_path / "w.safetensors"
    weights.save_params(path, {"w": np.ones((3, 2), np.float32), "extra": np.zeros((4,), np.float32)})
    assert weights.read_headers(path) == {"w": ((3, 2), np.dtype("float32")), "extra": ((4,), np.dtype("float32"))}
    no_data_reads(monkeypatch)
    with pytest.raises(UsageError, match="unexpected parameter 'extra'"):
        weights.load_params(path, graph)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_valid_files_round_trip_and_run(tmp_path, graph, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    params = numpy_ref.init_params(graph, 5)
    path = tmp_path / f"w{suffix}"
    weights.save_params(path, params)
    loaded = weights.load_params(path, graph)
    assert np.array_equal(loaded["w"], params["w"]) and loaded["w"].dtype == np.float32
    inputs = numpy_ref.random_inputs(graph, 1)
    assert_outputs_close(numpy_ref.run(graph, inputs, loaded), numpy_ref.run(graph, inputs, params),
                         numpy_ref.run(graph, inputs, params, float64=True))


def test_a_file_too_big_for_memory_is_refused_before_reading(tmp_path, graph, monkeypatch):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    add_header_only_member(path, "w", (3, 2))
    monkeypatch.setenv("PNET_MAX_BYTES", "10")
    no_data_reads(monkeypatch)
    with pytest.raises(UsageError, match=r"its arrays need 24 B; the limit is 10 B"):
        weights.load_params(path, graph)


def test_nan_in_weights_is_a_one_line_warning(tmp_path, capsys):
    src, w = tmp_path / "m.pnet", tmp_path / "w.npz"
    src.write_text(MODEL)
    np.savez(w, w=np.array([[1, np.nan], [np.inf, 0], [1, 2]], np.float32))
    assert main(["run", str(src), "--params", str(w), "-o", str(tmp_path / "o.npz")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"pnet: warning: {w}: parameter 'w' has 2 NaN/Inf values"
    assert err[1] == "pnet: warning: output 'y' has 2 NaN and 2 Inf values (of 4)"   # then the outputs it reached


def test_input_files_are_checked_from_headers(tmp_path, capsys, monkeypatch):
    src, inp = tmp_path / "m.pnet", tmp_path / "in.npz"
    src.write_text(MODEL)
    np.savez(inp, x=np.ones((2, 3), np.float32))
    add_header_only_member(inp, "junk", (20000, 20000))
    no_data_reads(monkeypatch)
    assert main(["run", str(src), "-i", str(inp)]) == 2
    assert "unexpected array 'junk'" in capsys.readouterr().err


# ---- the Triton cache ---------------------------------------------------------------------------------------
def run_triton(tmp_path, capsys):
    src = tmp_path / "m.pnet"
    src.write_text(MODEL)
    code = main(["run", str(src), "-b", "triton", "-o", str(tmp_path / "o.npz")])
    return code, capsys.readouterr().err


def test_pnet_cache_pointing_at_a_file_is_a_usage_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.setenv("PNET_CACHE", str(tmp_path / "afile"))
    code, err = run_triton(tmp_path, capsys)
    assert code == 2 and f"PNET_CACHE={tmp_path / 'afile'}" in err and len(err.strip().splitlines()) <= 2, err


def test_a_directory_where_an_entry_should_be_is_a_usage_error(tmp_path, capsys, monkeypatch):
    from pnet.backends import triton as triton_backend
    from pnet.dsl.compile import load_file
    from pnet.passes.manager import run_passes
    monkeypatch.setenv("PNET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m.pnet").write_text(MODEL)
    key = triton_backend.compile(run_passes(load_file(tmp_path / "m.pnet").graph)).key   # what `pnet run` builds
    (tmp_path / "cache" / "triton" / f"pnet_{key}.py").mkdir(parents=True)
    sys.modules.pop(f"pnet_generated_{key}", None)
    code, err = run_triton(tmp_path, capsys)
    assert code == 2 and f"pnet_{key}.py: the Triton cache entry is not a regular file" in err, err


def test_an_entry_changed_after_its_check_is_not_what_runs(tmp_path, monkeypatch, graph):
    """A concurrent writer overwrites the entry between the checksum check and the import: the verified bytes
    run (before: the file was read a second time, and the garbage ran)."""
    from pnet.backends import triton as triton_backend
    from pnet.backends.triton import runtime
    monkeypatch.setenv("PNET_CACHE", str(tmp_path))
    compiled = triton_backend.compile(graph)
    path = runtime.store(compiled.key, compiled.source)
    verified = runtime._verified

    def then_overwritten(p):
        text = verified(p)
        p.write_text("raise RuntimeError('changed under our feet')\n")
        return text

    monkeypatch.setattr(runtime, "_verified", then_overwritten)
    sys.modules.pop(f"pnet_generated_{compiled.key}", None)
    inputs, params = numpy_ref.random_inputs(graph, 0), numpy_ref.init_params(graph, 0)
    got = compiled.run(inputs, params)
    assert_outputs_close(got, numpy_ref.run(graph, inputs, params), numpy_ref.run(graph, inputs, params, float64=True))
    assert path.read_text().startswith("raise")   # the file did change
