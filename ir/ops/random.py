"""Random sampling with one counter-based generator: Philox4x32-10 exactly as Triton's `tl.randint4x(seed,
offset)` computes it, so the NumPy reference (uint32 words held in uint64), the torch lowering (int64 tensors,
products split in 16-bit halves so nothing overflows) and the Triton kernels (`tl.rand` / `tl.randn` /
`tl.randint` in a pointwise kernel) draw the same bits.

Each sample is a pure function of three things: the element's counter (its flat row-major index in the
result, an int32; the optional `counter` input carries it explicitly, which is how passes/decompose.py hands
it to a Triton kernel), the call site's `key` (a stable hash of the call path, the op and its ordinal there, assigned
when the program is elaborated: `assign_keys`) and the run's `seed` (`pnet run --seed`,
written into the graph by `set_run_mode` before the passes run). The Philox key is seed * 2**32 + key.
`dropout` is active only with `training=True` (`pnet run --train-mode`; default off: the identity)."""
from __future__ import annotations

import zlib

import numpy as np

from ...errors import ShapeError
from ..registry import REQUIRED, register
from ..types import DTYPES, TensorType, dims_equal, fmt_shape, is_float, numel

M32 = 0xFFFFFFFF
PHILOX_KEY_A, PHILOX_KEY_B = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUND_A, PHILOX_ROUND_B = 0xD2511F53, 0xCD9E8D57
UNIFORM_SCALE = 4.6566127342e-10   # triton uint_to_uniform_float: the largest s with (2**31 - 1) * s < 1 in f32
NORMAL_MIN_U = 1.0e-7              # triton pair_uniform_to_normal clamps u1 (and gumbel here) away from 0
SOURCES = ("rand_uniform", "rand_normal", "randint", "gumbel")
RANDOM_OPS = SOURCES + ("bernoulli", "dropout")


def philox_key(seed, key) -> int:
    """The 64-bit Philox key: the run's seed in the high word, the call site's key in the low word."""
    return ((int(seed or 0) & 0x7FFFFFFF) << 32) | (int(key or 0) & M32)


# ---- NumPy: uint32 words in uint64 arrays --------------------------------------------------------
def philox_np(seed64: int, counter) -> tuple:
    """Philox4x32-10 of counters (c0 = counter, c1 = c2 = c3 = 0) under `seed64`: four uint32 words (as uint64)."""
    u = np.uint64
    m = u(M32)
    c0 = np.asarray(counter).astype(np.uint64) & m
    c1 = np.zeros_like(c0)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0, k1 = u(seed64 & M32), u((seed64 >> 32) & M32)
    a, b = u(PHILOX_ROUND_A), u(PHILOX_ROUND_B)
    for _ in range(10):
        p2, p0 = b * c2, a * c0   # < 2**64: exact in uint64
        c0, c1, c2, c3 = (p2 >> u(32)) ^ c1 ^ k0, p2 & m, (p0 >> u(32)) ^ c3 ^ k1, p0 & m
        k0, k1 = (k0 + u(PHILOX_KEY_A)) & m, (k1 + u(PHILOX_KEY_B)) & m
    return c0, c1, c2, c3


def to_uniform_np(x) -> np.ndarray:
    """triton uint_to_uniform_float: the word as int32, x < 0 -> ~x, times the scale, in float32: [0, 1)."""
    xi = (x.astype(np.int64) ^ 0x80000000) - 0x80000000   # bitcast to int32, held in int64
    xi = np.where(xi < 0, ~xi, xi)
    return xi.astype(np.float32) * np.float32(UNIFORM_SCALE)


def _counters(counter, shape) -> np.ndarray:
    if counter is not None:
        return np.asarray(counter).astype(np.int64) & M32
    shape = tuple(int(d) for d in shape)
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def _uniform_np(counter, shape, key, seed) -> np.ndarray:
    return to_uniform_np(philox_np(philox_key(seed, key), _counters(counter, shape))[0])


def _normal_np(counter, shape, key, seed) -> np.ndarray:
    """triton randn: Box-Muller of the first two words (the cosine branch), here in float64."""
    w = philox_np(philox_key(seed, key), _counters(counter, shape))
    u1 = np.maximum(np.float64(NORMAL_MIN_U), to_uniform_np(w[0]).astype(np.float64))
    u2 = to_uniform_np(w[1]).astype(np.float64)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)


def _ref_uniform(counter=None, *, shape, low, high, dtype, key, seed):
    u = _uniform_np(counter, shape, key, seed)
    if DTYPES[dtype] == np.float64:
        return np.float64(low) + (np.float64(high) - np.float64(low)) * u.astype(np.float64)
    return (np.float32(low) + np.float32(high - low) * u).astype(DTYPES[dtype])


def _ref_normal(counter=None, *, shape, mean, std, dtype, key, seed):
    return (mean + std * _normal_np(counter, shape, key, seed)).astype(DTYPES[dtype])


def _ref_randint(counter=None, *, low, high, shape, dtype, key, seed):
    x = philox_np(philox_key(seed, key), _counters(counter, shape))[0].astype(np.int64)
    return (int(low) + x % (int(high) - int(low))).astype(DTYPES[dtype])


def _ref_gumbel(counter=None, *, shape, dtype, key, seed):
    u = np.maximum(np.float64(NORMAL_MIN_U), _uniform_np(counter, shape, key, seed).astype(np.float64))
    return (-np.log(-np.log(u))).astype(DTYPES[dtype])


def _ref_bernoulli(p, counter=None, *, key, seed):
    u = _uniform_np(counter, np.shape(p), key, seed)
    return (u < p).astype(np.asarray(p).dtype)


def dropout_scale(p: float) -> float:
    return 1.0 / (1.0 - p) if p < 1 else 0.0


def _ref_dropout(x, counter=None, *, p, training, key, seed):
    if not training:
        return x
    x = np.asarray(x)
    u = _uniform_np(counter, x.shape, key, seed)
    m = np.where(u >= np.float32(p), dropout_scale(p), 0.0).astype(x.dtype)
    return x * m   # NaN and inf stay NaN where dropped (x * 0), as torch's x * mask / (1 - p)


# ---- torch: int64 tensors holding uint32 words ---------------------------------------------------
def _mul32(x, a: int):
    """(hi, lo) 32-bit words of x * a for uint32 x (int64 tensor) and a constant a < 2**32, without overflow."""
    t = x * (a & 0xFFFF)
    v = x * (a >> 16) + (t >> 16)
    return v >> 16, ((v & 0xFFFF) << 16) | (t & 0xFFFF)


def philox_torch(T, seed64: int, c0):
    c0 = c0 & M32
    c1, c2, c3 = T.zeros_like(c0), T.zeros_like(c0), T.zeros_like(c0)
    k0, k1 = seed64 & M32, (seed64 >> 32) & M32
    for _ in range(10):
        h2, l2 = _mul32(c2, PHILOX_ROUND_B)
        h0, l0 = _mul32(c0, PHILOX_ROUND_A)
        c0, c1, c2, c3 = h2 ^ c1 ^ k0, l2, h0 ^ c3 ^ k1, l0
        k0, k1 = (k0 + PHILOX_KEY_A) & M32, (k1 + PHILOX_KEY_B) & M32
    return c0, c1, c2, c3


def counters_torch(T, counter, shape):
    if counter is not None:
        return counter.to(T.int64) & M32
    shape = [int(d) for d in shape]
    n = 1
    for d in shape:
        n *= d
    return T.arange(n, dtype=T.int64).reshape(shape)


def to_uniform_torch(T, x):
    xi = (x ^ 0x80000000) - 0x80000000
    xi = T.where(xi < 0, ~xi, xi)
    return xi.to(T.float32) * T.tensor(UNIFORM_SCALE, dtype=T.float32, device=x.device)


def torch_out_dtype(T, dtype):
    """A pnet dtype name as a torch dtype (generated torch source passes torch dtypes already)."""
    if isinstance(dtype, T.dtype):
        return dtype
    return {"f16": T.float16, "bf16": T.bfloat16, "f32": T.float32, "f64": T.float64,
            "i8": T.int8, "i16": T.int16, "i32": T.int32, "i64": T.int64}[dtype]


def uniform_torch(T, counter=None, *, shape, low, high, dtype, key, seed):
    u = to_uniform_torch(T, philox_torch(T, philox_key(seed, key), counters_torch(T, counter, shape))[0])
    if torch_out_dtype(T, dtype) == T.float64:
        return float(low) + (float(high) - float(low)) * u.to(T.float64)
    span = T.tensor(high - low, dtype=T.float32, device=u.device)
    return (T.tensor(low, dtype=T.float32, device=u.device) + span * u).to(torch_out_dtype(T, dtype))


def normal_torch(T, counter=None, *, shape, mean, std, dtype, key, seed):
    w = philox_torch(T, philox_key(seed, key), counters_torch(T, counter, shape))
    u1 = to_uniform_torch(T, w[0]).to(T.float64).clamp(min=NORMAL_MIN_U)
    u2 = to_uniform_torch(T, w[1]).to(T.float64)
    n = T.sqrt(-2.0 * T.log(u1)) * T.cos(6.283185307179586 * u2)
    return (mean + std * n).to(torch_out_dtype(T, dtype))


def randint_torch(T, counter=None, *, low, high, shape, dtype, key, seed):
    x = philox_torch(T, philox_key(seed, key), counters_torch(T, counter, shape))[0]
    return (int(low) + x % (int(high) - int(low))).to(torch_out_dtype(T, dtype))


def gumbel_torch(T, counter=None, *, shape, dtype, key, seed):
    u = to_uniform_torch(T, philox_torch(T, philox_key(seed, key), counters_torch(T, counter, shape))[0])
    u = u.to(T.float64).clamp(min=NORMAL_MIN_U)
    return (-T.log(-T.log(u))).to(torch_out_dtype(T, dtype))


def bernoulli_torch(T, p, counter=None, *, key, seed):
    c = counters_torch(T, counter, p.shape).to(p.device)
    u = to_uniform_torch(T, philox_torch(T, philox_key(seed, key), c)[0])
    return (u.to(p.dtype) < p).to(p.dtype) if p.dtype == T.float64 else (u < p).to(p.dtype)


def dropout_torch(T, x, counter=None, *, p, training, key, seed):
    if not training:
        return x
    c = counters_torch(T, counter, x.shape).to(x.device)
    u = to_uniform_torch(T, philox_torch(T, philox_key(seed, key), c)[0])
    keep = u >= T.tensor(p, dtype=T.float32, device=x.device)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    m = T.where(keep, T.tensor(scale, dtype=x.dtype, device=x.device), T.zeros((), dtype=x.dtype, device=x.device))
    return x * m


# ---- Triton: expressions over the counter operand (passes/decompose.py supplies it) --------------
def _c(counter):
    if counter is None:
        raise ShapeError("internal: a random op reached a Triton kernel without its counter operand")
    return f"({counter}).to(tl.int32)"


def _f(v) -> str:
    return repr(float(v))


def _triton_uniform(counter=None, *, shape, low, high, dtype, key, seed):
    return f"({_f(low)} + {_f(high - low)} * tl.rand({philox_key(seed, key)}, {_c(counter)}))"


def _triton_normal(counter=None, *, shape, mean, std, dtype, key, seed):
    return f"({_f(mean)} + {_f(std)} * tl.randn({philox_key(seed, key)}, {_c(counter)}))"


def _triton_randint(counter=None, *, low, high, shape, dtype, key, seed):
    x = f"tl.randint({philox_key(seed, key)}, {_c(counter)}).to(tl.int64)"
    return f"({int(low)} + ({x} % {int(high) - int(low)}))"


def _triton_gumbel(counter=None, *, shape, dtype, key, seed):
    u = f"tl.maximum(tl.rand({philox_key(seed, key)}, {_c(counter)}), {NORMAL_MIN_U!r})"
    return f"(-tl.log(-tl.log({u})))"


def _triton_bernoulli(p, counter=None, *, key, seed):
    return f"tl.where(tl.rand({philox_key(seed, key)}, {_c(counter)}) < {p}, 1.0, 0.0)"


def _triton_dropout(x, counter=None, *, p, training, key, seed):
    if not training:
        return f"({x})"
    keep = f"tl.rand({philox_key(seed, key)}, {_c(counter)}) >= {_f(p)}"
    return f"({x} * tl.where({keep}, {_f(dropout_scale(p))}, 0.0))"


# ---- type rules ------------------------------------------------------------------------------------
def _check_counter(name, counter, shape):
    if counter is None:
        return
    if counter.dtype != "i32" or counter.rank != len(shape) or not all(dims_equal(a, b) for a, b in zip(counter.shape, shape)):
        raise ShapeError(f"{name}: counter must be i32{fmt_shape(shape)} (the flat index of each element), got {counter}")


def _shape_attr(name, shape):
    if not isinstance(shape, (list, tuple)):
        raise ShapeError(f"{name}: shape must be a list of dims like [B, 16], got {shape!r}")
    for d in shape:
        if getattr(d, "is_number", False) and int(d) < 0 or isinstance(d, (int, float)) and d < 0:
            raise ShapeError(f"{name}: shape {list(shape)} has a negative dim")
        if isinstance(d, float) or isinstance(d, bool):
            raise ShapeError(f"{name}: shape {list(shape)} must hold integer dims")
    return tuple(shape)


def _source_infer(name, float_out: bool):
    def infer(types, attrs):
        shape = _shape_attr(name, attrs["shape"])
        dtype = attrs["dtype"]
        if dtype not in DTYPES or is_float(dtype) != float_out or dtype == "bool":
            want = "a float dtype (f32, f64, f16, bf16)" if float_out else "an integer dtype (i32, i64)"
            raise ShapeError(f"{name}: dtype must be {want}, got {dtype!r}")
        _check_counter(name, types[0] if types else None, shape)
        return TensorType(dtype, shape)
    return infer


def _uniform_infer(types, attrs):
    if not float(attrs["low"]) <= float(attrs["high"]):
        raise ShapeError(f"rand_uniform: low {attrs['low']} must not exceed high {attrs['high']}")
    return _source_infer("rand_uniform", True)(types, attrs)


def _normal_infer(types, attrs):
    if not float(attrs["std"]) >= 0:
        raise ShapeError(f"rand_normal: std must be >= 0, got {attrs['std']}")
    return _source_infer("rand_normal", True)(types, attrs)


def _randint_infer(types, attrs):
    low, high = attrs["low"], attrs["high"]
    if any(isinstance(v, (bool, float)) or not isinstance(v, (int, np.integer)) for v in (low, high)):
        raise ShapeError(f"randint: low and high must be integers, got {low!r} and {high!r}")
    if not 0 < high - low <= 2 ** 32:
        raise ShapeError(f"randint: needs low < high and high - low <= 2**32, got low={low}, high={high}")
    out = _source_infer("randint", False)(types, attrs)
    if out.dtype in ("i8", "i16", "i32") and not (np.iinfo(DTYPES[out.dtype]).min <= low and high - 1 <= np.iinfo(DTYPES[out.dtype]).max):
        raise ShapeError(f"randint: [{low}, {high}) does not fit {out.dtype}")
    return out


def _bernoulli_infer(types, attrs):
    p = types[0]
    if not is_float(p.dtype):
        raise ShapeError(f"bernoulli: p must be a float tensor of probabilities, got {p}")
    _check_counter("bernoulli", types[1] if len(types) > 1 else None, p.shape)
    return p


def _dropout_infer(types, attrs):
    x, p = types[0], attrs["p"]
    if not is_float(x.dtype):
        raise ShapeError(f"dropout: x must be a float tensor, got {x}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ShapeError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    _check_counter("dropout", types[1] if len(types) > 1 else None, x.shape)
    return x


_SEED = {"key": None, "seed": 0}

register("rand_uniform", "counter?", attrs={"shape": REQUIRED, "low": 0.0, "high": 1.0, "dtype": "f32", **_SEED},
         infer=_uniform_infer, ref=_ref_uniform, torch=uniform_torch, triton=_triton_uniform,
         doc="uniform samples in [low, high) of the given shape (Philox4x32-10 as Triton's tl.rand; keyed by the run's --seed and the call site)")
register("rand_normal", "counter?", attrs={"shape": REQUIRED, "mean": 0.0, "std": 1.0, "dtype": "f32", **_SEED},
         infer=_normal_infer, ref=_ref_normal, torch=normal_torch, triton=_triton_normal,
         doc="normal samples N(mean, std**2) of the given shape (Box-Muller on Philox words, as Triton's tl.randn)")
register("randint", "counter?", attrs={"low": REQUIRED, "high": REQUIRED, "shape": REQUIRED, "dtype": "i64", **_SEED},
         infer=_randint_infer, ref=_ref_randint, torch=randint_torch, triton=_triton_randint, triton_int=_triton_randint,
         doc="integers in [low, high): low + (Philox word mod (high - low)), as Triton's tl.randint")
register("gumbel", "counter?", attrs={"shape": REQUIRED, "dtype": "f32", **_SEED},
         infer=_source_infer("gumbel", True), ref=_ref_gumbel, torch=gumbel_torch, triton=_triton_gumbel,
         doc="standard Gumbel noise -log(-log(u)) of the given shape (u uniform, clamped to >= 1e-7)")
register("bernoulli", "p, counter?", attrs=dict(_SEED), infer=_bernoulli_infer, ref=_ref_bernoulli,
         torch=bernoulli_torch, triton=_triton_bernoulli,
         doc="1 with probability p, else 0, per element of p (u < p with u as rand_uniform's)")
register("dropout", "x, counter?", attrs={"p": 0.5, "training": False, **_SEED}, infer=_dropout_infer,
         ref=_ref_dropout, torch=dropout_torch, triton=_triton_dropout,
         doc="training only (`pnet run --train-mode`): zero each element with probability p, scale the rest by 1/(1-p); else x")


# ---- keys and run mode ------------------------------------------------------------------------------
def _walk(graph):
    for n in graph.nodes:
        if n.body is not None:
            yield from _walk(n.body)
        yield n


def assign_keys(graph) -> None:
    """Give every random op without an explicit `key` its call site's: a crc32 of its call path (the scope,
    `blocks.3.attn`), its op and its ordinal among the ops of that name in that scope (graph order: loop
    iterations count). Not the line and column: reformatting a file must not change its streams."""
    seen: dict[str, int] = {}
    for n in _walk(graph):
        if n.op not in RANDOM_OPS or n.attrs.get("key") is not None:
            continue
        site = f"{n.scope}|{n.op}"
        k = seen.get(site, 0)
        seen[site] = k + 1
        n.attrs["key"] = zlib.crc32(f"{site}|{k}".encode())


def set_run_mode(graph, seed: int | None = None, training: bool | None = None) -> None:
    """Write the run's seed (and, for dropout, whether the run trains) into every random op, before passes."""
    for n in _walk(graph):
        if n.op not in RANDOM_OPS:
            continue
        if seed is not None:
            n.attrs["seed"] = int(seed)
        if training is not None and n.op == "dropout":
            n.attrs["training"] = bool(training)


def with_counter(e, n):
    """passes/decompose.py's rule: the op with its counter made explicit (a reshaped arange), so a Triton
    pointwise kernel reads it like any operand; None keeps the op (it has one, or is an inactive dropout)."""
    if n.inputs and n.inputs[-1] is not None and len(n.inputs) == (1 if n.op in SOURCES else 2):
        return None
    if n.op == "dropout" and not n.attrs["training"]:
        return None
    shape = list(n.outputs[0].type.shape)
    c = e("arange", [], n=numel(shape), dtype="i32")
    if len(shape) != 1:
        c = e("reshape", [c], shape=shape)
    tensors = [v for v in n.inputs if v is not None][:0 if n.op in SOURCES else 1]
    return e(n.op, tensors + [c], **n.attrs)
