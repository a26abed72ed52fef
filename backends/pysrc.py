"""The one choke point where user text enters generated Python (torch source, Triton launchers and kernels).

File names, model / parameter / value / dim names, scopes and string attributes come from users (a .pnet
file, IR text, the API) and may hold newlines, quotes, `#`, `\"\"\"` or Unicode line separators. Every generator
puts them into source through these functions, never with a bare f-string:

    comment_text(s)    inside a `#` comment: one line, control and separator characters escaped
    docstring_text(s)  inside a triple-quoted docstring: as comment_text, plus quotes escaped
    repr(s)            a string literal: Python's repr escapes every non-printable character
    identifier(hint)   an ASCII Python identifier made from a hint (value names)
    dim_var(name)      the variable holding a symbolic dim: never a keyword, builtin or module name
"""
from __future__ import annotations

import builtins
import keyword
import re

from ..errors import PnetError, escape_text

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# names generated modules use themselves (modules, helpers); a dim called so would shadow them
_TAKEN_BY_GENERATED_CODE = {"self", "torch", "nn", "F", "math", "triton", "tl", "dev", "device", "dims", "inputs",
                            "params"}


def comment_text(text) -> str:
    """`text` safe inside one `#` comment: every non-printable character (newlines, \\r, \\v, \\f, \\x85,
    \\u2028, NUL, lone surrogates) and the backslash written as its Python escape, so nothing ends the line."""
    return escape_text(text)


def docstring_text(text) -> str:
    """`text` safe inside a triple-quoted (non-raw) docstring: comment_text with both quote characters escaped."""
    return escape_text(text, quotes="\"'")


def identifier(hint, fallback: str = "v") -> str:
    """An ASCII Python identifier made from `hint` (other characters become `_`; never starts with a digit,
    never a keyword). Not injective: callers that need unique names (torch_source._Names) dedupe after."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", str(hint)) or fallback
    if base[0].isdigit():
        base = f"{fallback}_{base}"
    return base + "_" if keyword.iskeyword(base) else base


def check_name(name: str) -> str:
    """`name` (a dim name) when it is an ASCII name that a prefix makes a safe identifier; else a PnetError (a
    graph built through the API can hold any string)."""
    if not _IDENT.match(name):
        raise PnetError(f"dim name {name!r} is not an identifier (letters, digits, _)")
    return name


def dim_var(name: str) -> str:
    """The generated variable for dim `name`: the name itself when that is safe, else `d_` + name (also for names
    starting `d_` or `_`, so the mapping stays one-to-one)."""
    check_name(name)
    unsafe = (keyword.iskeyword(name) or keyword.issoftkeyword(name) or hasattr(builtins, name)
              or name in _TAKEN_BY_GENERATED_CODE)
    return "d_" + name if unsafe or name.startswith(("d_", "_")) else name
