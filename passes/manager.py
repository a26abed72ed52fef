"""The pass manager: runs a named list of passes, verifies after each, and can dump the IR."""
from __future__ import annotations

from typing import Callable

from ..errors import UsageError
from ..ir.graph import Graph
from .cleanup import canonicalize, cse, dce, fold
from .verify import verify

PASSES: dict[str, Callable[[Graph], Graph]] = {
    "canonicalize": canonicalize,
    "fold": fold,
    "cse": cse,
    "dce": dce,
}


def _equivariant(graph: Graph) -> Graph:
    from .equivariant import equivariant  # weight tying for @equivariant layers (passes/equivariant.py)
    return equivariant(graph)


PASSES["equivariant"] = _equivariant

PIPELINES: dict[str, list[str]] = {
    "none": [],
    "cleanup": ["canonicalize", "fold", "cse", "dce"],
    "equivariant": ["equivariant", "canonicalize", "fold", "cse", "dce"],
}
DEFAULT_PIPELINE = "cleanup"


def resolve(spec: str | list[str]) -> list[str]:
    """`cleanup`, or a comma list like `fold,cse,dce`."""
    if isinstance(spec, list):
        names = spec
    elif spec in PIPELINES:
        names = PIPELINES[spec]
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        if n not in PASSES:
            raise UsageError(f"unknown pass '{n}' (passes: {', '.join(PASSES)}; pipelines: {', '.join(PIPELINES)})")
    return names


def run_passes(graph: Graph, spec: str | list[str] = DEFAULT_PIPELINE, *, check: bool = True,
               stop_after: str | None = None) -> Graph:
    names = resolve(spec)
    if stop_after is not None and stop_after not in names:
        raise UsageError(f"--after {stop_after}: not in the pipeline ({', '.join(names) or 'empty'})")
    for name in names:
        graph = PASSES[name](graph)
        if check:
            verify(graph)
        if name == stop_after:
            break
    return graph
