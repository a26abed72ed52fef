"""Ops in ir/ops/{nn,conv,index,attention}.py.

For every op: the NumPy reference against an independent formulation (Python loops over indices or the
textbook formula, float64), the type rule against the reference's output, and the torch lowering against the
reference. Shapes and attributes are chosen by hypothesis and kept tiny.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pnet.errors import PnetError, ShapeError
from pnet.ir.registry import all_ops, get
from pnet.ir.types import DTYPES, TensorType, fmt_shape, sym

try:
    import torch
except ImportError:  # the reference and type-rule checks still run; see test_torch_is_installed
    torch = None

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODULES = ("nn", "conv", "index", "attention")
_DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items() if k != "bf16"}


# ---- helpers ----------------------------------------------------------------------------------------
def ttype(a: np.ndarray) -> TensorType:
    return TensorType(_DTYPE_NAMES[a.dtype], a.shape)


def concrete(value):
    """Attrs as the backends hand them to ref/torch: sympy integers become python ints."""
    if isinstance(value, dict):
        return {k: concrete(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(concrete(v) for v in value)
    if isinstance(value, sympy.Basic):
        return int(value)
    return value


def run(name, *arrays, **given):
    """Type-check and evaluate op `name` on arrays (None = absent optional input); check the inferred types
    against the reference's outputs and the torch lowering against the reference. Returns the output(s)."""
    op = get(name)
    attrs = op.bind_attrs(given)
    types = op.infer_types([None if a is None else ttype(a) for a in arrays], attrs)
    attrs = concrete(attrs)
    out = op.ref(*arrays, **attrs)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(types)
    for t, o in zip(types, outs):
        assert isinstance(o, np.ndarray), (name, type(o))
        assert tuple(int(d) for d in t.shape) == o.shape, (name, str(t), o.shape)
        assert DTYPES[t.dtype] == o.dtype, (name, str(t), o.dtype)
    check_torch(op, arrays, attrs, outs)
    return out


def check_torch(op, arrays, attrs, expected):
    if torch is None:
        return
    tensors = [None if a is None else torch.from_numpy(np.array(a, order="C")) for a in arrays]
    got = op.torch(torch, *tensors, **attrs)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g = g.detach().numpy()
        assert g.shape == e.shape and g.dtype == e.dtype, (op.name, g.shape, e.shape, g.dtype, e.dtype)
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=1e-6 if e.dtype == np.float32 else 1e-9, atol=1e-6, err_msg=op.name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=op.name)


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@st.composite
def rngs(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def shapes(min_rank=1, max_rank=3, lo=1, hi=5):
    return st.lists(st.integers(lo, hi), min_size=min_rank, max_size=max_rank).map(tuple)


def per_row(x, axis, fn):
    """Apply fn (a Python function on a list) to every 1-D row of x along axis."""
    moved = np.moveaxis(x, axis, -1)
    rows = [fn(list(r)) for r in moved.reshape(-1, moved.shape[-1])]
    out = np.array(rows, dtype=np.float64).reshape(moved.shape[:-1] + (-1,))
    return np.moveaxis(out, -1, axis)


def spatial_positions(sizes, kernel, stride, padding, dilation):
    """For each output position: (position, [(tap, input position or None if it is padding)])."""
    outs = [len(range(0, n + 2 * p - d * (k - 1), s))
            for n, k, s, p, d in zip(sizes, kernel, stride, padding, dilation)]
    for o in itertools.product(*map(range, outs)):
        taps = []
        for t in itertools.product(*map(range, kernel)):
            pos = tuple(oi * s - p + ti * d for oi, ti, s, p, d in zip(o, t, stride, padding, dilation))
            inside = all(0 <= q < n for q, n in zip(pos, sizes))
            taps.append((t, pos if inside else None))
        yield o, outs, taps


def maybe_list(draw, values):
    """An int-or-list attribute: the list when the values differ, else either form."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return list(values)


# ---- softmax / log_softmax --------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(), rng=rngs(), data=st.data())
def test_softmax_family(shape, rng, data):
    x = rng.normal(size=shape) * 3
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    close(run("softmax", x, axis=axis), per_row(x, axis, softmax))
    close(run("log_softmax", x, axis=axis), per_row(x, axis, lambda r: [math.log(v) for v in softmax(r)]))


def test_softmax_is_stable_for_large_inputs():
    x = np.array([[1000.0, 1001.0, -np.inf], [-1000.0, -1001.0, -1002.0]])
    out = run("softmax", x)
    assert np.isfinite(out).all() and np.allclose(out.sum(-1), 1)
    assert np.isfinite(run("log_softmax", x)[:, :2]).all()


# ---- layernorm / rmsnorm -------------------------------------------------------------------------------
@st.composite
def trailing_norm_case(draw):
    shape = draw(shapes(1, 4, hi=4))
    n = draw(st.integers(1, len(shape)))
    axes = list(range(len(shape) - n, len(shape)))
    if n == 1:
        axis = draw(st.sampled_from([-1, len(shape) - 1, [-1]]))
    else:
        axis = draw(st.sampled_from([axes, [a - len(shape) for a in axes]]))
    rng = draw(rngs())
    x = rng.normal(size=shape) * 2 + 1
    w = rng.normal(size=shape[-n:]) if draw(st.booleans()) else None
    b = rng.normal(size=shape[-n:]) if draw(st.booleans()) else None
    return x, w, b, axis, n, draw(st.sampled_from([1e-5, 1e-2]))


def _rows(x, n):
    return x.reshape(-1, int(np.prod(x.shape[-n:])))


@SETTINGS
@given(case=trailing_norm_case())
def test_layernorm(case):
    x, w, b, axis, n, eps = case
    want = []
    for row in _rows(x, n):
        mean = sum(row) / len(row)
        var = sum((v - mean) ** 2 for v in row) / len(row)
        want.append([(v - mean) / math.sqrt(var + eps) for v in row])
    want = np.array(want).reshape(x.shape)
    want = want * (1 if w is None else w) + (0 if b is None else b)
    close(run("layernorm", x, w, b, axis=axis, eps=eps), want)


@SETTINGS
@given(case=trailing_norm_case())
def test_rmsnorm(case):
    x, w, _, axis, n, eps = case
    want = np.array([[v / math.sqrt(sum(u * u for u in row) / len(row) + eps) for v in row] for row in _rows(x, n)])
    want = want.reshape(x.shape) * (1 if w is None else w)
    close(run("rmsnorm", x, w, axis=axis, eps=eps), want)


# ---- batchnorm / groupnorm ---------------------------------------------------------------------------------
@SETTINGS
@given(n=st.integers(1, 3), spatial=shapes(0, 2, hi=4), groups=st.integers(1, 3), per_group=st.integers(1, 2),
       rng=rngs(), use_w=st.booleans(), use_b=st.booleans())
def test_batchnorm_and_groupnorm(n, spatial, groups, per_group, rng, use_w, use_b):
    c = groups * per_group
    x = rng.normal(size=(n, c) + spatial) * 2 + 1
    w = rng.normal(size=c) if use_w else None
    b = rng.normal(size=c) if use_b else None
    scale = lambda ch: 1.0 if w is None else w[ch]  # noqa: E731
    shift = lambda ch: 0.0 if b is None else b[ch]  # noqa: E731

    mean, var = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
    want = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        ch = idx[1]
        want[idx] = (x[idx] - mean[ch]) / math.sqrt(var[ch] + 1e-5) * scale(ch) + shift(ch)
    close(run("batchnorm", x, mean, var, w, b), want)

    for i in range(n):
        for g in range(groups):
            chans = range(g * per_group, (g + 1) * per_group)
            vals = [x[(i, ch) + s] for ch in chans for s in np.ndindex(spatial)]
            mu = sum(vals) / len(vals)
            sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals) + 1e-5)
            for ch in chans:
                for s in np.ndindex(spatial):
                    want[(i, ch) + s] = (x[(i, ch) + s] - mu) / sd * scale(ch) + shift(ch)
    close(run("groupnorm", x, w, b, groups=groups), want)


# ---- pooling ----------------------------------------------------------------------------------------------
@st.composite
def pool_case(draw):
    nd = draw(st.sampled_from([1, 2]))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    stride = draw(st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=nd, max_size=nd)))
    sizes = tuple(draw(st.integers(max(1, k - 2 * p), 6)) for k, p in zip(kernel, padding))
    x = draw(rngs()).normal(size=(draw(st.integers(1, 2)), draw(st.integers(1, 3))) + sizes)
    attrs = {"kernel": maybe_list(draw, kernel), "padding": maybe_list(draw, padding)}
    if stride is not None:
        attrs["stride"] = maybe_list(draw, stride)
    return nd, x, attrs, kernel, stride or kernel, padding


@SETTINGS
@given(case=pool_case())
def test_pools(case):
    nd, x, attrs, kernel, stride, padding = case
    for kind in ("max", "avg"):
        got = run(f"{kind}_pool{nd}d", x, **attrs)
        want = None
        for o, outs, taps in spatial_positions(x.shape[2:], kernel, stride, padding, [1] * nd):
            if want is None:
                want = np.empty(x.shape[:2] + tuple(outs))
            for n, c in np.ndindex(x.shape[:2]):
                vals = [x[(n, c) + pos] if pos is not None else None for _, pos in taps]
                if kind == "max":
                    want[(n, c) + o] = max(v for v in vals if v is not None)
                else:  # padding counts as zeros
                    want[(n, c) + o] = sum(v for v in vals if v is not None) / len(vals)
        close(got, want)


@SETTINGS
@given(shape=shapes(2, 4, hi=4), rng=rngs())
def test_global_avg_pool(shape, rng):
    x = rng.normal(size=shape)
    want = np.empty(shape[:2])
    for n, c in np.ndindex(shape[:2]):
        vals = [x[(n, c) + s] for s in np.ndindex(shape[2:])]
        want[n, c] = sum(vals) / len(vals)
    close(run("global_avg_pool", x), want)


# ---- sort / topk ------------------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(1, 3, hi=6), rng=rngs(), data=st.data())
def test_sort_and_topk(shape, rng, data):
    x = rng.integers(-3, 4, size=shape).astype(np.float64)  # small integers: plenty of ties
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    descending = data.draw(st.booleans())

    def order(row, desc):  # Python's sort is stable: ties keep ascending index order
        return sorted(range(len(row)), key=lambda i: -row[i] if desc else row[i])

    values, idx = run("sort", x, axis=axis, descending=descending)
    np.testing.assert_array_equal(idx, per_row(x, axis, lambda r: order(r, descending)).astype(np.int64))
    np.testing.assert_array_equal(values, per_row(x, axis, lambda r: sorted(r, reverse=descending)))

    k = data.draw(st.integers(0, shape[axis]))
    largest = data.draw(st.booleans())
    values, idx = run("topk", x, k=k, axis=axis, largest=largest)
    want_idx = np.moveaxis(np.moveaxis(per_row(x, axis, lambda r: order(r, largest)), axis, -1)[..., :k], -1, axis)
    np.testing.assert_array_equal(idx, want_idx.astype(np.int64))
    np.testing.assert_array_equal(values, np.take_along_axis(x, idx, axis=axis))


# ---- convolutions ------------------------------------------------------------------------------------------
@st.composite
def conv_case(draw, nd, transposed=False):
    groups = draw(st.integers(1, 2))
    cin_g, cout_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    stride = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    padding = draw(st.lists(st.integers(0, 2), min_size=nd, max_size=nd))
    hi = 5 if nd < 3 else 3
    if transposed:
        extra = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
        sizes = [draw(st.integers(1, hi)) for _ in range(nd)]
        for i in range(nd):  # keep the cropped output non-empty
            padding[i] = min(padding[i], ((sizes[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + extra[i]) // 2)
    else:
        extra = None
        sizes = [draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), max(hi, d * (k - 1) + 1 - 2 * p)))
                 for k, d, p in zip(kernel, dilation, padding)]
    rng = draw(rngs())
    x = rng.normal(size=(draw(st.integers(1, 2)), groups * cin_g, *sizes))
    wshape = (groups * cin_g, cout_g) if transposed else (groups * cout_g, cin_g)
    w = rng.normal(size=wshape + tuple(kernel))
    b = rng.normal(size=groups * cout_g) if draw(st.booleans()) else None
    attrs = {"stride": maybe_list(draw, stride), "padding": maybe_list(draw, padding),
             "dilation": maybe_list(draw, dilation)}
    if groups > 1 or draw(st.booleans()):
        attrs["groups"] = groups
    if transposed:
        attrs["output_padding"] = maybe_list(draw, extra)
    return x, w, b, attrs, dict(groups=groups, cin_g=cin_g, cout_g=cout_g, kernel=kernel, stride=stride,
                                dilation=dilation, padding=padding, extra=extra)


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_conv(nd, data):
    x, w, b, attrs, p = data.draw(conv_case(nd))
    got = run(f"conv{nd}d", x, w, b, **attrs)
    want = None
    for o, outs, taps in spatial_positions(x.shape[2:], p["kernel"], p["stride"], p["padding"], p["dilation"]):
        if want is None:
            want = np.zeros((x.shape[0], w.shape[0]) + tuple(outs))
        for n, f in np.ndindex(x.shape[0], w.shape[0]):
            g = f // p["cout_g"]
            acc = 0.0 if b is None else b[f]
            for c in range(p["cin_g"]):
                for t, pos in taps:
                    if pos is not None:
                        acc += x[(n, g * p["cin_g"] + c) + pos] * w[(f, c) + t]
            want[(n, f) + o] = acc
    close(got, want)


@SETTINGS
@given(data=st.data())
def test_conv_transpose2d(data):
    x, w, b, attrs, p = data.draw(conv_case(2, transposed=True))
    s, d, pad, k = p["stride"], p["dilation"], p["padding"], p["kernel"]
    outs = [(n - 1) * si - 2 * pi + di * (ki - 1) + ei + 1
            for n, si, pi, di, ki, ei in zip(x.shape[2:], s, pad, d, k, p["extra"])]
    cin_g, cout_g = p["cin_g"], p["cout_g"]
    want = np.zeros((x.shape[0], p["groups"] * cout_g) + tuple(outs))
    # definition by scatter: input position i, tap t lands on output i*stride - padding + t*dilation
    for n, ci in np.ndindex(x.shape[:2]):
        g = ci // cin_g
        for i in np.ndindex(x.shape[2:]):
            for t in np.ndindex(*k):
                pos = tuple(ii * si - pi + ti * di for ii, si, pi, ti, di in zip(i, s, pad, t, d))
                if all(0 <= q < o for q, o in zip(pos, outs)):
                    for f in range(cout_g):
                        want[(n, g * cout_g + f) + pos] += x[(n, ci) + i] * w[(ci, f) + t]
    if b is not None:
        want += b.reshape(-1, 1, 1)
    close(run("conv_transpose2d", x, w, b, **attrs), want)


# ---- indexing ---------------------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(1, 3, hi=4), idx_shape=shapes(0, 2, hi=4), rng=rngs(), data=st.data())
def test_take_and_embedding(shape, idx_shape, rng, data):
    x = rng.normal(size=shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    ax = axis % len(shape)
    idx = rng.integers(0, shape[ax], size=idx_shape)
    idx = idx.astype(data.draw(st.sampled_from([np.int64, np.int32])))
    out_shape = shape[:ax] + idx_shape + shape[ax + 1:]
    want = np.empty(out_shape)
    for o in np.ndindex(out_shape):
        pre, mid, post = o[:ax], o[ax:ax + len(idx_shape)], o[ax + len(idx_shape):]
        want[o] = x[pre + (idx[mid],) + post]
    close(run("take", x, idx, axis=axis), want)

    ids = rng.integers(0, shape[0], size=idx_shape)
    want = np.array([x[i] for i in ids.reshape(-1)]).reshape(idx_shape + shape[1:])
    close(run("embedding", x, ids), want)


@SETTINGS
@given(shape=shapes(1, 3, hi=4), rng=rngs(), data=st.data())
def test_gather_and_scatter_add(shape, rng, data):
    x = rng.normal(size=shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    ax = axis % len(shape)
    idx_shape = shape[:ax] + (data.draw(st.integers(1, 5)),) + shape[ax + 1:]
    idx = rng.integers(0, shape[ax], size=idx_shape)

    want = np.empty(idx_shape)
    for p in np.ndindex(idx_shape):
        want[p] = x[p[:ax] + (idx[p],) + p[ax + 1:]]
    close(run("gather", x, idx, axis=axis), want)

    src = rng.normal(size=idx_shape)
    want = x.copy()
    for p in np.ndindex(idx_shape):
        want[p[:ax] + (idx[p],) + p[ax + 1:]] += src[p]
    close(run("scatter_add", x, idx, src, axis=axis), want)


@SETTINGS
@given(rows=st.integers(1, 6), rest=shapes(0, 2, hi=3), num=st.integers(1, 5), rng=rngs(),
       ints=st.booleans())
def test_segments(rows, rest, num, rng, ints):
    data = rng.integers(-5, 5, size=(rows,) + rest) if ints else rng.normal(size=(rows,) + rest)
    ids = rng.integers(0, num, size=rows)
    members = [[data[r] for r in range(rows) if ids[r] == s] for s in range(num)]
    zero = np.zeros(rest, dtype=data.dtype)
    want_sum = np.array([sum(m, zero) for m in members])
    want_max = np.array([np.maximum.reduce(m) if m else zero for m in members])
    np.testing.assert_allclose(run("segment_sum", data, ids, num_segments=num), want_sum, rtol=1e-12)
    np.testing.assert_allclose(run("segment_max", data, ids, num_segments=num), want_max)
    if not ints:
        want_mean = np.array([sum(m, zero) / len(m) if m else zero for m in members])
        close(run("segment_mean", data, ids, num_segments=num), want_mean)


@SETTINGS
@given(shape=shapes(0, 2, hi=4), depth=st.integers(1, 5), rng=rngs(), dtype=st.sampled_from(["f32", "f64", "i64"]))
def test_one_hot(shape, depth, rng, dtype):
    ids = rng.integers(-1, depth + 1, size=shape)  # includes out-of-range ids: all-zero rows
    want = np.zeros(shape + (depth,))
    for p in np.ndindex(shape):
        if 0 <= ids[p] < depth:
            want[p + (ids[p],)] = 1
    got = run("one_hot", ids, depth=depth, dtype=dtype)
    np.testing.assert_array_equal(got, want)


def test_index_out_of_range_is_an_error():
    x = np.zeros((3, 2))
    with pytest.raises(PnetError, match="out of range"):
        get("take").ref(x, np.array([0, 3]), axis=0)
    with pytest.raises(PnetError, match="out of range"):
        get("segment_sum").ref(x, np.array([0, -1, 1]), num_segments=2)


# ---- attention --------------------------------------------------------------------------------------------
def _broadcastable(draw, shape, min_rank=0):
    """A shape that broadcasts to `shape`: some dims set to 1, some leading dims dropped."""
    drop = draw(st.integers(0, len(shape) - min_rank))
    return tuple(1 if draw(st.booleans()) else d for d in shape[drop:])


@st.composite
def sdpa_case(draw):
    rng = draw(rngs())
    batch = draw(shapes(0, 2, hi=3))
    tq, tk, d, dv = (draw(st.integers(1, 4)) for _ in range(4))
    q = rng.normal(size=_broadcastable(draw, batch) + (tq, d))
    k = rng.normal(size=_broadcastable(draw, batch) + (tk, d))
    v = rng.normal(size=_broadcastable(draw, batch) + (tk, dv))
    kind = draw(st.sampled_from([None, "bool", "float"]))
    mask = None
    if kind is not None:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])  # the batch q, k, v really have
        mshape = _broadcastable(draw, batch + (tq, tk))
        mask = np.asarray(rng.uniform(size=mshape)) < draw(st.sampled_from([0.3, 0.7, 1.0]))  # 1.0: nothing masked
        if kind == "float":
            mask = np.where(mask, rng.normal(size=mshape), -np.inf)
    attrs = {}
    if draw(st.booleans()):
        attrs["causal"] = draw(st.booleans())
    if draw(st.booleans()):
        attrs["scale"] = draw(st.floats(0.1, 2.0))
    return q, k, v, mask, attrs


@SETTINGS
@given(case=sdpa_case())
def test_sdpa(case):
    q, k, v, mask, attrs = case
    causal, scale = attrs.get("causal", False), attrs.get("scale", 1 / math.sqrt(q.shape[-1]))
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    tq, tk = q.shape[-2], k.shape[-2]
    qb, kb, vb = (np.broadcast_to(a, batch + a.shape[-2:]) for a in (q, k, v))
    mb = None if mask is None else np.broadcast_to(mask, batch + (tq, tk))
    want = np.zeros(batch + (tq, v.shape[-1]))
    for p in np.ndindex(batch):
        for i in range(tq):
            logits = {}
            for j in range(tk):
                if causal and j > i:
                    continue
                s = scale * sum(qb[p][i, c] * kb[p][j, c] for c in range(q.shape[-1]))
                if mb is not None and mb.dtype == bool and not mb[p][i, j]:
                    continue
                if mb is not None and mb.dtype != bool:
                    if mb[p][i, j] == -np.inf:
                        continue
                    s += mb[p][i, j]
                logits[j] = s
            if not logits:  # nothing to attend to: defined as 0
                continue
            top = max(logits.values())
            z = sum(math.exp(s - top) for s in logits.values())
            for j, s in logits.items():
                want[p][i] += math.exp(s - top) / z * vb[p][j]
    close(run("sdpa", q, k, v, mask, **attrs), want)


def test_sdpa_fully_masked_rows_give_zero_and_finite_gradients():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 4))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    out = run("sdpa", q, k, v, mask, causal=True)
    assert np.all(out[:, 1] == 0) and np.isfinite(out).all()
    if torch is not None:
        tq = torch.tensor(q, requires_grad=True)
        got = get("sdpa").torch(torch, tq, torch.tensor(k), torch.tensor(v), torch.tensor(mask),
                                causal=True, scale=None)
        got.sum().backward()
        assert torch.isfinite(tq.grad).all() and (tq.grad[:, 1] == 0).all()


# ---- type rules -------------------------------------------------------------------------------------------
def _my_ops():
    return {n: op for n, op in all_ops().items() if op.ref.__module__.rsplit(".", 1)[-1] in MODULES}


def _f(*shape, dtype="f32"):
    return TensorType(dtype, shape)


# One small call per op: (inputs as TensorTypes, attrs). Used for the dtype and FLOP checks.
SAMPLES = {
    "softmax": ([_f(2, 5)], {}), "log_softmax": ([_f(2, 5)], {"axis": 0}),
    "layernorm": ([_f(2, 3, 4), _f(3, 4), _f(3, 4)], {"axis": [-2, -1]}),
    "rmsnorm": ([_f(2, 4), _f(4)], {}),
    "batchnorm": ([_f(2, 3, 4), _f(3), _f(3), _f(3), _f(3)], {}),
    "groupnorm": ([_f(2, 4, 3), _f(4), _f(4)], {"groups": 2}),
    "max_pool1d": ([_f(1, 2, 7)], {"kernel": 3, "stride": 2, "padding": 1}),
    "avg_pool1d": ([_f(1, 2, 7)], {"kernel": 2}),
    "max_pool2d": ([_f(1, 2, 5, 6)], {"kernel": [2, 3]}),
    "avg_pool2d": ([_f(1, 2, 5, 6)], {"kernel": 3, "stride": 1, "padding": 1}),
    "global_avg_pool": ([_f(2, 3, 4, 5)], {}),
    "sort": ([_f(3, 4)], {"descending": True}), "topk": ([_f(3, 4)], {"k": 2, "axis": 0}),
    "conv1d": ([_f(2, 4, 9), _f(6, 2, 3), _f(6)], {"groups": 2, "padding": 1}),
    "conv2d": ([_f(2, 3, 8, 7), _f(5, 3, 3, 2), None], {"stride": [2, 1], "dilation": 2}),
    "conv3d": ([_f(1, 2, 4, 5, 6), _f(3, 2, 2, 2, 2), _f(3)], {"stride": 2}),
    "conv_transpose2d": ([_f(2, 4, 3, 5), _f(4, 3, 3, 3), _f(6)],
                         {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    "take": ([_f(4, 5), _f(2, 3, dtype="i64")], {"axis": 1}),
    "embedding": ([_f(10, 4), _f(2, 3, dtype="i32")], {}),
    "gather": ([_f(4, 5), _f(4, 2, dtype="i64")], {"axis": -1}),
    "scatter_add": ([_f(4, 5), _f(6, 5, dtype="i64"), _f(6, 5)], {}),
    "segment_sum": ([_f(6, 3), _f(6, dtype="i64")], {"num_segments": 4}),
    "segment_mean": ([_f(6, 3), _f(6, dtype="i64")], {"num_segments": 4}),
    "segment_max": ([_f(6, 3), _f(6, dtype="i64")], {"num_segments": 4}),
    "one_hot": ([_f(2, 3, dtype="i64")], {"depth": 5}),
    "sdpa": ([_f(2, 3, 4, 8), _f(2, 1, 6, 8), _f(2, 1, 6, 5), _f(4, 6, dtype="bool")], {"causal": True}),
}


def _sample_arrays(types, rng):
    arrays = []
    for t in types:
        if t is None:
            arrays.append(None)
            continue
        shape = tuple(int(d) for d in t.shape)
        if t.dtype in ("i64", "i32"):  # valid indices for every sample above
            arrays.append(rng.integers(0, 2, size=shape).astype(DTYPES[t.dtype]))
        elif t.dtype == "bool":
            arrays.append(rng.uniform(size=shape) < 0.7)
        else:
            arrays.append(np.abs(rng.normal(size=shape)).astype(DTYPES[t.dtype]) + 0.5)
    return arrays


def test_every_op_has_a_sample():
    assert set(_my_ops()) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_keeps_float32_and_counts_flops(name):
    """float32 in -> float32 out (run() checks every output dtype against the type rule), torch agrees in f32,
    and the FLOP count is a non-negative number."""
    types, attrs = SAMPLES[name]
    run(name, *_sample_arrays(types, np.random.default_rng(1)), **attrs)
    op = get(name)
    bound = op.bind_attrs(attrs)
    outs = op.infer_types(types, bound)
    flops = op.count_flops(types, outs, bound)
    assert flops.is_Integer and flops >= 0


def test_conv_flops_formula():
    op = get("conv2d")
    types = [_f(2, 4, 8, 8), _f(6, 2, 3, 3), None]
    attrs = op.bind_attrs({"padding": 1, "groups": 2})
    out = op.infer_types(types, attrs)
    assert op.count_flops(types, out, attrs) == 2 * (2 * 6 * 8 * 8) * 2 * 9
    op = get("sdpa")
    types = [_f(2, 4, 8), _f(2, 6, 8), _f(2, 6, 8), None]
    attrs = op.bind_attrs({})
    assert op.count_flops(types, op.infer_types(types, attrs), attrs) == 4 * 4 * 6 * 8 * 2


def test_attrs_are_canonical():
    op = get("conv2d")
    attrs = op.bind_attrs({"stride": 2})
    op.infer_types([_f(1, 3, 8, 8), _f(4, 3, 3, 3), None], attrs)
    assert attrs == {"stride": [2, 2], "padding": [0, 0], "dilation": [1, 1], "groups": 1}
    op = get("layernorm")
    attrs = op.bind_attrs({"axis": [-1, -2]})
    op.infer_types([_f(2, 3, 4), None, None], attrs)
    assert attrs["axis"] == [1, 2]
    op = get("max_pool2d")
    attrs = op.bind_attrs({"kernel": 2})
    op.infer_types([_f(1, 3, 8, 8)], attrs)
    assert attrs["stride"] == [2, 2] and attrs["padding"] == [0, 0]


B, H, W, N, T = (sym(s) for s in "BHWNT")

# (op, symbolic input types, attrs, bindings for the symbols)
SYMBOLIC = [
    ("conv2d", [_f(B, 3, H, W), _f(8, 3, 3, 3), _f(8)], {"stride": 2, "padding": 1}, {B: 2, H: 7, W: 10}),
    ("conv1d", [_f(B, 4, T), _f(4, 2, 5), None], {"dilation": 2, "groups": 2, "padding": 3}, {B: 1, T: 9}),
    ("conv_transpose2d", [_f(B, 3, H, W), _f(3, 2, 4, 4), None], {"stride": 2, "padding": 1}, {B: 1, H: 3, W: 5}),
    ("max_pool2d", [_f(B, 2, H, W)], {"kernel": 3, "stride": 2, "padding": 1}, {B: 1, H: 8, W: 5}),
    ("avg_pool1d", [_f(B, 2, T)], {"kernel": 4, "stride": 3}, {B: 2, T: 11}),
    ("global_avg_pool", [_f(B, 2, H, W)], {}, {B: 2, H: 3, W: 2}),
    ("layernorm", [_f(B, T, 8), _f(8), None], {}, {B: 2, T: 3}),
    ("topk", [_f(B, T)], {"k": 2, "axis": 1}, {B: 2, T: 5}),
    ("take", [_f(T, 4), _f(B, 2, dtype="i64")], {}, {B: 3, T: 2}),
    ("segment_sum", [_f(T, 3), _f(T, dtype="i64")], {"num_segments": N}, {T: 5, N: 2}),
    ("one_hot", [_f(B, dtype="i64")], {"depth": N}, {B: 4, N: 2}),
    ("sdpa", [_f(B, 2, T, 4), _f(B, 2, T, 4), _f(B, 2, T, 3), _f(B, 1, 1, T, dtype="bool")], {}, {B: 2, T: 3}),
]


@pytest.mark.parametrize("name, types, attrs, bindings", SYMBOLIC, ids=[c[0] for c in SYMBOLIC])
def test_symbolic_dims(name, types, attrs, bindings):
    """Inferring with symbolic dims and then binding them gives the shape the reference produces."""
    op = get(name)
    bound = op.bind_attrs(attrs)
    outs = op.infer_types(types, bound)
    assert any(not d.is_number for t in outs for d in t.shape)  # the symbols survive
    concrete_types = [None if t is None else t.with_shape([d.subs(bindings) for d in t.shape]) for t in types]
    arrays = _sample_arrays(concrete_types, np.random.default_rng(2))
    got = run(name, *arrays, **{k: v.subs(bindings) if isinstance(v, sympy.Basic) else v for k, v in attrs.items()})
    got = got if isinstance(got, tuple) else (got,)
    for t, g in zip(outs, got):
        assert tuple(int(d.subs(bindings)) for d in t.shape) == g.shape


# (op, input types, attrs): each must raise ShapeError naming every input shape listed
BAD = [
    ("conv2d", [_f(1, 3, 8, 8), _f(4, 2, 3, 3), None], {}),                      # channels 3 vs 2
    ("conv2d", [_f(1, 4, 8, 8), _f(3, 2, 3, 3), None], {"groups": 2}),           # 3 out channels, 2 groups
    ("conv2d", [_f(1, 3, 2, 8), _f(4, 3, 3, 3), None], {}),                      # input smaller than kernel
    ("conv1d", [_f(1, 3, 8), _f(4, 3, 3), _f(5)], {}),                           # bias
    ("conv1d", [_f(1, 3, 8, 8), _f(4, 3, 3), None], {}),                         # rank
    ("conv_transpose2d", [_f(1, 3, 4, 4), _f(4, 3, 3, 3), None], {}),            # channels 3 vs 4
    ("layernorm", [_f(2, 3, 4), _f(3), None], {}),                               # weight not [4]
    ("rmsnorm", [_f(2, 3, 4), _f(3, 4)], {}),
    ("batchnorm", [_f(2, 3, 4), _f(4), _f(3)], {}),
    ("groupnorm", [_f(2, 6, 4), _f(5), None], {"groups": 3}),
    ("gather", [_f(4, 5), _f(3, 2, dtype="i64")], {"axis": 1}),                  # dim 0 differs
    ("scatter_add", [_f(4, 5), _f(6, 5, dtype="i64"), _f(6, 4)], {}),
    ("segment_sum", [_f(6, 3), _f(5, dtype="i64")], {"num_segments": 2}),
    ("sdpa", [_f(2, 3, 4), _f(2, 5, 8), _f(2, 5, 8), None], {}),                 # head dims
    ("sdpa", [_f(2, 3, 4), _f(2, 5, 4), _f(2, 6, 4), None], {}),                 # key/value lengths
    ("sdpa", [_f(2, 3, 4), _f(3, 5, 4), _f(3, 5, 4), None], {}),                 # batch
    ("sdpa", [_f(2, 3, 4), _f(2, 5, 4), _f(2, 5, 4), _f(3, 3, dtype="bool")], {}),  # mask
]


@pytest.mark.parametrize("name, types, attrs", BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD)])
def test_bad_shapes_name_both_shapes(name, types, attrs):
    op = get(name)
    with pytest.raises(ShapeError) as err:
        op.infer_types(types, op.bind_attrs(attrs))
    shown = [fmt_shape(t.shape) for t in types if t is not None]
    msg = str(err.value)
    named = [s for s in shown if s in msg]
    assert len(named) >= min(2, len(shown)), msg


@pytest.mark.parametrize("name, attrs", [
    ("max_pool2d", {"kernel": 2, "padding": 2}),         # padding over half the kernel
    ("conv2d", {"stride": 0}),
    ("conv2d", {"padding": [1, 1, 1]}),
    ("topk", {"k": 9}),
    ("softmax", {"axis": 4}),
    ("layernorm", {"axis": 0}),                           # not a trailing axis
])
def test_bad_attrs(name, attrs):
    op = get(name)
    x = _f(1, 3, 8, 8)
    types = {"conv2d": [x, _f(4, 3, 3, 3), None], "layernorm": [x, None, None]}.get(name, [x])
    with pytest.raises(ShapeError):
        op.infer_types(types, op.bind_attrs(attrs))


@pytest.mark.parametrize("name, types, attrs", [
    ("take", [_f(4, 5), _f(2, 3)], {}),                                          # float indices
    ("one_hot", [_f(3)], {"depth": 4}),
    ("segment_mean", [_f(3, 2, dtype="i64"), _f(3, dtype="i64")], {"num_segments": 2}),
    ("conv1d", [_f(1, 3, 8, dtype="i64"), _f(4, 3, 3), None], {}),
    ("softmax", [_f(3, dtype="i32")], {}),
    ("sdpa", [_f(2, 3, 4), _f(2, 5, 4, dtype="f64"), _f(2, 5, 4), None], {}),
    ("sdpa", [_f(2, 3, 4), _f(2, 5, 4), _f(2, 5, 4), _f(3, 5, dtype="i64")], {}),
    ("scatter_add", [_f(4, 5), _f(6, 5, dtype="i64"), _f(6, 5, dtype="f64")], {}),
])
def test_bad_dtypes(name, types, attrs):
    op = get(name)
    with pytest.raises(ShapeError, match=name):
        op.infer_types(types, op.bind_attrs(attrs))


def test_torch_is_installed():
    pytest.importorskip("torch")
