"""The reverse walk of automatic differentiation, over a list of IR nodes: each node's gradient rule
(`OpDef.vjp`, written as IR with an `ir.builder.Emitter`) turns its outputs' cotangents into its inputs'; a value
read by several nodes sums what each gives it. passes/autodiff.py builds gradients of programs and graphs on
it, and the gradient rule of `scan` (ir/ops/control_grad.py) differentiates a scan's body with it.

Values that are not floats (integers, booleans: indices, masks, comparisons) carry no gradient. An op with a
float output and no `vjp` (floor, round, sign: a gradient zero almost everywhere) stops the walk with an error
naming the op and its source line, unless the program stops the gradient there (`stop_gradient`) or states a
surrogate (`straight_through`)."""
from __future__ import annotations

from ..errors import PnetError
from . import registry
from .builder import Emitter
from .graph import Node, Value
from .types import dims_equal, is_complex, is_float


class GradError(PnetError):
    """A gradient that cannot be built (an op without a gradient on the path, a non-scalar loss, ...)."""


def reverse_walk(nodes: list[Node], seeds: dict[Value, Value], wrt: list[Value]) -> tuple[list[Node], dict, set]:
    """The nodes computing the cotangents of `wrt` given `seeds` (value -> cotangent): (the emitted nodes, every
    value's cotangent, the values some seed depends on). A value of wrt that no float path leads from to a seed
    has no cotangent."""
    active = {v for v in wrt if _carries(v)}                 # values that depend on a value of wrt
    for n in nodes:
        if any(v is not None and v in active for v in n.inputs):
            active.update(o for o in n.outputs if _carries(o))
    needed = set(seeds)                                      # values some seed depends on
    for n in reversed(nodes):
        if any(o in needed for o in n.outputs):
            needed.update(v for v in n.inputs if v is not None)
    ct: dict[Value, Value] = {v: c for v, c in seeds.items() if v in active}
    emitted: list[Node] = []
    for n in reversed(nodes):
        cts = [ct.get(o) for o in n.outputs]
        targets = [v is not None and v in active and v in needed for v in n.inputs]
        if not any(targets) or all(c is None for c in cts):
            continue
        e = Emitter(n)
        for i, (v, want, g) in enumerate(zip(n.inputs, targets, _vjp(e, n, cts))):
            if want and g is not None:
                _accumulate(e, ct, v, g, n, i)
        emitted += e.nodes
    return emitted, ct, needed


def _carries(v: Value) -> bool:
    """Floats and complex values (ir/ops/fft.py) carry gradients."""
    return is_float(v.type.dtype) or is_complex(v.type.dtype)


def _vjp(e: Emitter, n: Node, cts: list[Value | None]) -> list[Value | None]:
    opdef = registry.get(n.op)
    if opdef.vjp is None:
        reason = f": {opdef.no_grad}" if opdef.no_grad else ""
        raise GradError(f"{n.op} has no gradient{reason}; stop the gradient before it with stop_gradient(...), or "
                        f"give it a surrogate gradient with straight_through(...)", n.where)
    grads = list(opdef.vjp(e, n, cts))
    return grads + [None] * (len(n.inputs) - len(grads))


def _accumulate(e: Emitter, ct: dict, v: Value, g: Value, n: Node, i: int) -> None:
    if g.type.rank != v.type.rank or not all(dims_equal(a, b) for a, b in zip(g.type.shape, v.type.shape)):
        raise PnetError(f"internal error: the gradient rule of {n.op} gave input {i} a cotangent {g.type} "
                        f"for a value {v.type}", n.where)
    g = e.like(g, v)
    ct[v] = g if v not in ct else e("add", [ct[v], g])


def cotangents(e: Emitter, n: Node, cts: list[Value | None]) -> list[Value]:
    """Each output's cotangent, zeros for an output nothing downstream differentiates (for the rules of ops
    with several outputs, such as split)."""
    return [c if c is not None else e.full(0.0, o.type) for c, o in zip(cts, n.outputs)]
