"""torch.compile of a pnet module compiles once (issue 25 item 3): the per-shape plan cache is not traced, so
Dynamo puts no guard on it that the first call's insertion breaks. A counting backend (no Inductor, no C++)."""
from pathlib import Path

import pytest
import torch

from pnet.api import load
from pnet.errors import ShapeError

ROOT = Path(__file__).resolve().parents[1]
dynamo = pytest.importorskip("torch._dynamo")


@pytest.fixture
def counting():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    dynamo.reset()
    yield backend, graphs
    dynamo.reset()


def _module():
    return load(ROOT / "examples" / "mlp.pnet", hidden=8, depth=1).torch_module()


def _inputs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 64, generator=g), torch.randint(0, 10, (b,), generator=g)


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k])


@pytest.mark.parametrize("fullgraph", [False, True])
def test_same_shapes_compile_once(counting, fullgraph):
    backend, graphs = counting
    m = _module()
    compiled = torch.compile(m, backend=backend, fullgraph=fullgraph)
    for seed in range(3):
        x, labels = _inputs(3, seed)
        _assert_same(compiled(x, labels), m(x, labels))
    assert len(graphs) == 1


def test_a_new_batch_size_compiles_once_more_and_old_ones_are_reused(counting):
    backend, graphs = counting
    m = _module()
    compiled = torch.compile(m, backend=backend)
    for b in (3, 3, 5, 5, 3, 5):
        x, labels = _inputs(b)
        _assert_same(compiled(x, labels), m(x, labels))
    assert len(graphs) == 2   # one per batch size, no graph break (a plan is per concrete shape)


def test_shape_errors_under_compile_are_the_eager_ones(counting):
    backend, _ = counting
    compiled = torch.compile(_module(), backend=backend)
    x, labels = _inputs(3)
    compiled(x, labels)
    with pytest.raises(ShapeError, match="dim B is 4 here but 3 elsewhere"):
        compiled(x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ShapeError, match=r"input 'x' should have shape \[3, 64\]"):
        compiled(torch.zeros(3, 65), labels)
