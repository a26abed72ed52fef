"""The differential tester's properties over random well-typed programs (pnet.testing.generate), plus the
regression corpus tests/regressions/ (minimal programs the tester found), run on every CI run.

Example counts are fixed and the examples derandomized, so CI sees the same programs every run; set
PNET_FUZZ_SCALE=10 for a ten times longer local run (or use `pnet fuzz --minutes N`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings

from pnet.errors import PnetError
from pnet.testing import fuzz as F
from pnet.testing.generate import OPEN_BUGS, Program, generatable_ops, programs, try_generate_op

SCALE = float(os.environ.get("PNET_FUZZ_SCALE", "1"))
TORCH_MISSING = F.torch_available()
TRITON_MISSING = F.triton_available()
CORPUS_DIR = Path(__file__).resolve().parent / "regressions"
CORPUS = sorted(CORPUS_DIR.glob("*.pnet"))
IR_CORPUS = sorted(CORPUS_DIR.glob("*.ir"))


def examples(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


def reference(prog: Program, graph):
    try:
        return F.reference(graph, prog)
    except F.Discard:
        reject()


# ---- properties over generated programs -------------------------------------------------------------------
@examples(60)
@given(programs())
def test_generated_programs_compile_and_source_round_trips(prog):
    """format -> parse is the same tree, formatting is a fixed point, the formatted source gives the same IR."""
    graph = F.compile_program(prog)
    F.check_source(prog, graph)


@examples(80)
@given(programs())
def test_ir_text_round_trips(prog):
    """print -> parse -> print of the IR is a fixed point; the verifier accepts the parsed graph."""
    F.check_ir(F.compile_program(prog))


@examples(90)
@given(programs())
def test_every_pass_and_pipeline_keeps_the_reference_result(prog):
    """Every pass and every pipeline of the pass manager: verified output, same result within tolerance."""
    graph = F.compile_program(prog)
    F.check_passes(graph, reference(prog, graph))


@examples(80)
@given(programs())
def test_passes_are_idempotent(prog):
    F.check_idempotent(F.compile_program(prog))


@pytest.mark.skipif(TORCH_MISSING is not None, reason=f"torch backend: {TORCH_MISSING}")
@examples(90)
@given(programs())
def test_torch_backend_agrees_with_the_reference(prog):
    """The torch module (float32, and float64 against the float64 reference) matches the NumPy reference."""
    graph = F.compile_program(prog)
    F.check_torch(graph, reference(prog, graph))


@pytest.mark.skipif(TRITON_MISSING is not None, reason=f"triton backend: {TRITON_MISSING}")
@examples(60)
@given(programs())
def test_triton_backend_agrees_with_the_reference(prog):
    """The fused kernel plan and the unfused one (an op per kernel), run under the Triton interpreter (or on a
    GPU), both match the NumPy reference."""
    graph = F.compile_program(prog)
    F.check_triton(graph, reference(prog, graph))


@pytest.mark.skipif(TORCH_MISSING is not None, reason=f"torch backend: {TORCH_MISSING}")
@examples(60)
@given(programs())
def test_lossy_passes_keep_backends_in_agreement(prog):
    """Weight-only quantization and sparsification of a random program's dense layers: the rewritten graph
    verifies, round-trips, and torch and Triton agree with its reference."""
    graph = F.compile_program(prog)
    backends = ("torch",) + (() if TRITON_MISSING else ("triton",))
    F.check_lossy(graph, reference(prog, graph), prog.seed, backends)


@examples(40)
@given(programs())
def test_sizes_that_cannot_fit_are_refused_alike_by_every_backend(prog):
    """A dim of 10**13 is refused before the inputs are drawn; with the memory limit one byte under what the run
    needs, every backend raises the same PnetError from the shapes (never a MemoryError after trying)."""
    graph = F.compile_program(prog)
    backends = ("numpy",) + (() if TORCH_MISSING else ("torch",)) + (() if TRITON_MISSING else ("triton",))
    F.check_memory(prog, graph, reference(prog, graph), backends)


@pytest.mark.skipif(TORCH_MISSING is not None, reason=f"torch backend: {TORCH_MISSING}")
@examples(40)
@given(programs())
def test_gradients_of_generated_programs_agree(prog):
    """The grad property (testing/fuzz_grad.py): the program differentiated by the autodiff pass, run by the
    reference in float64, matches torch.autograd (float64) on the original module, and the Triton backend runs the
    same gradient graph within tolerance. Programs it cannot differentiate (an op without a gradient, ...) are
    rejected, so every example counts."""
    from pnet.testing.fuzz_grad import check_grad
    graph = F.compile_program(prog)
    backends = ("numpy", "torch") + (() if TRITON_MISSING else ("triton",))
    if check_grad(prog, graph, reference(prog, graph), backends) is not None:
        reject()


GRAD_PROGRAM = """model m() {
  input x: f32[3, 4]
  param w: f32[4, 2]
  output y = tanh(x @ w) * 2.0
  output n = argmax(x, axis=-1)
}
"""


def _grad_program(src: str = GRAD_PROGRAM):
    prog = Program(src, seed=3)
    graph = F.compile_program(prog)
    return prog, graph, F.reference(graph, prog)


@pytest.mark.skipif(TORCH_MISSING is not None, reason=f"torch backend: {TORCH_MISSING}")
def test_grad_property_catches_a_wrong_rule(monkeypatch):
    """Not vacuous: a gradient rule off by a factor fails the property against torch.autograd (and Triton runs the
    same wrong gradient graph, so only torch can tell)."""
    from pnet.ir import registry
    from pnet.testing.fuzz_grad import check_grad
    prog, graph, ref = _grad_program()
    assert check_grad(prog, graph, ref, ("numpy", "torch")) is None   # y differentiated, n (an index) not
    tanh = registry.get("tanh")
    rule = tanh.vjp
    monkeypatch.setattr(tanh, "vjp", lambda e, n, cts: [e("mul", [g, e.const(1.5, g.type.dtype)])
                                                        for g in rule(e, n, cts)])
    with pytest.raises(F.PropertyFailed, match="torch disagrees .* also off the kinks"):
        check_grad(prog, graph, ref, ("numpy", "torch"))


def test_grad_property_counts_what_it_cannot_differentiate():
    """An op without a gradient on the path, a program with nothing to differentiate: reasons, not failures."""
    from pnet.testing.fuzz_grad import check_grad
    prog, graph, ref = _grad_program(GRAD_PROGRAM.replace("tanh(x @ w)", "sign(x @ w)"))
    assert check_grad(prog, graph, ref, ("numpy",)) == "sign has no gradient"
    prog, graph, ref = _grad_program("model m() {\n  input x: i32[3]\n  output y = x + 1\n}\n")
    assert check_grad(prog, graph, ref, ("numpy",)) == "no float output"


def test_grad_property_forgives_only_kinks():
    """A disagreement that vanishes once the inputs are moved off the kinks (a relu at exactly 0) is forgiven; one
    that persists fails."""
    import numpy as np
    from pnet.testing import fuzz_grad as G
    prog, graph, ref = _grad_program()
    from pnet.passes.autodiff import grad_graph
    gg = grad_graph(graph, cotangents=["y"], wrt=["x", "w"])
    run = G._Run(graph, gg, ref.inputs, ref.params, {"cotangent.y": np.ones((3, 2))}, {"grad.x": "x", "grad.w": "w"})
    seen = []

    def at_the_kink(r):
        seen.append(r)
        assert r is not run, "one-sided gradients differ"
    G._check(run, 0, "torch", at_the_kink)
    assert len(seen) == 2 and not np.array_equal(seen[1].inputs["x"], run.inputs["x"])

    def everywhere(r):
        raise AssertionError("a wrong rule")
    with pytest.raises(F.PropertyFailed, match="also off the kinks: a wrong rule"):
        G._check(run, 0, "torch", everywhere)


# ---- the generator covers the registry -----------------------------------------------------------------------
def test_every_op_can_be_generated():
    """Every registry op (kinds other than control/source) is generated, by its sampler in
    pnet.testing.generate.TABLE or the generic sampler of its kind, into a program that compiles and whose
    IR holds the op. A newly registered op fails here until one of them can produce it."""
    missing = []
    for op in generatable_ops():
        def has_op(prog, op=op):
            try:
                graph = F.compile_program(prog)
            except F.PropertyFailed:
                return False
            return any(n.op == op for n in graph.walk())
        if try_generate_op(op, seeds=range(60), accept=has_op) is None:
            missing.append(op)
    assert not missing, (f"no way to generate {missing}: give each a sampler in its family's SPECS "
                         "(pnet/testing/generate/samplers/, assembled into TABLE) "
                         "(or make the generic sampler of its kind able to)")


# ---- the regression corpus -------------------------------------------------------------------------------
def _header(text: str, key: str) -> str | None:
    m = re.search(rf"^(?:#|//)\s*{key}:\s*(.*)$", text, re.M)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_regression_corpus(path, request):
    """Each minimal program the tester found runs through every property. `# expect: error`: the front end
    must reject it with a located PnetError; `# expect: no-crash`: success or a located PnetError.
    `# open: ...` marks a bug not fixed yet (a strict xfail: when it passes, delete that line and the file's
    entry in generate.OPEN_BUGS)."""
    text = path.read_text(encoding="utf-8")
    reason = _header(text, "open")
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"open bug: {reason}"))
    prog = Program.from_text(text)
    expect = _header(text, "expect")
    if expect in ("error", "no-crash"):
        from pnet.dsl.compile import load_source
        from pnet.dsl.fmt import format_source
        try:
            format_source(prog.source, str(path))        # the formatter must survive it too
            load_source(prog.source, str(path), overrides=prog.load_overrides())
        except PnetError as err:
            assert err.loc is not None, f"error without a location: {err}"
            return
        assert expect == "no-crash", "the front end accepted a program it must reject"
        return
    backends = ("numpy",) + (() if TORCH_MISSING else ("torch",)) + (() if TRITON_MISSING else ("triton",))
    outcome = F.check_program(prog, backends=backends)
    assert not outcome.discarded, f"regression program no longer runs finitely: {outcome.discarded}"


@pytest.mark.parametrize("path", IR_CORPUS, ids=lambda p: p.stem)
def test_regression_corpus_ir(path, request):
    """IR texts the fuzzer found: parse_graph (and the verifier) succeed or raise a located PnetError
    (`// expect: error`: must raise)."""
    from pnet.ir.text import parse_graph
    from pnet.passes.verify import verify
    text = path.read_text(encoding="utf-8")
    reason = _header(text, "open")
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"open bug: {reason}"))
    try:
        verify(parse_graph(text, str(path)))
    except PnetError as err:
        assert err.loc is not None, f"error without a location: {err}"
        return
    assert _header(text, "expect") != "error", "parse_graph and verify accepted IR they must reject"


def test_open_bugs_name_open_corpus_files():
    """generate.OPEN_BUGS (constructs the generator avoids) lists only bugs whose corpus file is still open."""
    for key, name in OPEN_BUGS.items():
        path = CORPUS_DIR / name
        assert path.is_file(), f"OPEN_BUGS[{key!r}] names {name}, which is not in tests/regressions/"
        assert _header(path.read_text(encoding="utf-8"), "open"), \
            f"{name} is fixed (no `# open:` line): delete OPEN_BUGS[{key!r}] so the generator covers it again"


# ---- the long-run CLI ------------------------------------------------------------------------------------------
def test_fuzz_cli_runs_a_few_programs(tmp_path, capsys):
    from pnet.cli import main
    rc = main(["fuzz", "--minutes", "5", "--max-programs", "4", "--seed", "7", "--out", str(tmp_path / "f"),
               "--backends", "numpy"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert re.search(r"programs: \d+  failures: 0", out.out)


def test_fuzz_cli_rejects_bad_flags():
    from pnet.cli import main
    assert main(["fuzz", "--backends", "numpy,tpu"]) == 2
    assert main(["fuzz", "--minutes", "0"]) == 2
