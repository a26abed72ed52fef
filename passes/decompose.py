"""Lowering of composite ops into pointwise ones before fusion, so they fuse into neighbours.

- batchnorm (inference) is a per-channel affine map: y = (x - mean) * rsqrt(var + eps) * w + b,
  with the [C] vectors reshaped to broadcast along axis 1. Its parameter-only part is hoisted to
  the top of the graph so the per-element part can join the producing conv's epilogue.
"""
from __future__ import annotations

from ..ir import registry
from ..ir.graph import Graph, Node, Value, clone, replace_uses


def decompose(graph: Graph) -> Graph:
    g = clone(graph)
    _decompose(g)
    return g


def _emit(op: str, inputs, attrs, hoisted: list, body: list, anchor: Node, param_only: bool) -> Value:
    opdef = registry.get(op)
    attrs = opdef.bind_attrs(attrs)
    types = opdef.infer_types([v.type if v is not None else None for v in inputs], attrs)
    node = Node(op, list(inputs), attrs, [], anchor.loc, anchor.scope, anchor.annotations)
    node.outputs = [Value(t, node) for t in types]
    (hoisted if param_only else body).append(node)
    return node.outputs[0]


def _decompose(g: Graph):
    defined_at_start = {v for _, v in g.inputs} | {p.value for p in g.params}
    hoisted: list[Node] = []
    out: list[Node] = []
    for n in g.nodes:
        if n.body is not None:
            _decompose(n.body)
        if n.op == "batchnorm" and all(v is None or v in defined_at_start for v in n.inputs[1:]):
            x, mean, var, w, b = n.inputs
            rank = x.type.rank
            shape = [x.type.shape[1]] + [1] * (rank - 2)

            def channel(v):
                return _emit("reshape", [v], {"shape": shape}, hoisted, out, n, True)

            eps = _emit("const", [], {"value": float(n.attrs["eps"]), "dtype": var.type.dtype, "shape": []}, hoisted, out, n, True)
            inv = _emit("rsqrt", [_emit("add", [channel(var), eps], {}, hoisted, out, n, True)], {}, hoisted, out, n, True)
            scale = _emit("mul", [inv, channel(w)], {}, hoisted, out, n, True) if w is not None else inv
            y = _emit("mul", [_emit("sub", [x, channel(mean)], {}, hoisted, out, n, False), scale], {}, hoisted, out, n, False)
            if b is not None:
                y = _emit("add", [y, channel(b)], {}, hoisted, out, n, False)
            replace_uses(g, n.outputs[0], y)
            continue
        out.append(n)
    g.nodes = hoisted + out
