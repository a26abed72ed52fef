"""Random sampling ops (ir/ops/random.py): one Philox4x32-10 generator, bit for bit the same in the NumPy reference,
the torch lowering and the Triton kernels (tl.rand / tl.randn / tl.randint under the interpreter); moments of
every sampler; keys per call site and the run's seed; dropout only in training; gradients; located errors."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import op_ref, op_torch, op_triton
from pnet.backends import numpy_ref
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.ir.ops.random import philox_key, philox_np, set_run_mode, to_uniform_np
from pnet.testing.gradcheck import check_gradients

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY, SEED = 0x1234ABCD, 7
SHAPE = [3, 37]


# ---- the generator itself -----------------------------------------------------------------------------
def test_philox_known_answers():
    """Random123's known-answer vector for philox4x32-10 (counter 0, key 0), and Triton's own tl.randint4x
    (a hand-written kernel) for every word of many counters under a 64-bit key: the independent oracles."""
    assert [int(w[0]) for w in philox_np(0, np.array([0]))] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import triton
    import triton.language as tl
    s = philox_key(SEED, KEY)

    @triton.jit
    def words(o0, o1, o2, o3, n, S: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        m = offs < n
        a, b, c, d = tl.randint4x(S, offs.to(tl.int32))
        tl.store(o0 + offs, a.to(tl.int64), mask=m)
        tl.store(o1 + offs, b.to(tl.int64), mask=m)
        tl.store(o2 + offs, c.to(tl.int64), mask=m)
        tl.store(o3 + offs, d.to(tl.int64), mask=m)

    n = 128
    outs = [torch.zeros(n, dtype=torch.int64) for _ in range(4)]
    words[(1,)](*outs, n, S=s, BLOCK=128)
    for got, want in zip(outs, philox_np(s, np.arange(n))):
        np.testing.assert_array_equal(got.numpy(), want.astype(np.int64))


def test_uint32_streams_bit_for_bit():
    """randint(0, 2**32) is the raw first Philox word: numpy, torch and the Triton kernel agree exactly."""
    attrs = dict(low=0, high=2 ** 32, shape=SHAPE, key=KEY, seed=SEED)
    ref = op_ref("randint", None, **attrs)
    assert ref.min() >= 0 and ref.max() < 2 ** 32 and ref.max() >= 2 ** 31   # the full 32-bit range
    np.testing.assert_array_equal(ref, philox_np(philox_key(SEED, KEY), np.arange(ref.size))[0].reshape(SHAPE))
    np.testing.assert_array_equal(op_torch("randint", None, **attrs), ref)
    kinds, got = op_triton("randint", **attrs)
    assert kinds and "fallback" not in kinds
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("op,attrs", [
    ("rand_uniform", {}), ("rand_uniform", {"low": -2.0, "high": 3.0}), ("randint", {"low": -3, "high": 17}),
    ("randint", {"low": 0, "high": 5, "dtype": "i32"}),
])
def test_exact_samplers_agree_bit_for_bit(op, attrs):
    attrs = dict(attrs, shape=SHAPE, key=KEY, seed=SEED)
    ref = op_ref(op, None, **attrs)
    np.testing.assert_array_equal(op_torch(op, None, **attrs), ref)
    kinds, got = op_triton(op, **attrs)
    assert "fallback" not in kinds
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("op,attrs", [("rand_normal", {}), ("rand_normal", {"mean": 1.0, "std": 0.5}), ("gumbel", {})])
def test_transcendental_samplers_agree(op, attrs):
    """Box-Muller and Gumbel apply log / cos to the same exact uniforms: torch (float64, like the reference) is
    equal to rounding, the Triton kernel (f32 tl.log / tl.cos) within a few ulps."""
    attrs = dict(attrs, shape=SHAPE, key=KEY, seed=SEED)
    ref = op_ref(op, None, **attrs)
    np.testing.assert_array_equal(op_torch(op, None, **attrs), ref)
    _, got = op_triton(op, **attrs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bernoulli_and_dropout_masks_bit_for_bit():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, SHAPE).astype(np.float32)
    ref = op_ref("bernoulli", p, None, key=KEY, seed=SEED)
    assert set(np.unique(ref)) <= {0.0, 1.0}
    np.testing.assert_array_equal(op_torch("bernoulli", p, None, key=KEY, seed=SEED), ref)
    np.testing.assert_array_equal(op_triton("bernoulli", p, key=KEY, seed=SEED)[1], ref)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    x[0, :3] = [np.nan, np.inf, -0.0]
    attrs = dict(p=0.3, training=True, key=KEY, seed=SEED)
    ref = op_ref("dropout", x, None, **attrs)
    u = to_uniform_np(philox_np(philox_key(SEED, KEY), np.arange(x.size))[0]).reshape(SHAPE)
    kept = u >= np.float32(0.3)
    np.testing.assert_array_equal(ref[kept], x[kept] * np.float32(1 / 0.7))
    assert np.all((ref[~kept] == 0) | ~np.isfinite(x[~kept]))
    np.testing.assert_array_equal(op_torch("dropout", x, None, **attrs), ref)
    np.testing.assert_array_equal(op_triton("dropout", x, **attrs)[1], ref)


def test_dropout_is_the_identity_unless_training():
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    for f in (op_ref, op_torch):
        np.testing.assert_array_equal(f("dropout", x, None, p=0.5, key=KEY), x)
    np.testing.assert_array_equal(op_triton("dropout", x, p=0.5, key=KEY)[1], x)
    np.testing.assert_array_equal(op_ref("dropout", x, None, p=1.0, training=True), x * 0)
    np.testing.assert_array_equal(op_ref("dropout", x, None, p=0.0, training=True), x)


# ---- moments: n = 1e5 on numpy, each within 5 standard errors ------------------------------------------
N = 100_000


def _moments(sample, mean, var, fourth=None):
    s = np.asarray(sample, np.float64).ravel()
    assert abs(s.mean() - mean) < 5 * math.sqrt(var / N), (s.mean(), mean)
    # the variance's standard error: sqrt((mu4 - var^2) / n); mu4 <= 9 var^2 for these distributions
    mu4 = fourth if fourth is not None else 9 * var * var
    assert abs(s.var() - var) < 5 * math.sqrt((mu4 - var * var) / N), (s.var(), var)


def test_moments():
    kw = dict(shape=[N], key=KEY, seed=SEED)
    _moments(op_ref("rand_uniform", None, low=-1.0, high=3.0, **kw), 1.0, 16 / 12, 16 ** 2 / 80)
    _moments(op_ref("rand_normal", None, mean=2.0, std=3.0, **kw), 2.0, 9.0, 3 * 81)
    _moments(op_ref("gumbel", None, **kw), 0.5772156649015329, math.pi ** 2 / 6)
    r = op_ref("randint", None, low=-3, high=7, **kw)
    assert r.min() == -3 and r.max() == 6
    _moments(r, 1.5, (10 ** 2 - 1) / 12)
    p = np.full([N], 0.3, np.float32)
    _moments(op_ref("bernoulli", p, None, key=KEY, seed=SEED), 0.3, 0.21)
    x = np.ones([N], np.float32)
    d = op_ref("dropout", x, None, p=0.25, training=True, key=KEY, seed=SEED)
    _moments(d != 0, 0.75, 0.1875)
    _moments(d, 1.0, 0.25 / 0.75)   # E = x; Var = p / (1 - p) x^2
    u = op_ref("rand_uniform", None, **kw)
    assert u.min() >= 0 and u.max() < 1
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / math.sqrt(N)   # neighbouring counters are independent


# ---- keys and seeds --------------------------------------------------------------------------------------
SRC = """model m() {
  input x: f32[B, 8]
  a = rand_uniform([B, 8])
  b = rand_uniform([B, 8])
  output y = a
  output z = b
  output d = dropout(x, 0.5)
  output w = blk(x) + blk(x)
}
def blk(x: f32[N, D]) {
  return rand_normal([N, D])
}
"""


def _run(seed=0, training=None, backend="numpy"):
    g = load_source(SRC, "keys.pnet").graph
    set_run_mode(g, seed=seed, training=training)
    inputs = {"x": np.ones([2, 8], np.float32)}
    if backend == "numpy":
        return numpy_ref.run(g, inputs, {})
    from pnet.backends import run as run_backend
    return run_backend(backend, g, inputs, {})


def test_call_sites_seed_and_training():
    out = _run()
    assert not np.array_equal(out["y"], out["z"])             # two call sites: independent streams
    g = load_source(SRC, "keys.pnet").graph
    keys = [n.attrs["key"] for n in g.walk() if n.op == "rand_normal"]
    assert len(keys) == 2 and keys[0] != keys[1]                # one def called twice: two call paths
    again = _run()
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])        # deterministic for a seed
    assert not np.array_equal(_run(seed=1)["y"], out["y"])     # the run's seed changes every stream
    np.testing.assert_array_equal(out["d"], np.ones([2, 8]))   # dropout off by default
    d = _run(training=True)["d"]
    assert set(np.unique(d)) <= {0.0, 2.0} and 0 < np.count_nonzero(d) < d.size
    for backend in ("torch", "triton"):
        got = _run(seed=3, training=True, backend=backend)
        want = _run(seed=3, training=True)
        for k in ("y", "z", "d"):
            np.testing.assert_array_equal(got[k], want[k])
        np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5, atol=1e-5)


def test_cli_seed_and_train_mode(tmp_path):
    (tmp_path / "m.pnet").write_text(SRC)

    def run(*flags):
        out = tmp_path / "o.npz"
        subprocess.run([sys.executable, "-m", "pnet", "run", str(tmp_path / "m.pnet"), "-o", str(out), *flags],
                       check=True, capture_output=True)
        return dict(np.load(out))
    a, b, t = run("--seed", "4"), run("--seed", "4", "-b", "torch"), run("--seed", "4", "--train-mode")
    np.testing.assert_array_equal(a["y"], b["y"])
    assert not np.array_equal(a["y"], run("--seed", "5")["y"])
    assert not np.array_equal(a["d"], t["d"]) and np.array_equal(a["y"], t["y"])


# ---- gradients --------------------------------------------------------------------------------------------
def test_dropout_gradient_is_its_mask():
    src = """model m() {
  input x: f64[4, 6]
  output y = dropout(x * x, 0.4, training=true, key=5)
}"""
    g = load_source(src, "g.pnet").graph
    x = np.random.default_rng(2).standard_normal([4, 6])
    got = check_gradients(g, {"x": x}, wrt=["x"])
    u = to_uniform_np(philox_np(philox_key(0, 5), np.arange(24))[0]).reshape(4, 6)
    assert np.all((got["x"] == 0) == (u < np.float32(0.4)))


def test_samples_carry_no_gradient():
    """d/dx sum(x * n + bernoulli(p(x))) = n: the sample is a constant, bernoulli gives p a zero gradient."""
    src = """model m() {
  input x: f64[4]
  output y = sum(x * rand_normal([4], dtype="f64", key=9) + bernoulli(x * 0.0 + 0.5, key=3))
}"""
    g = load_source(src, "g.pnet").graph
    x = np.random.default_rng(3).standard_normal([4])
    got = check_gradients(g, {"x": x}, wrt=["x"], cotangents={"y": np.array(1.0)})
    np.testing.assert_allclose(got["x"], op_ref("rand_normal", None, shape=[4], dtype="f64", key=9), rtol=1e-12)


# ---- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,message", [
    ("dropout(x, 1.5)", "dropout: p must be a probability in [0, 1], got 1.5"),
    ("rand_uniform([4], 2.0, 1.0)", "rand_uniform: low 2.0 must not exceed high 1.0"),
    ("rand_normal([4], dtype=\"i32\")", "rand_normal: dtype must be a float dtype"),
    ("randint(5, 5, [4])", "randint: needs low < high"),
    ("randint(0, 1000, [4], dtype=\"i8\")", "randint: [0, 1000) does not fit i8"),
    ("bernoulli(x > 0)", "bernoulli: p must be a float tensor"),
    ("gumbel(shape=4)", "gumbel: shape must be a list of dims"), ("gumbel([4], dtype=\"i32\")", "gumbel: dtype must be a float dtype"),
])
def test_bad_calls_are_located_errors(call, message):
    src = f"model m() {{\n  input x: f32[4]\n  output y = {call}\n}}\n"
    with pytest.raises(PnetError) as e:
        load_source(src, "bad.pnet")
    text = str(e.value)
    assert message in text and "bad.pnet:3:" in text and "Traceback" not in text, text
