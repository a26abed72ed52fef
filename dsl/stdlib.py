"""The standard library's index: every .pnet file under stdlib/, its models, paper title and seed."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .loader import STDLIB

_PAPER = re.compile(r'^#\s*paper:\s*"(.*)"\s*$')
_SEED = re.compile(r"^#\s*seed:\s*(\S+)")
_MODEL = re.compile(r"^\s*model\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.M)


@dataclass
class Entry:
    name: str        # the model name
    path: Path
    kind: str        # nn | backbones | papers | ...
    paper: str = ""
    seed: str = ""


def entries() -> list[Entry]:
    out = []
    for path in sorted(STDLIB.rglob("*.pnet")):
        text = path.read_text(encoding="utf-8")
        paper = seed = ""
        for line in text.splitlines()[:10]:
            if m := _PAPER.match(line):
                paper = m.group(1)
            if m := _SEED.match(line):
                seed = m.group(1)
        kind = path.relative_to(STDLIB).parts[0]
        for m in _MODEL.finditer(text):
            out.append(Entry(m.group(1), path, kind, paper, seed))
    return out


def find(name: str) -> Entry:
    for e in entries():
        if e.name == name or e.path.stem == name:
            return e
    raise UsageError(f"no stdlib model named '{name}' (see `pnet stdlib list`)")


# ---- coverage against the paper catalogues ------------------------------------------------------------
_ROW = re.compile(r"^\|\s*(\d+)\s*\|(.*)\|\s*$")


def default_catalogue_dir() -> Path | None:
    """`../shared/papers` beside the checkout, where the corpus catalogues live."""
    for base in (STDLIB.parent, Path.cwd()):
        d = base.parent / "shared" / "papers"
        if d.is_dir():
            return d
    return None


def catalogue(path: Path) -> list[tuple[int, str, bool]]:
    """(number, title, stdlib-yes) for every row of a catalogue table."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7:
            continue
        rows.append((int(cells[0]), cells[1], cells[-1].lower().startswith("yes")))
    return rows


def coverage(papers_dir: Path) -> list[dict]:
    """Per catalogue file: how many `stdlib: yes` papers have a model (by `# seed: NNN#K` headers)."""
    modelled: dict[str, set[int]] = {}
    for e in entries():
        for ref in e.seed.split(","):
            if "#" in ref:
                f, _, k = ref.strip().partition("#")
                if k.isdigit():
                    modelled.setdefault(f, set()).add(int(k))
    out = []
    for path in sorted(papers_dir.glob("*.md")):
        rows = catalogue(path)
        yes = {k for k, _, y in rows if y}
        have = modelled.get(path.stem, set())
        out.append({"catalogue": path.name, "papers": len(rows), "stdlib_yes": len(yes),
                    "modelled_yes": len(yes & have), "modelled_total": len(have),
                    "missing": sorted(yes - have)})
    return out
