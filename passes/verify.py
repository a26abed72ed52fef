"""The IR verifier: run after every pass in tests. Checks SSA (defined before use, defined once),
that each node's output types match its op's type rule, and that scan bodies fit their node."""
from __future__ import annotations

from ..errors import PnetError
from ..ir import registry
from ..ir.graph import Graph, Value


class VerifyError(PnetError):
    pass


def verify(graph: Graph, outer: set[Value] | None = None) -> None:
    defined: set[Value] = set()
    names: set[str] = set()
    for name, v in graph.inputs:
        _define(v, defined, f"input {name}")
    for p in graph.params:
        if p.name in names:
            raise VerifyError(f"verify {graph.name}: parameter {p.name} declared twice")
        names.add(p.name)
        _define(v=p.value, defined=defined, what=f"param {p.name}")
    for n in graph.nodes:
        for i, v in enumerate(n.inputs):
            if v is not None and v not in defined:
                raise VerifyError(f"verify {graph.name}: {n.op} input {i} used before it is defined", n.where)
        if n.op == "scan":
            _verify_scan(n)
        else:
            want = _type_rule(graph, n)
            got = [v.type for v in n.outputs]
            if want != got:
                raise VerifyError(f"verify {graph.name}: {n.op} outputs {', '.join(map(str, got))} but its type rule gives {', '.join(map(str, want))}", n.where)
        for v in n.outputs:
            if v.producer is not n:
                raise VerifyError(f"verify {graph.name}: {n.op} output does not point back to its node", n.where)
            _define(v, defined, f"{n.op} output")
    for name, v in graph.outputs:
        if v not in defined:
            raise VerifyError(f"verify {graph.name}: output {name} is not defined in the graph")


def _type_rule(graph: Graph, n) -> list:
    """The output types the node's op gives for its inputs and attributes. Malformed nodes (IR text written
    by hand or by a buggy pass: wrong input count, missing or unknown attributes, attributes of the wrong
    kind) are VerifyErrors naming the node, whatever exception the type rule would have raised."""
    try:
        opdef = registry.get(n.op)
        if opdef.variadic:
            opdef.check_arity(len(n.inputs))
        elif len(n.inputs) != len(opdef.inputs):  # absent optional inputs are explicit `_` slots
            raise VerifyError(f"verify {graph.name}: {n.op} takes {len(opdef.inputs)} input slot{'s' * (len(opdef.inputs) != 1)} "
                              f"({', '.join(a + k for a, k in opdef.inputs)}; `_` for an absent optional one), "
                              f"got {len(n.inputs)}", n.where)
        else:
            missing = [a for (a, k), v in zip(opdef.inputs, n.inputs) if v is None and k != "?"]
            if missing:
                raise VerifyError(f"verify {graph.name}: {n.op} lacks its required input {missing[0]}", n.where)
        attrs = opdef.bind_attrs(dict(n.attrs))
        return opdef.infer_types([v.type if v is not None else None for v in n.inputs], attrs)
    except VerifyError:
        raise
    except PnetError as e:
        raise VerifyError(f"verify {graph.name}: {n.op} does not type-check: {e.message}", n.where) from None
    except Exception as e:  # noqa: BLE001 - a type rule given malformed attributes
        raise VerifyError(f"verify {graph.name}: {n.op} has malformed attributes {n.attrs}: "
                          f"{type(e).__name__}: {e}", n.where) from None


def _define(v, defined, what):
    if v in defined:
        raise VerifyError(f"verify: {what} defined twice (not SSA)")
    defined.add(v)


def _verify_scan(n):
    body = n.body
    if body is None:
        raise VerifyError("verify: scan without a body", n.where)
    k, s = n.attrs["n_carries"], n.attrs["n_seqs"]
    if len(body.inputs) != len(n.inputs):
        raise VerifyError(f"verify: scan has {len(n.inputs)} inputs but its body takes {len(body.inputs)}", n.where)
    for i, ((_, bv), v) in enumerate(zip(body.inputs, n.inputs)):
        if k <= i < k + s:
            ax = n.attrs["axes"][i - k]
            want = v.type.with_shape(v.type.shape[:ax] + v.type.shape[ax + 1:])
        else:
            want = v.type
        if bv.type != want:
            raise VerifyError(f"verify: scan body input {i} is {bv.type}, expected {want}", n.where)
    if len(body.outputs) != len(n.outputs):
        raise VerifyError("verify: scan body outputs do not match the node's outputs", n.where)
    for i in range(k):
        if body.outputs[i][1].type != n.inputs[i].type or n.outputs[i].type != n.inputs[i].type:
            raise VerifyError(f"verify: scan carry {i} changes type", n.where)
    ax = n.attrs["out_axis"]
    for (_, bv), ov in zip(body.outputs[k:], n.outputs[k:]):
        want = bv.type.with_shape(bv.type.shape[:ax] + (n.attrs["length"],) + bv.type.shape[ax:])
        if ov.type != want:
            raise VerifyError(f"verify: scan output {ov.type} does not stack its body's {bv.type}", n.where)
    verify(body)
