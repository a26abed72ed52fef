"""The CLI contract: commands, JSON fields, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
MODEL = """model tiny(width: int = 8, act: fn = relu) {
  input x: f32[B, 4]
  param w: [4, width] = normal(0, 0.5)
  output y = act(x @ w)
}
"""


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "tiny.pnet"
    p.write_text(MODEL)
    return p


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_text_and_json(model, capsys):
    code, out, _ = run_cli(capsys, "check", model)
    assert code == 0 and "model tiny: ok" in out and "params 32" in out
    code, out, _ = run_cli(capsys, "check", model, "--json", "--set", "width=3", "--set", "B=5")
    info = json.loads(out)
    assert code == 0
    assert info["inputs"] == [{"name": "x", "dtype": "f32", "shape": ["B", 4]}]
    assert info["outputs"][0]["shape"] == ["B", 3]
    assert info["params"] == 12
    assert info["flops"] == 2 * 5 * 4 * 3 + 5 * 3  # matmul + relu at B=5
    assert info["dims"] == {"B": 5}


def test_show_params_and_ir(model, capsys):
    code, out, _ = run_cli(capsys, "show", model, "--params")
    assert code == 0 and out.split()[:2] == ["w", "f32[4,"]
    code, out, _ = run_cli(capsys, "show", model, "--params", "--json")
    assert json.loads(out) == [{"name": "w", "shape": [4, 8], "dtype": "f32", "init": "normal(0, 0.5)", "state": False}]
    code, out, _ = run_cli(capsys, "show", model, "--after", "fold")
    assert code == 0 and out.startswith("graph tiny(%x: f32[B, 4])")


def test_run_writes_outputs_and_is_seeded(model, tmp_path, capsys):
    o1, o2 = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run_cli(capsys, "run", model, "--seed", "3", "-o", o1)[0] == 0
    assert run_cli(capsys, "run", model, "--seed", "3", "-o", o2, "--set", "act=gelu")[0] == 0
    a, b = np.load(o1), np.load(o2)
    assert a["y"].shape == (2, 8) and np.all(a["y"] >= 0)
    assert not np.allclose(a["y"], b["y"])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_run_on_every_backend_matches_numpy(model, backend, tmp_path, capsys):
    ref, out = tmp_path / "ref.npz", tmp_path / f"{backend}.npz"
    assert run_cli(capsys, "run", model, "--seed", "2", "-o", ref)[0] == 0
    code, _, err = run_cli(capsys, "run", model, "--seed", "2", "-o", out, "-b", backend)
    assert code == 0, err
    np.testing.assert_allclose(np.load(out)["y"], np.load(ref)["y"], rtol=1e-5, atol=1e-5)


def test_run_with_inputs_and_params(model, tmp_path, capsys):
    x = np.ones((3, 4), np.float32)
    w = np.full((4, 8), 0.25, np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    np.savez(tmp_path / "w.npz", w=w)
    code, _, err = run_cli(capsys, "run", model, "-i", tmp_path / "in.npz", "--params", tmp_path / "w.npz", "-o", tmp_path / "o.npz")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], np.ones((3, 8)))


@pytest.mark.parametrize("argv, message", [
    (["check", "{model}", "--set", "width"], "--set width: expected KEY=VALUE"),
    (["check", "{model}", "--set", "width=x"], "--set width=x: expected int"),
    (["check", "{model}", "--set", "nope=1"], "--set nope=1: model 'tiny' has no hyperparameter or dim named 'nope'"),
    (["check", "{model}", "--set", "B=-1"], "--set B=-1: dim 'B' needs a non-negative integer"),
    (["check", "{model}", "--set", "act=nothing"], "unknown name 'nothing'"),
    (["check", "{model}", "--passes", "bogus"], "unknown pass 'bogus'"),
    (["run", "{model}", "-i", "{tmp}/missing.npz"], "missing.npz: no such file"),
    (["run", "{model}", "-i", "{tmp}/garbage.npz"], "garbage.npz: not a readable .npz file"),
    (["run", "{model}", "--params", "{tmp}/wrong.npz"], "wrong.npz: parameter 'w' has shape [4, 4], the model wants [4, 8]"),
    (["run", "{model}", "-b", "tpu"], "argument -b/--backend: invalid choice: 'tpu'"),
    (["check", "{tmp}/nothere.pnet"], "no such file"),
    (["frobnicate"], "pnet: argument command: invalid choice"),
])
def test_usage_errors_are_one_line_exit_2(model, tmp_path, capsys, argv, message):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    np.savez(tmp_path / "wrong.npz", w=np.zeros((4, 4), np.float32))
    argv = [a.format(model=model, tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) in (1, 3)  # one line, plus source line and caret when located


def test_source_error_shows_caret(tmp_path, capsys):
    bad = tmp_path / "bad.pnet"
    bad.write_text("model m() {\n  input x: f32[B, 4]\n  output y = x @ x\n}\n")
    code, _, err = run_cli(capsys, "check", bad)
    lines = err.splitlines()
    assert code == 2
    assert lines[0].startswith(f"{bad}:3:14: error: matmul: contraction dims differ")
    assert lines[1].strip() == "output y = x @ x" and lines[2].strip() == "^"


def test_fmt_check_and_write(tmp_path, capsys):
    p = tmp_path / "m.pnet"
    p.write_text("model m( ) { input x: f32[B,4]; output y = x*2 }\n")
    assert run_cli(capsys, "fmt", p, "--check")[0] == 1
    assert run_cli(capsys, "fmt", p, "-w")[0] == 0
    assert run_cli(capsys, "fmt", p, "--check")[0] == 0
    assert p.read_text() == "model m() {\n  input x: f32[B, 4]\n  output y = x * 2\n}\n"


def test_stdlib_list_and_path(capsys):
    code, out, _ = run_cli(capsys, "stdlib", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and rows
    name = rows[0]["name"]
    code, out, _ = run_cli(capsys, "stdlib", "path", name)
    assert code == 0 and Path(out.strip()).is_file()
    assert run_cli(capsys, "stdlib", "path", "no_such_model")[0] == 2


def test_console_entry_point_runs_as_module(model):
    proc = subprocess.run([sys.executable, "-m", "pnet", "check", str(model)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "model tiny: ok" in proc.stdout
