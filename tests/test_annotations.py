"""Annotations mean one thing: `@sparse(...)` and `@quantize(...)` take only the specs their passes read, checked
when the file is compiled (a bad spec is a one-line error at the annotation), and free-text labels go in
`@note("...")`, which every pass ignores.

The stdlib sweep runs, for every stdlib model at its `# test:` config, the sparsity pass on its annotations
(`pnet check FILE --sparse annotations`), the quantization pass on its annotations (`pnet quantize FILE`) and
with a whole-model scheme (`pnet quantize FILE --scheme w8`) on the seeded weights. Over the whole stdlib that
takes about 15 s on one core, so it covers every file, not a sample."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_file, load_source
from pnet.errors import PnetError
from pnet.passes.quantize import quantize_model
from pnet.passes.sparsify import sparsify_model

from conftest import ROOT, model_files, small_config

SRC = """model m() {
  input x: f32[2, 8]
  param w: [8, 8] = normal(0, 1)
  y = ANNOT matmul(x, w)
  output y
}
"""


def _first_line(annot: str) -> str:
    with pytest.raises(PnetError) as e:
        load_source(SRC.replace("ANNOT", annot))
    return str(e.value).splitlines()[0]


@pytest.mark.parametrize("annot, first", [
    ('@sparse("banana")',
     "<string>:4:7: error: sparse: cannot read 'banana' (expected N:M like 2:4, block=B,density=D, or density=D)"),
    ('@sparse("5:4")', "<string>:4:7: error: sparse: N=5 exceeds M=4 in 5:4 (keep N of every M)"),
    ('@sparse(density=2.0)', "<string>:4:7: error: sparse: density must be in (0, 1], got 2.0"),
    ('@quantize("x")',
     "<string>:4:7: error: @quantize: unknown scheme 'x' (schemes: w8a8, w8, w4, binary, ternary, or 'none')"),
    ('@quantize("w8", colour="red")',
     "<string>:4:7: error: @quantize: unknown argument 'colour' (arguments: scheme, group_size, act, observer, "
     "percentile)"),
])
def test_bad_annotation_is_a_located_error_at_compile_time(annot, first):
    assert _first_line(annot) == first


def test_bad_annotation_on_a_def_is_an_error_without_running_a_pass():
    src = """@sparse("top-k")
def f(x: [B, i]) -> [B, i] {
  return relu(x)
}
model m() {
  input x: f32[2, 8]
  output y = f(x)
}
"""
    with pytest.raises(PnetError) as e:
        load_source(src)
    assert str(e.value).splitlines()[0].startswith("<string>:1:1: error: sparse: cannot read 'top-k'")


def test_bad_annotation_from_the_cli_is_one_line(tmp_path):
    f = tmp_path / "bad.pnet"
    f.write_text(SRC.replace("ANNOT", '@quantize("uint4")'))
    proc = subprocess.run([sys.executable, "-m", "pnet", "check", str(f)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[0] == (
        f"{f}:4:7: error: @quantize: unknown scheme 'uint4' (schemes: w8a8, w8, w4, binary, ternary, or 'none')")


def test_valid_specs_compile():
    for annot in ('@sparse("2:4")', '@sparse(block=4, density=0.5)', '@sparse(density=0.1)', '@sparse("none")',
                  '@quantize("int8")', '@quantize("w4", group_size=4)', '@quantize(scheme="w8", act="dynamic")',
                  '@quantize("none")'):
        load_source(SRC.replace("ANNOT", annot))


def test_note_is_kept_and_ignored_by_the_passes():
    g = load_source(SRC.replace("ANNOT", '@note("sparse: top-k routing") @note("quantize: uint4")')).graph
    plain = load_source(SRC.replace("ANNOT", "")).graph
    (mm,) = [n for n in g.nodes if n.op == "matmul"]
    assert [a.name for a in mm.annotations] == ["note", "note"]
    assert mm.annotations[0].args == ("sparse: top-k routing",)
    params = numpy_ref.init_params(g, 0)
    # annotation-driven passes: a note selects nothing
    assert sparsify_model(g, params, None).layers == []
    assert quantize_model(g, params, None).layers == []
    # whole-model passes: the same result as without the note
    for run in (lambda gr: sparsify_model(gr, params, "2:4"), lambda gr: quantize_model(gr, params, "w8")):
        a, b = run(g), run(plain)
        x = {"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}
        ya = numpy_ref.run(a.graph, x, params=a.params)["y"]
        yb = numpy_ref.run(b.graph, x, params=b.params)["y"]
        np.testing.assert_array_equal(ya, yb)


STDLIB = [p for p in model_files() if p.is_relative_to(ROOT / "stdlib")]


@pytest.mark.parametrize("path", STDLIB, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_stdlib_annotations_are_read_by_their_passes(path):
    graph = load_file(path, overrides=small_config(path)).graph
    params = numpy_ref.init_params(graph, 0)
    sparsify_model(graph, params, None)      # pnet check FILE --sparse annotations
    quantize_model(graph, params, None)      # pnet quantize FILE (annotated layers only)
    quantize_model(graph, params, "w8")      # pnet quantize FILE --scheme w8


def test_the_quantization_paper_carries_a_real_spec():
    path = ROOT / "stdlib" / "papers" / "quant_mlp_can_ids.pnet"
    graph = load_file(path, overrides=small_config(path)).graph
    r = quantize_model(graph, numpy_ref.init_params(graph, 0), None)
    assert sorted(layer.name for layer in r.layers) == ["head.w", "layers.0.fc.w", "layers.1.fc.w", "layers.2.fc.w"]
