"""Canonical formatting: syntax tree -> source text. Comments are kept (before the statement they
precede, or at the end of the line they ended). `format_source(format_source(s)) == format_source(s)`."""
from __future__ import annotations

from . import ast as A
from ..errors import PnetError
from ..ir.types import source_literal
from .parser import parse

INDENT = "  "
_PREC = {"or": 2, "and": 3, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5,
         "+": 6, "-": 6, "*": 7, "/": 7, "//": 7, "%": 7, "@": 7, "**": 9}


def _prec(e) -> float:
    if isinstance(e, A.CondExpr):
        return 1
    if isinstance(e, A.BinOp):
        return _PREC[e.op]
    if isinstance(e, A.UnaryOp):
        return 4 if e.op == "not" else 8
    if isinstance(e, A.AnnotatedExpr):
        return 9.5
    if isinstance(e, A.Call) and e.scope_name:
        return 9.7  # `f(x) as name` must be parenthesized before `[...]`, `.attr` or `(...)`
    if isinstance(e, A.Literal) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool) and e.value < 0:
        return 8
    return 11


def _wrap(e, ok: bool) -> str:
    s = expr(e)
    return s if ok else f"({s})"


def expr(e) -> str:
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Literal):
        return source_literal(e.value)
    if isinstance(e, A.ListLit):
        return "[" + ", ".join(expr(x) for x in e.items) + "]"
    if isinstance(e, A.TupleLit):   # only as an assignment's value: `a, b = x, y`
        return ", ".join(expr(x) for x in e.items)
    if isinstance(e, A.EllipsisLit):
        return "..."
    if isinstance(e, A.BinOp):
        p = _PREC[e.op]
        if e.op == "**":
            return f"{_wrap(e.left, _prec(e.left) >= 10)} ** {_wrap(e.right, _prec(e.right) >= 8)}"
        if p == 5:
            return f"{_wrap(e.left, _prec(e.left) > 5)} {e.op} {_wrap(e.right, _prec(e.right) > 5)}"
        return f"{_wrap(e.left, _prec(e.left) >= p)} {e.op} {_wrap(e.right, _prec(e.right) > p)}"
    if isinstance(e, A.UnaryOp):
        if e.op == "not":
            return f"not {_wrap(e.operand, _prec(e.operand) >= 4)}"
        return f"{e.op}{_wrap(e.operand, _prec(e.operand) >= 8)}"
    if isinstance(e, A.CondExpr):
        return f"{_wrap(e.then, _prec(e.then) > 1)} if {_wrap(e.cond, _prec(e.cond) > 1)} else {expr(e.other)}"
    if isinstance(e, A.Call):
        args = [expr(a) for a in e.args] + [f"{k}={expr(v)}" for k, v in e.kwargs]
        alias = f" as {e.scope_name}" if e.scope_name else ""
        return f"{_wrap(e.fn, _prec(e.fn) >= 10)}({', '.join(args)}){alias}"
    if isinstance(e, A.Subscript):
        return f"{_wrap(e.value, _prec(e.value) >= 10)}[{', '.join(expr(i) for i in e.items)}]"
    if isinstance(e, A.Slice):
        s = (expr(e.start) if e.start else "") + ":" + (expr(e.stop) if e.stop else "")
        return s + (":" + expr(e.step) if e.step else "")
    if isinstance(e, A.Attribute):
        return f"{_wrap(e.value, _prec(e.value) >= 10)}.{e.attr}"
    if isinstance(e, A.AnnotatedExpr):
        # `@a (x)` would read as annotation arguments: a postfix (incl. `f(x) as name`) needs none
        return " ".join(annotation(a) for a in e.annotations) + " " + _wrap(e.value, _prec(e.value) >= 9.7)
    raise TypeError(f"cannot format {type(e).__name__}")


def annotation(a: A.Annotation) -> str:
    if not a.args and not a.kwargs:
        return f"@{a.name}"
    args = [expr(x) for x in a.args] + [f"{k}={expr(v)}" for k, v in a.kwargs]
    return f"@{a.name}({', '.join(args)})"


def type_expr(t) -> str:
    if isinstance(t, A.ScalarTypeExpr):
        return t.name
    return (t.dtype or "") + "[" + ", ".join(expr(d) for d in t.dims) + "]"


class _Printer:
    def __init__(self, comments):
        self.comments = sorted(comments)
        self.ci = 0
        self.last_line: int | None = None  # the source line last printed
        self.out: list[str] = []

    def comments_before(self, line: int, indent: str):
        while self.ci < len(self.comments) and self.comments[self.ci][0] < line:
            c_line = self.comments[self.ci][0]
            if self.last_line is not None and c_line > self.last_line + 1 and self.out and self.out[-1].strip() \
                    and not self.out[-1].rstrip().endswith("{"):
                self.out.append("")  # keep one blank line where the source had some
            self.out.append(indent + self.comments[self.ci][2])
            self.last_line = c_line
            self.ci += 1

    def trailing(self, line: int) -> str:
        """A comment on `line` (the statement's last line) goes at the end of the printed line."""
        parts = []
        while self.ci < len(self.comments) and self.comments[self.ci][0] <= line:
            parts.append(self.comments[self.ci][2])
            self.ci += 1
        return ("  " + " ".join(parts)) if parts else ""

    def emit(self, text: str, node, indent: str, trailing_line=None):
        line = node.loc.line if node is not None and node.loc else None
        if line is not None:
            self.comments_before(line, indent)
        end = trailing_line if trailing_line is not None else getattr(node, "_end", line)
        tail = self.trailing(end) if line else ""
        self.out.append(indent + text + tail)
        if line:
            self.last_line = end

    def block(self, stmts, indent: str, close_line: int | None):
        prev_end = None
        for s in stmts:
            first = s.annotations[0].loc.line if s.annotations and s.annotations[0].loc else (s.loc.line if s.loc else None)
            if prev_end is not None and first and first > prev_end + 1 and not self._comment_between(prev_end, first):
                self.out.append("")
            self.stmt(s, indent)
            prev_end = getattr(s, "_end", None)
        if close_line:
            self.comments_before(close_line, indent)

    def _comment_between(self, a, b):
        return any(a < c[0] < b for c in self.comments[self.ci:])

    def stmt(self, s, ind: str):
        try:
            self._stmt(s, ind)
        except RecursionError:
            # the printer recurses once per nesting level, like the elaborator: a located error, not a crash
            raise PnetError("statement nests too deeply to format (an expression or call chain thousands deep)",
                            s.loc) from None

    def _stmt(self, s, ind: str):
        pre = "".join(annotation(a) + " " for a in s.annotations)
        if isinstance(s, A.Assign):
            self.emit(f"{pre}{', '.join(s.targets)} = {expr(s.value)}", s, ind)
        elif isinstance(s, A.IndexAssign):
            red = f"{s.reducer}({', '.join(s.reduce_indices)}) " if s.reducer else ""
            self.emit(f"{pre}{s.target}[{', '.join(s.indices)}] = {red}{expr(s.value)}", s, ind)
        elif isinstance(s, A.ParamDecl):
            init = f" = {expr(s.init)}" if s.init is not None else ""
            keyword = "state" if isinstance(s, A.StateDecl) else "param"
            self.emit(f"{pre}{keyword} {s.name}: {type_expr(s.type)}{init}", s, ind)
        elif isinstance(s, A.Update):
            self.emit(f"{pre}update {s.name} = {expr(s.value)}", s, ind)
        elif isinstance(s, A.InputDecl):
            self.emit(f"{pre}input {s.name}: {type_expr(s.type)}", s, ind)
        elif isinstance(s, A.OutputDecl):
            val = f" = {expr(s.value)}" if s.value is not None else ""
            self.emit(f"{pre}output {s.name}{val}", s, ind)
        elif isinstance(s, A.Return):
            self.emit(f"{pre}return {', '.join(expr(v) for v in s.values)}", s, ind)
        elif isinstance(s, A.Yield):
            self.emit(f"{pre}yield {', '.join(expr(v) for v in s.values)}", s, ind)
        elif isinstance(s, A.ExprStmt):
            self.emit(f"{pre}{expr(s.value)}", s, ind)
        elif isinstance(s, A.Tie):
            self.emit(f"{pre}tie {source_literal(s.target)} = {source_literal(s.source)}", s, ind)
        elif isinstance(s, A.If):
            self.if_(s, ind, pre)
        elif isinstance(s, A.For):
            rng = f"{expr(s.start)}..{expr(s.stop)}" if s.stop is not None else expr(s.start)
            label = f" as {s.label}" if s.label else ""
            self.compound(f"{pre}for {s.var} in {rng}{label} {{", s, s.body, ind)
        elif isinstance(s, A.Scan):
            seqs = []
            for q in s.seqs:
                if q.stop is not None:
                    seqs.append(f"{q.name} in {expr(q.source)}..{expr(q.stop)}")
                else:
                    seqs.append(f"{q.name} in {expr(q.source)}" + (f" along {expr(q.axis)}" if q.axis is not None else ""))
            carries = "; " + ", ".join(f"{n} = {expr(v)}" for n, v in s.carries) if s.carries else ""
            self.compound(f"{pre}{', '.join(s.targets)} = scan({', '.join(seqs)}{carries}) {{", s, s.body, ind)
        else:
            raise TypeError(f"cannot format {type(s).__name__}")

    def compound(self, header: str, node, body, ind: str):
        self.emit(header, node, ind, trailing_line=node.loc.line if node.loc else None)
        self.block(body, ind + INDENT, getattr(node, "_end", None))
        self.close(ind, node)

    def close(self, ind: str, node):
        self.out.append(ind + "}")
        self.last_line = getattr(node, "_end", self.last_line)

    def if_(self, s, ind, pre, prefix=""):
        self.emit(f"{prefix}{pre}if {expr(s.cond)} {{", s, ind, trailing_line=s.loc.line if s.loc else None)
        self.block(s.then, ind + INDENT, self._then_close(s))
        self._else_tail(s, ind)

    @staticmethod
    def _then_close(s) -> int | None:
        """Where the then-block's comments stop: a comment after its last statement belongs to the
        else block that follows (it usually introduces it); without else, to the then block."""
        if s.other is None:
            return getattr(s, "_end", None)
        if s.then:
            return getattr(s.then[-1], "_end", s.then[-1].loc.line) + 1
        return s.loc.line + 1

    def _else_tail(self, s, ind):
        """`} else if ... {` chains (an annotated inner `if` keeps its own block, where its annotation prints)."""
        if s.other is None:
            self.close(ind, s)
        elif len(s.other) == 1 and isinstance(s.other[0], A.If) and not s.other[0].annotations:
            inner = s.other[0]
            self.out.append(ind + "} else if " + expr(inner.cond) + " {")
            self.block(inner.then, ind + INDENT, self._then_close(inner))
            self._else_tail(inner, ind)
        else:
            self.out.append(ind + "} else {")
            self.block(s.other, ind + INDENT, getattr(s, "_end", None))
            self.close(ind, s)

    def item(self, it):
        if isinstance(it, A.Import):
            target = source_literal(it.path) if it.is_file else it.path
            self.emit(f"import {target}" + (f" as {it.alias}" if it.alias else ""), it, "")
            return
        annots = "".join(annotation(a) + "\n" for a in it.annotations)
        params = ", ".join(f"{p.name}: {type_expr(p.type)}" + (f" = {expr(p.default)}" if p.default is not None else "")
                           for p in it.params)
        ret = ""
        if it.ret:
            ret = " -> " + (type_expr(it.ret[0]) if len(it.ret) == 1 else "(" + ", ".join(type_expr(t) for t in it.ret) + ")")
        kw = "model" if it.is_model else "def"
        line = it.annotations[0].loc.line if it.annotations and it.annotations[0].loc else it.loc.line
        self.comments_before(line, "")
        for a in annots.splitlines():
            self.out.append(a)
        self.emit(f"{kw} {it.name}({params}){ret} {{", it, "", trailing_line=it.loc.line)
        self.block(it.body, INDENT, it.end_line or None)
        self.out.append("}")
        self.last_line = it.end_line or self.last_line


def format_module(module: A.Module) -> str:
    p = _Printer(module.comments)
    prev = None
    for it in module.items:
        if prev is not None and not (isinstance(prev, A.Import) and isinstance(it, A.Import)):
            p.out.append("")
        p.item(it)
        prev = it
    p.comments_before(10 ** 9, "")
    return "\n".join(p.out).rstrip() + "\n"


def format_source(source: str, file: str = "<string>") -> str:
    return format_module(parse(source, file))
