"""The reference interpreter: runs any IR graph with NumPy, one op at a time, through the registry's
`ref` functions. It is the oracle every pass and backend is tested against. `float64=True` runs
every float tensor in float64 (the tolerance policy compares against that)."""
from __future__ import annotations

import warnings
import zlib

import numpy as np
import sympy

from ..errors import PnetError, ShapeError
from ..ir import registry
from ..ir.graph import Graph, Param, fans
from ..ir.types import DTYPES, concrete, concretize, is_float, round_to_bf16, sym

DEFAULT_DIM = 4
DEFAULT_DIMS = {"B": 2}


# ---- symbolic dims -------------------------------------------------------------------------------
def bind_dims(graph: Graph, inputs: dict[str, np.ndarray] | None = None, dims: dict | None = None) -> dict[str, int]:
    """Sizes of the symbolic dims: from the given arrays' shapes, then `dims`, then small defaults."""
    bound = {k: int(v) for k, v in (dims or {}).items()}
    for name, v in graph.inputs:
        if inputs is None or name not in inputs:
            continue
        arr = np.asarray(inputs[name])
        if arr.ndim != v.type.rank:
            raise input_shape_error(name, v.type, arr.shape)
        for d, n in zip(v.type.shape, arr.shape):
            if d.is_Symbol:
                if d.name in bound and bound[d.name] != n:
                    raise ShapeError(f"input '{name}' has shape {list(arr.shape)}: dim {d} is {n} here but {bound[d.name]} elsewhere")
                bound[d.name] = int(n)
    for s in symbols(graph):
        bound.setdefault(s, graph.dims.get(s, DEFAULT_DIMS.get(s, DEFAULT_DIM)))
    for name, v in graph.inputs:
        if inputs is not None and name in inputs:
            want = [concrete(d, bound) for d in v.type.shape]
            if list(np.shape(inputs[name])) != want:
                raise input_shape_error(name, v.type, np.shape(inputs[name]), want)
    return bound


def input_shape_error(name: str, declared, got, want=None) -> ShapeError:
    """The one message for an input of the wrong rank, or (`want`: the bound shape) of the wrong shape."""
    if len(got) != declared.rank:
        return ShapeError(f"input '{name}' should have rank {declared.rank} ({declared}), got shape {list(got)}")
    return ShapeError(f"input '{name}' should have shape {list(want)} ({declared}), got {list(got)}")


def check_shapes(graph: Graph, bindings: dict) -> None:
    """The run-time errors the bound sizes alone decide, located at their node: a reduction with no identity
    (max, argmax, ...) over an axis bound to 0, a slice past the end of a dim, a reflect/circular pad of an
    empty axis. Every backend runs this once per
    binding before any op runs, so all raise the same error (top-level nodes: a scan body's own ops raise)."""
    for node in graph.nodes:
        msg = _shape_error(node, bindings)
        if msg:
            raise PnetError(msg, node.loc)


# ops whose type rule, given the bound sizes, refuses what the symbolic one could not decide (topk's k against
# a dim bound to 0, split sizes against the bound axis): their type rule runs again with concrete shapes
RETYPED = ("topk", "topk_mask", "split", "fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2")  # (fft.py:
# a transformed axis bound to 0)


def _retype_error(node, bindings: dict) -> str | None:
    types = [None if v is None else v.type.with_shape(tuple(sympy.Integer(concrete(d, bindings)) for d in v.type.shape))
             for v in node.inputs]
    try:
        outs = registry.get(node.op).infer_types(types, concretize(dict(node.attrs), bindings))
    except PnetError as e:
        return e.message
    for got, v in zip(outs, node.outputs):
        want = [concrete(d, bindings) for d in v.type.shape]
        if [int(d) for d in got.shape] != want:
            return f"{node.op}: the result would have shape {[int(d) for d in got.shape]}, not {want}"
    return None


def _shape_error(node, bindings: dict) -> str | None:
    from ..ir.ops.movement import pad_range_error, slice_range_error
    from ..ir.ops.reduce import NO_IDENTITY, empty_reduction_error
    if node.op in RETYPED:
        return _retype_error(node, bindings)
    if node.op not in NO_IDENTITY and node.op not in ("slice", "pad"):
        return None
    shape = [concrete(d, bindings) for d in node.inputs[0].type.shape]
    if node.op == "slice":
        return slice_range_error(shape, concretize(node.attrs["slices"], bindings))
    if node.op == "pad":
        return pad_range_error(shape, node.attrs["pads"], node.attrs["mode"])
    return empty_reduction_error(node.op, shape, node.attrs)


def check_inputs(graph: Graph, inputs: dict, dims: dict | None = None) -> dict[str, int]:
    """What every backend does with the inputs before running: all given, the symbolic dims bound to their
    shapes (a ShapeError for a wrong shape or an inconsistent dim). Returns the bindings."""
    missing = [n for n, _ in graph.inputs if n not in inputs]
    if missing:
        raise PnetError(f"missing input{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return bind_dims(graph, inputs, dims)


def symbols(graph: Graph) -> list[str]:
    names = []
    for _, v in graph.inputs:
        for d in v.type.shape:
            for s in sorted(d.free_symbols, key=str):
                if s.name not in names:
                    names.append(s.name)
    return names


# ---- parameters ----------------------------------------------------------------------------------
_CHUNK = 1 << 20  # values drawn (in float64) at a time, written straight into the tensor's own dtype


def _drawn(draw, shape, dtype) -> np.ndarray:
    """An array of `dtype` filled chunk by chunk with draw(n) (n float64 values): the same values as one big
    draw (the generator's stream does not depend on the chunking), without a float64 copy of the tensor."""
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        flat[i:i + _CHUNK] = draw(min(_CHUNK, flat.size - i))
    return out


def init_param(p: Param, seed: int = 0) -> np.ndarray:
    """Deterministic: the stream depends on the seed and the parameter's name, not on order."""
    shape = tuple(int(d) for d in p.value.type.shape)
    dtype = DTYPES[p.value.type.dtype]
    rng = np.random.default_rng([seed, zlib.crc32(p.name.encode())])
    args, kw = p.init.args, dict(p.init.kwargs)
    fn = p.init.fn
    fan_in, fan_out = fans(shape)
    fan_in, fan_out = kw.get("fan_in", fan_in), kw.get("fan_out", fan_out)
    if fn == "normal":
        mean, std = (list(args) + [0.0, 1.0][len(args):])[:2]
        out = _drawn(lambda n: rng.normal(kw.get("mean", mean), kw.get("std", std), n), shape, dtype)
    elif fn == "trunc_normal":
        mean, std = (list(args) + [0.0, 1.0][len(args):])[:2]
        out = _drawn(lambda n: np.clip(rng.normal(0.0, 1.0, n), -2, 2) * kw.get("std", std) + kw.get("mean", mean),
                     shape, dtype)
    elif fn == "uniform":
        low, high = (list(args) + [0.0, 1.0][len(args):])[:2]
        out = _drawn(lambda n: rng.uniform(kw.get("low", low), kw.get("high", high), n), shape, dtype)
    elif fn == "zeros":
        out = np.zeros(shape, dtype)
    elif fn == "ones":
        out = np.ones(shape, dtype)
    elif fn == "constant":
        out = np.full(shape, np.asarray(args[0] if args else kw.get("value", 0.0)).astype(dtype), dtype)
    elif fn == "kaiming":
        gain = args[0] if args else np.sqrt(2.0)
        out = _drawn(lambda n: rng.normal(0.0, gain / np.sqrt(max(fan_in, 1)), n), shape, dtype)
    elif fn == "xavier":
        gain = args[0] if args else 1.0
        a = gain * np.sqrt(6.0 / max(fan_in + fan_out, 1))
        out = _drawn(lambda n: rng.uniform(-a, a, n), shape, dtype)
    elif fn == "orthogonal":
        gain = args[0] if args else 1.0
        rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0] if shape else 1)
        q, r = np.linalg.qr(rng.normal(size=(max(rows, cols), min(rows, cols))))
        q = q * np.sign(np.diag(r))
        out = gain * (q if rows >= cols else q.T)[:rows, :cols].reshape(shape)
    else:
        raise PnetError(f"parameter {p.name}: unknown initializer '{fn}'", p.loc)
    return np.asarray(out).astype(dtype, copy=False)


def init_params(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    from .memory import check_params
    check_params(graph)  # refused from the shapes, before any is drawn
    return {p.name: init_param(p, seed) for p in graph.params}


# ---- inputs --------------------------------------------------------------------------------------
def random_inputs(graph: Graph, seed: int = 0, dims: dict | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs: normal floats; integer inputs in the range their consumers index (e.g. a vocab)."""
    bindings = bind_dims(graph, None, dims)
    from .memory import check_inputs
    check_inputs(graph, bindings)  # refused from the shapes, before any is drawn
    rng = np.random.default_rng([seed, 1])
    out = {}
    for name, v in graph.inputs:
        shape = tuple(concrete(d, bindings) for d in v.type.shape)
        dtype = DTYPES[v.type.dtype]
        if is_float(v.type.dtype):
            out[name] = _drawn(rng.standard_normal, shape, dtype)
        elif v.type.dtype in ("c64", "c128"):   # complex: normal real and imaginary parts, drawn in turn
            out[name] = _drawn(rng.standard_normal, shape, dtype) + 1j * _drawn(rng.standard_normal, shape, dtype)
        elif v.type.dtype == "bool":
            out[name] = _drawn(lambda n: rng.random(n) < 0.5, shape, dtype)
        else:
            bound = index_bound(graph, v, bindings)
            out[name] = _drawn(lambda n: rng.integers(0, bound, n), shape, dtype)
    return out


def index_bound(graph: Graph, value, bindings) -> int:
    """The exclusive upper bound for an integer input: the size it indexes into, else 2."""
    bounds = []
    for n in graph.walk():
        for i, v in enumerate(n.inputs):
            if v is not value:
                continue
            a = n.attrs
            if n.op in ("take", "gather") and i == 1:
                bounds.append(n.inputs[0].type.shape[a.get("axis", 0)])
            elif n.op == "embedding" and i == 1:
                bounds.append(n.inputs[0].type.shape[0])
            elif n.op == "one_hot":
                bounds.append(a["depth"])
            elif n.op.startswith("segment_") and i == 1:
                bounds.append(a["num_segments"])
            elif n.op == "scatter_add" and i == 1:
                bounds.append(n.inputs[0].type.shape[a.get("axis", 0)])
    if not bounds:
        return 2
    return max(1, min(concrete(sympy.sympify(b), bindings) for b in bounds))


# ---- execution -----------------------------------------------------------------------------------
def run(graph: Graph, inputs: dict[str, np.ndarray] | None = None, params: dict[str, np.ndarray] | None = None,
        *, seed: int = 0, float64: bool = False, dims: dict | None = None, on_node=None) -> dict[str, np.ndarray]:
    """Run the model. Missing inputs/params are drawn from `seed`. Returns outputs by name. `on_node(node, args,
    results)`, when given, sees every op as it runs (scan bodies' too): backends/nan_trace.py's hook."""
    inputs = dict(inputs) if inputs is not None else random_inputs(graph, seed, dims)
    bindings = check_inputs(graph, inputs, dims)
    from .memory import check_run
    check_run(graph, bindings, float64)  # every value's size from the shapes, before any op runs
    check_shapes(graph, bindings)
    params = params if params is not None else init_params(graph, seed)
    env_in = []
    for name, v in graph.inputs:
        env_in.append(_as_dtype(np.asarray(inputs[name]), v.type.dtype, float64))
    for p in graph.params:
        if p.name not in params:
            raise PnetError(f"missing parameter '{p.name}'")
        env_in.append(_as_dtype(np.asarray(params[p.name]), p.value.type.dtype, float64))
    values = [v for _, v in graph.inputs] + [p.value for p in graph.params]
    outs = evaluate(graph, dict(zip(values, env_in)), bindings, float64, on_node)
    return {name: out for (name, _), out in zip(graph.outputs, outs)}


def _as_dtype(arr, dtype, float64):
    if dtype == "bf16" and not float64:   # held in float32 (NumPy has no bf16), rounded as a bf16 tensor is
        return round_to_bf16(arr)
    if is_float(dtype):
        return arr.astype(np.float64 if float64 else DTYPES[dtype], copy=False)
    if dtype in ("c64", "c128"):   # complex (ir/ops/fft.py): c128 in the float64 reference
        return arr.astype(np.complex128 if float64 else DTYPES[dtype], copy=False)
    return arr.astype(DTYPES[dtype], copy=False)


def evaluate(graph: Graph, env: dict, bindings: dict, float64: bool = False, on_node=None) -> list[np.ndarray]:
    # NaN and Inf are values the semantics define (docs/language.md), not something to warn about: NumPy's
    # RuntimeWarnings ("Mean of empty slice", "invalid value") never reach the user
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _evaluate(graph, env, bindings, float64, on_node)


def _evaluate(graph: Graph, env: dict, bindings: dict, float64: bool, on_node=None) -> list[np.ndarray]:
    env = dict(env)
    for node in graph.nodes:
        args = [env[v] if v is not None else None for v in node.inputs]
        if node.op == "scan":
            results = _scan(node, args, bindings, float64, on_node)
        else:
            opdef = registry.get(node.op)
            attrs = concretize(node.attrs, bindings)
            if float64 and "dtype" in attrs and is_float(attrs["dtype"]):
                attrs["dtype"] = "f64"
            try:
                with np.errstate(all="ignore"):
                    out = opdef.ref(*args, **attrs)
            except PnetError as e:  # a data-dependent error (an index out of range): say which node
                raise e.with_loc(node.loc) from None
            results = list(out) if isinstance(out, tuple) else [out]
        for v, r in zip(node.outputs, results):
            env[v] = _as_dtype(np.asarray(r), v.type.dtype, float64)
        if on_node is not None:
            on_node(node, args, [env[v] for v in node.outputs])
    return [env[v] for _, v in graph.outputs]


def _scan(node, args, bindings, float64, on_node=None):
    k, s = node.attrs["n_carries"], node.attrs["n_seqs"]
    axes, out_axis = node.attrs["axes"], node.attrs["out_axis"]
    carries, seqs, captured = args[:k], args[k:k + s], args[k + s:]
    length = concrete(sympy.sympify(node.attrs["length"]), bindings)
    body = node.body
    ys = []
    for t in range(length):
        slices = [np.take(seq, t, axis=ax) for seq, ax in zip(seqs, axes)]
        env = dict(zip([v for _, v in body.inputs], carries + slices + captured))
        outs = evaluate(body, env, bindings, float64, on_node)
        carries = outs[:k]
        ys.append(outs[k:])
    stacked = []
    for i, (_, v) in enumerate(body.outputs[k:]):
        if length:
            stacked.append(np.stack([y[i] for y in ys], axis=out_axis))
        else:
            shape = [concrete(d, bindings) for d in node.outputs[k + i].type.shape]
            stacked.append(np.zeros(shape, dtype=np.float64 if float64 else DTYPES[v.type.dtype]))
    return carries + stacked
