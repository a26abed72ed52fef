"""Equivariance weight tying (passes/equivariant.py) and the checker (testing/equivariance.py).

Property tests: for random groups, layer sizes and inputs, the tied layer's violation |f(g.x) - g.f(x)| is
below 1e-5 in float64 and the untied one's is not; the tied parameter count equals the number of orbits
computed independently here by Burnside's lemma (the mean number of fixed points over the group's elements,
with the group enumerated by np.rot90 / np.flip / itertools.permutations, not by the pass's code).
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pnet.api import loads
from pnet.errors import PnetError
from pnet.passes.equivariant import equivariant, param_counts
from pnet.passes.manager import run_passes
from pnet.passes.verify import verify
from pnet.testing.equivariance import violations

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None)


def tie(src: str):
    g = loads(src).graph
    t = equivariant(g)
    verify(t)
    return g, t


def worst(graph) -> float:
    return max(violations(graph, samples=3, seed=1).values())


# ---- independent group enumeration for Burnside's lemma ------------------------------------------------
def perms_of(kind: str, n: int) -> list[np.ndarray]:
    """The group's elements as permutations of n points (vertex maps of an n-gon / all of S(n))."""
    i = np.arange(n)
    if kind in ("C", "T"):
        return [(i + k) % n for k in range(n)]
    if kind == "D":
        return [(s * i + k) % n for k in range(n) for s in (1, -1)]
    return [np.array(p) for p in itertools.permutations(range(n))]


def fixed_points(p: np.ndarray) -> int:
    return int(np.sum(p == np.arange(len(p))))


def grid_maps(kind: str, n: int):
    """Element -> function on a [.., k, k] array (rotations by 4/n quarter turns, flips for D)."""
    step = 4 // n
    out = [lambda a, r=r: np.rot90(a, r * step, axes=(-2, -1)) for r in range(n)]
    if kind == "D":
        out += [lambda a, r=r: np.rot90(np.flip(a, -1), r * step, axes=(-2, -1)) for r in range(n)]
    return out


def regular_perms(kind: str, n: int) -> list[np.ndarray]:
    """Left multiplication on the group's elements, elements as vertex permutations of an n-gon (n >= 3) or
    as pairs (k, s) for small n, listed in the same order as grid_maps."""
    els = [(k, 1) for k in range(n)] + ([(k, -1) for k in range(n)] if kind == "D" else [])
    def mul(a, b):  # (k1, s1)(k2, s2) = (k1 + s1 k2, s1 s2): x -> s x + k composed
        return ((a[0] + a[1] * b[0]) % n, a[1] * b[1])
    index = {e: i for i, e in enumerate(els)}
    return [np.array([index[mul(g, h)] for h in els]) for g in els]


def burnside_dense(kind, n, c, d):
    """Orbits of W[i, o, j, k] (i, j in the n points; o in d; k in c) under simultaneous permutation."""
    els = perms_of(kind, n)
    return sum(fixed_points(p) ** 2 * c * d for p in els) // len(els)


# ---- property tests ------------------------------------------------------------------------------------
@SETTINGS
@given(kind=st.sampled_from(["S", "T", "C", "D"]), n=st.integers(2, 4), c=st.integers(1, 3), d=st.integers(1, 3))
def test_dense_set_layer(kind, n, c, d):
    group = f"{kind}({n})" if kind in "ST" else f"{kind}{n}"
    src = f'''
@equivariant("{group}", x="perm(1)", y="perm(1)")
model m() {{
  input x: f32[B, {n}, {c}]
  param W: [{n}, {d}, {n}, {c}] = normal(0, 0.5)
  @equivariant("{group}", inp="perm(1)")
  h[b, i, o] = sum(j, k) x[b, j, k] * W[i, o, j, k]
  output y = h
}}'''
    g, t = tie(src)
    before, after = param_counts(t)
    assert before == n * d * n * c
    assert after == burnside_dense(kind, n, c, d)
    if kind == "S":
        assert after == 2 * c * d                     # DeepSets: identity + pooled term per channel pair
    assert worst(t) < 1e-5
    assert worst(g) > 1e-5


@SETTINGS
@given(kind=st.sampled_from(["T", "C", "D", "S"]), n=st.integers(2, 5), c=st.integers(1, 3), d=st.integers(1, 3))
def test_flattened_matmul(kind, n, c, d):
    """x [B, n*c] @ W [n*c, n*d], the group permuting blocks: translations give a (block) circulant."""
    if kind == "S":
        n = min(n, 4)
    group = f"{kind}({n})" if kind in "ST" else f"{kind}{n}"
    src = f'''
@equivariant("{group}", x="perm(1, {c})", y="perm(1, {d})")
model m() {{
  input x: f32[B, {n * c}]
  param W: [{n * c}, {n * d}] = normal(0, 0.5)
  output y = @equivariant("{group}", inp="perm(1, {c})", out="perm(1, {d})") (x @ W)
}}'''
    g, t = tie(src)
    els = perms_of(kind, n)
    assert param_counts(t)[1] == sum(fixed_points(p) ** 2 for p in els) * c * d // len(els)
    if kind == "T":
        assert param_counts(t)[1] == n * c * d       # circulant: one weight per shift and channel pair
    assert worst(t) < 1e-5
    assert worst(g) > 1e-5


@SETTINGS
@given(kind=st.sampled_from(["C", "D"]), n=st.sampled_from([2, 4]), k=st.integers(1, 3), c=st.integers(1, 2),
       h=st.integers(1, 2), size=st.integers(4, 7), lift=st.booleans())
def test_group_conv(kind, n, k, c, h, size, lift):
    order = n if kind == "C" else 2 * n
    cin = c if lift else c * order
    pad = (k - 1) // 2 if k % 2 else 0
    inp = "grid(2, 3)" if lift else "grid(2, 3) regular(1)"
    src = f'''
@equivariant("{kind}{n}", x="{'grid(2, 3)' if lift else 'grid(2, 3) regular(1)'}", y="grid(2, 3) regular(1)")
model m() {{
  input x: f32[B, {cin}, {size}, {size}]
  param w: [{h * order}, {cin}, {k}, {k}] = kaiming()
  param b: [{h * order}] = normal(0, 1)
  output y = @equivariant("{kind}{n}", inp="{inp}", out="grid(2, 3) regular(1)") conv2d(x, w, b, padding={pad})
}}'''
    g, t = tie(src)
    # Burnside: elements act on the kernel by rotations/flips and on channel blocks by left multiplication
    maps, regs = grid_maps(kind, n), regular_perms(kind, n)
    grid = np.arange(k * k).reshape(k, k)
    total = 0
    for gm, rp in zip(maps, regs):
        fix_grid = int(np.sum(gm(grid) == grid))
        fix_out = h * fixed_points(rp)
        fix_in = c if lift else c * fixed_points(rp)
        total += fix_grid * fix_out * fix_in
    wb = total // order
    bias = h  # the bias is constant on each block of |G| output channels
    assert param_counts(t)[1] == wb + bias
    assert worst(t) < 1e-5
    assert worst(g) > 1e-5


@SETTINGS
@given(n=st.integers(2, 3), m=st.integers(2, 4), c=st.integers(1, 2))
def test_direct_product(n, m, c):
    """S(n) on one axis x T(m) on another: two annotations, one per factor."""
    src = f'''
@equivariant("S", name="rows", x="perm(1)", y="perm(1)")
@equivariant("T", name="cols", x="perm(2)", y="perm(2)")
model m() {{
  input x: f32[B, {n}, {m}, {c}]
  param W: [{n}, {m}, {n}, {m}, {c}] = normal(0, 0.5)
  @equivariant("S", name="rows", inp="perm(1)")
  @equivariant("T", name="cols", inp="perm(2)")
  y[b, i, p, o] = sum(j, q) x[b, j, q, o] * W[i, p, j, q, o]
  output y
}}'''
    g, t = tie(src)
    total = sum(fixed_points(a) ** 2 * fixed_points(s) ** 2 * c for a in perms_of("S", n) for s in perms_of("T", m))
    assert param_counts(t)[1] == total // (math.factorial(n) * m)
    assert worst(t) < 1e-5 < worst(g)


# ---- deterministic checks -------------------------------------------------------------------------------
def test_deepsets_linear_with_bias_through_pipeline():
    src = '''
import nn.core
@equivariant("S", x="perm(1)", y="perm(1)")
model m() {
  input x: f32[B, 5, 3]
  h = relu(@equivariant("S", inp="perm(1)") linear(x, 4))
  param W: [5, 2, 5, 4] = normal(0, 0.5)
  param b: [5, 2] = zeros()
  @equivariant("S", inp="perm(1)")
  z[q, i, o] = sum(j, k) h[q, j, k] * W[i, o, j, k]
  output y = @equivariant("S", inp="perm(1)") (z + b)
}'''
    g = loads(src).graph
    t = run_passes(g, "equivariant")            # equivariant, then cleanup, verified after each pass
    before, after = param_counts(t)
    assert before == g.param_count() and after == 3 * 4 + 4 + 2 * 4 * 2 + 2
    assert worst(t) < 1e-9


def test_c8_uses_regular_and_cyclic_axes():
    """C8 has no exact action on a pixel grid, but acts on an orientation axis by cyclic shifts."""
    src = '''
@equivariant("C8", x="perm(1)", y="regular(1)")
model m() {
  input x: f32[B, 8, 2]
  param W: [16, 8, 2] = normal(0, 0.5)
  @equivariant("C8", inp="perm(1)", out="regular(1)")
  y[b, o] = sum(i, k) x[b, i, k] * W[o, i, k]
  output y
}'''
    g, t = tie(src)
    assert param_counts(t)[1] == 16 * 8 * 2 // 8
    assert worst(t) < 1e-9 < worst(g)


def test_cli_check_equivariance(tmp_path, capsys):
    from pnet.cli import main
    f = tmp_path / "ds.pnet"
    f.write_text('''
@equivariant("T", x="perm(1)", y="perm(1)")
model circ() {
  input x: f32[B, 8]
  param w: [8, 8] = normal(0, 0.3)
  output y = @equivariant("T", inp="perm(1)") (x @ w)
}''')
    assert main(["check", str(f), "--equivariance"]) == 0
    out = capsys.readouterr().out
    assert "params 64 before tying, 8 after" in out and "w [8, 8]: 64 -> 8" in out
    m = re.search(r"y: ([0-9.e+-]+) tied, ([0-9.e+-]+) untied", out)
    assert float(m.group(1)) < 1e-9 and float(m.group(2)) > 1e-3
    assert main(["show", str(f), "--passes", "equivariant", "--kernels"]) == 0
    assert "params: 64 before equivariance tying, 8 after" in capsys.readouterr().out


# ---- errors ----------------------------------------------------------------------------------------------
BAD = [
    ('@equivariant("Q8", x="perm(1)")', "f32[B, 5, 3]", "relu(x)", r"unknown group 'Q8'"),
    ('@equivariant("S(4)", x="perm(1)")', "f32[B, 5, 3]", "relu(x)", r"axis 1 has size 5, but S\(4\) acts on 4 points"),
    ('@equivariant("C8", x="grid(2, 3)")', "f32[B, 1, 5, 5]", "relu(x)", r"C8: no exact action on a square pixel grid"),
    ('@equivariant("C4", x="grid(2, 3)")', "f32[B, 1, 5, 6]", "relu(x)", r"not square"),
    ('@equivariant("S x C4", x="perm(1)")', "f32[B, 5, 3]", "relu(x)", r"several annotations"),
    ('@equivariant("C4", x="regular(1)")', "f32[B, 6, 3]", "relu(x)", r"not a multiple of the group order 4"),
    ('@equivariant("S", x="perm(1)", y="perm(1)")', "f32[B, 5, 3]", "cumsum(x, axis=1)", r"cumsum breaks S-equivariance"),
    ('@equivariant("S", x="perm(1)", y="perm(1)")', "f32[B, 5, 3]", "x @ w", None),
    ('@equivariant("S", x="perm(1)", z="perm(1)")', "f32[B, 5, 3]", "relu(x)", r"'z' is not an input or output"),
    ('@equivariant("S", x="spin(1)")', "f32[B, 5, 3]", "relu(x)", r"unknown action term 'spin\(1\)'"),
]


@pytest.mark.parametrize("ann, xt, body, msg", BAD)
def test_errors(ann, xt, body, msg):
    src = f'''{ann}
model m() {{
  input x: {xt}
  param w: [3, 3] = normal(0, 1)
  param v: [5, 5] = normal(0, 1)
  output y = {body if body != "x @ w" else "swapaxes(swapaxes(x, 1, 2) @ v, 1, 2)"}
}}'''
    g = loads(src).graph
    with pytest.raises(PnetError) as e:
        equivariant(g)
    text = str(e.value)
    assert "\n" not in text
    if msg is None:
        assert re.search(r"matmul breaks S-equivariance of output 'y': its free weight v", text), text
    else:
        assert re.search(msg, text), text


def test_error_located_at_breaking_op():
    src = '''import nn.core
@equivariant("S", x="perm(1)", y="perm(1)")
model m() {
  input x: f32[B, 5, 3]
  h = @equivariant("S", inp="perm(1)") linear(x, 4)
  h = cumsum(h, axis=1)
  output y = @equivariant("S", inp="perm(1)") linear(h, 4)
}'''
    with pytest.raises(PnetError) as e:
        equivariant(loads(src).graph)
    assert e.value.loc is not None and e.value.loc.line == 6
    assert "cumsum breaks S-equivariance before the @equivariant matmul in linear_1" in e.value.message


def test_grid_conv_geometry_refused():
    src = '''
@equivariant("C4", x="grid(2, 3)", y="grid(2, 3) regular(1)")
model m() {
  input x: f32[B, 1, 6, 6]
  param w: [4, 1, 3, 3] = normal(0, 1)
  output y = @equivariant("C4", inp="grid(2, 3)", out="grid(2, 3) regular(1)") conv2d(x, w, padding=1, stride=2)
}'''
    with pytest.raises(PnetError, match=r"rotations need a centred conv: stride 2 does not tile"):
        equivariant(loads(src).graph)


# ---- the stdlib models of the equivariant papers ----------------------------------------------------------
def _small(path: Path) -> dict:
    for line in path.read_text().splitlines()[:30]:
        m = re.match(r"^#\s*test:\s*(.*)$", line)
        if m:
            return dict(p.split("=", 1) for p in m.group(1).replace("--set", " ").split())
    return {}


@pytest.mark.parametrize("name", ["set_transformer", "ppgn_polynomial", "dwsnet"])
def test_stdlib_equivariant_papers(name):
    from pnet.dsl.compile import load_file
    path = ROOT / "stdlib" / "papers" / f"{name}.pnet"
    cfg = _small(path)
    res = load_file(path, None, cfg)
    g = res.graph
    for k, v in cfg.items():
        if k not in res.hyper:
            g.dims[k] = int(v)
    t = equivariant(g)
    verify(t)
    assert max(violations(t, samples=1, seed=2).values()) < 1e-8


# ---- the stdlib blocks whose weights the pass ties (stdlib/nn/equivariant.pnet) and a paper model using them --
def burnside_grid_conv(kind: str, n: int, k: int, cin: int, cout: int, lift: bool) -> int:
    """Orbits of a conv weight [cout |G|, cin (|G| unless lifting), k, k] under kernel rotations (and flips) and
    left multiplication on the group index of the output (and input) channels."""
    grid = np.arange(k * k).reshape(k, k)
    total = 0
    for gm, rp in zip(grid_maps(kind, n), regular_perms(kind, n)):
        fix_in = cin if lift else cin * fixed_points(rp)
        total += int(np.sum(gm(grid) == grid)) * cout * fixed_points(rp) * fix_in
    return total // len(regular_perms(kind, n))


def _load(path: Path, cfg: dict):
    from pnet.dsl.compile import load_file
    res = load_file(path, None, {k: str(v) for k, v in cfg.items()})
    g = res.graph
    for k, v in cfg.items():
        if k not in res.hyper:
            g.dims[k] = int(v)
    return g


def _tied_counts(t) -> dict:
    return {r["param"]: r["after"] for r in t.equivariance}


def _torch_matches_reference(t):
    pytest.importorskip("torch")
    from pnet.backends import numpy_ref
    from pnet.backends.torch_backend import to_module
    from pnet.testing.tolerance import assert_outputs_close
    inputs, params = numpy_ref.random_inputs(t, seed=1), numpy_ref.init_params(t, seed=0)
    ref32, ref64 = numpy_ref.run(t, inputs, params), numpy_ref.run(t, inputs, params, float64=True)
    out = to_module(t)(**inputs)                   # seed 0: the same parameters as init_params(t, 0)
    assert_outputs_close({k: v.detach().cpu().numpy() for k, v in out.items()}, ref32, ref64)


NN_EQUIVARIANT = ROOT / "stdlib" / "nn" / "equivariant.pnet"


@pytest.mark.parametrize("cfg", [{}, {"n": 3, "d": 2, "hidden": 3, "L": 5, "c": 2, "size": 6, "classes": 2, "B": 2}],
                         ids=["default", "small"])
def test_stdlib_nn_equivariant_blocks(cfg):
    """DeepSets, circulant and C4 lifting / group conv blocks: the pass ties every free weight to Burnside's count."""
    g = _load(NN_EQUIVARIANT, cfg)
    t = equivariant(g)
    verify(t)
    n, d, hidden, L, c = (cfg.get(k, v) for k, v in (("n", 5), ("d", 3), ("hidden", 8), ("L", 8), ("c", 4)))
    want = {
        "set0.W": burnside_dense("S", n, d, hidden), "set0.b": hidden,
        "set1.W": burnside_dense("S", n, hidden, d), "set1.b": d,
        "seq0.W": burnside_dense("T", L, d, hidden), "seq0.b": hidden,
        "seq1.W": burnside_dense("T", L, hidden, d), "seq1.b": d,
        "p4.lift.w": burnside_grid_conv("C", 4, 3, 1, c, lift=True), "p4.lift.b": c,
        "p4.gconv.0.c4_group_conv.w": burnside_grid_conv("C", 4, 3, c, c, lift=False), "p4.gconv.0.c4_group_conv.b": c,
    }
    assert _tied_counts(t) == want
    assert want["set0.W"] == 2 * d * hidden and want["seq0.W"] == L * d * hidden       # DeepSets, circulant
    assert want["p4.gconv.0.c4_group_conv.w"] == 4 * c * c * 9                          # P4 group conv
    before, after = param_counts(t)
    assert before == g.param_count()
    assert after == before - sum(r["before"] - r["after"] for r in t.equivariance)
    v_tied = violations(t, samples=3, seed=1)
    v_untied = violations(g, samples=3, seed=1)
    assert set(v_tied) == {"y_set", "y_set_pooled", "y_seq", "y_img"}
    assert max(v_tied.values()) < 1e-5
    assert min(v_untied.values()) > 1e-5
    _torch_matches_reference(t)


def test_stdlib_nn_equivariant_through_pipeline():
    """The tied demo survives the default pipeline after the pass (the counts are read back from the graph)."""
    g = _load(NN_EQUIVARIANT, {})
    t = run_passes(g, "equivariant")
    assert param_counts(t) == (6937, 1164)
    assert worst(t) < 1e-5


INSET = ROOT / "stdlib" / "papers" / "inset.pnet"


@pytest.mark.parametrize("cfg", [_small(INSET), {"n": 4, "d": 2, "hidden": 3, "layers": 3, "B": 3}], ids=["test", "deeper"])
def test_stdlib_inset_ties_deepsets(cfg):
    """INSET (001#8): its equivariant layers are dense maps over the superset that the pass ties to DeepSets."""
    g = _load(INSET, cfg)
    t = equivariant(g)
    verify(t)
    n, d, hidden, layers = (int(cfg[k]) for k in ("n", "d", "hidden", "layers"))
    want = {}
    for l in range(layers):
        want[f"enc.{l}.set_linear.W"] = burnside_dense("S", n, d if l == 0 else hidden, hidden)
        want[f"enc.{l}.set_linear.b"] = hidden
    want["select_head.W"] = burnside_dense("S", n, 2 * hidden + 1, 1)
    want["select_head.b"] = 1
    assert _tied_counts(t) == want
    before, after = param_counts(t)
    assert before == g.param_count() and before - after == sum(r["before"] - r["after"] for r in t.equivariance)
    v_tied = violations(t, samples=3, seed=1)
    v_untied = violations(g, samples=3, seed=1)
    assert max(v_tied.values()) < 1e-5
    assert v_untied["select"] > 1e-5 and v_untied["utility"] > 1e-5
    _torch_matches_reference(t)


@pytest.mark.parametrize("path,cfg", [(NN_EQUIVARIANT, {"B": 2}), (INSET, {**_small(INSET), "B": 2})], ids=["nn", "inset"])
def test_tied_weights_are_indexed_inside_kernels(path, cfg):
    """Build item 4: a tied weight take(theta, orbit_index) is never materialized. Moves of it (the einsum's
    reshapes) are folded into the literal index, and the consuming matmul / epilogue loads theta[idx[...]]
    itself: no gather kernel, fewer bytes than materializing it, and the Triton result matches the reference."""
    pytest.importorskip("triton")
    from pnet.backends import numpy_ref, triton as triton_backend
    from pnet.passes.fuse import plan
    from pnet.testing.tolerance import assert_outputs_close
    t = run_passes(run_passes(_load(path, cfg), "equivariant"))
    p = plan(t)
    assert p.indexed and all(n.op == "take" for n in p.indexed.values())
    assert not any(k.kind == "gather" or "take" in k.ops for k in p.kernels)
    dims = numpy_ref.bind_dims(t)
    materialized = sum(2 * int(np.prod([int(d) for d in v.type.shape])) * 4 for v in p.indexed)  # write + read W
    index_only = sum(int(np.prod([int(d) for d in n.inputs[1].type.shape])) * 4 for n in p.indexed.values())
    assert p.totals(dims)["bytes"] < p.totals(dims)["bytes"] - index_only + materialized
    compiled = triton_backend.compile(t)
    inputs, params = numpy_ref.random_inputs(t, 0), numpy_ref.init_params(t, 0)
    assert_outputs_close(compiled.run(inputs, params), numpy_ref.run(t, inputs, params),
                         numpy_ref.run(t, inputs, params, float64=True))
