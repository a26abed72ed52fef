"""The usual clean-up passes: canonicalize, fold (constant folding), CSE and DCE.

Each takes a graph and returns a new one (the input is not modified)."""
from __future__ import annotations

import numpy as np
import sympy

from ..ir import registry
from ..ir.graph import Graph, Node, Uses, clone
from ..ir.ops.random import RANDOM_OPS
from ..ir.types import DTYPES, concretize, numel

FOLD_MAX_ELEMENTS = 64  # fold only small constants: big ones would bloat the IR text and the plan
FOLD_MAX_INPUT_ELEMENTS = 1 << 16  # and read only small ones: sum(zeros([1e5, 1e5, 1e5])) stays a run-time op


def _is_identity(n: Node) -> bool:
    """Ops that return their input unchanged."""
    x = n.inputs[0] if n.inputs else None
    if x is None or len(n.outputs) != 1 or n.outputs[0].type != x.type:
        return False
    a = n.attrs
    if n.op in ("cast", "reshape", "broadcast_to", "squeeze"):
        return True
    if n.op == "transpose":
        return list(a["perm"]) == list(range(x.type.rank))
    if n.op == "slice":
        return all(s in (0, None) and (e is None or e == d) and st == 1
                   for (s, e, st), d in zip(a["slices"], x.type.shape))
    if n.op in ("pad",):
        return all(p == [0, 0] for p in a["pads"])
    if n.op in ("repeat",):
        return a["repeats"] == 1
    return False


def canonicalize(graph: Graph) -> Graph:
    """Drop identity ops (a cast to the same dtype, a reshape to the same shape, ...);
    merge transpose chains and reshape chains; drop what that leaves dead."""
    g = clone(graph)
    _canon(g)
    _dce(g)
    return g


def _canon(g: Graph):
    uses = Uses(g)
    keep, kept = [], set()  # the set: `src in kept` per node, not a scan of the list (quadratic)
    for n in g.nodes:
        if n.body is not None:
            _canon(n.body)
        if _is_identity(n):
            uses.replace(n.outputs[0], n.inputs[0])
            continue
        src = n.inputs[0].producer if n.inputs and n.inputs[0] is not None else None
        if n.op == "transpose" and src is not None and src.op == "transpose" and src in kept:
            inner = src.attrs["perm"]
            n.inputs = [src.inputs[0]]
            uses.note(n)
            n.attrs = {"perm": [inner[p] for p in n.attrs["perm"]]}
            if n.attrs["perm"] == list(range(len(inner))):
                uses.replace(n.outputs[0], n.inputs[0])
                continue
        if n.op == "reshape" and src is not None and src.op == "reshape" and src in kept:
            n.inputs = [src.inputs[0]]
            uses.note(n)
            if n.outputs[0].type == n.inputs[0].type:
                uses.replace(n.outputs[0], n.inputs[0])
                continue
        keep.append(n)
        kept.add(n)
    g.nodes = keep


def fold(graph: Graph) -> Graph:
    """Evaluate ops whose inputs are all small constants at compile time."""
    g = clone(graph)
    _fold(g)
    return g


def _fold(g: Graph):
    consts: dict = {}
    for n in g.nodes:
        if n.body is not None:
            _fold(n.body)
            continue
        if n.op == "const":
            if not _symbolic(n.attrs["value"]):   # a value over dims (mean's 1/(2*B) in a gradient) stays an op
                consts[n.outputs[0]] = n
            continue
        if any(v not in consts for v in n.inputs if v is not None) or len(n.outputs) != 1:
            continue
        out_type = n.outputs[0].type
        if not all(d.is_Integer for d in out_type.shape) or out_type.dtype in ("c64", "c128"):
            continue   # (complex values stay ops: the IR text has no complex literal)
        if _fold_fill(n, consts):
            consts[n.outputs[0]] = n
            continue
        if int(numel(out_type.shape)) > FOLD_MAX_ELEMENTS or any(
                not _small_const(consts[v]) for v in n.inputs if v is not None):
            continue
        args = [None if v is None else _const_array(consts[v]) for v in n.inputs]
        if any(a is None for v, a in zip(n.inputs, args) if v is not None):
            continue  # a constant of symbolic shape
        with np.errstate(all="ignore"):
            out = np.asarray(registry.get(n.op).ref(*args, **concretize(n.attrs, {}))).astype(DTYPES[out_type.dtype])
        if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
            continue  # keep inf/nan producing ops visible
        n.op, n.inputs = "const", []
        n.attrs = {"value": out.item() if out.ndim == 0 else out.tolist(), "dtype": out_type.dtype, "shape": list(out_type.shape)}
        consts[n.outputs[0]] = n


def _symbolic(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_symbolic(v) for v in value)
    return isinstance(value, sympy.Basic) and bool(value.free_symbols)


def _small_const(node) -> bool:
    """A constant small enough to materialise at compile time (concrete shape, few elements)."""
    shape = node.attrs["shape"]
    return all(getattr(d, "is_Integer", True) for d in shape) and int(numel(shape)) <= FOLD_MAX_INPUT_ELEMENTS


def _fold_fill(n: Node, consts: dict) -> bool:
    """An elementwise op of fills (consts with one scalar value: zeros, ones, full) is a fill of the result:
    computed on the scalars, whatever the shape, so `ones([30000, 30000]) * 2` folds without an array."""
    fills = [consts[v].attrs for v in n.inputs if v is not None]
    if registry.get(n.op).kind != "elementwise" or not fills or any(isinstance(a["value"], (list, tuple)) for a in fills):
        return False
    if n.op in RANDOM_OPS:   # a draw per element (bernoulli of a fill is not a fill)
        return False
    t = n.outputs[0].type
    args = [None if v is None else np.asarray(consts[v].attrs["value"], DTYPES[consts[v].attrs["dtype"]])
            for v in n.inputs]
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(registry.get(n.op).ref(*args, **concretize(n.attrs, {}))).astype(DTYPES[t.dtype])
    except Exception:  # noqa: BLE001 - an op whose reference wants its operands' real rank: leave it
        return False
    if out.ndim != 0 or (out.dtype.kind == "f" and not np.isfinite(out)):
        return False  # keep inf/nan producing ops visible
    n.op, n.inputs = "const", []
    n.attrs = {"value": out.item(), "dtype": t.dtype, "shape": list(t.shape)}
    return True


def _const_array(node):
    a = node.attrs
    if not all(getattr(d, "is_Integer", True) for d in a["shape"]):
        return None
    return registry.get("const").ref(**concretize(a, {}))


def cse(graph: Graph) -> Graph:
    """Common-subexpression elimination: one node per (op, inputs, attrs)."""
    g = clone(graph)
    _cse(g)
    return g


def _key(n: Node):
    return (n.op, tuple(id(v) for v in n.inputs), repr(sorted(n.attrs.items())), n.annotations)


def _cse(g: Graph):
    uses = Uses(g)
    seen: dict = {}
    keep = []
    for n in g.nodes:
        if n.body is not None:
            _cse(n.body)
            keep.append(n)
            continue
        k = _key(n)
        if k in seen:
            for old, new in zip(n.outputs, seen[k].outputs):
                uses.replace(old, new)
            continue
        seen[k] = n
        keep.append(n)
    g.nodes = keep


def dce(graph: Graph) -> Graph:
    """Dead-code elimination: drop nodes none of whose results reach an output."""
    g = clone(graph)
    _dce(g)
    return g


def _dce(g: Graph):
    live = {v for _, v in g.outputs}
    keep = []
    for n in reversed(g.nodes):
        if any(v in live for v in n.outputs):
            if n.body is not None:
                _dce(n.body)
            keep.append(n)
            live.update(v for v in n.inputs if v is not None)
    g.nodes = keep[::-1]


def drop_unused_params(g: Graph, params: dict) -> None:
    """Drop (in place) the params nothing reads any more, from the graph and from `params`: what a rewriting
    pass with concrete weights (quantize, sparsify) leaves behind when it replaces a weight."""
    used = {v for n in g.walk() for v in n.inputs if v is not None} | {v for _, v in g.outputs}
    for p in g.params:
        if p.value not in used:
            params.pop(p.name, None)
    g.params = [p for p in g.params if p.value in used]
