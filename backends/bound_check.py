"""What `pnet check` can decide once the dims are bound, without inputs or weights: the errors a run with those
sizes would raise before or regardless of the data, each located at its node, with run's own message.

- the shape checks every backend runs first (numpy_ref.check_shapes: a slice past the end of a dim, a max over
  an axis bound to 0, split sizes against the bound axis, ...);
- indices that do not depend on the data: an index op (take, embedding, gather, ...) whose index operand is
  computed from the dims alone, such as GPT-2's `embedding(wpe, arange(T))`, which needs T <= ctx.

Values computed from the dims alone are evaluated with the reference when small (SMALL elements); the index op
then runs on them with zero-stride stand-ins for its data operands, so no table is ever allocated."""
from __future__ import annotations

import numpy as np

from ..errors import PnetError
from ..ir import registry
from ..ir.graph import Graph
from ..ir.types import DTYPES, concrete, concretize
from .numpy_ref import check_shapes

SMALL = 1 << 20   # elements: a dims-only value (or an index op's result) larger than this is not evaluated


def check_bound(graph: Graph, bindings: dict) -> None:
    """Raise the located error a run at `bindings` would raise from the sizes alone (nothing when none)."""
    check_shapes(graph, bindings)
    static: dict = {}   # value -> array, for values computed from the dims alone
    for node in graph.nodes:
        if node.op == "scan" or any(v is None for v in node.inputs):
            continue
        opdef = registry.get(node.op)
        if all(v in static for v in node.inputs) and not _random(opdef):
            _fold(node, opdef, static, bindings)
        elif opdef.kind == "index" and any(v in static for v in node.inputs):
            _try_index(node, opdef, static, bindings)


def _random(opdef) -> bool:
    return "seed" in opdef.attrs or opdef.kind == "random"


def _size(value, bindings) -> int | None:
    try:
        return int(np.prod([concrete(d, bindings) for d in value.type.shape], dtype=object))
    except (TypeError, ValueError):
        return None


def _small(values, bindings) -> bool:
    sizes = [_size(v, bindings) for v in values]
    return all(s is not None and s <= SMALL for s in sizes)


def _call(node, opdef, args, bindings):
    with np.errstate(all="ignore"):
        out = opdef.ref(*args, **concretize(node.attrs, bindings))
    return list(out) if isinstance(out, tuple) else [out]


def _fold(node, opdef, static: dict, bindings) -> None:
    """A dims-only node: its value, when small (a failure here is left to the run, which reports it)."""
    if not _small(node.outputs, bindings):
        return
    try:
        results = _call(node, opdef, [static[v] for v in node.inputs], bindings)
    except PnetError as e:
        raise e.with_loc(node.loc) from None
    except Exception:  # noqa: BLE001 - not decidable here; the run decides
        return
    for v, r in zip(node.outputs, results):
        static[v] = np.asarray(r).astype(DTYPES[v.type.dtype], copy=False)


def _try_index(node, opdef, static: dict, bindings) -> None:
    """An index op with a dims-only index: run it on zero-stride stand-ins for the data operands."""
    if not _small(node.outputs, bindings):
        return
    args = []
    for v in node.inputs:
        if v in static:
            args.append(static[v])
        else:
            shape = [concrete(d, bindings) for d in v.type.shape]
            args.append(np.broadcast_to(np.zeros((), DTYPES[v.type.dtype]), shape))
    try:
        _call(node, opdef, args, bindings)
    except PnetError as e:
        raise e.with_loc(node.loc) from None
    except Exception:  # noqa: BLE001 - e.g. an op that writes into its operand: not decidable here
        return
