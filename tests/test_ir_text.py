"""IR text form: print -> parse -> print is a fixed point, and the verifier accepts the result."""
from __future__ import annotations

import pytest

from pnet.dsl.compile import load_file
from pnet.ir.text import parse_graph, print_graph
from pnet.passes.manager import run_passes
from pnet.passes.verify import verify

from conftest import model_files, small_config


@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_ir_round_trip(path):
    graph = load_file(path, overrides=small_config(path)).graph
    for g in (graph, run_passes(graph)):
        text = print_graph(g)
        again = parse_graph(text)
        verify(again)
        assert print_graph(again) == text
