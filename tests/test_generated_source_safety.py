"""Issue 17, item 1: user text (file names, graph names, scopes, dim names) never becomes code in the generated
torch source or Triton module. Each generated file must parse to the same AST (string constants blanked) as the
one generated under plain names -- the hostile text is only inside comments and string constants -- and still run
to the NumPy reference."""
from __future__ import annotations

import ast

import pytest

from pnet.backends import numpy_ref
from pnet.backends import torch_source
from pnet.cli import main
from pnet.dsl.compile import load_file
from pnet.ir.text import parse_graph, print_graph
from pnet.testing import fuzz as F

# newlines, quotes, `#`, triple quotes, backslashes, and the line breaks str.splitlines() knows but Python does not
HOSTILE = [
    'evil\nimport os; os.system("exit 7")\n#',
    '"""\'; raise SystemExit(7) #',
    "back\\slash\\",
    "sep\u2028raise SystemExit(7)\x85x\u2029y",
    "cr\rraise SystemExit(7)\x0b\x0c\x1c\x1d\x1e",
    "uni é ☃",
]

MODEL = """import nn.core
model m() {
  input x: f32[B, 4]
  h = relu(linear(x, 4))
  hs, c = scan(t in 0..3; c = h) {
    c = tanh(c * 0.5 + cast(t, "f32"))
    yield c
  }
  output y = hs
  output c
}
"""


def _reference(graph, seed=0) -> F.Reference:
    inputs = numpy_ref.random_inputs(graph, seed=seed)
    params = numpy_ref.init_params(graph, seed=seed)
    return F.Reference(inputs, params, numpy_ref.run(graph, inputs, params),
                       numpy_ref.run(graph, inputs, params, float64=True))


def _hostile_graph(tmp_path, text: str, source: str = MODEL):
    path = tmp_path / (text.replace("/", "_") + ".pnet")
    path.write_text(source, encoding="utf-8")
    return path, load_file(path).graph


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_torch_source_keeps_hostile_file_names_and_scopes_in_comments(tmp_path, text):
    path, graph = _hostile_graph(tmp_path, text)
    for n in graph.walk():
        n.scope = text   # scopes come from IR text or the API as any string
    graph.name = text    # so does a graph's name (the module docstring)
    F.check_torch_source(graph, _reference(graph))


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_cli_torch_compile_of_a_hostile_file_name_parses_to_the_plain_files_ast(tmp_path, text, capsys):
    path, _ = _hostile_graph(tmp_path, text)
    plain = tmp_path / "plain.pnet"
    plain.write_text(MODEL, encoding="utf-8")
    assert main(["compile", "-b", "torch", str(path), "-o", str(tmp_path / "evil.py")]) == 0
    assert main(["compile", "-b", "torch", str(plain), "-o", str(tmp_path / "plain.py")]) == 0
    evil = (tmp_path / "evil.py").read_text(encoding="utf-8")
    assert F.source_shape(evil) == F.source_shape((tmp_path / "plain.py").read_text(encoding="utf-8"))
    comments = [ln for ln in evil.splitlines() if "evil" in ln or "SystemExit" in ln]
    assert all("#" in ln or '"""' in ln for ln in comments)


@pytest.mark.parametrize("text", HOSTILE[:3], ids=range(3))
def test_triton_compile_of_a_hostile_model_parses_and_runs(tmp_path, text, capsys):
    path, graph = _hostile_graph(tmp_path, text)
    out = tmp_path / "triton"
    assert main(["compile", "-b", "triton", str(path), "-o", str(out)]) == 0
    ast.parse((out / "model.py").read_text(encoding="utf-8"))
    graph.name = text
    F.check_triton(graph, _reference(graph))   # the source-shape check against plain names, then a run


def test_the_shape_check_catches_an_unescaped_comment(tmp_path, monkeypatch):
    """The property has teeth: with comments written raw, the hostile file name becomes a statement."""
    _, graph = _hostile_graph(tmp_path, HOSTILE[0])
    monkeypatch.setattr(torch_source, "comment_text", lambda s: s)
    with pytest.raises(F.PropertyFailed):
        F.check_torch_source(graph, _reference(graph))


DIMS_LIKE_PYTHON = """model m() {
  input x: f32[F, lambda]
  input z: f32[torch, d_F]
  input w: f32[id, self]
  output y = reshape(relu(x) + x, [F * lambda])
  output v = z * 2.0
  output u = sum(w, 0)
}
"""


def test_dims_named_like_python_names_in_every_backend(tmp_path):
    """A dim named F, torch, lambda, id, self or d_F shadowed a module, a builtin or another dim in the torch
    source, and `lambda` broke the IR text parser."""
    _, graph = _hostile_graph(tmp_path, "dims", DIMS_LIKE_PYTHON)
    ref = _reference(graph)
    F.check_torch(graph, ref)     # the module, then the generated source
    F.check_triton(graph, ref)
    again = parse_graph(print_graph(graph))
    assert print_graph(again) == print_graph(graph)


def test_ir_text_round_trips_a_hostile_file_name(tmp_path):
    _, graph = _hostile_graph(tmp_path, HOSTILE[0] + HOSTILE[3])
    text = print_graph(graph)
    again = parse_graph(text)
    assert print_graph(again) == text
    assert {n.loc.file for n in again.walk()} == {n.loc.file for n in graph.walk()}
