"""Source text -> syntax tree (dsl/ast.py), with lark's LALR parser and a small post-lexer."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import Loc, PnetError, read_source, source_line, source_lines, strip_bom
from ..ir.types import unescape
from . import ast as A

GRAMMAR = Path(__file__).with_name("grammar.lark")

# A newline after one of these tokens continues the statement (like Python inside brackets).
_CONTINUES = {"ADD_OP", "MUL_OP", "AT", "CMP_OP", "EQUAL", "COMMA", "POW", "LBRACE"}
_OPEN = {"LPAR", "LSQB"}
_CLOSE = {"RPAR", "RSQB"}


class _PostLex:
    """Drops newlines inside () and [] and after an operator, so expressions can wrap lines.
    (`always_accept`: the contextual lexer must produce _NL even where the grammar takes none.)"""
    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        prev = None
        for tok in stream:
            if tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(depth - 1, 0)
            elif tok.type == "_NL" and (depth > 0 or (prev is not None and prev.type in _CONTINUES)):
                continue
            prev = tok
            yield tok


_comments: list = []


@lru_cache(maxsize=None)
def _lark() -> Lark:
    # cache=True keeps the LALR tables in a temp file keyed by the grammar: start-up in milliseconds
    return Lark(GRAMMAR.read_text(), parser="lalr", lexer="contextual", postlex=_PostLex(),
                propagate_positions=True, maybe_placeholders=True, cache=True,
                lexer_callbacks={"COMMENT": _comments.append})


# What a syntax error says it expected: the grammar's terminals in words a user knows (never `add_op` or `_NL`),
# each with a rank so the likeliest fixes come first (ends of statements, then operands, operators, brackets).
_TOKEN_WORDS = {
    "_NL": (0, "end of line"), "SEMICOLON": (0.1, "';'"), "$END": (0, "end of file"),
    "NAME": (1, "a name"), "INT": (1, "a number"), "FLOAT": (1, "a number"), "STRING": (1, "a string"),
    "TRUE": (1.1, "true"), "FALSE": (1.1, "false"), "NONE": (1.1, "none"),
    "ADD_OP": (2, "an operator like + or *"), "MUL_OP": (2, "an operator like + or *"),
    "AT": (2, "an operator like + or *"), "POW": (2, "an operator like + or *"),
    "CMP_OP": (2.1, "a comparison like == or <"), "AND": (2.2, "'and'"), "OR": (2.2, "'or'"), "NOT": (2.2, "'not'"),
    "RPAR": (3, "')'"), "RSQB": (3, "']'"), "RBRACE": (3, "'}'"), "COMMA": (3, "','"),
    "LPAR": (3, "'('"), "LSQB": (3, "'['"), "LBRACE": (3, "'{'"), "COLON": (3, "':'"), "EQUAL": (3, "'='"),
    "DOT": (3, "'.'"), "ELLIPSIS": (3, "'...'"),
    "DTYPE": (4, "a dtype like f32[...]"), "SCALAR_TYPE": (4, "a type like int or float"),
    "REDUCER": (4, "a reduction like sum(...)"),
}
_ANON_WORDS = {"->": "'->'", "..": "'..'"}   # lark names these __ANON_n; their patterns say what they are


def _describe(tok_type: str) -> tuple[int, str]:
    if tok_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[tok_type]
    pattern = _terminal_patterns().get(tok_type, "")
    if pattern in _ANON_WORDS:
        return 3, _ANON_WORDS[pattern]
    if tok_type.isalpha() and tok_type.isupper():   # a keyword: IMPORT, DEF, RETURN, ... is the word itself
        return 5, f"'{tok_type.lower()}'"
    return 6, "'" + pattern + "'" if pattern else tok_type.lower()


@lru_cache(maxsize=None)
def _terminal_patterns() -> dict[str, str]:
    """Each terminal's literal text where it has one (`__ANON_0` -> `->`)."""
    return {t.name: t.pattern.value for t in _lark().terminals if t.pattern.type == "str"}


def _expected(types) -> str:
    words = sorted({_describe(t) for t in types if not t.startswith("__IGNORE")})
    shown = list(dict.fromkeys(w for _, w in words))   # two terminals may share a word (INT, FLOAT)
    if not shown:
        return ""
    return f" (expected {', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''})"


def _syntax_error(err: UnexpectedInput, file: str, lines: list[str]) -> PnetError:
    line, col = getattr(err, "line", 0) or 0, getattr(err, "column", 0) or 0
    if isinstance(err, UnexpectedToken):
        tok = err.token
        got = "end of file" if tok.type == "$END" else f"'{tok.value}'" if tok.type != "_NL" else "end of line"
        msg = f"syntax error: unexpected {got}{_expected(err.accepts or err.expected)}"
        if tok.type == "$END":
            line, col = len(lines), len(lines[-1]) + 1 if lines else 1
    elif isinstance(err, UnexpectedCharacters):
        msg = f"syntax error: unexpected character {err.char!r}"
    elif isinstance(err, UnexpectedEOF):
        msg = "syntax error: unexpected end of file"
        line, col = len(lines), 1
    else:
        msg = "syntax error"
    line = max(line, 1)
    src = lines[line - 1] if 0 < line <= len(lines) else None
    return PnetError(msg, Loc(file, line, max(col, 1)), src)


def too_deep(message: str, source: str, file: str, meta=None) -> PnetError:
    """A nesting error at the rule being built when Python's recursion limit hit (`meta`), else at the deepest
    bracket of the source, else at the start of its longest line (a long operator chain)."""
    if meta is not None and not getattr(meta, "empty", True):
        line, col = meta.line, meta.column
    else:
        line, col = _deepest_point(source)
    return PnetError(message, Loc(file, line, col), source_line(source, line))


def _deepest_point(source: str) -> tuple[int, int]:
    """(line, col) of the first bracket at the source's greatest nesting depth (strings and comments skipped)."""
    depth, best, where = 0, 0, None
    line, col, i, n = 1, 0, 0, len(source)
    while i < n:
        ch = source[i]
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif ch == "#":
            while i + 1 < n and source[i + 1] != "\n":
                i += 1
        elif ch == '"':
            while i + 1 < n and source[i + 1] not in '"\n':
                i += 2 if source[i + 1] == "\\" else 1
            i += 1
        elif ch in "([{":
            depth += 1
            if depth > best:
                best, where = depth, (line, col)
        elif ch in ")]}":
            depth -= 1
        i += 1
    if where is not None and best >= 32:   # shallower brackets are not what hit the limit
        return where
    lines = source_lines(source) or [""]
    longest = max(range(len(lines)), key=lambda k: len(lines[k]))
    return longest + 1, len(lines[longest]) - len(lines[longest].lstrip()) + 1


def parse(source: str, file: str = "<string>") -> A.Module:
    """Parse .pnet source into a Module; syntax errors become a located PnetError."""
    source = strip_bom(source)   # a UTF-8 byte-order mark is no token
    lines = source_lines(source)
    _comments.clear()
    try:
        tree = _lark().parse(source + "\n")
        module = _Build(file).transform(tree)
    except UnexpectedInput as err:
        raise _syntax_error(err, file, lines) from None
    except VisitError as err:
        inner = err.orig_exc
        if isinstance(inner, RecursionError):
            raise too_deep("syntax error: nesting too deep", source, file, getattr(err.obj, "meta", None)) from None
        if isinstance(inner, PnetError):
            if inner.loc is not None and inner.source_line is None and 0 < inner.loc.line <= len(lines):
                inner.source_line = lines[inner.loc.line - 1]
            raise inner from None
        raise
    except RecursionError:
        raise too_deep("syntax error: nesting too deep", source, file) from None
    module.file = file
    module.source = source
    module.comments = [(t.line, t.column, str(t).rstrip()) for t in _comments]
    _comments.clear()
    return module


def parse_file(path: str | Path) -> A.Module:
    path = Path(path)
    try:
        text = read_source(path)
    except FileNotFoundError:
        raise PnetError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PnetError(f"cannot read {path}: {e}") from None
    return parse(text, str(path))


def _no_duplicate_defs(module: A.Module) -> None:
    """Two defs or models of one name in a file: the second would silently shadow the first (or be ignored)."""
    first: dict[str, A.Def] = {}
    for d in module.defs:
        if d.name in first:
            prev = first[d.name]
            raise PnetError(f"{'model' if d.is_model else 'def'} '{d.name}' is already defined as a "
                            f"{'model' if prev.is_model else 'def'} at line {prev.loc.line}", d.loc)
        first[d.name] = d


def _str_value(tok: Token) -> str:
    return unescape(str(tok)[1:-1])


@v_args(meta=True)
class _Build(Transformer):
    """lark parse tree -> dsl.ast nodes, each with its Loc (and `_end`, the last line, for the formatter)."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _loc(self, meta):
        return Loc(self.file, getattr(meta, "line", 1), getattr(meta, "column", 1))

    def _mk(self, cls, meta, *args, **kw):
        node = cls(*args, **kw, loc=self._loc(meta))
        node._end = getattr(meta, "end_line", getattr(meta, "line", 1))
        return node

    # top level
    def start(self, meta, items):
        module = A.Module(self.file, [i for i in items if i is not None])
        _no_duplicate_defs(module)
        return module

    def dotted(self, meta, names):
        return ".".join(names)

    def import_stmt(self, meta, c):
        target, alias = c[0], c[1]
        if isinstance(target, Token) and target.type == "STRING":
            return self._mk(A.Import, meta, _str_value(target), True, str(alias) if alias else None)
        return self._mk(A.Import, meta, str(target), False, str(alias) if alias else None)

    def annotation(self, meta, c):
        name = str(c[1])
        args, kwargs = c[2] if c[2] is not None else ([], [])
        return self._mk(A.Annotation, meta, name, args, kwargs)

    def def_stmt(self, meta, c, is_model=False):
        annots = [x for x in c if isinstance(x, A.Annotation)]
        rest = [x for x in c if not isinstance(x, A.Annotation)]
        if is_model:
            (name, params, body), ret = rest, None
        else:
            name, params, ret, body = rest
        node = self._mk(A.Def, meta, str(name), params or [], ret, body, annots, is_model)
        node.end_line = getattr(meta, "end_line", 0)
        return node

    def model_stmt(self, meta, c):
        return self.def_stmt(meta, c, is_model=True)

    def params(self, meta, c):
        return list(c)

    def param(self, meta, c):
        return self._mk(A.ParamSpec, meta, str(c[0]), c[1], c[2])

    def scalar_type(self, meta, c):
        return self._mk(A.ScalarTypeExpr, meta, str(c[0]))

    def ret_type(self, meta, c):
        return list(c)

    def tensor_type(self, meta, c):
        dtype = str(c[0]) if c[0] is not None else None
        dims = [d for d in c[1:] if d is not None]  # `[]` (a scalar) leaves one placeholder
        return self._mk(A.TensorTypeExpr, meta, dtype, dims)

    def ellipsis(self, meta, c):
        return self._mk(A.EllipsisLit, meta)

    def block(self, meta, c):
        return [s for s in c if s is not None]

    # statements
    def annotated(self, meta, c):
        *annots, stmt = c
        stmt.annotations = list(annots) + stmt.annotations
        return stmt

    def targets(self, meta, c):
        return [str(t) for t in c]

    def assign(self, meta, c):
        if len(c) > 2:   # `a, b = x, y`
            return self._mk(A.Assign, meta, c[0], A.TupleLit(list(c[1:]), loc=c[1].loc))
        return self._mk(A.Assign, meta, c[0], c[1])

    def index_assign(self, meta, c):
        names = []
        i = 1
        while i < len(c) and isinstance(c[i], Token) and c[i].type == "NAME":
            names.append(str(c[i]))
            i += 1
        reducer = None
        red = []
        if i < len(c) and isinstance(c[i], Token) and c[i].type == "REDUCER":
            reducer = str(c[i])
            i += 1
            while i < len(c) and isinstance(c[i], Token) and c[i].type == "NAME":
                red.append(str(c[i]))
                i += 1
        else:
            # the optional reducer group leaves placeholders
            while i < len(c) and c[i] is None:
                i += 1
        return self._mk(A.IndexAssign, meta, str(c[0]), names, reducer, red, c[-1])

    def param_decl(self, meta, c):
        return self._mk(A.ParamDecl, meta, str(c[0]), c[1], c[2])

    def state_decl(self, meta, c):
        return self._mk(A.StateDecl, meta, str(c[0]), c[1], c[2])

    def update_stmt(self, meta, c):
        return self._mk(A.Update, meta, str(c[0]), c[1])

    def input_decl(self, meta, c):
        return self._mk(A.InputDecl, meta, str(c[0]), c[1])

    def output_decl(self, meta, c):
        return self._mk(A.OutputDecl, meta, str(c[0]), c[1])

    def return_stmt(self, meta, c):
        return self._mk(A.Return, meta, list(c))

    def yield_stmt(self, meta, c):
        return self._mk(A.Yield, meta, list(c))

    def if_stmt(self, meta, c):
        cond, then, other = c[0], c[1], c[2] if len(c) > 2 else None
        if isinstance(other, A.If):
            other = [other]
        return self._mk(A.If, meta, cond, then, other)

    def for_stmt(self, meta, c):
        var, start, stop, label, body = c
        return self._mk(A.For, meta, str(var), start, stop, str(label) if label else None, body)

    def scan_stmt(self, meta, c):
        targets, seqs, carries, body = c
        return self._mk(A.Scan, meta, targets, seqs, carries or [], body)

    def scan_seqs(self, meta, c):
        return list(c)

    def scan_seq(self, meta, c):
        return self._mk(A.ScanSeq, meta, str(c[0]), c[1], c[2], None)

    def scan_range(self, meta, c):
        return self._mk(A.ScanSeq, meta, str(c[0]), c[1], None, c[2])

    def carries(self, meta, c):
        return list(c)

    def carry(self, meta, c):
        return (str(c[0]), c[1])

    def call_stmt(self, meta, c):
        name, args = c
        pos, kw = args if args is not None else ([], [])
        fn = self._mk(A.Name, meta, str(name))
        return self._mk(A.ExprStmt, meta, self._mk(A.Call, meta, fn, pos, kw, None))

    def tie_stmt(self, meta, c):
        return self._mk(A.Tie, meta, _str_value(c[0]), _str_value(c[1]))

    # expressions
    def cond_expr(self, meta, c):
        return self._mk(A.CondExpr, meta, c[1], c[0], c[2])

    def or_expr(self, meta, c):
        return self._fold(meta, c, "or")

    def and_expr(self, meta, c):
        return self._fold(meta, c, "and")

    def _fold(self, meta, c, op):
        out = c[0]
        for rhs in c[1:]:
            out = self._mk(A.BinOp, meta, op, out, rhs)
        return out

    def not_(self, meta, c):
        return self._mk(A.UnaryOp, meta, "not", c[0])

    def comparison(self, meta, c):
        return self._mk(A.BinOp, meta, str(c[1]), c[0], c[2])

    def arith(self, meta, c):
        return self._chain(meta, c)

    def term(self, meta, c):
        return self._chain(meta, c)

    def _chain(self, meta, c):
        out = c[0]
        for i in range(1, len(c), 2):
            out = self._mk(A.BinOp, meta, str(c[i]), out, c[i + 1])
        return out

    def unary_op(self, meta, c):
        return self._mk(A.UnaryOp, meta, str(c[0]), c[1])

    def power(self, meta, c):
        return self._mk(A.BinOp, meta, "**", c[0], c[2])

    def call(self, meta, c):
        fn, args, alias = c
        pos, kw = args if args is not None else ([], [])
        return self._mk(A.Call, meta, fn, pos, kw, str(alias) if alias else None)

    def args(self, meta, c):
        pos, kw = [], []
        for a in c:
            if isinstance(a, tuple):
                kw.append(a)
            else:
                if kw:
                    raise PnetError("positional argument after keyword argument", a.loc)
                pos.append(a)
        return pos, kw

    def kwarg(self, meta, c):
        return (str(c[0]), c[1])

    def subscript(self, meta, c):
        return self._mk(A.Subscript, meta, c[0], c[1])

    def subscripts(self, meta, c):
        return list(c)

    def slice_item(self, meta, c):
        c = list(c) + [None] * (3 - len(c))
        return self._mk(A.Slice, meta, c[0], c[1], c[2])

    def attribute(self, meta, c):
        return self._mk(A.Attribute, meta, c[0], str(c[1]))

    def annotated_expr(self, meta, c):
        annot, value = c
        if isinstance(value, A.AnnotatedExpr):
            return self._mk(A.AnnotatedExpr, meta, [annot] + value.annotations, value.value)
        return self._mk(A.AnnotatedExpr, meta, [annot], value)

    def name(self, meta, c):
        return self._mk(A.Name, meta, str(c[0]))

    def int_lit(self, meta, c):
        try:
            value = int(c[0])
        except ValueError:   # longer than Python's int-string limit (sys.get_int_max_str_digits)
            raise PnetError(f"integer literal of {len(c[0])} digits is too long (at most "
                            f"{sys.get_int_max_str_digits()})", Loc(self.file, meta.line, meta.column)) from None
        return self._mk(A.Literal, meta, value)

    def float_lit(self, meta, c):
        return self._mk(A.Literal, meta, float(c[0]))

    def str_lit(self, meta, c):
        return self._mk(A.Literal, meta, _str_value(c[0]))

    def true_lit(self, meta, c):
        return self._mk(A.Literal, meta, True)

    def false_lit(self, meta, c):
        return self._mk(A.Literal, meta, False)

    def none_lit(self, meta, c):
        return self._mk(A.Literal, meta, None)

    def list_lit(self, meta, c):
        return self._mk(A.ListLit, meta, [x for x in c if x is not None])
