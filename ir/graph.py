"""The IR: a typed SSA graph. Values are produced once (by a node, or as a graph input/param)."""
from __future__ import annotations

from dataclasses import dataclass, field
import itertools
from typing import Any

import numpy as np

from ..errors import Loc
from .types import TensorType, source_literal

_ids = itertools.count()


class Value:
    """An SSA value. Identity is the object; `id` is only for printing order and hashing."""
    __slots__ = ("type", "producer", "id")

    def __init__(self, type: TensorType, producer: "Node | None" = None):
        self.type = type
        self.producer = producer
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"Value#{self.id}:{self.type}"


@dataclass(frozen=True)
class Annotation:
    """`@name(args...)` from the source, carried onto nodes and params for later passes."""
    name: str
    args: tuple = ()
    kwargs: tuple = ()  # sorted (key, value) pairs
    loc: Loc | None = field(default=None, compare=False)  # where `@name` is written (for the passes' errors)

    def __str__(self) -> str:
        parts = [source_literal(a) for a in self.args] + [f"{k}={source_literal(v)}" for k, v in self.kwargs]
        return f"@{self.name}" + (f"({', '.join(parts)})" if parts else "")


@dataclass(eq=False)
class Node:
    op: str
    inputs: list[Value]
    attrs: dict[str, Any]
    outputs: list[Value] = field(default_factory=list)
    loc: Loc | None = None
    scope: str = ""
    annotations: tuple[Annotation, ...] = ()
    body: "Graph | None" = None  # the step function of a `scan`
    text_loc: Loc | None = None  # where parse_graph read the node (IR text), for errors; never printed

    @property
    def where(self) -> Loc | None:
        """The best location for an error about this node: its source, else its line of IR text."""
        return self.loc or self.text_loc

    @property
    def output(self) -> Value:
        assert len(self.outputs) == 1, f"{self.op} has {len(self.outputs)} outputs"
        return self.outputs[0]


@dataclass(frozen=True)
class Init:
    """How a parameter is initialised: an init function name and its numeric arguments."""
    fn: str
    args: tuple = ()
    kwargs: tuple = ()

    def __str__(self) -> str:
        parts = [source_literal(a) for a in self.args] + [f"{k}={source_literal(v)}" for k, v in self.kwargs]
        return f"{self.fn}({', '.join(parts)})"


def fans(shape) -> tuple[int, int]:
    """fan_in, fan_out: [in, out] for dense weights (x @ w); torch's rule for conv [out, in, k...]."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    k = int(np.prod(shape[2:]))
    return shape[1] * k, shape[0] * k


@dataclass(eq=False)
class Param:
    name: str             # call path, e.g. "blocks.3.attn.wq" — the torch state_dict key
    value: Value
    init: Init
    loc: Loc | None = None
    annotations: tuple[Annotation, ...] = ()
    state: bool = False   # `state NAME: ...`: not trained (a torch buffer: running statistics, frozen weights)


# A training-mode graph writes each `update NAME = expr` as the output "state:NAME" (the state's next value):
# passes keep it like any output, a backend or training driver writes it back into the state.
STATE_OUTPUT_PREFIX = "state:"


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list[tuple[str, Value]] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[tuple[str, Value]] = field(default_factory=list)
    dims: dict[str, int] = field(default_factory=dict)  # suggested sizes for symbolic dims (from --set)

    def add(self, op: str, inputs, attrs, out_types, loc=None, scope="", annotations=(), body=None) -> Node:
        node = Node(op, list(inputs), dict(attrs), [], loc, scope, tuple(annotations), body)
        node.outputs = [Value(t, node) for t in out_types]
        self.nodes.append(node)
        return node

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def users(self) -> dict[Value, list[Node]]:
        uses: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                uses.setdefault(v, []).append(n)
        return uses

    def param_count(self, bindings=None) -> int:
        """Trainable parameters only (torch's sum over model.parameters()); `state` is not counted."""
        from .types import concrete
        total = 0
        for p in self.params:
            if p.state:
                continue
            n = 1
            for d in p.value.type.shape:
                n *= concrete(d, bindings)
            total += n
        return total

    def walk(self):
        """Every node, including those inside scan bodies (depth first)."""
        for n in self.nodes:
            yield n
            if n.body is not None:
                yield from n.body.walk()


def clone(graph: Graph, mapping: dict | None = None) -> Graph:
    """A deep copy with fresh Values (passes work on a copy, so the input graph stays as it was)."""
    m = mapping if mapping is not None else {}

    def val(v):
        if v is None:
            return None
        if v not in m:
            m[v] = Value(v.type)
        return m[v]

    g = Graph(graph.name, dims=dict(graph.dims))
    g.inputs = [(n, val(v)) for n, v in graph.inputs]
    g.params = [Param(p.name, val(p.value), p.init, p.loc, p.annotations, p.state) for p in graph.params]
    for n in graph.nodes:
        body = clone(n.body, m) if n.body is not None else None
        node = Node(n.op, [val(v) for v in n.inputs], dict(n.attrs), [], n.loc, n.scope, n.annotations, body)
        node.outputs = [val(v) for v in n.outputs]
        for v in node.outputs:
            v.producer = node
        g.nodes.append(node)
    g.outputs = [(n, val(v)) for n, v in graph.outputs]
    return g


class Uses:
    """Where each value is read -- node inputs (in a graph and its scan bodies) and graph outputs -- so that
    replacing a value visits its readers only: a pass that merges or drops k nodes of an n-node graph does
    O(n + uses) work instead of O(k * n). Built once per pass; a pass that rewrites a node's inputs itself
    calls `note(node)` afterwards. Stale entries (a reader that no longer reads the value) are harmless."""

    def __init__(self, graph: Graph):
        self.readers: dict[Value, dict[Node, None]] = {}   # value -> nodes reading it (an ordered set)
        self.outputs: dict[Value, dict[Graph, None]] = {}  # value -> graphs that output it
        self.visits = 0  # nodes and graphs touched by replace (tests count it: it must not grow with the graph)
        self._index(graph)

    def _index(self, graph: Graph) -> None:
        for n in graph.nodes:
            self.note(n)
            if n.body is not None:
                self._index(n.body)
        for _, v in graph.outputs:
            self.outputs.setdefault(v, {})[graph] = None

    def note(self, node: Node) -> None:
        """Record the node's current inputs (after a pass rewrote them)."""
        for v in node.inputs:
            if v is not None:
                self.readers.setdefault(v, {})[node] = None

    def replace(self, old: Value, new: Value) -> None:
        """Point every use of `old` at `new`."""
        for n in self.readers.pop(old, {}):
            self.visits += 1
            n.inputs = [new if v is old else v for v in n.inputs]
            self.readers.setdefault(new, {})[n] = None
        for g in self.outputs.pop(old, {}):
            self.visits += 1
            g.outputs = [(k, new if v is old else v) for k, v in g.outputs]
            self.outputs.setdefault(new, {})[g] = None


def replace_uses(graph: Graph, old: Value, new: Value) -> None:
    """Point every use of `old` (in this graph, its scan bodies, and its outputs) at `new`. One full scan:
    a pass that replaces many values builds a `Uses` once instead."""
    for n in graph.nodes:
        n.inputs = [new if v is old else v for v in n.inputs]
        if n.body is not None:
            replace_uses(n.body, old, new)
    graph.outputs = [(k, new if v is old else v) for k, v in graph.outputs]
