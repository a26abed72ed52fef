"""The standard library's index: every .pnet file under stdlib/, its models, paper title, seed and small test
configuration (`# test: --set k=v ...`), and a model found by name (`pnet check stdlib:gpt2`)."""
from __future__ import annotations

import difflib
import re
import shlex
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
    rows = entries()
    for e in rows:
        if e.name == name or e.path.stem == name:
            return e
    raise UsageError(f"no stdlib model named '{name}'{did_you_mean(name, rows)} (see `pnet stdlib list`)")


def find_or_none(name: str) -> Entry | None:
    return next((e for e in entries() if e.name == name or e.path.stem == name), None)


def did_you_mean(name: str, rows: list[Entry] | None = None) -> str:
    """'; did you mean 'gpt2'?' for a misspelt model name, or '' when nothing is close."""
    names = sorted({n for e in (rows if rows is not None else entries()) for n in (e.name, e.path.stem)})
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


_TEST = re.compile(r"^#\s*test:\s*(.*)$")


def small_config(path: Path) -> dict[str, str] | None:
    """A file's small test configuration, the `# test: --set k=v --set k2=v2` line of its header, as overrides
    ({'k': 'v', ...}); None when the file has none. The stdlib sweep and `--test-config` both read it here."""
    for line in Path(path).read_text(encoding="utf-8").splitlines()[:30]:
        m = _TEST.match(line)
        if not m:
            continue
        out = {}
        for part in shlex.split(m.group(1)):
            if part == "--set":
                continue
            k, eq, v = part.partition("=")
            if not eq or not k.isidentifier():
                raise UsageError(f"{path}: '# test:' line: expected --set KEY=VALUE, got '{part}'")
            out[k] = v
        return out
    return None


# ---- coverage against the seed-paper index ------------------------------------------------------------
def seed_refs(entry: Entry) -> list[str]:
    """The `NNN#K` references of a file's `# seed:` line."""
    return [r.strip() for r in entry.seed.split(",") if re.fullmatch(r"\d+#\d+", r.strip())]


BLOCKED = STDLIB / "blocked.tsv"   # ref<TAB>feature: `stdlib: yes` papers waiting for a language feature


def blocked() -> dict[str, str]:
    """The missing papers that need a feature the language does not have yet: ref -> the feature."""
    if not BLOCKED.is_file():
        return {}
    rows = [ln.split("\t") for ln in BLOCKED.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]
    return {r[0]: r[1] for r in rows}


def coverage(papers_dir: Path | None = None) -> list[dict]:
    """Per seed catalogue: how many `stdlib: yes` papers have a model (by `# seed: NNN#K` headers), by how many
    files, and which are missing (with the feature a blocked one waits for). The papers come from the project's
    index (stdlib/catalogue.tsv), or from the catalogue tables in `papers_dir`."""
    from . import catalogue
    papers = catalogue.from_markdown_dir(papers_dir) if papers_dir is not None else catalogue.read()
    modelled: dict[str, set[int]] = {}
    files: dict[str, set[Path]] = {}
    for e in entries():
        for ref in seed_refs(e):
            f, _, k = ref.partition("#")
            modelled.setdefault(f, set()).add(int(k))
            files.setdefault(f, set()).add(e.path)
    waiting = blocked()
    out = []
    for name in sorted({p.catalogue for p in papers}):
        rows = [p for p in papers if p.catalogue == name]
        yes = {int(p.ref.partition("#")[2]): p for p in rows if p.stdlib}
        have = modelled.get(name, set())
        missing = [yes[k] for k in sorted(set(yes) - have)]
        out.append({"catalogue": name, "papers": len(rows), "stdlib_yes": len(yes),
                    "modelled_yes": len(set(yes) & have), "modelled_total": len(have),
                    "files": len(files.get(name, ())),
                    "missing": [{"ref": p.ref, "title": p.title, "blocked_on": waiting.get(p.ref)} for p in missing]})
    return out


def invalid_refs(papers_dir: Path | None = None) -> list[str]:
    """One line per header reference that names no `stdlib: yes` paper of the catalogues (unknown, or a paper the
    catalogue marks `stdlib: no`), per blocked.tsv row whose paper is modelled after all, and per file claiming
    several references without a comment naming each one after the first (why the file serves it)."""
    from . import catalogue
    papers = {p.ref: p for p in (catalogue.from_markdown_dir(papers_dir) if papers_dir is not None else catalogue.read())}
    if not papers:
        return []
    out, modelled = [], set()
    for e in entries():
        refs = seed_refs(e)
        modelled.update(refs)
        rest = "\n".join(e.path.read_text(encoding="utf-8").splitlines()[2:])
        for i, ref in enumerate(refs):
            p = papers.get(ref)
            if p is None:
                out.append(f"{e.path}:2: seed reference {ref}: no such paper in catalogue {ref.partition('#')[0]}")
            elif not p.stdlib:
                out.append(f"{e.path}:2: seed reference {ref}: the catalogue marks \"{p.title}\" stdlib: no")
            elif i > 0 and not re.search(rf"^#.*{re.escape(ref)}\b", rest, re.M):
                out.append(f"{e.path}:2: seed reference {ref}: no comment says why this file serves it")
    for ref in blocked():
        if ref in modelled:
            out.append(f"{BLOCKED}: {ref} is modelled now: remove it from the blocked list")
    return out
