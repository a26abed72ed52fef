"""The gradient of `scan` (control.py): backpropagation through time, as two more scans.

Given the cotangents of a scan's final carries and of its stacked yields, the rule emits
  (a) a *recompute* scan: the forward scan again (same inputs), whose body yields the carries entering each step
      (checkpointing: the forward node is left as it is and only the carries' history is kept -- the simplest
      correct plan, and exact: every op is a pure function of its inputs and attributes, the random ops included,
      which are counter-based; it is skipped when the backward step reads no carry);
  (b) a *reverse* scan over the sequences, the carries' history and the yields' cotangents, each flipped along its
      axis, whose body is the forward body followed by that body's own gradient (built here by `backprop`, the
      reverse walk of passes/autodiff.py over the body's nodes): its carries are the carries' cotangents (seeded by
      the final carries' cotangents) and one accumulator per float captured value (the weights an RNN applies at
      every step: their cotangents are summed over the steps, starting from zeros); it yields the cotangents of the
      sequences' slices, which are stacked, flipped back and moved to each sequence's axis.
The results are the cotangents of the initial carries (the reverse scan's final carries), of the sequences and of
the captured values. A zero-length scan runs no step: the carries' cotangents pass through, the sequences get an
empty stack and the captured values zeros. Only float inputs get gradients; the body's integer values (a step
counter, indices) are recomputed, not differentiated. Memory: the carries' history ([length, *carry]) and the
flipped copies of the sequences and cotangents; torch's loop keeps every step's activations instead.

The reverse walk over a body is `backprop` below, the same walk as passes/autodiff.py's (rules from the registry,
cotangents summed over readers): a rule lives in ir/, which may not import passes/."""
from __future__ import annotations

from ..backprop import reverse_walk
from ..builder import Emitter
from ..graph import Graph, Node, Value, clone
from ..registry import vjp
from ..types import is_float


def _float(v: Value) -> bool:
    return is_float(v.type.dtype)


def backprop(nodes: list[Node], seeds: dict[Value, Value], wrt: list[Value]) -> tuple[list[Node], list]:
    """The body's reverse walk (ir/backprop.py): the nodes computing the cotangents of `wrt` given `seeds`, and
    each value's cotangent (None where no float path leads from it to a seed: a body input the outer gradient
    may not need, so no error)."""
    emitted, ct, _ = reverse_walk(nodes, seeds, wrt)
    return emitted, [ct.get(v) for v in wrt]


def _prune(g: Graph) -> None:
    """Drop the nodes no output of `g` depends on."""
    live = {v for _, v in g.outputs}
    keep = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            keep.append(n)
            live.update(v for v in n.inputs if v is not None)
    g.nodes = keep[::-1]


def _used(g: Graph) -> set:
    return {v for n in g.nodes for v in n.inputs} | {v for _, v in g.outputs}


def _scan_node(e: Emitter, inputs, body: Graph, k: int, s: int, axes, out_axis: int, length) -> Node:
    """A scan node (the emitter's anchor's location) running `body`; its output types follow from the body."""
    outs = [v.type for _, v in body.outputs[:k]] + [
        v.type.with_shape(v.type.shape[:out_axis] + (length,) + v.type.shape[out_axis:]) for _, v in body.outputs[k:]]
    a = e.anchor
    node = Node("scan", list(inputs), {"axes": list(axes), "out_axis": out_axis, "n_carries": k, "n_seqs": s,
                                       "length": length}, [], a.loc, a.scope, a.annotations, body)
    node.outputs = [Value(t, node) for t in outs]
    e.nodes.append(node)
    return node


def _history(e: Emitter, n: Node, k: int) -> list[Value]:
    """The recompute scan: the carries entering each step, stacked along axis 0."""
    b = clone(n.body)
    b.name = "scan_recompute"
    b.outputs = b.outputs[:k] + [(f"h.{name}", v) for name, v in b.inputs[:k]]
    _prune(b)
    node = _scan_node(e, n.inputs, b, k, n.attrs["n_seqs"], n.attrs["axes"], 0, n.attrs["length"])
    return node.outputs[k:]


def _move(e: Emitter, y: Value, src: int, dst: int) -> Value:
    if src == dst:
        return y
    perm = [a for a in range(y.type.rank) if a != src]
    perm.insert(dst, src)
    return e("transpose", [y], perm=perm)


@vjp("scan")
def _scan(e, n, cts):
    k, s = n.attrs["n_carries"], n.attrs["n_seqs"]
    axes, out_axis, length = n.attrs["axes"], n.attrs["out_axis"], n.attrs["length"]
    carries, seqs, caps = n.inputs[:k], n.inputs[k:k + s], n.inputs[k + s:]
    b = clone(n.body)
    b.name = "scan_grad"
    b_in = [v for _, v in b.inputs]
    c_in, x_in, w_in = b_in[:k], b_in[k:k + s], b_in[k + s:]
    b_out = [v for _, v in b.outputs]
    names = [name for name, _ in b.inputs]
    head, tail = Emitter(n), Emitter(n)   # the body's summed seeds; its accumulators and zeros

    # the reverse scan's carries: a cotangent per float carry; its sequences: the yields' cotangents (slices)
    fc = [i for i in range(k) if _float(carries[i])]
    ct_carry = {i: Value(carries[i].type) for i in fc}
    fy = [j for j in range(len(b_out) - k) if cts[k + j] is not None and _float(b_out[k + j])]
    ct_yield = {j: Value(b_out[k + j].type) for j in fy}
    seeds: dict[Value, Value] = {}
    for out, c in [(b_out[i], ct_carry[i]) for i in fc] + [(b_out[k + j], ct_yield[j]) for j in fy]:
        seeds[out] = head("add", [seeds[out], c]) if out in seeds else c
    wrt = [v for v in b_in if _float(v)]
    nodes, grads = backprop(b.nodes, seeds, wrt)
    grad = dict(zip(wrt, grads))

    acc_in, acc_out, acc_of = [], [], []   # captured values with a gradient: summed over the steps
    for j, w in enumerate(w_in):
        if grad.get(w) is not None:
            acc = Value(w.type)
            acc_in.append((f"acc.{names[k + s + j]}", acc))
            acc_out.append((f"acc{j}", tail.like(tail("add", [acc, grad[w]]), w)))
            acc_of.append(j)
    dx_of = [i for i, x in enumerate(x_in) if grad.get(x) is not None]
    gb = Graph("scan_grad", dims=dict(b.dims))
    gb.inputs = [(f"ct.{names[i]}", ct_carry[i]) for i in fc] + acc_in \
        + [(f"ct.y{j}", ct_yield[j]) for j in fy] + list(zip(names[:k], c_in)) + list(zip(names[k:k + s], x_in)) \
        + list(zip(names[k + s:], w_in))
    carry_out = []
    for i in fc:
        g = grad.get(c_in[i])
        carry_out.append((f"ct{i}", g if g is not None else tail.full(0.0, c_in[i].type)))
    gb.outputs = carry_out + acc_out + [(f"dx{i}", grad[x_in[i]]) for i in dx_of]
    gb.nodes = b.nodes + head.nodes + nodes + tail.nodes
    _prune(gb)
    used = _used(gb)
    # carry inputs stay; sequence slices and captured values the backward step never reads are not fed
    n_gc = len(fc) + len(acc_in)
    gseq = [(j, None) for j in fy] + [(None, i) for i in range(k)] + [("x", i) for i in range(s)]
    seq_in = gb.inputs[n_gc:n_gc + len(gseq)]
    keep_seq = [(q, (nm, v)) for q, (nm, v) in zip(gseq, seq_in) if v in used]
    if not keep_seq:   # a scan needs a sequence for its length: keep the first
        keep_seq = [(gseq[0], seq_in[0])]
    keep_cap = [(j, (nm, v)) for j, (nm, v) in enumerate(gb.inputs[n_gc + len(gseq):]) if v in used]
    gb.inputs = gb.inputs[:n_gc] + [p for _, p in keep_seq] + [p for _, p in keep_cap]

    # the reverse scan's operands
    hist = _history(e, n, k) if any(q == (None, i) for (q, _) in keep_seq for i in range(k)) else None
    ops, seq_axes = [], []
    for i in fc:
        c = cts[i]
        ops.append(e.like(c, carries[i]) if c is not None else e.full(0.0, carries[i].type))
    ops += [e.full(0.0, caps[j].type) for j in acc_of]
    for q, _ in keep_seq:
        if q[1] is None:       # a yield's cotangent
            src, ax = e.like(cts[k + q[0]], n.outputs[k + q[0]]), out_axis
        elif q[0] is None:     # a carry's history
            src, ax = hist[q[1]], 0
        else:                  # a sequence
            src, ax = seqs[q[1]], axes[q[1]]
        ops.append(e("flip", [src], axis=[ax]))
        seq_axes.append(ax)
    ops += [caps[j] for j, _ in keep_cap]
    oa = axes[dx_of[0]] if len({axes[i] for i in dx_of}) == 1 else 0   # stack there; move where axes differ
    node = _scan_node(e, ops, gb, n_gc, len(keep_seq), seq_axes, oa, length)

    out: list = [None] * len(n.inputs)
    for i, v in zip(fc, node.outputs):
        out[i] = v
    for j, v in zip(acc_of, node.outputs[len(fc):n_gc]):
        out[k + s + j] = v
    for i, v in zip(dx_of, node.outputs[n_gc:]):
        out[k + i] = _move(e, e("flip", [v], axis=[oa]), oa, axes[i])
    return out
