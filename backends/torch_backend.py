"""The torch backend: an IR graph becomes a `torch.nn.Module` that runs the graph op by op through each
op's registered torch lowering, trains with autograd (scan is a Python loop, so gradients flow through
every step), and whose `state_dict()` keys are exactly the pnet parameter names.

    module = to_module(graph, dtype="f32", device="cpu")
    outputs = module(x=x)                  # dict of outputs by name (positional args in input order too)
    y, = module.outputs_tuple(x)           # the same, as a tuple in output order

Symbolic dims stay symbolic in the graph: each call binds them from the actual input shapes, and the
attributes that mention them (reshape shapes, const shapes, scan lengths) are made concrete once per
distinct binding and cached.
"""
from __future__ import annotations

import functools
import operator
import re
from pathlib import Path

import numpy as np
import sympy
import torch
from torch import nn

from ..errors import PnetError, ShapeError, UsageError
from ..ir import registry
from ..ir.graph import STATE_OUTPUT_PREFIX, Graph
from ..ir.types import is_float, map_leaves
from .numpy_ref import DEFAULT_DIM, DEFAULT_DIMS, check_shapes, init_params, input_shape_error, symbols
from .pysrc import dim_var

TORCH_DTYPES = {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
                "i64": torch.int64, "i32": torch.int32, "i8": torch.int8, "u8": torch.uint8, "bool": torch.bool,
                "c64": torch.complex64, "c128": torch.complex128}
COMPUTE_DTYPES = ("f32", "f16", "bf16", "f64")


def compute_dtype(declared: str, mode: str) -> torch.dtype:
    """The torch dtype a value declared `declared` runs in when the module runs in `mode`.

    f32 keeps every declared dtype (the reference's behaviour). f16/bf16 lower the f32/f64 values only,
    so a deliberate cast to another half type in the program survives. f64 widens every float (the
    reference's float64=True)."""
    if declared in ("c64", "c128"):   # complex (ir/ops/fft.py): c128 in f64 mode, else as declared
        return TORCH_DTYPES["c128" if mode == "f64" else declared]
    if not is_float(declared) or mode == "f32":
        return TORCH_DTYPES[declared]
    if mode == "f64" or declared in ("f32", "f64"):
        return TORCH_DTYPES[mode]
    return TORCH_DTYPES[declared]


# Lowerings this backend replaces until ir/ops fixes them (each entry says why; keep this table short).
def _batchnorm(T, x, mean, var, w=None, b=None, *, eps):
    # F.batch_norm(training=False) refuses statistics that require grad, which is what batch_norm(train=true)
    # passes (mean(x), var(x)) and what trainable parameters are: spell it out so autograd flows to all five.
    if not (mean.requires_grad or var.requires_grad):
        return T.nn.functional.batch_norm(x, mean, var, w, b, training=False, eps=eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) * T.rsqrt(var.reshape(shape) + eps)
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y


LOWERING_OVERRIDES = {"batchnorm": _batchnorm}


def lowering(op: str):
    """The torch lowering of `op`: the registry's, unless this backend overrides it."""
    if op in LOWERING_OVERRIDES:
        return LOWERING_OVERRIDES[op]
    fn = registry.get(op).torch
    if fn is None:
        raise PnetError(f"op '{op}' has no torch lowering")
    return fn


# ---- symbolic dims, compiled to plain Python -------------------------------------------------------------
def dim_src(expr) -> str:
    """A dim (int or sympy expression over dim symbols) as integer Python arithmetic over local dim variables."""
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return str(int(expr))
    if expr.is_Symbol:
        return dim_var(expr.name)
    if expr.has(sympy.Float):   # a float scalar computed from dims (`1.0 / (P - 1)`): true division
        return sympy.pycode(expr.subs({s: sympy.Symbol(dim_var(s.name)) for s in expr.free_symbols}))
    if isinstance(expr, sympy.floor):
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        return f"({dim_src(num)}) // ({dim_src(den)})" if den != 1 else dim_src(num)
    if isinstance(expr, sympy.ceiling):
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        return f"-(-({dim_src(num)}) // ({dim_src(den)}))" if den != 1 else dim_src(num)
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return f"{type(expr).__name__.lower()}({', '.join(dim_src(a) for a in expr.args)})"
    num, den = sympy.fraction(sympy.together(expr))
    if den != 1:  # a dim is an integer, so an exact division
        return f"({dim_src(num)}) // ({dim_src(den)})"
    if isinstance(expr, sympy.Add):
        return " + ".join(_paren(a) for a in expr.args)
    if isinstance(expr, sympy.Mul):
        return " * ".join(_paren(a) for a in expr.args)
    if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp > 0:
        return f"{_paren(expr.base)} ** {int(expr.exp)}"
    raise PnetError(f"cannot write the dim expression {expr} as Python")


def _paren(e) -> str:
    s = dim_src(e)
    return s if re.fullmatch(r"[\w.]+", s) else f"({s})"


class _Dim:
    """A symbolic dim compiled to a Python function of the dim sizes: evaluating it per binding needs no sympy,
    so torch.compile can trace the whole forward, plan look-up included."""
    __slots__ = ("names", "fn", "text", "number")

    def __init__(self, expr):
        self.names = sorted(s.name for s in expr.free_symbols)
        self.text = dim_src(expr)
        self.number = float if expr.has(sympy.Float) else int   # `1.0 / P` is a float scalar, not a dim
        self.fn = eval(f"lambda {', '.join(dim_var(n) for n in self.names)}: {self.text}", {"max": max, "min": min})  # noqa: S307

    def __call__(self, bindings: dict) -> int:
        try:
            return self.number(self.fn(*[bindings[n] for n in self.names]))
        except KeyError as e:
            raise ShapeError(f"dimension {self.text} is not bound to a number ({e.args[0]} is not a dim of any input)") from None


def _prepare(v):
    """An attribute value with every sympy dim made an int (concrete) or a _Dim (symbolic)."""
    if isinstance(v, sympy.Basic):
        if v.is_number and v.has(sympy.Float):
            return float(v)
        return int(v) if v.is_Integer else _Dim(v)
    if isinstance(v, dict):
        return {k: _prepare(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_prepare(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_prepare(x) for x in v)
    return v


def _resolve(v, bindings: dict):
    return map_leaves(v, lambda x: x(bindings) if isinstance(x, _Dim) else x)


def _is_static(v) -> bool:
    """Whether a prepared attribute value holds no symbolic dim (then it is used as is)."""
    if isinstance(v, _Dim):
        return False
    if isinstance(v, dict):
        return all(_is_static(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_is_static(x) for x in v)
    return True


# ---- the one fusion: matmul + bias -> F.linear ------------------------------------------------------------
def _linear(T, x, w, b):
    return T.nn.functional.linear(x, w.t(), b)


def linear_pairs(graph: Graph) -> dict:
    """add(matmul(x, w), b) with w [i, o], b [o] and the product used nowhere else -> {add node: (matmul node,
    x, w, b)}. One F.linear (a GEMM with the bias folded in, what nn.Linear runs) instead of a GEMM and a
    separate pass over its output: the biggest per-layer gap to hand-written torch in the benchmarks."""
    uses: dict = {}
    for n in graph.nodes:
        for v in n.inputs:
            uses[v] = uses.get(v, 0) + 1
    for _, v in graph.outputs:
        uses[v] = uses.get(v, 0) + 1
    own = set(graph.nodes)  # a matmul in an enclosing graph is not ours to fuse
    out = {}
    for n in graph.nodes:
        if n.op != "add":
            continue
        for mm_out, b in (n.inputs, n.inputs[::-1]):
            mm = mm_out.producer
            if mm is None or mm.op != "matmul" or uses.get(mm_out) != 1 or mm not in own:
                continue
            x, w = mm.inputs
            types = {x.type.dtype, w.type.dtype, b.type.dtype, n.output.type.dtype}
            if (w.type.rank == 2 and x.type.rank >= 1 and b.type.rank == 1 and len(types) == 1
                    and is_float(n.output.type.dtype) and b.type.shape == w.type.shape[1:]
                    and n.output.type.shape == mm_out.type.shape):
                out[n] = (mm, x, w, b)
                break
    return out


# ---- a graph compiled into steps over numbered slots ----------------------------------------------------
class _Step:
    """One node: its lowering, input/output slots, attributes and the dtypes its outputs must have."""
    __slots__ = ("node", "fn", "ins", "outs", "attrs", "static", "dtypes", "body", "const", "shapes")

    def __init__(self, node, fn, ins, outs, attrs, dtypes, body=None):
        self.node, self.fn, self.ins, self.outs, self.dtypes, self.body = node, fn, ins, outs, dtypes, body
        self.attrs = _prepare(attrs)
        self.static = _is_static(self.attrs)
        # a scan's output shapes, for the empty stack of a zero-length sequence
        self.shapes = [_prepare(tuple(v.type.shape)) for v in node.outputs] if body is not None else None
        self.const = None  # the buffer holding a precomputed output (source ops with concrete attrs)


class _Program:
    """A graph as a flat list of steps. Slot 0 always holds None (an omitted optional input)."""

    def __init__(self, graph: Graph, mode: str, values=None, fuse: bool = True):
        self.graph = graph
        slots: dict = {}
        leaves = [v for _, v in graph.inputs] + ([p.value for p in graph.params] if values is None else [])
        for v in leaves:
            slots[v] = len(slots) + 1
        self.n_leaves = len(leaves)
        self.steps: list[_Step] = []
        linear = linear_pairs(graph) if fuse else {}
        skip = {mm for mm, _, _, _ in linear.values()}
        for node in graph.nodes:
            if node in skip:
                continue
            if node in linear:  # matmul + bias as one F.linear call
                _, x, w, b = linear[node]
                node_ins = [x, w, b]
            else:
                node_ins = node.inputs
            ins = [slots[v] if v is not None else 0 for v in node_ins]
            for v in node.outputs:
                slots[v] = len(slots) + 1
            outs = [slots[v] for v in node.outputs]
            dtypes = [compute_dtype(v.type.dtype, mode) for v in node.outputs]
            attrs = dict(node.attrs)
            if "dtype" in attrs and node.op != "scan" and isinstance(attrs["dtype"], str) and is_float(attrs["dtype"]):
                attrs["dtype"] = _dtype_name(compute_dtype(attrs["dtype"], mode))
            if node.op == "scan":
                self.steps.append(_Step(node, None, ins, outs, attrs, dtypes, _Program(node.body, mode, True, fuse)))
                continue
            if node in linear:
                self.steps.append(_Step(node, _linear, ins, outs, {}, dtypes))
                continue
            try:
                fn = lowering(node.op)
            except PnetError as e:
                raise e.with_loc(node.loc)
            float_ins = {compute_dtype(v.type.dtype, mode) for v in node_ins if v is not None and is_float(v.type.dtype)}
            if len(float_ins) > 1 and dtypes and dtypes[0].is_floating_point:
                fn = _promoting(fn, dtypes[0])
            if registry.get(node.op).kind == "index":
                fn = _located(fn, node)
            self.steps.append(_Step(node, fn, ins, outs, attrs, dtypes))
        self.n_slots = len(slots) + 1
        self.out_slots = [slots[v] for _, v in graph.outputs]
        # Drop each value after its last use, as eager code does: holding every intermediate to the end
        # defeats the allocator's reuse of hot memory (measured: a ResNet forward ran 1.3x slower).
        last = {}
        for k, st in enumerate(self.steps):
            for i in st.ins:
                last[i] = k
            for i in st.outs:
                last.setdefault(i, k)  # a value nobody reads dies where it is made
        self.frees = [[] for _ in self.steps]
        for slot, k in last.items():
            if slot and slot not in self.out_slots:
                self.frees[k].append(slot)

    def instantiate(self, bindings: dict, device) -> list:
        """The steps with every attribute concrete for these dim bindings (a list of tuples, cheap to run)."""
        plan = []
        for s, free in zip(self.steps, self.frees):
            attrs = s.attrs if s.static else _concrete_attrs(s.attrs, bindings, s.node)
            if s.body is not None:
                empty = [_resolve(shape, bindings) for shape in s.shapes]
                attrs = (attrs["n_carries"], attrs["n_seqs"], attrs["axes"], attrs["out_axis"], attrs["length"], empty)
                plan.append((None, s.ins, attrs, s.outs, s.dtypes, (s.body.instantiate(bindings, device),
                                                                   s.body.n_slots, s.body.out_slots), free))
            elif not s.ins and s.const is None:  # a source op whose shape depends on the dims: make it in place
                plan.append((functools.partial(_on_device, s.fn, device), s.ins, attrs, s.outs, s.dtypes, None, free))
            else:
                plan.append((s.fn, s.ins, attrs, s.outs, s.dtypes, s.const, free))
        return plan


def _promoting(fn, dtype):
    """A lowering whose float operands are first cast to the node's (promoted) float dtype: the IR promotes
    mixed float operands (f64 input, f32 params), while torch's conv and norm kernels want one dtype."""
    def run(T, *xs, **attrs):
        return fn(T, *[x.to(dtype) if x is not None and x.is_floating_point() else x for x in xs], **attrs)
    return run


def _located(fn, node):
    """An index op's lowering whose range check (ir/ops/index.check_index_range: an IndexError, so that it also
    runs in standalone torch source) becomes the reference's PnetError at the node's source location."""
    def run(T, *xs, **attrs):
        try:
            return fn(T, *xs, **attrs)
        except IndexError as e:
            raise PnetError(str(e), node.loc) from None
    return run


def _on_device(fn, device, T, **attrs):
    return fn(T, **attrs).to(device)


def _dtype_name(dt: torch.dtype) -> str:
    return next(k for k, v in TORCH_DTYPES.items() if v is dt)


def _concrete_attrs(attrs, bindings, node):
    try:
        return _resolve(attrs, bindings)
    except PnetError as e:
        raise e.with_loc(node.loc)


def _execute(plan, env: list, buffers: dict) -> None:
    """Run a plan over `env` (slot -> tensor). The hot loop: keep it free of lookups that could be hoisted."""
    for fn, ins, attrs, outs, dtypes, extra, free in plan:
        if fn is None:
            _scan(ins, attrs, outs, dtypes, extra, env, buffers)
        elif extra is not None:  # a constant computed at build time (a buffer, so it follows .to(device))
            env[outs[0]] = buffers[extra]
        else:
            r = fn(torch, *[env[i] for i in ins], **attrs)
            if len(outs) == 1:
                env[outs[0]] = r if r.dtype == dtypes[0] else r.to(dtypes[0])
            else:
                for slot, x, dt in zip(outs, r, dtypes):
                    env[slot] = x if x.dtype == dt else x.to(dt)
        for i in free:
            env[i] = None


def _scan(ins, attrs, outs, dtypes, body, env, buffers):
    """A recurrence as a Python loop over the body plan: autograd records every step, so BPTT just works."""
    k, s, axes, out_axis, length, empty = attrs
    plan, n_slots, out_slots = body
    args = [env[i] for i in ins]
    carries, seqs, captured = args[:k], args[k:k + s], args[k + s:]
    ys: list[list] = [[] for _ in range(len(outs) - k)]
    for t in range(length):
        benv = [None] * n_slots
        benv[1:1 + len(args)] = carries + [q.select(ax, t) for q, ax in zip(seqs, axes)] + captured
        _execute(plan, benv, buffers)
        carries = [benv[i] for i in out_slots[:k]]
        for y, i in zip(ys, out_slots[k:]):
            y.append(benv[i])
    for slot, c in zip(outs[:k], carries):
        env[slot] = c
    ref = args[0] if args else None
    for j, (slot, y) in enumerate(zip(outs[k:], ys)):
        if y:
            env[slot] = torch.stack(y, out_axis)
        else:  # a zero-length sequence yields an empty stack, as the reference does
            env[slot] = torch.zeros(empty[k + j], dtype=dtypes[k + j], device=ref.device if ref is not None else None)


# ---- the module -----------------------------------------------------------------------------------------
class _Scope(nn.Module):
    """A container for one segment of the parameter names ("blocks", "0", "linear", ...), so that
    `state_dict()` keys are the dotted pnet names; torch forbids dots in a single parameter name."""

    def forward(self, *args, **kwargs):  # pragma: no cover - containers are never called
        raise RuntimeError("a pnet parameter scope is not callable")


class PnetModule(nn.Module):
    """A pnet graph as an nn.Module. Build it with `to_module`."""

    def __init__(self, graph: Graph, dtype: str = "f32", params: dict | None = None, seed: int = 0):
        super().__init__()
        if dtype not in COMPUTE_DTYPES:
            raise UsageError(f"dtype '{dtype}': the torch backend runs in {', '.join(COMPUTE_DTYPES)}")
        # Underscored attributes only: the parameter containers live in _modules, where a parameter or
        # scope named like one of these could otherwise collide.
        self._pnet_graph = graph
        self._pnet_dtype = dtype
        self._program = _Program(graph, dtype)
        self._plans: dict[tuple, list] = {}
        self._input_names = [n for n, _ in graph.inputs]
        self._output_names = [n for n, _ in graph.outputs]
        self._input_dtypes = [compute_dtype(v.type.dtype, dtype) for _, v in graph.inputs]
        self._symbols = symbols(graph)
        self._input_shapes = [_prepare(tuple(v.type.shape)) for _, v in graph.inputs]
        # where each symbolic dim is read from: (input index, axis, symbol name)
        self._dim_sources = [(i, ax, d.name) for i, (_, v) in enumerate(graph.inputs)
                             for ax, d in enumerate(v.type.shape) if d.is_Symbol]
        self._defaults = {s: graph.dims.get(s, DEFAULT_DIMS.get(s, DEFAULT_DIM)) for s in self._symbols}
        values = params if params is not None else init_params(graph, seed)
        self._param_slots = []   # (owner module, leaf name, its dict: _parameters, or _buffers for `state`)
        for p in graph.params:
            self._param_slots.append(self._add_param(p.name, values[p.name], p.value.type.dtype, p.state))
        # a training-mode graph's `update` results ("state:NAME" outputs): written into their buffers
        slot_of = {p.name: slot for p, slot in zip(graph.params, self._param_slots)}
        self._updates = [(n, slot_of[n[len(STATE_OUTPUT_PREFIX):]])
                         for n, _ in graph.outputs if n.startswith(STATE_OUTPUT_PREFIX)]
        self._fold_constants()

    # -- construction --
    def _add_param(self, name: str, value, declared: str, state: bool = False):
        *scopes, leaf = name.split(".")
        owner: nn.Module = self
        for seg in scopes:
            if seg not in owner._modules:
                owner._modules[seg] = _Scope()
            owner = owner._modules[seg]
        t = torch.as_tensor(np.asarray(value)).to(compute_dtype(declared, self._pnet_dtype))
        # Straight into _parameters: a name such as "eval" or "type" is a fine pnet name but register_parameter
        # would refuse it as an existing attribute. The forward pass reads parameters from the same dicts.
        if state:   # a buffer: in state_dict, not in parameters(), never trained
            owner._buffers[leaf] = t
            owner._non_persistent_buffers_set.discard(leaf)
            return owner, leaf, owner._buffers
        owner._parameters[leaf] = nn.Parameter(t, requires_grad=t.is_floating_point())
        return owner, leaf, owner._parameters

    def _fold_constants(self):
        """Source ops (const, arange) with concrete attributes are computed once and kept as non-persistent
        buffers: they follow .to(device), stay out of state_dict, and cost nothing per call."""
        count = 0

        def visit(program: _Program):
            nonlocal count
            for s in program.steps:
                if s.body is not None:
                    visit(s.body)
                elif not s.ins and s.static and registry.get(s.node.op).kind == "source":
                    value = s.fn(torch, **s.attrs)
                    name = f"_pnet_const{count}"
                    count += 1
                    self.register_buffer(name, value.to(s.dtypes[0]).clone(), persistent=False)
                    s.const = name

        visit(self._program)

    # -- calling --
    @property
    def graph(self) -> Graph:
        return self._pnet_graph

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    def _device(self, inputs):
        for _, leaf, tensors in self._param_slots:
            return tensors[leaf].device
        for b in self._buffers.values():
            return b.device
        for t in inputs:
            if isinstance(t, torch.Tensor):
                return t.device
        return torch.device("cpu")

    def _gather_inputs(self, args, kwargs) -> list:
        names = self._input_names
        if len(args) > len(names):
            raise UsageError(f"{self.graph.name}: {len(args)} positional inputs, the model takes {len(names)} ({', '.join(names)})")
        given = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise UsageError(f"{self.graph.name}: no input named '{k}' (inputs: {', '.join(names)})")
            if k in given:
                raise UsageError(f"{self.graph.name}: input '{k}' given twice")
            given[k] = v
        missing = [n for n in names if n not in given]
        if missing:
            raise UsageError(f"{self.graph.name}: missing input{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        device = self._device(given.values())
        out = []
        for n, dt in zip(names, self._input_dtypes):
            t = given[n]
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t))
            out.append(t.to(device=device, dtype=dt))
        return out

    def _plan(self, inputs: list) -> list:
        """The concrete plan for these input shapes (dims bound from the shapes; checked; cached)."""
        # operator.index, not int: under torch.compile a size that Dynamo made dynamic (a second batch size) is
        # specialised to its value (a guard), where int() would keep it symbolic and break the graph here
        shapes = tuple(tuple(operator.index(d) for d in t.shape) for t in inputs)
        device = inputs[0].device if inputs else self._device(())
        key = self._plan_key(shapes, device)
        if key is None:  # the shapes are refused: raise that error outside the traced code
            self._raise_plan_error(shapes, device)
        return self._plans[key][0]

    @torch.compiler.assume_constant_result
    def _plan_key(self, shapes: tuple, device) -> tuple | None:
        """`_make_plan`'s key, or None where it raises (an exception raised while Dynamo runs this is reported
        as Dynamo's internal error, not the ShapeError the eager module raises)."""
        try:
            return self._make_plan(shapes, device)
        except PnetError:
            return None

    @torch.compiler.disable
    def _raise_plan_error(self, shapes: tuple, device) -> None:
        self._make_plan(shapes, device)

    def _make_plan(self, shapes: tuple, device) -> tuple:
        """The key in self._plans of the plan for input shapes `shapes` (tuples of ints) on `device`, made
        (checked, instantiated) on first use. torch.compile runs this once while it traces and keeps the key as
        a constant: the plan is already cached when the traced `self._plans[key]` reads it, so the only guard
        on the cache is that it holds the key, true from then on. (Tracing the look-up and the insertion guarded
        on the key being absent, which failed on the second call and compiled the module twice.)"""
        bound = {}
        for i, ax, name in self._dim_sources:
            shape = shapes[i]
            if ax >= len(shape):
                break  # the rank check below reports it
            n = shape[ax]
            if bound.setdefault(name, n) != n:
                raise ShapeError(f"input '{self._input_names[i]}' has shape {list(shape)}: dim {name} is {n} here "
                                 f"but {bound[name]} elsewhere")
        key = (str(device),) + tuple(bound.get(s, -1) for s in self._symbols)
        plan = self._plans.get(key)
        if plan is None:
            bindings = {s: bound.get(s, self._defaults[s]) for s in self._symbols}
            check_shapes(self.graph, bindings)  # once per binding: the reference's shape errors
            want = [_resolve(shape, bindings) for shape in self._input_shapes]
            plan = (self._program.instantiate(bindings, device), want)
        for name, shape, w in zip(self._input_names, shapes, plan[1]):
            if shape != w:
                raise input_shape_error(name, dict(self.graph.inputs)[name].type, shape, w)
        self._plans[key] = plan
        return key

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        inputs = self._gather_inputs(args, kwargs)
        plan = self._plan(inputs)
        env = [None] * self._program.n_slots
        leaves = inputs + [tensors[leaf] for _, leaf, tensors in self._param_slots]
        env[1:1 + len(leaves)] = leaves
        _execute(plan, env, self._buffers)
        outs = _plain_outputs({n: env[i] for n, i in zip(self._output_names, self._program.out_slots)})
        if self.training and self._updates:   # as torch's BatchNorm updates running statistics in train()
            with torch.no_grad():
                for n, (_, leaf, tensors) in self._updates:
                    tensors[leaf].copy_(outs[n])
        return outs

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    def run_named(self, inputs: dict) -> dict[str, torch.Tensor]:
        """Call with the inputs by name. Positionally when every input is given, so an input may be named like
        a parameter of nn.Module.__call__ (`self`); otherwise by keyword, so a missing or unknown name is the
        usual error."""
        if set(inputs) == set(self._input_names):
            return self(*[inputs[n] for n in self._input_names])
        return self(**inputs)

    def outputs_tuple(self, *args, **kwargs) -> tuple:
        """The outputs in the graph's output order (for code that wants `y, h = ...`)."""
        out = self(*args, **kwargs)
        return tuple(out[n] for n in self._output_names)

    def extra_repr(self) -> str:
        return f"graph={self.graph.name}, dtype={self._pnet_dtype}"


def _plain_outputs(outs: dict) -> dict:
    """Under torch.no_grad(), an output that is a parameter or a view of one (`output y = w.T`) is detached:
    torch keeps requires_grad on such views, so it would otherwise refuse .numpy() and differ from every
    other output. With grad enabled it is returned as is, so gradients reach the parameter."""
    if torch.is_grad_enabled():
        return outs
    return {k: v.detach() if v.requires_grad else v for k, v in outs.items()}


def to_module(graph: Graph, dtype: str = "f32", device="cpu", *, seed: int = 0, params: dict | None = None) -> PnetModule:
    """An nn.Module running `graph`. Parameters start as `numpy_ref.init_params(graph, seed)` (so a fresh
    module equals the reference's seeded parameters) unless `params` (name -> array) is given."""
    return PnetModule(graph, dtype, params, seed).to(device)


def outputs_tuple(module: PnetModule, outputs: dict) -> tuple:
    return tuple(outputs[n] for n in module.output_names)


# ---- weights ------------------------------------------------------------------------------------------
def load_state(module: nn.Module, path, graph: Graph) -> None:
    """Load a .safetensors/.npz weight file into `module`, all or nothing: weights.load_params checks every
    name, shape and dtype first (its errors are one line and name the parameter), then everything is copied."""
    from ..weights import load_params
    arrays = load_params(path, graph)
    state = module.state_dict()
    unknown = [k for k in arrays if k not in state]
    if unknown:  # the module was built from another graph
        raise UsageError(f"{path}: the module has no parameter '{unknown[0]}'")
    with torch.no_grad():
        for name, arr in arrays.items():
            state[name].copy_(torch.from_numpy(np.asarray(arr, order="C")))


def state_arrays(module: nn.Module, graph: Graph) -> dict[str, np.ndarray]:
    """The module's parameters as NumPy arrays in their declared dtypes (what the reference loads)."""
    from ..ir.types import DTYPES
    state = module.state_dict()
    out = {}
    for p in graph.params:
        t = state[p.name].detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bf16
            t = t.float()
        out[p.name] = t.numpy().astype(DTYPES[p.value.type.dtype], copy=False)
    return out


def save_state(module: nn.Module, path, graph: Graph) -> None:
    from ..weights import save_params
    save_params(Path(path), state_arrays(module, graph))
