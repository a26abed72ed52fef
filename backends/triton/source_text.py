"""How the IR is spelled in generated source: dims as Python over the launcher's dim variables (d_B, ...),
attribute values and scalars as literals, dtypes as Triton's. Every kernel family's generator imports these."""
from __future__ import annotations

import math

import sympy

from ...ir.types import is_float
from ..pysrc import check_name

TL_DTYPE = {"f64": "tl.float64", "f32": "tl.float32", "f16": "tl.float16", "bf16": "tl.bfloat16", "i64": "tl.int64",
            "i32": "tl.int32", "i8": "tl.int8", "u8": "tl.uint8", "bool": "tl.int1"}


def dim_code(d) -> str:
    """A sympy dim as Python code over the launcher's dim variables (d_B, d_T, ...)."""
    d = sympy.sympify(d)
    if d.is_Integer:
        return str(int(d))
    renamed = d.subs({s: sympy.Symbol(dim_name(s.name), integer=True, positive=True) for s in d.free_symbols})
    return sympy.pycode(renamed)


def dim_name(name: str) -> str:
    """The launcher variable of dim `name` (`d_B`); the prefix keeps it clear of every other name, and a dim that
    is no identifier (possible in a graph built by the API) is refused rather than written into the source."""
    return f"d_{check_name(name)}"


def lit(v):
    """Attribute values as Python source (dims become expressions over d_* variables)."""
    if isinstance(v, sympy.Basic):
        return dim_code(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {lit(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float) and not math.isfinite(v):   # repr gives nan / inf, which are no Python names
        return f"float({repr(v)!r})"
    return repr(v)


def scalar_code(value, dtype: str) -> str:
    if dtype == "bool":
        return "True" if value else "False"
    if is_float(dtype):
        f = float(value)
        return repr(f) if f == f and abs(f) != float("inf") else f'float("{f}")'
    return str(int(value))
