"""Passes: IR text in, IR text expected out (structurally, as TVM/MLIR test passes), the verifier
after every pass, semantics kept within tolerance on every model, idempotence."""
from __future__ import annotations

import textwrap

import pytest

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_file
from pnet.ir.text import parse_graph, print_graph
from pnet.passes.manager import PASSES, PIPELINES, run_passes
from pnet.passes.verify import VerifyError, verify
from pnet.testing.tolerance import assert_outputs_close

from conftest import model_files, small_config


def ir(text: str) -> str:
    return print_graph(parse_graph(textwrap.dedent(text)))


def apply(name: str, text: str) -> str:
    g = parse_graph(textwrap.dedent(text))
    out = PASSES[name](g)
    verify(out)
    return print_graph(out)


def test_dce_removes_dead_nodes():
    assert apply("dce", """
        graph m(%x: f32[B, 4]) {
          %0 = relu(%x) : f32[B, 4]
          %1 = exp(%x) : f32[B, 4]
          return y=%0
        }""") == ir("""
        graph m(%x: f32[B, 4]) {
          %0 = relu(%x) : f32[B, 4]
          return y=%0
        }""")


def test_cse_merges_identical_nodes():
    assert apply("cse", """
        graph m(%x: f32[B, 4]) {
          %0 = exp(%x) : f32[B, 4]
          %1 = exp(%x) : f32[B, 4]
          %2 = add(%0, %1) : f32[B, 4]
          return y=%2
        }""") == ir("""
        graph m(%x: f32[B, 4]) {
          %0 = exp(%x) : f32[B, 4]
          %1 = add(%0, %0) : f32[B, 4]
          return y=%1
        }""")


def test_cse_keeps_different_attrs_apart():
    text = """
        graph m(%x: f32[B, 4]) {
          %0 = leaky_relu(%x) {alpha=0.1} : f32[B, 4]
          %1 = leaky_relu(%x) {alpha=0.2} : f32[B, 4]
          %2 = add(%0, %1) : f32[B, 4]
          return y=%2
        }"""
    assert apply("cse", text) == ir(text)


def test_fold_evaluates_constant_expressions():
    assert apply("fold", """
        graph m(%x: f32[B, 2]) {
          %0 = const() {value=2.0, dtype="f32", shape=[]} : f32[]
          %1 = sqrt(%0) : f32[]
          %2 = arange() {n=2, dtype="i64"} : i64[2]
          %3 = cast(%2) {dtype="f32"} : f32[2]
          %4 = mul(%x, %1) : f32[B, 2]
          %5 = add(%4, %3) : f32[B, 2]
          return y=%5
        }""") == ir("""
        graph m(%x: f32[B, 2]) {
          %0 = const() {value=2.0, dtype="f32", shape=[]} : f32[]
          %1 = const() {value=1.4142135381698608, dtype="f32", shape=[]} : f32[]
          %2 = const() {value=[0, 1], dtype="i64", shape=[2]} : i64[2]
          %3 = const() {value=[0.0, 1.0], dtype="f32", shape=[2]} : f32[2]
          %4 = mul(%x, %1) : f32[B, 2]
          %5 = add(%4, %3) : f32[B, 2]
          return y=%5
        }""")


def test_canonicalize_drops_identities_and_merges_transposes():
    assert apply("canonicalize", """
        graph m(%x: f32[B, 3, 4]) {
          %0 = cast(%x) {dtype="f32"} : f32[B, 3, 4]
          %1 = transpose(%0) {perm=[0, 2, 1]} : f32[B, 4, 3]
          %2 = transpose(%1) {perm=[0, 2, 1]} : f32[B, 3, 4]
          %3 = reshape(%2) {shape=[dim("B"), 12]} : f32[B, 12]
          %4 = reshape(%3) {shape=[dim("B"), 3, 4]} : f32[B, 3, 4]
          %5 = relu(%4) : f32[B, 3, 4]
          return y=%5
        }""") == ir("""
        graph m(%x: f32[B, 3, 4]) {
          %0 = relu(%x) : f32[B, 3, 4]
          return y=%0
        }""")


def test_verifier_rejects_broken_ir():
    g = parse_graph("graph m(%x: f32[B, 4]) {\n  %0 = relu(%x) : f32[B, 5]\n  return y=%0\n}\n")
    with pytest.raises(VerifyError, match="type rule gives f32"):
        verify(g)
    g = parse_graph("graph m(%x: f32[B, 4]) {\n  %0 = relu(%x) : f32[B, 4]\n  return y=%0\n}\n")
    g.nodes[0].inputs = [g.nodes[0].outputs[0]]
    with pytest.raises(VerifyError, match="used before it is defined"):
        verify(g)


MODELS = model_files()


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_every_pass_keeps_semantics_and_is_idempotent(path):
    graph = load_file(path, overrides=small_config(path)).graph
    inputs = numpy_ref.random_inputs(graph, seed=0)
    params = numpy_ref.init_params(graph, seed=0)
    ref32 = numpy_ref.run(graph, inputs, params)
    ref64 = numpy_ref.run(graph, inputs, params, float64=True)
    pipelines = [[n] for n in PASSES] + [PIPELINES[p] for p in PIPELINES]
    for names in pipelines:
        out = run_passes(graph, names)  # verifies after each pass
        tied = _tied_weights(out)
        if tied:  # the equivariant pass changed the parameters: compare with the original graph at W = theta[orbit]
            p_t = numpy_ref.init_params(out, seed=0)
            full = {**params, **{k: p_t[k][idx] for k, idx in tied.items()}}
            got = numpy_ref.run(out, inputs, p_t)
            assert_outputs_close(got, numpy_ref.run(graph, inputs, full), numpy_ref.run(graph, inputs, full, float64=True))
        else:
            got = numpy_ref.run(out, inputs, params)
            assert_outputs_close(got, ref32, ref64)
        assert print_graph(run_passes(out, names)) == print_graph(out), f"{names} is not idempotent"


def _tied_weights(graph) -> dict:
    """{param name: orbit-index array} for the parameters the equivariant pass tied (read as take(theta, const))."""
    import numpy as np
    from pnet.passes.equivariant import TIED
    params = {p.value: p.name for p in graph.params}
    out = {}
    for n in graph.walk():
        c = n.inputs[1].producer if n.op == "take" and len(n.inputs) > 1 else None
        if n.inputs and n.inputs[0] in params and c is not None and c.op == "const" and any(a.name == TIED for a in c.annotations):
            out[params[n.inputs[0]]] = np.asarray(c.attrs["value"], dtype=np.int64).reshape(c.attrs["shape"])
    return out
