"""Building IR nodes from Python: what a rewrite (passes/decompose.py) and a gradient rule (the `vjp` of an op's
registry entry, passes/autodiff.py) use to emit ops. Each node is type-checked by its op's own rule as it is
emitted and carries the anchor node's source location and scope, so an error in emitted code points at the
user's line."""
from __future__ import annotations

from . import registry
from .graph import Node, Value
from .types import TensorType, dims_equal, is_complex


class Emitter:
    """Emits nodes on behalf of `anchor` into `self.nodes` (the caller places them in a graph)."""

    def __init__(self, anchor: Node | None = None):
        self.anchor = anchor
        self.nodes: list[Node] = []

    def node(self, op: str, inputs, **attrs) -> Node:
        opdef = registry.get(op)
        attrs = opdef.bind_attrs(attrs)
        types = opdef.infer_types([v.type if v is not None else None for v in inputs], attrs)
        a = self.anchor
        node = Node(op, list(inputs), attrs, [], a.loc if a else None, a.scope if a else "",
                    a.annotations if a else ())
        node.outputs = [Value(t, node) for t in types]
        self.nodes.append(node)
        return node

    def __call__(self, op: str, inputs, **attrs) -> Value:
        return self.node(op, inputs, **attrs).outputs[0]

    def const(self, value, dtype: str) -> Value:
        return self("const", [], value=value, dtype=dtype, shape=[])

    def full(self, value, t: TensorType) -> Value:
        """A tensor of type `t` filled with `value` (a broadcast scalar, symbolic dims included)."""
        c = self.const(value, t.dtype)
        return self("broadcast_to", [c], shape=list(t.shape)) if t.rank else c

    def channel(self, v: Value, rank: int) -> Value:
        """A [C] vector shaped [C, 1, ...] to broadcast along axis 1 of a rank-`rank` tensor (expand_dims:
        a view even of a strided value, where a reshape would be a copy)."""
        for _ in range(rank - 2):
            v = self("expand_dims", [v], axis=-1)
        return v

    def like(self, y: Value, out: Value | TensorType) -> Value:
        """`y` with exactly the type of `out` (a cast if the dtype differs, a reshape view if the
        shape is only symbolically equal)."""
        t = out.type if isinstance(out, Value) else out
        if is_complex(y.type.dtype) and not is_complex(t.dtype):   # a real value's cotangent: the real part
            y = self("real", [y])
        elif is_complex(y.type.dtype) and y.type.dtype != t.dtype:   # c128 -> c64: part by part (no complex cast)
            y = self("complex", [self("cast", [self(p, [y])], dtype={"c64": "f32"}.get(t.dtype, "f64"))
                                 for p in ("real", "imag")])
        if y.type.dtype != t.dtype:
            y = self("cast", [y], dtype=t.dtype)
        if tuple(y.type.shape) != tuple(t.shape):
            y = self("reshape", [y], shape=list(t.shape))
        return y

    def sum_to(self, y: Value, t: TensorType) -> Value:
        """The adjoint of broadcasting `t` to y's shape: y summed over the axes broadcasting added or stretched
        from 1, then given exactly type `t` (how a gradient reaches an input that was broadcast)."""
        lead = y.type.rank - t.rank
        axes = list(range(lead))
        for i, d in enumerate(t.shape):
            yd = y.type.shape[lead + i]
            if dims_equal(d, 1) and not dims_equal(yd, 1):
                axes.append(lead + i)
        if axes:
            y = self("sum", [y], axis=axes, keepdims=False)
        return self.like(y, t)
