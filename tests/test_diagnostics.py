"""The diagnostics corpus: each tests/errors/*.pnet names, in its first line, the error it must
produce and where (MLIR's expected-error style): `# expect: LINE:COL: message prefix`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pnet.dsl.compile import load_file
from pnet.errors import PnetError

ERRORS = Path(__file__).parent / "errors"
CASES = sorted(p for p in ERRORS.glob("*.pnet") if "skip" not in p.read_text().splitlines()[0])
_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.*)$")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_error_corpus(path):
    m = _EXPECT.match(path.read_text().splitlines()[0])
    assert m, f"{path.name}: first line must be '# expect: LINE:COL: message'"
    line, col, message = int(m.group(1)), int(m.group(2)), m.group(3)
    with pytest.raises(PnetError) as info:
        load_file(path)
    err = info.value
    assert err.message.startswith(message), f"message: {err.message!r}"
    assert err.loc is not None, "error has no location"
    assert (err.loc.line, err.loc.col) == (line, col), f"at {err.loc}, expected {line}:{col}"
    rendered = err.render()
    assert rendered.splitlines()[0] == f"{err.loc}: error: {err.message}"
    assert "^" in rendered, "the source line with a caret is shown"


# ---- call-site notes, syntax-error words (issue 19, item 1) ----
from pnet.dsl.compile import load_source  # noqa: E402
from pnet.errors import MAX_NOTES  # noqa: E402

NESTED = ("def inner(x: [N, 4]) -> [N, 4] {\n  return x @ x\n}\n"
          "def outer(x: [N, 4]) -> [N, 4] {\n  return inner(x)\n}\n"
          "model m() {\n  input x: f32[2, 4]\n  output y = outer(x)\n}\n")


def test_notes_follow_the_caret_innermost_last_and_reach_json():
    with pytest.raises(PnetError) as info:
        load_source(NESTED, "m.pnet")
    err = info.value
    assert [(str(loc), text) for loc, text in err.notes] == [("m.pnet:9:14", "in the call of outer(...)"),
                                                             ("m.pnet:5:10", "in the call of inner(...)")]
    lines = err.render().splitlines()
    assert lines[0] == "m.pnet:2:10: error: matmul: contraction dims differ: f32[2, 4] @ f32[2, 4] (4 vs 2)"
    assert lines[2].strip() == "^" and lines[3:] == ["m.pnet:9:14: note: in the call of outer(...)",
                                                    "m.pnet:5:10: note: in the call of inner(...)"]
    d = err.as_dict()
    assert d["loc"] == {"file": "m.pnet", "line": 2, "col": 10}
    assert d["notes"][0] == {"message": "in the call of outer(...)", "loc": {"file": "m.pnet", "line": 9, "col": 14}}


def test_an_error_at_the_call_itself_gets_no_note():
    src = "def f(x: [N, 4]) -> [N, 4] {\n  return x\n}\nmodel m() {\n  input x: f32[2, 4]\n  output y = f(x, x)\n}\n"
    with pytest.raises(PnetError) as info:
        load_source(src, "m.pnet")
    assert str(info.value) == "m.pnet:6:14: error: f() takes 1 argument, got 2" and info.value.notes == []


def test_a_deep_recursion_shows_both_ends_of_its_call_chain():
    src = ("def f(x: [N, 4], n: int) -> [N, 4] {\n  return f(x, n + 1)\n}\n"
           "model m() {\n  input x: f32[2, 4]\n  output y = f(x, 0)\n}\n")
    with pytest.raises(PnetError) as info:
        load_source(src, "m.pnet")
    notes = [ln for ln in info.value.render().splitlines() if "note:" in ln]
    assert len(info.value.notes) > MAX_NOTES and len(notes) == MAX_NOTES + 1
    assert "more calls" in notes[MAX_NOTES // 2] and notes[0] == "m.pnet:6:14: note: in the call of f(...)"


@pytest.mark.parametrize("source", [
    "model m() {\n  y = x x\n}\n", "model m() {\n  y = (x +\n  output y\n}\n", "model m() {\n  y = x +* 2\n}\n",
    "model m( {\n}\n", "def f(x: [4]) - [4] {\n}\n", "model m() {\n for i in 0 1 {\n }\n}\n",
    "model m() {\n  input x f32[2]\n}\n", "import\n", "model m() {\n  y = [1, 2\n}\n",
])
def test_syntax_errors_name_no_grammar_terminals(source):
    with pytest.raises(PnetError) as info:
        load_source(source, "m.pnet")
    msg = info.value.message
    assert msg.startswith("syntax error: unexpected ")
    assert not re.search(r"\b[A-Z][A-Z_]+\b|_op\b|_NL|__ANON|\$END", msg), msg
