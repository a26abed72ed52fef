"""Fusion: group the IR into a kernel plan.

Rules (greedy, in program order):
- view ops (transpose, expand_dims, squeeze, broadcast_to, slice, and reshape of a contiguous
  value) never run as kernels: backends express them as strides (index arithmetic);
- a pointwise op joins the kernel that produces one of its operands when that kernel accepts an
  epilogue of its output shape (a pointwise chain, a matmul, a reduction over rows) and every other
  operand is already in memory (or a scalar constant, folded into the code);
- flip, roll, repeat, tile, pad, concat and a reshape of a strided value are "movement" kernels (a
  gather over output coordinates), which take a pointwise epilogue like a pointwise kernel; a literal
  tensor constant is materialized by the launcher (plan.constants, no kernel);
- matmul, reductions and norms (softmax, layernorm, rmsnorm, ...), attention, scan and the other
  ops start kernels of their own kind (take/gather: "gather", segment reductions and scatter_add:
  "scatter", cumsum, sort/topk: "sort");
- a matmul operand made by a pointwise kernel for that matmul alone (a dequantized weight, a top-k masked
  activation) is computed inside the matmul's tile loop instead (`Kernel.prologue`): no kernel, no buffer;
  N:M and block-sparse matmuls take epilogues like dense ones;
- a tied weight `take(theta, literal index)` with a rank-1 theta, read only by matmuls, convs and
  pointwise ops, is no kernel either (`plan.indexed`): its consumers load theta[idx[...]] themselves
  (passes/decompose.py first folds moves of it into the literal index);
- a rank-0 pointwise op of scalar constants is folded into a scalar constant (no kernel);
- ops that touch float64 values run through torch (kernels compute floats in f32) and are counted
  as fallbacks; `fuse=False` gives every op its own kernel (the differential tester's baseline).
The plan's figures (kernels, bytes, FLOPs) are deterministic, so tests pin them per model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from ..ir import registry
from ..ir.analysis import table_lookup
from ..ir.graph import Graph, Node, Value
from ..ir.types import BYTES, DTYPES, dims_equal, is_float, numel

VIEW_OPS = {"transpose", "expand_dims", "squeeze", "broadcast_to", "slice", "reshape"}
MOVE_OPS = {"flip", "roll", "repeat", "tile", "pad", "concat", "reshape", "unpack_bits"}  # copies: "movement" kernels
REDUCE_OPS = {"sum", "mean", "max", "min", "logsumexp", "var", "std", "argmax", "argmin"}
ROW_OPS = {"softmax", "log_softmax", "layernorm", "rmsnorm"}


@dataclass(eq=False)
class Kernel:
    name: str
    kind: str                      # pointwise | matmul | reduction | rownorm | conv | attention | attention_grad | lookup | movement |
    #                                gather | scatter | cumsum | sort | scan | bsr_matmul | fallback
    nodes: list[Node] = field(default_factory=list)
    inputs: list[Value] = field(default_factory=list)     # read from memory
    outputs: list[Value] = field(default_factory=list)    # written to memory
    body: "KernelPlan | None" = None                        # the per-step plan of a scan
    prologue: dict = field(default_factory=dict)  # matmul operand -> the pointwise nodes computing it in-tile
    flat: set = field(default_factory=set)        # prologue operands computed in another shape, by flat index
    transposed: set = field(default_factory=set)  # prologue operands B = transpose(W): the tile computes W[n, k]

    @property
    def anchor(self) -> Node:
        return self.nodes[0]

    @property
    def ops(self) -> list[str]:
        return [n.op for n in self.nodes]


@dataclass(eq=False)
class KernelPlan:
    graph: Graph
    kernels: list[Kernel]
    views: list[Node]              # nodes computed as index arithmetic (no kernel, no bytes)
    scalars: dict[Value, object]   # scalar constants folded into kernel code
    layouts: dict = field(default_factory=dict)  # value -> storage permutation (default: contiguous)
    constants: list = field(default_factory=list)  # literal tensors (const nodes) materialized once: no kernel;
    #                                                 their bytes count as read by the kernels that use them
    indexed: dict = field(default_factory=dict)    # value -> its take(theta, idx) node: no kernel; consumers read
    #                                                 theta[idx[...]] in place (tied weights, never materialized)

    def totals(self, bindings: dict | None = None) -> dict:
        """Plan figures with symbolic dims bound (name -> int); unbound ones stay as expressions."""
        b = {sympy.Symbol(k, integer=True, positive=True): v for k, v in (bindings or {}).items()}

        def num(expr):
            e = sympy.sympify(expr).subs(b)
            return int(e) if e.is_number else str(e)

        f = self.figures()
        g = self.graph
        compulsory = sum((_bytes(v) for v in [v for _, v in g.inputs] + [p.value for p in g.params] + [v for _, v in g.outputs]),
                         sympy.Integer(0))
        return {"kernels": f["kernels"], "bytes_read": num(f["read"]), "bytes_written": num(f["written"]),
                "bytes": num(f["read"] + f["written"]), "compulsory_bytes": num(compulsory), "flops": num(f["flops"]),
                "fallbacks": f["fallbacks"], "fallback_ops": sorted(set(f["fallback_ops"]))}

    def figures(self) -> dict:
        """Symbolic totals (for a scan body, multiplied by the step count by the caller)."""
        read = written = flops = sympy.Integer(0)
        n = fb = 0
        ops: list[str] = []
        for k in self.kernels:
            if k.kind == "scan":
                inner = k.body.figures()
                steps = k.anchor.attrs["length"]
                read += inner["read"] * steps
                written += inner["written"] * steps
                flops += inner["flops"] * steps
                n += inner["kernels"]
                fb += inner["fallbacks"]
                ops += inner["fallback_ops"]
                continue
            n += 1
            read += sum((self._read_bytes(v) for v in k.inputs), sympy.Integer(0))
            written += sum((_bytes(v) for v in k.outputs), sympy.Integer(0))
            flops += _flops(k.nodes)
            if k.kind == "fallback":
                fb += 1
                ops += k.ops
        return {"read": read, "written": written, "flops": flops, "kernels": n, "fallbacks": fb, "fallback_ops": ops}


    def _read_bytes(self, v: Value) -> sympy.Expr:
        """An indexed value costs its index tensor plus its table (each read once by the kernel)."""
        take = self.indexed.get(v)
        return _bytes(v) if take is None else _bytes(take.inputs[0]) + _bytes(take.inputs[1])


def _bytes(v: Value) -> sympy.Expr:
    return numel(v.type.shape) * BYTES[v.type.dtype]


def _flops(nodes) -> sympy.Expr:
    total = sympy.Integer(0)
    for n in nodes:
        opdef = registry.get(n.op)
        total += opdef.count_flops([v.type if v is not None else None for v in n.inputs], [v.type for v in n.outputs], n.attrs)
    return total


def is_scalar_const(n: Node) -> bool:
    """A rank-0 constant with a known value: folded into kernel code as a literal."""
    value = n.attrs.get("value") if n.op == "const" else None
    known = isinstance(value, (bool, int, float)) or (isinstance(value, sympy.Basic) and value.is_number)
    return n.op == "const" and known and len(n.outputs[0].type.shape) == 0


def pointwise_ok(n: Node) -> bool:
    """A pointwise op the Triton backend computes inside a fused kernel."""
    if n.op == "const":  # a fill: a scalar value broadcast over its shape
        v = n.attrs["value"]
        return isinstance(v, (bool, int, float)) or (isinstance(v, sympy.Basic) and v.is_number)
    opdef = registry.get(n.op)
    if opdef.kind != "elementwise" or opdef.triton is None:
        return False
    out_t = n.outputs[0].type
    if not all(v is None or broadcasts_to(v.type.shape, out_t.shape) for v in n.inputs):
        return False  # a group-wise (block) scale is not a broadcast: passes/decompose.py reshapes it first
    if n.op in QUANT_POINTWISE:
        # bit-exact rounding needs the reference's division: an f32 value by an f32 scale
        return all(v.type.dtype == "f32" for v in n.inputs[:2])
    out = out_t.dtype
    integer = n.op in INT_POINTWISE or opdef.triton_int is not None
    return is_float(out) or out == "bool" or n.op in ("cast", "sign_quant") or (integer and out in ("i32", "i64"))


def broadcasts_to(shape, out_shape) -> bool:
    """numpy's right-aligned broadcast: every dim 1 or equal to the output's."""
    return len(shape) <= len(out_shape) and all(d == 1 or d == o for d, o in zip(reversed(shape), reversed(out_shape)))


# quantize / fake_quant round in the kernel exactly as the reference does (prelude._quantize)
QUANT_POINTWISE = {"quantize", "fake_quant"}


# integer arithmetic that wraps the same in a kernel as in NumPy (index math: offsets, strides, counts), and the
# selection of integers (max_pool's backward picks window positions with where)
INT_POINTWISE = {"add", "sub", "mul", "neg", "abs", "maximum", "minimum", "where"}


def plan(graph: Graph, fuse: bool = True) -> KernelPlan:
    """The kernel plan of `graph` (after lowering composite ops, see passes/decompose.py);
    `plan.graph` is the graph the kernels compute. `fuse=False` gives every op its own kernel (views stay
    views): the baseline the differential tester compares fused plans against."""
    from .decompose import decompose
    return _Planner(decompose(graph), fuse).run()


def _packed_prologue(p: Kernel, x: Value, consumer: Node) -> Node | None:
    """The unpack_bits of a movement kernel that can move into a tile loop as a prologue: the tile loads the
    bytes at coordinate // (8 / bits) along the packed axis and takes each lane's field; the kernel's
    epilogue (a dequantize) computes `x` pointwise at the same shape. A matmul's tile must be packed along
    its row or column axis (not a batch axis); a conv's weight tile has every axis's coordinate."""
    u = p.nodes[0]
    if p.kind != "movement" or u.op != "unpack_bits" or u.outputs[0].type.shape != x.type.shape:
        return None
    rank = x.type.rank
    return u if consumer.op not in ("matmul", "qmatmul") or u.attrs["axis"] % rank >= rank - 2 else None


def inside_op(k: Kernel, v: Value) -> str | None:
    """The op computing `v` in kernel `k` (None if `k` does not)."""
    return next((n.op for n in k.nodes if v in n.outputs), None)


def _transposed_weight(mm: Node, x: Value) -> bool:
    """x is a matmul's (qmatmul's) B operand that is a rank-2 transpose view (matmul(h, transpose(W)))."""
    t = x.producer
    return mm.op in ("matmul", "qmatmul") and mm.inputs[1] is x and mm.inputs[0] is not x and t is not None \
        and t.op == "transpose" and x.type.rank == 2 and list(t.attrs["perm"]) == [1, 0]


def _splits_dims(src: tuple, dst: tuple) -> bool:
    """Each dim of `src` is the product of consecutive dims of `dst` (size-1 dims aside): a reshape that any
    strides allow, as a view."""
    src, dst = [d for d in src if d != 1], [d for d in dst if d != 1]
    j = 0
    for d in src:
        prod = sympy.Integer(1)
        while not dims_equal(prod, d):
            if j == len(dst):
                return False
            prod *= dst[j]
            j += 1
    return j == len(dst)


class _Planner:
    def __init__(self, graph: Graph, fuse: bool = True):
        self.g = graph
        self.fuse = fuse
        self.kernels: list[Kernel] = []
        self.views: dict[Node, None] = {}   # an ordered set: `in self.views` is asked per value
        self.constants: list[Node] = []
        self.scalars: dict[Value, object] = {}
        self.kernel_of: dict[Value, Kernel] = {}   # value -> kernel computing it
        self.contiguous: set[Value] = set()
        self.contiguous_after_transpose: set[Value] = set()
        self.strided_reshapes: set[Value] = set()   # reshape views of strided values (dims split in place)
        self.layouts: dict[Value, list[int]] = {}  # value -> the permutation its buffer is stored in
        self.uses = _uses(graph)
        self.indexed: dict[Value, Node] = {}
        self.outputs = {v for _, v in graph.outputs}

    def run(self) -> KernelPlan:
        g = self.g
        self.contiguous.update(v for _, v in g.inputs)
        self.contiguous.update(p.value for p in g.params)
        for n in g.nodes:
            self.place(n)
        outputs = {v for _, v in g.outputs}
        for k in self.kernels:
            inside = {v for n in k.nodes for v in n.outputs}
            # a flat prologue's values reach each other through reshape views: registers, not memory
            flat = {n.outputs[0] for x in k.flat for n in k.prologue[x]}
            seen_in = {}   # an ordered set (a kernel of a long chain has thousands of nodes)
            for n in k.nodes:
                for v in n.inputs:
                    if v is None or v in inside or v in self.scalars or v in seen_in or self._view_source(v) in flat \
                            or v in k.transposed:
                        continue
                    seen_in[v] = None
            k.inputs = [self.storage(v) for v in seen_in]
            k.inputs = list(dict.fromkeys(k.inputs))
            in_tile_views = {x.producer for x in k.transposed}   # read by this kernel's matmul alone
            own = set(k.nodes)
            k.outputs = [v for n in k.nodes for v in n.outputs
                         if v in outputs or any(u not in own and u not in in_tile_views
                                                for u in (self._readers(v) if v in flat else self.uses.get(v, [])))]
        # a kernel none of whose values is used (dead code the graph still holds) computes nothing observable
        self.kernels = [k for k in self.kernels if k.outputs]
        self.constants = [n for n in self.constants if n.outputs[0] in outputs or self.uses.get(n.outputs[0])]
        for i, k in enumerate(self.kernels):
            k.name = f"k{i}_{'_'.join(dict.fromkeys(k.ops))}"[:48]
        return KernelPlan(g, self.kernels, list(self.views), self.scalars, self.layouts, self.constants, self.indexed)

    def storage(self, v: Value) -> Value:
        """The value actually read from memory for `v` (a view reads its base)."""
        while v.producer is not None and v.producer in self.views:
            v = v.producer.inputs[0]
        return v

    def new(self, kind, n) -> Kernel:
        k = Kernel("", kind, [n])
        self.kernels.append(k)
        for v in n.outputs:
            self.kernel_of[v] = k
            self.contiguous.add(v)
        return k

    def place(self, n: Node):
        if any(v is not None and v.type.dtype in ("c64", "c128") for v in n.inputs + n.outputs):
            # Triton has no complex dtype: every op on complex values (ir/ops/fft.py) runs through torch, counted
            self.new("fallback", n)
            return
        if is_scalar_const(n):
            self.scalars[n.outputs[0]] = n.attrs["value"]
            return
        if self._fold_scalar(n):
            return
        if n.op == "const" and not pointwise_ok(n):
            # a literal tensor (or a symbolic scalar): materialized once by the launcher, no kernel
            self.constants.append(n)
            self.contiguous.add(n.outputs[0])
            return
        if n.op in VIEW_OPS and self._is_view(n):
            self.views[n] = None
            if n.op in ("expand_dims", "squeeze") or (n.op == "reshape"):
                if n.inputs[0] in self.contiguous:
                    self.contiguous.add(n.outputs[0])
            if n.outputs[0] in self.contiguous_after_transpose:
                self.contiguous.add(n.outputs[0])
            return
        if n.op != "scan" and any(v is not None and v.type.dtype == "f64" for v in n.inputs + n.outputs):
            # kernels compute floats in f32; float64 work runs exactly through torch (listed as a fallback)
            self.new("fallback", n)
            return
        if n.op == "scan":
            k = self.new("scan", n)
            k.body = _Planner(n.body, self.fuse).run()  # already lowered with its parent graph
            return
        if table_lookup(n) and n.inputs[1].producer in self.constants and self._read_in_place(n.outputs[0], True):
            self.indexed[n.outputs[0]] = n  # consumers load theta[idx[...]] themselves
            self.contiguous.add(n.outputs[0])
            return
        if n.op == "split":  # every part is a slice of the input: views
            self.views[n] = None
            return
        if n.op in MOVE_OPS:  # a copy (a reshape here is of a strided value): reads through strides, writes contiguously
            self.new("movement", n)
            return
        opdef = registry.get(n.op)
        if (opdef.kind == "elementwise" or n.op == "const") and pointwise_ok(n):
            host = self._epilogue_host(n) if self.fuse and not self._feeds_reduction(n) else None
            if host is not None:
                host.nodes.append(n)
                for v in n.outputs:
                    self.kernel_of[v] = host
                    self.contiguous.add(v)
                return
            self.new("pointwise", n)
            return
        if (n.op == "matmul" and all(is_float(v.type.dtype) for v in n.inputs)
                or n.op == "qmatmul" and all(v.type.dtype == "i8" for v in n.inputs)) \
                and all(v.type.rank >= 2 for v in n.inputs):
            sibling = self._matmul_sibling(n) if self.fuse else None
            if sibling is not None:  # same A operand: one kernel loads A once for every product
                sibling.nodes.append(n)
                self.kernel_of[n.outputs[0]] = sibling
                self.contiguous.add(n.outputs[0])
                self._absorb_prologue(sibling, n, n.inputs[1])
                self._absorb_prologue(sibling, n, n.inputs[0])   # A made for these products alone (quantized)
                return
            k = self.new("matmul", n)
            if self.fuse:
                for x in n.inputs:
                    self._absorb_prologue(k, n, x)
            return
        if n.op == "nm_matmul" and n.inputs[0].type.rank >= 2 and all(is_float(v.type.dtype) for v in n.inputs[:2]):
            self.new("matmul", n)  # the N:M tile is decompressed in the kernel (matmul_codegen._nm_tile); epilogues fuse
            return
        if n.op in REDUCE_OPS and is_float(n.inputs[0].type.dtype) and n.inputs[0].type.rank > 0:
            k = self.new("reduction", n)
            p = self.kernel_of.get(n.inputs[0])
            if self.fuse and p is not None and p.kind == "pointwise":   # max(abs(x)), sum(a * b): in the row
                self._absorb_prologue(k, n, n.inputs[0])
            return
        if n.op in ROW_OPS:
            self.new("rownorm", n)
            return
        if n.op in ("embedding", "one_hot") or (n.op == "take" and n.attrs["axis"] == 0 and n.inputs[0].type.rank == 2):
            self.new("lookup", n)
            return
        if n.op == "arange":
            self.new("pointwise", n)
            return
        kind = _index_kind(n)
        if kind is not None:  # backends/triton/index_codegen.py
            self.new(kind, n)
            return
        operands = [v.type.dtype for v in n.inputs if v is not None]
        if n.op in CONV_OPS and all(is_float(d) for d in operands) or n.op.startswith("qconv") and set(operands) == {"i8"}:
            k = self.new("conv", n)
            if self.fuse:
                self._absorb_prologue(k, n, n.inputs[1])   # a dequantized weight, computed in the weight tile
            return
        if n.op == "sdpa" and all(is_float(v.type.dtype) for v in n.inputs[:3]):
            self.new("attention", n)
            self._choose_layout(n.outputs[0])
            return
        if n.op == "sdpa_grad" and all(is_float(v.type.dtype) for v in n.inputs[:5]):
            self.new("attention_grad", n)  # backends/triton/attention_grad_codegen.py: flash backward, no [Tq, Tk]
            for v in n.outputs:   # dq, dk, dv stored pre-transposed when their heads are merged next
                self._choose_layout(v)
            return
        if n.op == "bsr_matmul" and all(is_float(v.type.dtype) for v in n.inputs[:2]):
            self.new("bsr_matmul", n)  # matmul_codegen._k_bsr_matmul: only the stored blocks
            return
        self.new("fallback", n)

    def _fold_scalar(self, n: Node) -> bool:
        """A rank-0 pointwise op of scalar constants is a scalar constant too, computed here by the op's NumPy
        reference (kernels cannot apply `.to` or a math function to a bare literal)."""
        opdef = registry.get(n.op)
        ins = [v for v in n.inputs if v is not None]
        if opdef.kind != "elementwise" or len(n.outputs) != 1 or n.outputs[0].type.rank != 0 \
                or not ins or not all(v in self.scalars for v in ins):
            return False
        args = [None if v is None else np.asarray(self.scalars[v], DTYPES[v.type.dtype]) for v in n.inputs]
        with np.errstate(all="ignore"):
            value = np.asarray(opdef.ref(*args, **n.attrs)).astype(DTYPES[n.outputs[0].type.dtype])
        self.scalars[n.outputs[0]] = value.item()
        return True

    def _matmul_sibling(self, n: Node) -> Kernel | None:
        """A matmul kernel of the last few that multiplies the same A (Q, K, V projections)."""
        for k in reversed(self.kernels[-4:]):
            first = k.nodes[0]
            if k.kind != "matmul" or first.op != n.op or first.inputs[0] is not n.inputs[0]:
                continue
            if first.outputs[0].type.shape != n.outputs[0].type.shape or first.inputs[1].type.shape != n.inputs[1].type.shape:
                continue
            if self._ready(n.inputs[1], k):
                return k
        return None

    def _choose_layout(self, v: Value):
        """Write an attention output in the layout its consumer wants: when it is only transposed
        and then reshaped (merging heads), store it pre-transposed so both become free views."""
        users = self.uses.get(v, [])
        if len(users) == 1 and users[0].op == "transpose":
            t = users[0]
            if all(u.op == "reshape" for u in self.uses.get(t.outputs[0], [])):
                self.layouts[v] = list(t.attrs["perm"])
                self.contiguous.discard(v)
                self.contiguous_after_transpose.add(t.outputs[0])

    def _absorb_prologue(self, k: Kernel, mm: Node, x: Value):
        """A matmul operand (or a conv weight) computed by pointwise ops for this op alone (a dequantized weight,
        a masked activation) is computed inside its tile loop instead: those ops leave their kernel (the kernel
        disappears when nothing else is left in it) and the operand is never stored."""
        p, y, view = self.kernel_of.get(x), x, None
        if p is None and x.producer in self.views:
            if not _transposed_weight(mm, x):
                self._absorb_flat_prologue(k, mm, x)
                return
            # B = transpose(W) with W computed for this product alone (a tied LM head): the tile computes W[n, k]
            view, y = x.producer, x.producer.inputs[0]
            p = self.kernel_of.get(y)
            if p is None and y.producer in self.views:   # W itself a reshape (group-wise): by flat index
                self._absorb_flat_prologue(k, mm, x)
                return
            if self.uses.get(x, []) != [mm]:
                return
        if p is None or p is k or x.type.rank < 2 or list(mm.inputs).count(x) != 1:
            return
        packed = _packed_prologue(p, y, mm)
        # integer tiles: the weight unpacked, or the activations quantized in the A tile (as exactly as a kernel)
        quantized_a = mm.op == "qmatmul" and x is mm.inputs[0] and inside_op(p, x) == "quantize"
        if (p.kind != "pointwise" or (mm.op.startswith("q") and not quantized_a)) and packed is None:
            return
        inside = {v: n for n in p.nodes for v in n.outputs}
        chain, todo = [], [inside.get(y)]   # the ops of p that y depends on
        while todo:
            n = todo.pop()
            if n is not None and n not in chain:
                chain.append(n)
                todo += [inside.get(v) for v in n.inputs if v is not None]
        chain = [n for n in p.nodes if n in chain]   # program order
        reads = [v for n in chain for v in n.inputs if v is not None and v not in self.scalars and v not in inside
                 and (packed is None or v is not packed.inputs[0])]   # the packed bytes: loaded by their own rule
        if not chain or any(n.op in ("const", "arange") for n in chain):  # fills are written for 1-D blocks
            return
        if packed is not None and len(chain) != len(p.nodes):   # the movement kernel goes whole or stays
            return
        if not (reads or packed) or not all(broadcasts_to(v.type.shape, y.type.shape) for v in reads):
            return
        for n in chain:
            for v in n.outputs:
                users = self.uses.get(v, [])
                if v in self.outputs or not all(u in chain or (v is y and (u is (view or mm) or u in k.nodes and v is x
                                                                            is mm.inputs[0])) for u in users):
                    return   # (an A operand may be read by every product of the kernel: siblings share it; not a
                    #          B = transpose(A) of the same product, `t @ t.T`: A would still be read from memory)
        p.nodes = [n for n in p.nodes if n not in chain]
        if not p.nodes:
            self.kernels.remove(p)
        k.nodes += chain
        k.prologue[x] = chain
        if view is not None:
            k.transposed.add(x)
        for n in chain:
            for v in n.outputs:
                self.kernel_of[v] = k

    def _view_source(self, v: Value) -> Value:
        """The value `v` is a chain of reshape views of (itself if none): the same elements in the same order."""
        while v.producer is not None and v.producer in self.views and v.producer.op == "reshape" \
                and v not in self.strided_reshapes:
            v = v.producer.inputs[0]
        return v

    def _readers(self, v: Value) -> list:
        """The nodes that read `v`, directly or through reshape views (None for a view that is a graph output)."""
        out = []
        for u in self.uses.get(v, []):
            if u in self.views and u.op == "reshape":
                out += ([None] if u.outputs[0] in self.outputs else []) + self._readers(u.outputs[0])
            else:
                out.append(u)
        return out

    def _absorb_flat_prologue(self, k: Kernel, mm: Node, x: Value):
        """A matmul's B (a float conv's weight) = reshape(y) where y is computed pointwise in another shape of
        the same size: group-wise dequantization, which decompose computes over [groups, group size, N] (its
        block scales broadcast there). The tile computes each element from its flat index, the same in every
        reshape of a contiguous value; a packed unpack (int4) behind another reshape moves in too. Static
        weights only: rank 2 for a matmul, [C_out, C_in / groups, *kernel] for a conv."""
        view = x.producer if _transposed_weight(mm, x) else None   # B = transpose(reshape(y))
        y = self._view_source(view.inputs[0] if view is not None else x)
        p = self.kernel_of.get(y)
        numel = x.type.numel
        as_matmul = k.kind == "matmul" and mm.op == "matmul" and x.type.rank == 2
        as_conv = k.kind == "conv" and mm.op in ("conv1d", "conv2d", "conv3d")
        if not (as_matmul or as_conv) or mm.inputs[1] is not x or mm.inputs[0] is x \
                or not numel.is_Integer or p is None or p.kind != "pointwise":
            return
        inside = {v: n for n in p.nodes for v in n.outputs}
        chain, todo = [], [inside.get(y)]
        while todo:
            n = todo.pop()
            if n is not None and n not in chain:
                chain.append(n)
                todo += [inside.get(self._view_source(v)) for v in n.inputs if v is not None]
        chain = [n for n in p.nodes if n in chain]
        absorbed = [p]
        for n in list(chain):   # a read that is a reshape of a packed weight's unpack kernel: it moves in too
            for v in n.inputs:
                src = None if v is None else self._view_source(v)
                q = self.kernel_of.get(src) if src is not None and src is not v else None
                if q is not None and q is not p and q not in absorbed and q.kind == "movement" \
                        and [m.op for m in q.nodes] == ["unpack_bits"]:
                    chain.insert(0, q.nodes[0])
                    absorbed.append(q)
        if any(n.op in ("const", "arange") or len(n.outputs) != 1 or n.outputs[0].type.numel != numel for n in chain):
            return   # every value of the chain is one element per element of x
        if any(v in self.strided_reshapes for n in chain for v in n.inputs):
            return   # flat indices address contiguous values
        if view is not None and self.uses.get(x, []) != [mm]:
            return
        for n in chain:
            v = n.outputs[0]
            if v in self.outputs or not all(u in chain or (v is y and u is (view or mm)) for u in self._readers(v)):
                return
        for q in absorbed:
            q.nodes = [n for n in q.nodes if n not in chain]
            if not q.nodes:
                self.kernels.remove(q)
        k.nodes += chain
        k.prologue[x] = chain
        k.flat.add(x)
        if view is not None:
            k.transposed.add(x)
        for n in chain:
            self.kernel_of[n.outputs[0]] = k

    def _read_in_place(self, v: Value, contiguous: bool) -> bool:
        """Every use of `v` (through views) is a kernel that loads it through `_load` or as a matmul's B
        operand: pointwise ops (kernels or epilogues) and matmuls; `v` is not a graph output."""
        if v in self.outputs:
            return False
        for u in self.uses.get(v, []):
            if u.op in ("transpose", "broadcast_to", "slice") or (u.op in ("expand_dims", "squeeze", "reshape") and contiguous):
                if not self._read_in_place(u.outputs[0], contiguous and u.op != "transpose" and u.op != "slice"):
                    return False
            elif u.op == "matmul" and u.inputs[1] is v and u.inputs[0] is not v:
                continue
            elif u.op in CONV_OPS and u.inputs[0] is not v and not u.op.startswith("qconv"):  # weight or bias
                continue
            elif not (registry.get(u.op).kind == "elementwise" and pointwise_ok(u)):
                return False
        return True

    def _is_view(self, n: Node) -> bool:
        if n.op == "reshape" and n.inputs[0] not in self.contiguous:
            # a strided value reshapes in place only when each of its dims splits into target dims (q of a
            # fused qkv projection into heads): a dim of stride s splits into (n / m, m * s), (m, s)
            if not _splits_dims(n.inputs[0].type.shape, n.outputs[0].type.shape):
                return False
            self.strided_reshapes.add(n.outputs[0])
        return True

    def _feeds_reduction(self, n: Node) -> bool:
        """n's value is only reduced (the abs of max(abs(x))): the reduction computes it in its row (a
        prologue) instead of a kernel writing it as an epilogue."""
        v = n.outputs[0]
        users = self.uses.get(v, [])
        return len(n.outputs) == 1 and v.type.rank >= 2 and v not in self.outputs and len(users) == 1 \
            and users[0].op in REDUCE_OPS and users[0].inputs[0] is v and is_float(v.type.dtype)

    def _epilogue_host(self, n: Node) -> Kernel | None:
        """The kernel this pointwise op can join: the producer of one operand, when every other
        operand is in memory already or a folded scalar, and the iteration space matches."""
        out_shape = n.outputs[0].type.shape
        for v in n.inputs:
            k = self.kernel_of.get(v)
            if k is None or k.kind not in ("pointwise", "matmul", "conv", "movement", "bsr_matmul", "reduction"):
                continue
            if k.kind == "bsr_matmul" and len(out_shape) != 2:  # the fused block-sparse loop is rank 2
                continue
            if k.nodes[0].outputs[0].type.shape != out_shape:   # the host's iteration space
                continue
            if all(u is None or u in self.scalars or self.kernel_of.get(u) is k or self._ready(u, k) for u in n.inputs):
                return k
        # horizontal fusion: an op that reads only memory joins the latest pointwise kernel of its shape
        last = self.kernels[-1] if self.kernels else None
        if last is not None and last.kind == "pointwise" and last.nodes[0].outputs[0].type.shape == out_shape \
                and all(u is None or u in self.scalars or self._ready(u, last) for u in n.inputs):
            return last
        return None

    def _ready(self, v: Value, k: Kernel) -> bool:
        """`v` is in memory before kernel `k` runs: a graph input/param, or made by an earlier kernel
        (or a view of such)."""
        base = self.storage(v)
        producer = self.kernel_of.get(base)
        return producer is None or (producer is not k and self.kernels.index(producer) < self.kernels.index(k))


# convolutions with a Triton implicit-GEMM template (backends/triton/conv_codegen.py): spatial rank per op
# (the qconv ops on int8 operands accumulate exactly in int32)
CONV_OPS = {"conv1d": 1, "conv2d": 2, "conv3d": 3, "conv_transpose2d": 2, "qconv1d": 1, "qconv2d": 2, "qconv3d": 3}

SCATTER_OPS = {"segment_sum", "segment_mean", "segment_max", "scatter_add"}


def _index_kind(n: Node) -> str | None:
    """take/gather: an index map over the output ("gather"); segment reductions and scatter_add: atomics
    into an accumulator ("scatter"; floats, i32, i64); cumsum: a row scan (floats, i32, i64); sort/topk: a
    stable key sort per row ("sort"; floats and integers of at most 32 bits)."""
    if n.op in ("take", "gather"):
        return "gather"
    dt = n.outputs[0].type.dtype
    if n.op in SCATTER_OPS and (is_float(dt) or dt in ("i32", "i64")):
        return "scatter"
    if n.op == "cumsum" and n.outputs[0].type.rank > 0 and (is_float(dt) or dt in ("i32", "i64")):
        return "cumsum"
    if n.op in ("sort", "topk") and (is_float(dt) or dt in ("i32", "i8", "u8", "bool")):
        return "sort"
    return None


def _uses(g: Graph) -> dict[Value, list[Node]]:
    out: dict[Value, list[Node]] = {}
    for n in g.nodes:
        for v in n.inputs:
            if v is not None:
                out.setdefault(v, []).append(n)
    return out


def describe(p: KernelPlan, bindings: dict | None = None) -> dict:
    """The plan as data: each kernel (ops, inputs, outputs, bytes, FLOPs) and the totals."""
    b = {sympy.Symbol(k, integer=True, positive=True): v for k, v in (bindings or {}).items()}

    def num(e):
        e = sympy.sympify(e).subs(b)
        return int(e) if e.is_number else str(e)

    rows = []
    for k in p.kernels:
        row = {"name": k.name, "kind": k.kind, "ops": k.ops,
               "inputs": [str(v.type) for v in k.inputs], "outputs": [str(v.type) for v in k.outputs]}
        if k.kind == "scan":
            inner = describe(k.body, bindings)
            row["steps"] = num(k.anchor.attrs["length"])
            row["body"] = inner["kernels"]
        else:
            row["bytes"] = num(sum((_bytes(v) for v in k.inputs + k.outputs), sympy.Integer(0)))
            row["flops"] = num(_flops(k.nodes))
        rows.append(row)
    return {"kernels": rows, "totals": p.totals(bindings)}


def format_plan(p: KernelPlan, bindings: dict | None = None, indent: str = "") -> str:
    d = describe(p, bindings)
    lines = []
    for row in d["kernels"]:
        ins = ", ".join(row["inputs"])
        outs = ", ".join(row["outputs"])
        if row["kind"] == "scan":
            lines.append(f"{indent}{row['name']:<34} scan x{row['steps']}: ({ins}) -> ({outs})")
            lines.append(format_plan(p.kernels[d['kernels'].index(row)].body, bindings, indent + "    ").rstrip("\n").split("\ntotals")[0])
            continue
        tag = "  [torch fallback]" if row["kind"] == "fallback" else ""
        lines.append(f"{indent}{row['name']:<34} {row['kind']:<9} ({ins}) -> ({outs})  bytes={row['bytes']} flops={row['flops']}{tag}")
    if not indent:
        t = d["totals"]
        lines.append(f"totals: kernels={t['kernels']} bytes={t['bytes']} (read {t['bytes_read']}, written {t['bytes_written']}) "
                     f"compulsory={t['compulsory_bytes']} flops={t['flops']} fallbacks={t['fallbacks']}"
                     + (f" ({', '.join(t['fallback_ops'])})" if t["fallback_ops"] else ""))
    return "\n".join(lines) + "\n"
