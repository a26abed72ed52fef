"""The seed-paper index that `pnet stdlib coverage` counts against: one row per paper of the seed catalogues
(reference `NNN#K`, title, whether the catalogue says `stdlib: yes`), kept as data inside the project
(stdlib/catalogue.tsv) so that coverage works in any clone.

The index is made from the catalogue tables (`papers/NNN.md`, a markdown table per seed file, beside the
checkout in development) and regenerated when they change:

    python -m pnet.dsl.catalogue ../shared/papers      # rewrites stdlib/catalogue.tsv
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .loader import STDLIB

INDEX = STDLIB / "catalogue.tsv"
HEADER = "ref\ttitle\tstdlib"
_ROW = re.compile(r"^\|\s*(\d+)\s*\|(.*)\|\s*$")


@dataclass(frozen=True)
class Paper:
    ref: str         # NNN#K: row K of seed catalogue NNN (what a stdlib file's `# seed:` line names)
    title: str
    stdlib: bool     # the catalogue's verdict: the abstract fixes the network well enough for a model

    @property
    def catalogue(self) -> str:
        return self.ref.partition("#")[0]


def from_markdown(path: Path) -> list[Paper]:
    """Every row of a catalogue's table (`| K | title | kind | network | ops | passes | stdlib |`)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not _ROW.match(line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7:
            continue
        title = " ".join(cells[1].split())   # one line, single spaces: as the index stores it
        rows.append(Paper(f"{Path(path).stem}#{int(cells[0])}", title, cells[-1].lower().startswith("yes")))
    return rows


def from_markdown_dir(papers_dir: Path) -> list[Paper]:
    """Every catalogue's rows; a title the table shortened ('...') is completed from the seed text beside it
    (`../seeds/NNN.txt`, one title a line) when exactly one line starts with it."""
    out = []
    for path in sorted(Path(papers_dir).glob("*.md")):
        seed = Path(papers_dir).parent / "seeds" / f"{path.stem}.txt"
        lines = seed.read_text(encoding="utf-8").splitlines() if seed.is_file() else []
        for p in from_markdown(path):
            out.append(Paper(p.ref, _full_title(p.title, lines), p.stdlib))
    return out


def _full_title(title: str, lines: list[str]) -> str:
    if not title.endswith("…"):
        return title
    head = title[:-1].rstrip()
    found = [" ".join(ln.split()) for ln in lines if ln.strip().startswith(head)]
    return found[0] if len(set(found)) == 1 else title


def read(path: Path = INDEX) -> list[Paper]:
    """The project's index (empty when the file is missing: coverage then has nothing to count)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines[1:]:
        if line.strip():
            ref, title, yes = line.split("\t")
            out.append(Paper(ref, title, yes == "yes"))
    return out


def write(papers: list[Paper], path: Path = INDEX) -> None:
    body = "".join(f"{p.ref}\t{' '.join(p.title.split())}\t{'yes' if p.stdlib else 'no'}\n" for p in papers)
    path.write_text(HEADER + "\n" + body, encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m pnet.dsl.catalogue PAPERS_DIR   (the folder of NNN.md catalogue tables)", file=sys.stderr)
        return 2
    papers = from_markdown_dir(Path(argv[0]))
    write(papers)
    print(f"wrote {INDEX} ({len(papers)} papers, {sum(p.stdlib for p in papers)} with stdlib: yes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
