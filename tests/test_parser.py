"""Parser and formatter: print -> parse gives the same tree; formatting is idempotent."""
from __future__ import annotations

import pytest

from pnet.dsl.fmt import format_source
from pnet.dsl.parser import parse

from conftest import pnet_files

ALL = pnet_files("examples", "stdlib", "tests/errors")
PARSEABLE = [p for p in ALL if "syntax" not in p.name and "eof" not in p.name]


@pytest.mark.parametrize("path", PARSEABLE, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_format_round_trip(path):
    src = path.read_text()
    tree = parse(src, str(path))
    once = format_source(src, str(path))
    assert parse(once, str(path)) == tree, "formatting changed the program"
    assert format_source(once, str(path)) == once, "formatting is not idempotent"
    # comments survive formatting
    assert [c for _, _, c in parse(once).comments] == [c for _, _, c in tree.comments]


def test_stdlib_and_examples_are_formatted():
    bad = [str(p) for p in pnet_files("examples", "stdlib") if format_source(p.read_text(), str(p)) != p.read_text()]
    assert not bad, f"run `pnet fmt -w` on: {bad}"


SNIPPETS = [
    "model m() {\n  input x: f32[B, 4]\n  output y = -x ** 2 + (1 - x) * 3\n}\n",
    "model m() {\n  input x: f32[B, 4]\n  y = x if true else -x\n  output y\n}\n",
    "def f(x: [..., i], n: int = 2 * 3, g: fn = relu) -> ([..., i], [..., i]) {\n  return g(x), x\n}\n",
    "model m(a: float = 1e-05, s: str = \"q\\\"uote\") {\n  input x: i64[B]\n  output y = x % 3\n}\n",
    "model m() {\n  input x: f32[B, T, 4]\n  hs, h = scan(xt in x along 1, i in 0..3; h = zeros([B, 4])) {\n    h = h + xt\n    yield h\n  }\n  output hs\n}\n",
    "model m() {\n  input x: f32[B, 4]\n  y = @quantize(\"int8\", axis=0) relu(x) as act\n  @sparse(\"2:4\") z = x\n  output y\n}\n",
    "model m() {\n  input x: f32[B, 4]\n  y[b, i] = max(j) x[b, j] * x[b, i]\n  tie \"a\" = \"b\"\n  output y\n}\n",
]


@pytest.mark.parametrize("src", SNIPPETS)
def test_snippets_round_trip(src):
    out = format_source(src)
    assert parse(out) == parse(src)
    assert format_source(out) == out


def test_if_else_chain_and_comments_kept():
    src = ("# head\nmodel m(k: int = 1) {\n  input x: f32[B, 4]  # trailing\n  if k == 1 {\n    y = x\n"
           "  } else if k == 2 {\n    # inner\n    y = -x\n  } else {\n    y = x * 2\n  }\n  output y\n}\n")
    out = format_source(src)
    assert out == src
