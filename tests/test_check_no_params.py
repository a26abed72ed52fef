"""`pnet check` counts parameters from their types: it never makes one (issue 25 item 2), so the 7B LLaMA in the
stdlib checks in about a second. Deterministic: every way to materialise parameters raises here."""
from pathlib import Path

import pytest

from pnet.backends import numpy_ref
from pnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_params(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pnet check materialised parameters")
    monkeypatch.setattr(numpy_ref, "init_params", refuse)
    monkeypatch.setattr(numpy_ref, "init_param", refuse)
    import pnet.weights
    monkeypatch.setattr(pnet.weights, "load_params", refuse)


@pytest.mark.parametrize("extra", [[], ["--json"], ["--set", "B=1", "--set", "T=2048"]])
def test_check_of_llama_7b_makes_no_parameter(no_params, capsys, extra):
    assert main(["check", str(ROOT / "stdlib" / "backbones" / "llama.pnet"), *extra]) == 0
    out = capsys.readouterr().out
    assert "6,738,415,616" in out or "6738415616" in out   # LLaMA-7B's published parameter count
