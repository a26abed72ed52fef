"""Static figures of a graph: FLOPs and parameter counts (symbolic, and at bound dims)."""
from __future__ import annotations

import sympy

from . import registry
from .graph import Graph, Node
from .types import BYTES, is_float, numel, sym


def flops(graph: Graph) -> sympy.Expr:
    total = sympy.Integer(0)
    for n in graph.nodes:
        if n.op == "scan":
            total += flops(n.body) * n.attrs["length"]
            continue
        opdef = registry.get(n.op)
        total += opdef.count_flops([v.type if v is not None else None for v in n.inputs], [v.type for v in n.outputs], n.attrs)
    return sympy.expand(total)


def param_count(graph: Graph, state: bool = False) -> int:
    """Elements of the trainable parameters (the published count, torch's model.parameters()); with
    state=True, of the `state` tensors instead (torch's buffers: running statistics, frozen weights)."""
    return int(sum((numel(p.value.type.shape) for p in graph.params if p.state == state), sympy.Integer(0)))


def param_bytes(graph: Graph, state: bool = False) -> int:
    return int(sum((numel(p.value.type.shape) * BYTES[p.value.type.dtype] for p in graph.params
                    if p.state == state), sympy.Integer(0)))


def at(expr, bindings: dict) -> int:
    """The value of a symbolic figure with dims bound (name -> int)."""
    return int(sympy.sympify(expr).subs({sym(k): v for k, v in bindings.items()}))


def weight_of_matmul(n, pvals: dict):
    """For `x @ W` or `x @ W.T` with W a rank-2 float parameter (a dense layer): (param, transposed), else
    None. What the weight-rewriting passes (quantize, sparsify) look for; `pvals` maps values to params."""
    if n.op != "matmul" or len(n.inputs) != 2:
        return None
    x, w = n.inputs
    transposed = False
    if w.producer is not None and w.producer.op == "transpose" and w.producer.attrs.get("perm") in ([1, 0], (1, 0)):
        w, transposed = w.producer.inputs[0], True
    p = pvals.get(w)
    if p is None or w.type.rank != 2 or not is_float(w.type.dtype) or not is_float(x.type.dtype) or x.type.rank < 1:
        return None
    return p, transposed


def table_lookup(n: Node | None) -> bool:
    """`take(theta, idx)` of a rank-1 float table along axis 0 with a literal index tensor: each entry is
    theta[idx[...]] (the tied weights of passes/equivariant.py)."""
    return (n is not None and n.op == "take" and n.attrs["axis"] == 0 and n.inputs[0].type.rank == 1
            and is_float(n.inputs[0].type.dtype) and n.inputs[1].producer is not None
            and n.inputs[1].producer.op == "const" and isinstance(n.inputs[1].producer.attrs["value"], list))


def frozen_params(graph: Graph) -> set[str]:
    """The `state` tensors: not trained by gradient descent (torch's buffers), so autodiff and the optimizer
    leave them alone and the torch backends register them as buffers (in state_dict, not in parameters())."""
    return {p.name for p in graph.params if p.state}
