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
