"""The IR's text form: `print_graph` writes it, `parse_graph` reads it back, so pass tests can
compare IR before and after (as TVM and MLIR do). Printing renumbers values %0, %1, ... in order,
so two structurally equal graphs print identically."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import sympy
from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from ..errors import Loc, PnetError, escape_text, source_line
from .graph import Annotation, Graph, Init, Param, Value
from .types import TensorType, fmt_dim, parse_dim, unescape


# ---- printing ------------------------------------------------------------------------------------
def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, sympy.Basic):
        return str(int(v)) if v.is_Integer else f'dim("{fmt_dim(v)}")'
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + escape_text(v, quotes='"') + '"'   # one line: file names may hold newlines
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    return str(v)


class _Names:
    def __init__(self):
        self.names: dict[Value, str] = {}
        self.n = 0

    def define(self, v: Value, name: str | None = None) -> str:
        if name is None:
            name = f"%{self.n}"
            self.n += 1
        else:
            safe = all(c.isalnum() or c in "_." for c in name)
            name = f"%{name}" if safe else f'%"{name}"'
        self.names[v] = name
        return name

    def __getitem__(self, v):
        return "_" if v is None else self.names[v]


def print_graph(graph: Graph) -> str:
    names = _Names()
    lines: list[str] = []
    args = [f"{names.define(v, n)}: {v.type}" for n, v in graph.inputs]
    lines.append(f"graph {graph.name}({', '.join(args)}) {{")
    for p in graph.params:
        init_args = [_lit(a) for a in p.init.args] + [f"{k}={_lit(v)}" for k, v in p.init.kwargs]
        extra = _annots(p.annotations) + _loc(p.loc)
        keyword = "state" if p.state else "param"
        lines.append(f"  {keyword} {names.define(p.value, p.name)}: {p.value.type} = {p.init.fn}({', '.join(init_args)}){extra}")
    _print_nodes(graph, names, lines, "  ")
    lines.append("  return " + ", ".join(f"{_out_name(n)}={names[v]}" for n, v in graph.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _annots(annots) -> str:
    return "".join(" " + str(a) for a in annots)


def _loc(loc) -> str:
    return f' loc({_lit(loc.file)}:{loc.line}:{loc.col})' if loc else ""


def _print_nodes(graph, names, lines, ind):
    for n in graph.nodes:
        ins = ", ".join(names[v] for v in n.inputs)
        attrs = "" if not n.attrs else " {" + ", ".join(f"{k}={_lit(v)}" for k, v in n.attrs.items()) + "}"
        outs = ", ".join(names.define(v) for v in n.outputs)
        types = ", ".join(str(v.type) for v in n.outputs)
        meta = _annots(n.annotations) + _loc(n.loc) + (f' scope({_lit(n.scope)})' if n.scope else "")
        head = f"{ind}{outs} = {n.op}({ins}){attrs} : {types}{meta}"
        if n.body is None:
            lines.append(head)
            continue
        body_args = ", ".join(f"{names.define(v)}: {v.type}" for _, v in n.body.inputs)
        lines.append(f"{head} {{")
        lines.append(f"{ind}  ^body({body_args})")
        _print_nodes(n.body, names, lines, ind + "  ")
        lines.append(f"{ind}  yield " + ", ".join(names[v] for _, v in n.body.outputs))
        lines.append(f"{ind}}}")


# ---- parsing -------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _lark():
    return Lark(Path(__file__).with_name("text.lark").read_text(), parser="lalr", maybe_placeholders=True,
                propagate_positions=True)


def parse_graph(text: str, file: str = "<ir>") -> Graph:
    try:
        tree = _lark().parse(text)
        return _Build(file).transform(tree)
    except UnexpectedInput as e:
        line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
        src = source_line(text, line)
        raise PnetError("IR syntax error", Loc(file, max(line, 1), max(col, 1)), src) from None
    except VisitError as e:
        # located at the rule being built when it failed (the IR text's own line and column)
        meta = getattr(e.obj, "meta", None)
        loc = Loc(file, meta.line, meta.column) if meta is not None and not meta.empty else Loc(file, 1, 1)
        if isinstance(e.orig_exc, PnetError):
            raise (e.orig_exc if e.orig_exc.loc else e.orig_exc.with_loc(loc)) from None
        raise PnetError(f"bad IR: {e.orig_exc}", loc) from None


def _out_name(name: str) -> str:
    """An output's name as IR text: bare when an identifier, else quoted (`"grad.w"`, from grad_graph)."""
    return name if name.isidentifier() else '"' + escape_text(name, quotes='"') + '"'


def _unquote(s: str) -> str:
    return unescape(s[1:-1])


class _Build(Transformer):
    """Builds the graph in one pass; names resolve to Values in definition order."""

    def __init__(self, file: str = "<ir>"):
        super().__init__()
        self.file = file
        self.values: dict[str, Value] = {}

    def _var(self, tok) -> str:
        s = str(tok)[1:]
        return s[1:-1] if s.startswith('"') else s

    def _use(self, name):
        if name not in self.values:
            raise PnetError(f"IR: use of undefined value %{name}")
        return self.values[name]

    def _def(self, name, t):
        v = Value(t)
        self.values[name] = v
        return v

    def start(self, c):
        return c[0]

    def type(self, c):
        dtype, *dims = c
        return TensorType(str(dtype), tuple(parse_dim(str(d).strip()) for d in dims if d is not None))

    def arg(self, c):
        name = self._var(c[0])
        return (name, self._def(name, c[1]))

    @v_args(inline=False)
    def graph(self, c):
        g = Graph(str(c[0]))
        items = c[1:]
        args = []
        while items and (items[0] is None or isinstance(items[0][1], Value)):
            if items[0] is not None:
                args.append(items[0])
            items = items[1:]
        g.inputs = args
        for it in items:
            kind = it[0]
            if kind == "param":
                g.params.append(it[1])
            elif kind == "node":
                g.nodes.append(it[1])
            elif kind == "ret":
                g.outputs = it[1]
        return g

    # args are defined the moment they are parsed (before the items that use them)
    def __default__(self, data, children, meta):
        raise PnetError(f"IR: unexpected {data}")

    def param(self, c):
        keyword, var, t, fn, *rest = c
        vals = [x for x in rest if not isinstance(x, (Annotation, Loc, _Scope)) and x is not None]
        annots = tuple(x for x in rest if isinstance(x, Annotation))
        loc = next((x for x in rest if isinstance(x, Loc)), None)
        args = tuple(v for v in vals if not isinstance(v, _Kw))
        kwargs = tuple((v.k, v.v) for v in vals if isinstance(v, _Kw))
        name = self._var(var)
        return ("param", Param(name, self._def(name, t), Init(str(fn), args, kwargs), loc, annots, str(keyword) == "state"))

    @v_args(meta=True)
    def node(self, meta, c):
        from .graph import Node
        i = 0
        outs = []
        while getattr(c[i], "type", None) == "VAR":
            outs.append(self._var(c[i]))
            i += 1
        op = str(c[i])
        rest = c[i + 1:]
        operands = [x for x in rest if isinstance(x, _Operand)]
        attrs = next((x for x in rest if isinstance(x, dict)), {})
        types = [x for x in rest if isinstance(x, TensorType)]
        annots = tuple(x for x in rest if isinstance(x, Annotation))
        loc = next((x for x in rest if isinstance(x, Loc)), None)
        scope = next((x.s for x in rest if isinstance(x, _Scope)), "")
        body = next((x for x in rest if isinstance(x, Graph)), None)
        inputs = [None if o.name is None else self._use(o.name) for o in operands]
        node = Node(op, inputs, attrs, [], loc, scope, annots, body, text_loc=Loc(self.file, meta.line, meta.column))
        if len(types) != len(outs):
            raise PnetError(f"IR: {op} names {len(outs)} results but gives {len(types)} types")
        for name, t in zip(outs, types):
            v = self._def(name, t)
            v.producer = node
            node.outputs.append(v)
        return ("node", node)

    def operand(self, c):
        return _Operand(self._var(c[0]))

    def absent(self, c):
        return _Operand(None)

    def attrs(self, c):
        return dict(x for x in c if x is not None)

    def attr(self, c):
        return (str(c[0]), c[1])

    def body(self, c):
        g = Graph("scan_body")
        for x in c:
            if x is None:
                continue
            if isinstance(x[1], Value):
                g.inputs.append(x)
            elif isinstance(x, tuple) and x[0] == "node":
                g.nodes.append(x[1])
            elif isinstance(x, tuple) and x[0] == "yield":
                g.outputs = [(f"out{i}", v) for i, v in enumerate(x[1])]
        return g

    def ret(self, c):
        return ("ret", [x for x in c if x is not None])

    def yld(self, c):
        return ("yield", [self._use(self._var(v)) for v in c if v is not None])

    def outname(self, c):
        name = str(c[0])
        return (_unquote(name) if name.startswith('"') else name, self._use(self._var(c[1])))

    def annot(self, c):
        name, *vals = c
        vals = [v for v in vals if v is not None]
        return Annotation(str(name), tuple(v for v in vals if not isinstance(v, _Kw)),
                          tuple((v.k, v.v) for v in vals if isinstance(v, _Kw)))

    def loc(self, c):
        return Loc(_unquote(str(c[0])), int(c[1]), int(c[2]))

    def scope(self, c):
        return _Scope(_unquote(str(c[0])))

    def int_(self, c):
        return int(c[0])

    def float_(self, c):
        return float(c[0])

    def str_(self, c):
        return _unquote(str(c[0]))

    def true_(self, c):
        return True

    def false_(self, c):
        return False

    def none_(self, c):
        return None

    def inf_(self, c):
        return math.inf

    def ninf_(self, c):
        return -math.inf

    def dim_(self, c):
        return parse_dim(_unquote(str(c[0])))

    def list_(self, c):
        return [x for x in c if x is not None] if c != [None] else []

    def kw_(self, c):
        return _Kw(str(c[0]), c[1])


class _Operand:
    def __init__(self, name):
        self.name = name


class _Scope:
    def __init__(self, s):
        self.s = s


class _Kw:
    def __init__(self, k, v):
        self.k, self.v = k, v
