"""Every def and model of the standard library, by name: where it is defined, its signature, its doc comment, and
for a model its inputs and outputs (for `pnet stdlib show NAME`).

Names are found by a scan of the files (cheap: ~170 files); only the file of the name asked for is parsed. A
module's import path (`nn.core`) gives the module: its header and each def's signature.
A name several files define (a paper's local `block`) resolves to the first in nn/, backbones/, papers/ order;
`nn.core.linear` (the import path, then the name) picks one file."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PnetError, UsageError
from . import ast as A
from .fmt import expr, type_expr
from .loader import STDLIB
from .parser import parse_file

_DEF = re.compile(r"^[ \t]*(def|model)[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(", re.M)
_ORDER = {"nn": 0, "backbones": 1, "papers": 2}
_HEADER_KEYS = re.compile(r"^#\s*(paper|seed|test):")
_RULE = re.compile(r"^#\s*[-=]{3,}\s*$")   # a `# -----` line ends a doc comment (it separates the file's header)


@dataclass
class Found:
    name: str
    kind: str          # def | model
    module: str        # the import path: nn.core, backbones.gpt2, papers.siren
    path: Path


@dataclass
class Described:
    name: str
    kind: str
    module: str
    path: Path
    line: int
    signature: str
    params: list[dict]                 # name, type, default (source text, or None), value (a literal default's value)
    doc: str
    inputs: list[dict] = field(default_factory=list)    # models: name, type
    outputs: list[dict] = field(default_factory=list)
    header: dict = field(default_factory=dict)          # models: paper, seed, test (the file's `# key:` lines)
    others: list[str] = field(default_factory=list)     # other files defining the same name


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(STDLIB).with_suffix("").parts)


def index() -> list[Found]:
    """Every def and model, stdlib/nn first, then backbones, then papers (each alphabetical)."""
    files = sorted(STDLIB.rglob("*.pnet"), key=lambda p: (_ORDER.get(p.relative_to(STDLIB).parts[0], 9), str(p)))
    out = []
    for path in files:
        for m in _DEF.finditer(path.read_text(encoding="utf-8")):
            out.append(Found(m.group(2), m.group(1), _module_of(path), path))
    return out


def lookup(name: str) -> tuple[Found, list[Found]]:
    """The def or model `name` (or `module.name`), and the other files that define the same name."""
    found = index()
    hits = [f for f in found if f.name == name or f"{f.module}.{f.name}" == name]
    if not hits:
        names = sorted({f.name for f in found} | {f"{f.module}.{f.name}" for f in found} | {f.module for f in found})
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(f"pnet stdlib show: no stdlib def, model or module named '{name}'{hint} "
                         "(`pnet stdlib list` lists the models)")
    return hits[0], hits[1:]


def describe(name: str, elaborate: bool = True) -> Described:
    """`name`'s entry; for a model, `elaborate` gives the outputs' types (with the default hyperparameters)."""
    hit, others = lookup(name)
    module = parse_file(hit.path)
    node = next(d for d in module.defs if d.name == hit.name)
    d = Described(hit.name, hit.kind, hit.module, hit.path, node.loc.line, signature(node), _params(node),
                  _doc_above(module, node), others=[f"{o.module}.{o.name}" for o in others])
    if hit.kind == "model":
        d.header = _header_keys(module)
        d.doc = d.doc or _file_header(module)
        d.inputs, d.outputs = _io(node, hit.path, elaborate)
    return d


def describe_module(name: str) -> tuple[Path, str, list[tuple[int, str]]] | None:
    """A stdlib module (`nn.core`): its file, its header comment, and each def's (line, signature); None if
    `name` is no module."""
    path = STDLIB.joinpath(*name.split(".")).with_suffix(".pnet")
    if not all(part.isidentifier() for part in name.split(".")) or not path.is_file():
        return None
    module = parse_file(path)
    return path, _file_header(module), [(d.loc.line, signature(d)) for d in module.defs]


def signature(node: A.Def) -> str:
    """`def linear(x: [..., i], out: int, bias: bool = true) -> [..., out]`, as the source writes it."""
    shown = ", ".join(f"{p['name']}: {p['type']}" + (f" = {p['default']}" if p["default"] is not None else "")
                      for p in _params(node))
    ret = ""
    if node.ret:
        ret = " -> " + (type_expr(node.ret[0]) if len(node.ret) == 1 else "(" + ", ".join(map(type_expr, node.ret)) + ")")
    return f"{'model' if node.is_model else 'def'} {node.name}({shown}){ret}"


def _params(node: A.Def) -> list[dict]:
    return [{"name": p.name, "type": type_expr(p.type), "default": expr(p.default) if p.default is not None else None,
             "value": _value(p.default)} for p in node.params]


def _value(e):
    """A default that is a literal as a number (bool, string); None for an expression (`d`, `relu`) or none."""
    if isinstance(e, A.UnaryOp) and e.op == "-" and isinstance(e.operand, A.Literal) \
            and isinstance(e.operand.value, (int, float)) and not isinstance(e.operand.value, bool):
        return -e.operand.value
    return e.value if isinstance(e, A.Literal) else None


def _doc_above(module: A.Module, node: A.Def) -> str:
    """The comment lines directly above the def (and its annotations), `#` stripped."""
    first = node.annotations[0].loc.line if node.annotations and node.annotations[0].loc else node.loc.line
    by_line = {line: text for line, col, text in module.comments if col == 1}
    lines, n = [], first - 1
    while n in by_line and not _RULE.match(by_line[n]):
        lines.append(by_line[n])
        n -= 1
    return _text(reversed(lines))


def _file_header(module: A.Module) -> str:
    """A model with no comment of its own: the file's opening comment block, less its `# paper:` lines."""
    by_line = {line: text for line, col, text in module.comments if col == 1}
    lines, n = [], 1
    while n in by_line and not _RULE.match(by_line[n]):
        if not _HEADER_KEYS.match(by_line[n]):
            lines.append(by_line[n])
        n += 1
    return _text(lines)


def _header_keys(module: A.Module) -> dict:
    out = {}
    for line, _col, text in sorted(module.comments)[:12]:
        if m := re.match(r"^#\s*(paper|seed|test):\s*(.*)$", text):
            out[m.group(1)] = m.group(2).strip().strip('"')
    return out


def _text(lines) -> str:
    out = [re.sub(r"^#\s?", "", ln).rstrip() for ln in lines]
    return "\n".join(out).strip("\n")


def _io(node: A.Def, path: Path, elaborate: bool) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs with their types: elaborated with the default hyperparameters when that works (the
    outputs' shapes need it), else as declared (outputs by name)."""
    if elaborate:
        from .compile import load_file
        try:
            g = load_file(path, node.name, {}).graph
            return ([{"name": n, "type": str(v.type)} for n, v in g.inputs],
                    [{"name": n, "type": str(v.type)} for n, v in g.outputs])
        except (PnetError, RecursionError):
            pass
    ins = [{"name": s.name, "type": type_expr(s.type)} for s in node.body if isinstance(s, A.InputDecl)]
    outs = [{"name": s.name, "type": None} for s in node.body if isinstance(s, A.OutputDecl)]
    return ins, outs
