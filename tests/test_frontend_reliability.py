"""Issue 17 (front end): line numbers counted as the lexer counts them, a byte-order mark accepted by every reader,
nesting errors located, and no exit 3 for huge literals, reversed scan ranges, duplicate names or foreign imports."""
from __future__ import annotations

import pytest

from pnet.cli import main
from pnet.dsl.compile import load_file, load_source
from pnet.dsl.fmt import format_source
from pnet.errors import PnetError, source_lines

# str.splitlines() splits at all of these; the lexer (and so every reported line) only at \n
SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]

BAD_NAME = "model m() {{\n  # one{sep}two{sep}three\n  input x: f32[B, 4]\n  output y = relu(x) + zz\n}}\n"
BAD_SYNTAX = "model m() {{\n  # one{sep}two{sep}three\n  input x: f32[B, 4]\n  output y = relu(x) +* x\n}}\n"


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
@pytest.mark.parametrize("template, col", [(BAD_NAME, 24), (BAD_SYNTAX, 23)], ids=["elaborate", "syntax"])
def test_separators_in_a_comment_do_not_move_the_caret(tmp_path, capsys, sep, template, col):
    source = template.format(sep=sep)
    with pytest.raises(PnetError) as info:
        load_source(source, "m.pnet")
    assert (info.value.loc.line, info.value.loc.col) == (4, col)
    assert info.value.source_line == "  output y = " + source.split("output y = ")[1].split("\n")[0]
    path = tmp_path / "m.pnet"
    path.write_bytes(source.encode("utf-8"))   # no newline translation: a lone \r stays inside the comment
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:4:{col}: error:")
    assert err[1].strip().startswith("output y = relu(x)")
    assert err[2].index("^") == err[1].index("output") + col - 3


def test_source_lines_split_at_newline_only():
    assert source_lines("a\x0bb\nc\r\nd\re\x85\u2028f\n") == ["a\x0bb", "c", "d\re\x85\u2028f"]


BOM_MODEL = "\ufeffimport nn.core\nmodel m() {\n  input x: f32[B, 4]\n  output y = linear(x, 3)\n}\n"


def test_a_byte_order_mark_is_skipped_by_every_reader(tmp_path, capsys):
    lib = tmp_path / "lib.pnet"
    lib.write_text("\ufeffdef twice(x: [..., d]) -> [..., d] {\n  return x * 2.0\n}\n", encoding="utf-8")
    main_file = tmp_path / "m.pnet"
    main_file.write_text('\ufeffimport "lib.pnet"\nmodel m() {\n  input x: f32[B, 4]\n  output y = twice(x)\n}\n',
                         encoding="utf-8")
    assert load_file(main_file).graph.name == "m"                  # CLI load and the import
    assert main(["check", str(main_file)]) == 0
    plain = format_source(BOM_MODEL, "m.pnet")
    assert not plain.startswith("\ufeff") and plain == format_source(plain, "m.pnet")
    bom = tmp_path / "bom.pnet"
    bom.write_text(BOM_MODEL, encoding="utf-8")
    assert main(["fmt", "--check", str(bom)]) == 1                 # fmt drops the mark: --check says so ...
    assert main(["fmt", "-w", str(bom)]) == 0
    assert bom.read_text(encoding="utf-8") == plain                # ... and -w removes it
    assert main(["fmt", "--check", str(bom)]) == 0


def test_a_byte_order_mark_keeps_line_one_columns(tmp_path, capsys):
    path = tmp_path / "m.pnet"
    path.write_text("\ufeffmodel m() { input x: f32[4]; output y = x + zz }\n", encoding="utf-8")
    assert main(["check", str(path)]) == 2
    assert f"{path}:1:45: error: unknown name 'zz'" in capsys.readouterr().err


@pytest.mark.parametrize("body, line, col", [
    ("  y = " + "relu(" * 3000 + "x" + ")" * 3000, 3, None),      # deepest call: somewhere on line 3
    ("  y = " + "-" * 30000 + "x", 3, 3),                          # an operator chain: the statement
    ("  y = x\n" + "  if true {\n" * 700 + "  y = y\n" + "  }\n" * 700, None, None),
], ids=["calls", "unary", "blocks"])
def test_nesting_too_deep_is_located_at_the_expression(body, line, col):
    source = "model m() {\n  input x: f32[B, 4]\n" + body + "\n  output y\n}\n"
    with pytest.raises(PnetError) as info:
        load_source(source, "deep.pnet")
    err = info.value
    assert "nest" in err.message and err.loc is not None
    assert err.loc.line > 2, "reported at the file's start, not at the nesting"
    if line is not None:
        assert err.loc.line == line
    if col is not None:
        assert err.loc.col == col
    assert err.source_line is not None


@pytest.mark.parametrize("source, where, message", [
    ("model m() {\n  input x: f32[4]\n  output y = x * " + "9" * 5000 + "\n}\n", (3, 18), "integer literal of 5000"),
    ("model m() {\n  input x: f32[4]\n  hs, c = scan(t in 5..2; c = x) {\n    c = c + 1.0\n    yield c\n  }\n"
     "  output hs\n}\n", (3, 16), "scan range 5..2 is reversed"),
    ("model m() {\n  input x: f32[T, 4]\n  hs, c = scan(t in 3..T; c = x[0, :]) {\n    c = c + 1.0\n    yield c\n"
     "  }\n  output hs\n}\n", (3, 16), "scan range 3..T may be reversed"),
    ("model m() {\n  input x: f32[4]\n  output y = x\n}\nmodel m() {\n  input x: f32[4]\n  output y = x\n}\n",
     (5, 1), "model 'm' is already defined"),
    ('import "../../../../../../../../etc/passwd"\nmodel m() {\n  input x: f32[4]\n  output y = x\n}\n', (1, 1),
     'import "../../../../../../../../etc/passwd": imports name .pnet files only'),
], ids=["huge_int", "reversed_scan", "maybe_reversed_scan", "duplicate_model", "foreign_import"])
def test_front_end_errors_are_located_exit_2(tmp_path, capsys, source, where, message):
    path = tmp_path / "m.pnet"
    path.write_text(source, encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{where[0]}:{where[1]}: error: {message}"), err[:300]
    assert "root:" not in err   # nothing of a foreign file is echoed


def test_an_import_through_a_symlink_to_a_foreign_file_is_refused(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET LINE\n")
    (tmp_path / "lib.pnet").symlink_to(secret)
    path = tmp_path / "m.pnet"
    path.write_text('import "lib.pnet"\nmodel m() {\n  input x: f32[4]\n  output y = x\n}\n')
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "imports name .pnet files only" in err and "SECRET" not in err


def test_an_empty_scan_range_gives_the_initial_carry_and_empty_stacks():
    source = ("model m() {\n  input x: f32[B, 3]\n  hs, c = scan(t in 2..2; c = x) {\n    c = c + 1.0\n    yield c\n"
              "  }\n  output hs\n  output c\n}\n")
    g = load_source(source, "m.pnet", overrides={"B": 2}).graph
    from pnet.backends import numpy_ref
    x = numpy_ref.random_inputs(g, seed=0)
    out = numpy_ref.run(g, x, {})
    assert out["hs"].shape == (0, 2, 3)
    assert (out["c"] == x["x"]).all()
