"""Static figures of a graph: FLOPs and parameter counts (symbolic, and at bound dims)."""
from __future__ import annotations

import sympy

from . import registry
from .graph import Graph
from .types import BYTES, numel, sym


def flops(graph: Graph) -> sympy.Expr:
    total = sympy.Integer(0)
    for n in graph.nodes:
        if n.op == "scan":
            total += flops(n.body) * n.attrs["length"]
            continue
        opdef = registry.get(n.op)
        total += opdef.count_flops([v.type if v is not None else None for v in n.inputs], [v.type for v in n.outputs], n.attrs)
    return sympy.expand(total)


def param_count(graph: Graph) -> int:
    return int(sum((numel(p.value.type.shape) for p in graph.params), sympy.Integer(0)))


def param_bytes(graph: Graph) -> int:
    return int(sum((numel(p.value.type.shape) * BYTES[p.value.type.dtype] for p in graph.params), sympy.Integer(0)))


def at(expr, bindings: dict) -> int:
    """The value of a symbolic figure with dims bound (name -> int)."""
    return int(sympy.sympify(expr).subs({sym(k): v for k, v in bindings.items()}))
