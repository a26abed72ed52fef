"""The one error type users see: a message with a source location, printed as one line."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A position in a source file (1-based line and column)."""
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class PnetError(Exception):
    """A user-facing error. `str(err)` is `FILE:LINE:COL: error: MESSAGE` when a location is known.

    `source_line` (when known) lets the CLI show the offending line with a caret under the column.
    """

    def __init__(self, message: str, loc: Loc | None = None, source_line: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.source_line = source_line

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
            text += "\n  " + self.source_line.rstrip("\n") + "\n  " + caret
        return text


class ShapeError(PnetError):
    """Shapes or dtypes of op operands do not fit the op's type rule."""


class UsageError(PnetError):
    """A bad CLI flag, API argument or input file (no source location)."""


def _read_line(loc: Loc) -> str | None:
    """The source line at `loc`, read from disk (for errors raised before the text was at hand)."""
    try:
        with open(loc.file, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if i == loc.line:
                    return line
    except (OSError, UnicodeDecodeError):
        pass
    return None
