"""Reverse-mode automatic differentiation over the IR.

Every differentiable op's registry entry holds its vector-Jacobian product (`OpDef.vjp`), written as IR: given
the node and the cotangent of each of its outputs, it emits the ops that compute the cotangent of each input
(an `ir.builder.Emitter` gives the emitted nodes the node's source location). `backprop` walks the nodes in
reverse (ir/backprop.py's `reverse_walk`), calls the rules of the nodes between the values to differentiate
(`wrt`) and the seeded values, and sums the cotangents a value receives from its several readers. The backward nodes read the forward
values directly, so what the forward computed is shared, never recomputed, and passes after this one (CSE,
DCE, fusion) see one graph.

Values that are not floats (integers, booleans: indices, masks, comparisons) carry no gradient. An op with a
float output and no `vjp` (floor, round, sign, the quantizers: a gradient zero almost everywhere) stops the
walk with an error naming the op and its source line, unless the program stops the gradient there
(`stop_gradient`) or states a surrogate (`straight_through`).

`grad_graph(graph, loss, wrt)` is the whole-graph form: the forward outputs plus `grad.NAME` for every input
or parameter NAME asked for.
"""
from __future__ import annotations

from ..ir.analysis import frozen_params
from ..ir.backprop import GradError, reverse_walk
from ..ir.builder import Emitter
from ..ir.graph import Graph, Node, Value, clone
from ..ir.types import is_float


def backprop(nodes: list[Node], seeds: dict[Value, Value], wrt: list[Value],
             names: list[str] | None = None) -> tuple[list[Node], list[Value]]:
    """The nodes computing d(seeds)/d(wrt), and the gradient of each value of `wrt` (zeros where no path
    leads from it to a seed). `seeds` maps values to their cotangents (ones for a scalar loss). A value of
    `wrt` that reaches a seed only through an op whose output is not a float (quantize, argmax, a
    comparison) is an error naming that op (`names`: what to call the values of wrt in it)."""
    emitted, ct, needed = reverse_walk(nodes, seeds, wrt)
    grads = []
    for j, v in enumerate(wrt):
        if v in ct:
            grads.append(ct[v])
        else:   # nothing that reaches a seed reads v: its gradient is zero
            _check_not_blocked(nodes, v, needed, names[j] if names else None)
            e = Emitter(None)
            grads.append(e.full(0.0, v.type))
            emitted += e.nodes
    return emitted, grads


# inputs through which a program says no gradient flows: they do not count as a path to the loss
_STEERED = {"stop_gradient": (0,), "straight_through": (0,)}


def _check_not_blocked(nodes: list[Node], v: Value, needed: set, name: str | None) -> None:
    """v gets no gradient: fine if it does not reach the seeds at all, or only through stop_gradient /
    straight_through's value; an error if a path to them crosses an op with a non-float output."""
    reach = {v}
    blocker = None
    for n in nodes:
        ins = [i for i, x in enumerate(n.inputs) if x is not None and x in reach and i not in _STEERED.get(n.op, ())]
        if not ins:
            continue
        reach.update(n.outputs)
        if blocker is None and any(is_float(n.inputs[i].type.dtype) for i in ins) \
                and not any(is_float(o.type.dtype) for o in n.outputs) and any(o in needed for o in n.outputs):
            blocker = n
    if blocker is not None and reach & needed - {v}:
        what = f"'{name}'" if name else "the value"
        out = blocker.outputs[0].type
        raise GradError(f"no gradient reaches {what}: its path to the loss goes through {blocker.op}, whose output "
                        f"{out} is not a float; give {blocker.op} a surrogate gradient with straight_through(...), "
                        f"or say no gradient is meant with stop_gradient(...)", blocker.where)


# ---- the whole-graph form ------------------------------------------------------------------------------
def grad_graph(graph: Graph, loss: str | None = None, wrt: list[str] | None = None,
               cotangents: list[str] | None = None) -> Graph:
    """`graph` plus its gradients: the outputs stay, and `grad.NAME` is added for each input or parameter NAME
    of `wrt` (default: every trainable float parameter, as torch trains them). What is differentiated: the output `loss` (default: the only
    output), a float scalar; or, with `cotangents` (output names), the vector-Jacobian product of those
    outputs, each seeded by a new graph input `cotangent.NAME` of the output's type."""
    g = clone(graph)
    outputs = dict(g.outputs)
    e = Emitter(None)
    if cotangents is not None:
        seeds = {}
        for name in cotangents:
            _check_output(g, outputs, name)
            y = outputs[name]
            c = Value(y.type)
            g.inputs.append((f"cotangent.{name}", c))
            seeds[y] = e("add", [seeds[y], c]) if y in seeds else c
    else:
        if loss is None:
            if len(outputs) != 1:
                raise GradError(f"{g.name} has {len(outputs)} outputs ({', '.join(outputs)}): name the loss")
            loss = next(iter(outputs))
        _check_output(g, outputs, loss)
        y = outputs[loss]
        if y.type.rank != 0:
            raise GradError(f"the loss '{loss}' must be a scalar, got {y.type}")
        seeds = {y: e.full(1.0, y.type)}
    named = {name: v for name, v in g.inputs} | {p.name: p.value for p in g.params}
    if wrt is None:   # the trainable ones: batchnorm's running statistics are state, not weights
        frozen = frozen_params(g)
        wrt = [p.name for p in g.params if is_float(p.value.type.dtype) and p.name not in frozen]
    for name in wrt:
        if name not in named:
            raise GradError(f"{g.name} has no input or parameter '{name}'")
        if not is_float(named[name].type.dtype):
            raise GradError(f"'{name}' is {named[name].type}: only float values have gradients")
    nodes, grads = backprop(g.nodes, seeds, [named[n] for n in wrt], list(wrt))
    g.nodes += e.nodes + nodes
    g.outputs += [(f"grad.{name}", v) for name, v in zip(wrt, grads)]
    return g


def _check_output(g: Graph, outputs: dict, name: str) -> None:
    if name not in outputs:
        raise GradError(f"{g.name} has no output '{name}' (outputs: {', '.join(outputs)})")
    if not is_float(outputs[name].type.dtype):
        raise GradError(f"output '{name}' is {outputs[name].type}: only float values have gradients")
