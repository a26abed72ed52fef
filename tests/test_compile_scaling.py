"""Issue 17 item 15: passes stay near-linear in the graph's size. No wall clock: the tests count work that is
deterministic -- the nodes `Uses.replace` visits -- and check it grows with the program, not its square.
(benchmarks/bench_compile_scaling.py times the stages.)"""
from __future__ import annotations

import numpy as np
import pytest

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_source
from pnet.ir import graph as G
from pnet.passes import cleanup
from pnet.testing.tolerance import assert_outputs_close


def loop_program(n: int) -> str:
    """n iterations, each with a repeated subexpression (CSE merges one node per iteration)."""
    return ("model m() {\n  input x: f32[B, 4]\n  h = x\n"
            f"  for i in 0..{n} {{ h = tanh(h) * 0.5 + tanh(h) * 0.25 }}\n  output y = h\n}}\n")


def chain_program(n: int) -> str:
    """n identity casts and transpose pairs for canonicalize to drop."""
    body = "".join(f"  h = transpose(transpose(cast(h, \"f32\"), [1, 0]), [1, 0]) + x\n" for _ in range(n))
    return f"model m() {{\n  input x: f32[3, 4]\n  h = x\n{body}  output y = h\n}}\n"


@pytest.fixture
def counted(monkeypatch):
    """Every Uses built while the fixture is active, to sum their visits afterwards."""
    made = []

    class Counting(G.Uses):
        def __init__(self, graph):
            super().__init__(graph)
            made.append(self)

    monkeypatch.setattr(cleanup, "Uses", Counting)
    return made


def test_replace_visits_only_the_readers():
    g = load_source(loop_program(50), "<t>").graph
    uses = G.Uses(g)
    x = g.inputs[0][1]
    readers = [n for n in g.nodes if x in n.inputs]
    new = G.Value(x.type)
    uses.replace(x, new)
    assert uses.visits == len(readers) == 2 < len(g.nodes) // 50   # the two tanh(x), of hundreds of nodes
    assert all(x not in n.inputs for n in g.nodes) and new in readers[0].inputs


@pytest.mark.parametrize("make, pass_", [(loop_program, cleanup.cse), (chain_program, cleanup.canonicalize)],
                         ids=["cse", "canonicalize"])
def test_pass_work_is_linear_in_program_size(counted, make, pass_):
    work = []
    for n in (100, 200, 400):
        counted.clear()
        g = load_source(make(n), "<t>").graph
        out = pass_(g)
        work.append(sum(u.visits for u in counted))
        assert len(out.nodes) < len(g.nodes)   # the pass did merge / drop nodes
    # linear: a*n + b, so doubling n doubles the increment; O(k * n) would grow 4x per doubling
    assert 0 < work[0] <= 4 * 100 and work[2] - work[1] == 2 * (work[1] - work[0]), work


@pytest.mark.parametrize("make", [loop_program, chain_program], ids=["loop", "chain"])
def test_cleanup_keeps_the_result(make):
    from pnet.passes.manager import run_passes
    g = load_source(make(30), "<t>").graph
    inputs = numpy_ref.random_inputs(g, seed=3)
    want32, want64 = numpy_ref.run(g, inputs), numpy_ref.run(g, inputs, float64=True)
    got = numpy_ref.run(run_passes(g), inputs)
    assert_outputs_close(got, want32, want64)
    assert np.isfinite(got["y"]).all()


def test_ties_are_applied_once_each():
    """Ties now go through one Uses (a full scan per tie before): every tied use reads the source."""
    params = "".join(f"  param w{i}: [4] = normal(0, 1)\n  h = h * w{i}\n" for i in range(6))
    ties = "".join(f'  tie "w{i}" = "w0"\n' for i in range(1, 6))
    g = load_source(f"model m() {{\n  input x: f32[4]\n  h = x\n{params}  output y = h\n{ties}}}\n", "<t>").graph
    assert [p.name for p in g.params] == ["w0"]
    w0 = g.params[0].value
    assert sum(n.inputs.count(w0) for n in g.nodes) == 6
