"""The one error type users see: a message with a source location, printed as one line."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A position in a source file (1-based line and column)."""
    file: str
    line: int
    col: int

    def __str__(self) -> str:   # a file name with a newline must not forge a second message line
        file = "".join(ch if ch.isprintable() else _escape_char(ch) for ch in self.file)
        return f"{file}:{self.line}:{self.col}"


def escape_text(text, quotes: str = "") -> str:
    """`text` on one printable line: the backslash, the `quotes` characters and every non-printable character
    (newlines, \\r, \\v, \\f, \\x85, \\u2028, NUL, lone surrogates) as Python-style escapes. Used wherever user
    text (file names, names, strings) is written into a line of something: messages, IR text, generated code."""
    return "".join(_escape_char(ch) if not ch.isprintable() or ch == "\\" or ch in quotes else ch for ch in str(text))


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if ch == "\\" or ch in "\"'":
        return "\\" + ch
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


MAX_NOTES = 10   # call-site notes printed in full; a longer chain shows its two ends


class PnetError(Exception):
    """A user-facing error. `str(err)` is `FILE:LINE:COL: error: MESSAGE` when a location is known.

    `source_line` (when known) lets the CLI show the offending line with a caret under the column.
    `notes` are (Loc, text) pairs printed after it, one line each: the call sites an error inside a `def`
    passed through, from the call in the user's own file down to the innermost call, which comes last (the
    issue's reading of rustc's notes; as a Python traceback, the most recent call last).
    """

    def __init__(self, message: str, loc: Loc | None = None, source_line: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.source_line = source_line
        self.notes: list[tuple[Loc, str]] = []

    def add_note(self, loc: Loc, text: str) -> "PnetError":
        """Note a call site the error passed through: the error travels outward, so each new (outer) call site
        goes first."""
        self.notes.insert(0, (loc, text))
        return self

    def __str__(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        return f"{where}error: {self.message}"

    def with_loc(self, loc: Loc | None, source_line: str | None = None) -> "PnetError":
        """Attach a location if this error has none yet (inner code often knows the what, not the where)."""
        if self.loc is None and loc is not None:
            self.loc = loc
            self.source_line = source_line
        return self

    def render(self) -> str:
        """The message plus the source line with a caret, as the CLI prints it."""
        text = str(self)
        if self.source_line is None and self.loc is not None:
            self.source_line = _read_line(self.loc)
        if self.source_line is not None and self.loc is not None:
            caret = " " * max(self.loc.col - 1, 0) + "^"
            shown = "".join(ch if ch.isprintable() or ch == "\t" else " " for ch in self.source_line.rstrip("\r\n"))
            text += "\n  " + shown + "\n  " + caret   # control characters shown as spaces: the caret stays aligned
        notes = [f"{loc}: note: {note}" for loc, note in self.notes]
        if len(notes) > MAX_NOTES:   # deep recursion: the user's end of the chain and the innermost calls
            keep = MAX_NOTES // 2
            notes = notes[:keep] + [f"note: ... {len(notes) - 2 * keep} more calls ..."] + notes[-keep:]
        return "\n".join([text, *notes])

    def as_dict(self) -> dict:
        """The error as JSON-ready data (for a `--json` consumer): message, location and notes."""
        where = lambda loc: {"file": loc.file, "line": loc.line, "col": loc.col} if loc else None  # noqa: E731
        return {"message": self.message, "loc": where(self.loc),
                "notes": [{"message": text, "loc": where(loc)} for loc, text in self.notes]}


@dataclass(frozen=True)
class PnetWarning:
    """A located warning the front end collects (the run goes on); the CLI prints each as one line."""
    message: str
    loc: Loc | None = None

    def __str__(self) -> str:
        return f"{self.loc}: warning: {self.message}" if self.loc else f"warning: {self.message}"


class ShapeError(PnetError):
    """Shapes or dtypes of op operands do not fit the op's type rule."""


class UsageError(PnetError):
    """A bad CLI flag, API argument or input file (no source location)."""


def read_source(path, keep_bom: bool = False) -> str:
    """A .pnet file's text as every reader takes it (CLI, imports, fmt, error lines): UTF-8, a leading byte-order
    mark dropped, line ends untranslated -- the lexer ends lines at \\n (and \\r\\n) only, so a lone \\r is not
    a line break. Raises OSError / UnicodeDecodeError."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    return text if keep_bom else strip_bom(text)


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def source_lines(text: str) -> list[str]:
    """The lines of a source as the lexer counts them: split at \\n only (str.splitlines() also splits at \\v,
    \\f, \\x1c-\\x1e, \\x85, \\u2028, \\u2029 and a lone \\r, which would shift every later line number)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def source_line(text: str, line: int) -> str | None:
    """Line `line` (1-based, counted as the lexer counts) of `text`, or None."""
    lines = source_lines(text)
    return lines[line - 1] if 0 < line <= len(lines) else None


def _read_line(loc: Loc) -> str | None:
    """The source line at `loc`, read from disk (for errors raised before the text was at hand)."""
    try:
        return source_line(read_source(loc.file), loc.line)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
