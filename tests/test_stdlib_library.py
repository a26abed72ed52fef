"""The stdlib is a library, not a folder of copies: a block of code shared by two stdlib files lives once, in
`nn/` or a backbone, and the files import it. The test finds every window of WINDOW consecutive code lines
(stripped; blank and `#` comment lines skipped) that appears in two different stdlib `.pnet` files."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from conftest import ROOT

STDLIB = ROOT / "stdlib"
WINDOW = 8


def _code_lines(path: Path) -> list[tuple[int, str]]:
    out = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append((no, s))
    return out


def repeated_blocks(root: Path = STDLIB, window: int = WINDOW) -> list[tuple[str, int, str, int, str]]:
    """(file a, line in a, file b, line in b, first code line) for each pair of files sharing a window of
    `window` code lines; one entry per pair (its first shared window)."""
    seen: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for path in sorted(root.rglob("*.pnet")):
        rel = str(path.relative_to(root))
        lines = _code_lines(path)
        for i in range(len(lines) - window + 1):
            key = tuple(s for _, s in lines[i:i + window])
            where = seen[key]
            if not where or where[-1][0] != rel:
                where.append((rel, lines[i][0]))
    pairs: dict[tuple[str, str], tuple[str, int, str, int, str]] = {}
    for key, where in seen.items():
        for j in range(len(where)):
            for k in range(j + 1, len(where)):
                (fa, la), (fb, lb) = where[j], where[k]
                if fa == fb:
                    continue
                pair = tuple(sorted((fa, fb)))
                hit = (fa, la, fb, lb, key[0])
                if pair not in pairs or (fa, la) < pairs[pair][:2]:
                    pairs[pair] = hit
    return sorted(pairs.values())


def test_repeated_blocks_finder_sees_a_copy(tmp_path):
    block = [f"  y{i} = relu(y{i - 1})" for i in range(1, WINDOW + 1)]
    (tmp_path / "a.pnet").write_text("def a(y0: [n]) -> [n] {\n" + "\n".join(block) + "\n  return y8\n}\n")
    body = "\n".join(block)
    (tmp_path / "b.pnet").write_text("# other\ndef b(y0: [n]) -> [n] {\n\n" + body + "\n  return y8 * 2\n}\n")
    (tmp_path / "c.pnet").write_text("def c(y0: [n]) -> [n] {\n" + "\n".join(block[:WINDOW - 1]) + "\n}\n")
    hits = repeated_blocks(tmp_path)
    assert [(a, b) for a, _, b, _, _ in hits] == [("a.pnet", "b.pnet")]


def test_no_block_repeated_across_stdlib_files():
    hits = repeated_blocks()
    report = "\n".join(f"  {a}:{la} and {b}:{lb}: {first}" for a, la, b, lb, first in hits)
    assert not hits, (f"{len(hits)} pair(s) of stdlib files share a block of {WINDOW}+ code lines; move it into "
                      f"nn/ or a backbone and import it:\n{report}")
