"""The sparsity pass and ops (issue 8): every layout equals the dense-masked product (NumPy, torch, and the Triton
block-sparse kernel under the interpreter), the masks have the asked structure, the kernel plan's FLOPs and bytes
fall with the density, sparse weights round-trip through safetensors, and bad input is a one-line error."""
from __future__ import annotations

import importlib.util

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_file, load_source
from pnet.errors import PnetError, UsageError
from pnet.ir.graph import Annotation
from pnet.passes.fuse import plan
from pnet.passes.manager import run_passes
from pnet.passes.sparsify import parse_spec, prune_blocks, prune_nm, sparsify, sparsify_model
from pnet.testing.tolerance import assert_outputs_close

torch = pytest.importorskip("torch")
from conftest import op_ref, op_torch, op_triton  # noqa: E402
ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
FAST = settings(max_examples=20, deadline=None)


_ref, _torch = op_ref, op_torch  # (tests/conftest.py)


def _close(got, x, dense):
    """`got` against the dense-masked product x @ dense (the one tolerance rule)."""
    ref32 = np.matmul(x, dense.astype(np.float32))
    ref64 = np.matmul(x.astype(np.float64), dense.astype(np.float64))
    assert_outputs_close({"y": got}, {"y": ref32}, {"y": ref64})


# ---- layouts: structure and the dense-masked oracle -----------------------------------------------------
@FAST
@given(st.integers(1, 4), st.sampled_from([(2, 4), (1, 4), (1, 2), (4, 8), (3, 3)]), st.integers(1, 3),
       st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_nm_matches_dense_masked(m_rows, nm, groups, cols, seed):
    n, m = nm
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((groups * m, cols)).astype(np.float32)
    x = rng.standard_normal((2, m_rows, groups * m)).astype(np.float32)
    values, meta, mask = prune_nm(w, n, m)
    assert values.shape == (groups * n, cols) and meta.dtype == np.uint8
    # exactly n non-zeros in every group of m along K, and they are the n largest |w| of the group
    assert np.all(mask.reshape(groups, m, cols).sum(axis=1) == n)
    a = np.abs(w).reshape(groups, m, cols)
    kept_min = np.where(mask.reshape(groups, m, cols), a, np.inf).min(axis=1)
    dropped_max = np.where(mask.reshape(groups, m, cols), -np.inf, a).max(axis=1)
    assert np.all(kept_min >= dropped_max)
    dense = np.where(mask, w, 0)
    _close(_ref("nm_matmul", x, values, meta, n=n, m=m), x, dense)
    _close(_torch("nm_matmul", x, values, meta, n=n, m=m), x, dense)


def test_two_four_has_two_of_every_four():
    w = np.random.default_rng(0).standard_normal((64, 24)).astype(np.float32)
    _, _, mask = prune_nm(w, 2, 4)
    assert set(mask.reshape(16, 4, 24).sum(axis=1).ravel().tolist()) == {2}


@FAST
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.sampled_from([1, 2, 4]),
       st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_block_matches_dense_masked(m_rows, kb, nb, bs, density, seed):
    rng = np.random.default_rng(seed)
    k, n = kb * bs, nb * bs
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((m_rows, k)).astype(np.float32)
    values, col_idx, row_ptr, mask = prune_blocks(w, bs, bs, density)
    total = kb * nb
    assert values.shape[0] == max(1, round(density * total)) == int(row_ptr[-1])  # the asked density
    assert np.all(np.diff(row_ptr) >= 0) and col_idx.dtype == np.int32 and np.all(col_idx < kb)
    tiles = mask.reshape(kb, bs, nb, bs)
    assert np.all(tiles.all(axis=(1, 3)) == tiles.any(axis=(1, 3)))  # whole blocks kept or dropped
    dense = np.where(mask, w, 0)
    _close(_ref("bsr_matmul", x, values, col_idx, row_ptr), x, dense)
    _close(_torch("bsr_matmul", x, values, col_idx, row_ptr), x, dense)


@FAST
@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_unstructured_matches_dense_masked(k, n, density, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((3, k)).astype(np.float32)
    values, col_idx, row_ptr, mask = prune_blocks(w, 1, 1, density)
    assert mask.sum() == max(1, round(density * k * n))
    a = np.abs(w)
    assert a[mask].min() >= (a[~mask].max() if (~mask).any() else 0)
    _close(_ref("bsr_matmul", x, values, col_idx, row_ptr), x, np.where(mask, w, 0))
    _close(_torch("bsr_matmul", x, values, col_idx, row_ptr), x, np.where(mask, w, 0))


def test_topk_mask():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7)).astype(np.float32)
    y = _ref("topk_mask", x, k=3)
    assert np.array_equal(y, _torch("topk_mask", x, k=3))
    assert np.all((y != 0).sum(axis=-1) == 3)
    keep = np.argsort(-np.abs(x), axis=-1)[:, :3]
    assert np.array_equal(np.sort(np.nonzero(y)[1].reshape(3, 3), axis=1), np.sort(keep, axis=1))
    ties = np.array([[1.0, -1.0, 1.0, 0.5]], np.float32)  # ties keep the lower index
    assert _ref("topk_mask", ties, k=2).tolist() == [[1.0, -1.0, 0.0, 0.0]]
    assert _torch("topk_mask", ties, k=2).tolist() == [[1.0, -1.0, 0.0, 0.0]]
    # usable in source, before a matmul
    g = load_source("""
model m(d: int = 8) {
  input x: f32[B, d]
  param w: [d, 4] = normal(0, 1)
  output y = topk_mask(x, k=2) @ w
}""").graph
    params = numpy_ref.init_params(g, 0)
    xin = numpy_ref.random_inputs(g, 1, {"B": 3})
    out = numpy_ref.run(g, xin, params)["y"]
    want = _ref("topk_mask", xin["x"], k=2) @ params["w"]
    assert np.allclose(out, want, atol=1e-6)


# ---- the pass on models ---------------------------------------------------------------------------------
def _mlp():
    g = run_passes(load_file(str(EX / "mlp.pnet"), None, {}).graph, "cleanup")
    return g, numpy_ref.init_params(g, 0)


def _masked_params(g, params, r):
    """The dense model's params with every pruned weight replaced by its dense masked value (the oracle)."""
    from pnet.passes.sparsify import dense_weight
    out = dict(params)
    for layer in r.layers:
        k = layer.shape[0]
        attrs = {"n": 0, "m": 0}
        if layer.op == "nm_matmul":
            o = parse_spec(layer.layout)
            attrs = {"n": o.n, "m": o.m}
        d = dense_weight(r.params, layer.weight, layer.op, attrs, k).astype(np.float32)
        out[layer.weight] = d.T if layer.transposed else d
    return out


SPECS = ["2:4", "1:4", "block=16,density=0.25", "block=32,density=0.5", "density=0.1", "density=0.5"]


@pytest.mark.parametrize("spec", SPECS)
def test_model_matches_dense_masked(spec):
    g, params = _mlp()
    r = sparsify_model(g, params, spec)
    assert r.layers and all(l.op in ("nm_matmul", "bsr_matmul") for l in r.layers)
    masked = _masked_params(g, params, r)
    for l in r.layers:  # the pruned weight keeps exactly the asked share
        o = parse_spec(spec)
        k, n = l.shape
        if o.kind == "nm":
            assert l.density == o.n / o.m
        else:
            total = k * n // (o.block * o.block if o.kind == "block" else 1)
            assert l.density == max(1, round(o.density * total)) / total
        assert np.count_nonzero(masked[l.weight]) == round(l.density * k * n)
    inputs = numpy_ref.random_inputs(g, 1, {"B": 5})
    ref32 = numpy_ref.run(g, inputs, masked)
    ref64 = numpy_ref.run(g, inputs, masked, float64=True)
    assert_outputs_close(numpy_ref.run(r.graph, inputs, r.params), ref32, ref64)
    from pnet.backends import run as run_backend
    assert_outputs_close(run_backend("torch", r.graph, inputs, r.params), ref32, ref64)
    # Triton: block-sparse layers plan as bsr_matmul kernels (only the stored blocks), not torch fallbacks
    kinds = {k.nodes[0].op: k.kind for k in plan(r.graph).kernels if k.nodes[0].op in ("bsr_matmul", "nm_matmul")}
    assert kinds.get("bsr_matmul", "bsr_matmul") == "bsr_matmul"
    if spec in ("2:4", "block=16,density=0.25"):  # (the interpreter is slow: two layouts suffice)
        assert_outputs_close(run_backend("triton", r.graph, inputs, r.params), ref32, ref64)


TRANSPOSED = """
model t(k: int = 16, n: int = 12) {
  input x: f32[B, k]
  param w: [n, k] = normal(0, 1)
  param v: [k, n] = normal(0, 1)
  output y = relu(x @ w.T) @ v.T
}
"""


@pytest.mark.parametrize("spec", ["2:4", "block=4,density=0.5", "density=0.3"])
def test_transposed_weights(spec):
    g = load_source(TRANSPOSED).graph
    params = numpy_ref.init_params(g, 0)
    r = sparsify_model(g, params, spec)
    assert [(l.weight, l.transposed, l.shape) for l in r.layers] == [("w", True, (16, 12)), ("v", True, (12, 16))]
    assert "transpose" not in [n.op for n in r.graph.nodes] and set(r.params) & {"w", "v"} == set()
    masked = _masked_params(g, params, r)
    inputs = numpy_ref.random_inputs(g, 1, {"B": 4})
    ref32, ref64 = numpy_ref.run(g, inputs, masked), numpy_ref.run(g, inputs, masked, float64=True)
    assert_outputs_close(numpy_ref.run(r.graph, inputs, r.params), ref32, ref64)


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    from pnet.weights import load_params, save_params
    g, params = _mlp()
    sg, sp = sparsify(g, params, "2:4")
    path = tmp_path / "sparse.safetensors"
    save_params(path, sp)
    back = load_params(str(path), sg)
    assert sorted(back) == sorted(sp) and all(np.array_equal(back[k], sp[k]) for k in sp)
    assert back["mlp.layers.0.dense.w.meta"].dtype == np.uint8
    inputs = numpy_ref.random_inputs(g, 2, {"B": 3})
    a, b = numpy_ref.run(sg, inputs, sp), numpy_ref.run(sg, inputs, back)
    assert all(np.array_equal(a[k], b[k]) for k in a)


LINEAR = """
model lin(k: int = 128, n: int = 64) {
  input x: f32[B, k]
  param w: [k, n] = normal(0, 1)
  output y = x @ w
}
"""


@pytest.mark.parametrize("spec", ["2:4", "1:4", "block=16,density=0.25", "block=32,density=0.5", "density=0.1",
                                  "density=0.3"])
def test_plan_flops_and_bytes_fall_with_density(spec):
    g = load_source(LINEAR).graph
    params = numpy_ref.init_params(g, 0)
    r = sparsify_model(g, params, spec)
    d = r.layers[0].density
    before, after = plan(g).totals({"B": 16}), plan(r.graph).totals({"B": 16})
    assert after["flops"] == round(d * before["flops"])          # 2 * B * stored non-zeros
    wb = 128 * 64 * 4
    o = parse_spec(spec)
    # weight bytes: the stored values (density * dense) plus the index params
    if o.kind == "nm":
        index = d * 128 * 64                                       # u8 meta, one per stored value
    else:                                                          # i32 col_idx per block, row_ptr per block-column
        bs = o.block if o.kind == "block" else 1
        index = 4 * (round(d * 128 * 64 / bs ** 2) + 64 // bs + 1)
    assert r.bytes_after == round(d * wb + index)
    io = (16 * 128 + 16 * 64) * 4                                  # x read, y written
    assert before["bytes"] == wb + io and after["bytes"] == r.bytes_after + io


# ---- the Triton block-sparse kernel under the interpreter --------------------------------------------------
@pytest.mark.parametrize("m, k, n, bs, density", [(5, 64, 32, 16, 0.5), (3, 8, 12, 4, 0.4), (2, 6, 5, 1, 0.3),
                                                  (17, 32, 48, 16, 1.0), (1, 32, 32, 32, 1.0)])
def test_triton_bsr_kernel_matches_reference(m, k, n, bs, density):
    """A rank-3 input (its leading dims flattened into rows), ragged and 1x1 (CSR) blocks, a full layout."""
    pytest.importorskip("triton")
    rng = np.random.default_rng(m * k + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((2, m, k)).astype(np.float32)
    values, col_idx, row_ptr, mask = prune_blocks(w, bs, bs, density)
    kinds, got = op_triton("bsr_matmul", x, values, col_idx, row_ptr)
    assert kinds == ["bsr_matmul"] and got.shape == (2, m, n)
    _close(got, x, np.where(mask, w, 0))


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 5), st.sampled_from([(2, 4), (1, 4), (1, 2), (4, 8), (3, 3)]), st.integers(1, 12),
       st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_triton_nm_kernel_matches_dense_masked(m_rows, nm, groups, cols, seed):
    """The N:M matmul template decompresses each [BK, BN] tile from values + metadata in registers
    (several K tiles and ragged edges included); it is a matmul kernel, not a fallback."""
    pytest.importorskip("triton")
    n, m = nm
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((groups * m, cols)).astype(np.float32)
    x = rng.standard_normal((2, m_rows, groups * m)).astype(np.float32)
    values, meta, mask = prune_nm(w, n, m)
    kinds, got = op_triton("nm_matmul", x, values, meta, n=n, m=m)
    assert kinds == ["matmul"]
    _close(got, x, np.where(mask, w, 0))


def _absent_oracle(x, dense, stored):
    """x @ W where W's pruned entries are absent: each output sums x[k] * W[k, n] over stored (k, n) only."""
    prods = x[..., :, None].astype(np.float64) * np.where(stored, dense, 0.0)   # [..., K, N]
    return np.where(stored, prods, 0.0).sum(axis=-2)


@pytest.mark.parametrize("layout", ["2:4", "block4", "csr"])
def test_pruned_entries_are_absent_on_every_backend(layout):
    """An inf or NaN activation that meets only pruned entries adds nothing (as torch.sparse and cuSPARSELt),
    where a dense zero would add 0 * inf = NaN: the reference, torch and the Triton kernels agree (the fuzzer
    found the CSR kernel skipping pruned entries while the reference multiplied dense zeros)."""
    pytest.importorskip("triton")
    rng = np.random.default_rng(5)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    if layout == "2:4":
        values, meta, mask = prune_nm(w, 2, 4)
        op, operands, attrs = "nm_matmul", (values, meta), {"n": 2, "m": 4}
    else:
        bs = 4 if layout == "block4" else 1
        values, col_idx, row_ptr, mask = prune_blocks(w, bs, bs, 0.5)
        op, operands, attrs = "bsr_matmul", (values, col_idx, row_ptr), {}
    pruned_k = [k for k in range(16) if not mask[k].any()] or [int(np.argmin(mask.sum(1)))]
    x[0, 0, pruned_k[0]] = np.inf            # meets pruned entries (and stored ones, where the row has any)
    x[0, 1, :] = 0.0
    x[0, 1, int(np.argmax(~mask[:, 0]))] = -np.inf   # column 0 of W has this row pruned
    x[1, 2, 3] = np.nan
    want = _absent_oracle(x, w, mask)
    for got in (_ref(op, x, *operands, **attrs), _torch(op, x, *operands, **attrs),
                op_triton(op, x, *operands, **attrs)[1]):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got) & (got > 0), np.isinf(want) & (want > 0))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5)
    assert np.isfinite(want[0, 1, 0]), "the test must exercise an inf meeting a pruned entry"


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 5), st.integers(0, 1), st.integers(0, 2**31 - 1))
def test_triton_topk_mask_matches_reference(k, axis, seed):
    """topk_mask lowers to a key-sorted topk of |x| plus a pointwise cutoff (no fallback); ties keep the lower
    index and NaN counts as largest, exactly as the reference."""
    pytest.importorskip("triton")
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (5, 6)).astype(np.float32)   # many ties in magnitude
    x[0, 2] = np.nan
    x[1, :] = np.nan
    kinds, got = op_triton("topk_mask", x, k=k, axis=axis)
    assert "fallback" not in kinds
    want = _ref("topk_mask", x, k=k, axis=axis)
    assert np.array_equal(got, want, equal_nan=True)


def test_topk_mask_fuses_into_the_consumer_matmul():
    """Activation sparsity: the top-k keep mask is applied inside the consumer matmul's A tile (a prologue)."""
    src = "import nn.core\nmodel m() {\n  input x: f32[B, 16]\n  output y = linear(topk_mask(relu(linear(x, 32)), k=4), 8)\n}\n"
    p = plan(run_passes(load_source(src).graph))
    consumer = [k for k in p.kernels if k.kind == "matmul" and "where" in k.ops]
    assert len(consumer) == 1 and p.totals({"B": 4})["fallbacks"] == 0


def test_sparse_layers_fuse_their_epilogues():
    """Bias and activation join the sparse kernel (N:M and block-sparse plan one kernel per layer, like dense)."""
    from pnet.passes.fuse import plan
    src = ANNOTATED.replace("@sparse(\"2:4\") ", "")
    g = run_passes(load_source(src).graph)
    params = numpy_ref.init_params(g, 0)
    for spec, op in [("2:4", "nm_matmul"), ("block=8,density=0.5", "bsr_matmul"), ("density=0.3", "bsr_matmul")]:
        sg, r_params = sparsify(g, params, spec)
        kernels = [k for k in plan(sg).kernels if op in k.ops]
        assert kernels and all(len(k.ops) > 1 for k in kernels), [k.ops for k in kernels]
        if importlib.util.find_spec("triton"):
            from pnet.backends import triton as triton_backend
            compiled = triton_backend.compile(sg)
            inputs = numpy_ref.random_inputs(sg, 0, {"B": 3})
            assert_outputs_close(compiled.run(inputs, r_params), numpy_ref.run(sg, inputs, r_params),
                                 numpy_ref.run(sg, inputs, r_params, float64=True))


# ---- annotations and errors ------------------------------------------------------------------------------------
ANNOTATED = """
import nn.core
model m(d: int = 16) {
  input x: f32[B, d]
  h = @sparse("2:4") linear(x, 32, bias=false) as a
  h = relu(h)
  output y = linear(h, 8) as b
}
"""


def test_annotation_sparsifies_only_its_layer():
    g = load_source(ANNOTATED).graph
    params = numpy_ref.init_params(g, 0)
    r = sparsify_model(g, params)
    assert [l.weight for l in r.layers] == ["a.w"]
    assert [n.op for n in r.graph.nodes].count("nm_matmul") == 1 and "b.w" in r.params and "a.w" not in r.params
    # a whole-model spec prunes the other layer too; the annotation keeps its own layout
    r2 = sparsify_model(g, params, "density=0.5")
    assert {l.weight: l.op for l in r2.layers} == {"a.w": "nm_matmul", "b.w": "bsr_matmul"}
    g3 = load_source(ANNOTATED.replace('@sparse("2:4")', '@sparse(block=8, density=0.5)')).graph
    assert sparsify_model(g3, params).layers[0].layout == "block=8,density=0.5"
    g4 = load_source(ANNOTATED.replace('@sparse("2:4")', '@sparse("none")')).graph
    assert [l.weight for l in sparsify_model(g4, params, "2:4").layers] == ["b.w"]


@pytest.mark.parametrize("annotation, message", [
    ('@sparse("block=5,density=0.5")', "block size 5 does not divide"),
    ('@sparse("3:2")', "N=3 exceeds M=2"),
    ('@sparse(density=0)', "density must be in (0, 1]"),
    ('@sparse(density=1.5)', "density must be in (0, 1]"),
    ('@sparse("3:5")', "multiple of M=5"),
    ('@sparse(blocks=4)', "unknown argument 'blocks'"),
])
def test_annotation_errors_point_at_the_annotation(annotation, message):
    src = ANNOTATED.replace('@sparse("2:4")', annotation)
    with pytest.raises(PnetError) as e:  # a bad spec fails at compile time, one that does not fit in the pass
        g = load_source(src).graph
        sparsify(g, numpy_ref.init_params(g, 0))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert e.value.loc is not None and e.value.loc.line == 5


def test_annotation_on_an_op_that_cannot_be_sparsified():
    src = ANNOTATED.replace("h = relu(h)", 'h = @sparse("2:4") relu(h)')
    g = load_source(src).graph
    with pytest.raises(PnetError, match="covers no sparsifiable op.*relu") as e:
        sparsify(g, numpy_ref.init_params(g, 0))
    assert e.value.loc.line == 6
    conv = load_file(str(EX / "cnn.pnet"), None, {}).graph
    conv.nodes[[n.op for n in conv.nodes].index("conv2d")].annotations = (Annotation("sparse", ("2:4",)),)
    with pytest.raises(PnetError, match="covers no sparsifiable op.*conv2d"):
        sparsify(conv, numpy_ref.init_params(conv, 0))


@pytest.mark.parametrize("spec, message", [("3:2", "N=3 exceeds M=2"), ("density=0", "(0, 1]"),
                                           ("density=1.01", "(0, 1]"), ("block=3,density=0.5", "no layer can be"),
                                           ("block=0,density=0.5", "positive integer"), ("2-4", "cannot read"),
                                           ("dens=0.1", "unknown option")])
def test_bad_specs(spec, message):
    g, params = _mlp()
    with pytest.raises(UsageError) as e:
        sparsify(g, params, spec)
    assert message in str(e.value)


# ---- the command line ----------------------------------------------------------------------------------------
def test_cli_reports_flops_and_bytes_before_and_after(capsys):
    import json
    from pnet.cli import main
    assert main(["show", str(EX / "mlp.pnet"), "--kernels", "--sparse", "2:4", "--set", "B=8"]) == 0
    out = capsys.readouterr().out
    assert "nm_matmul" in out and "flops   418,841 -> 211,993" in out and "bytes" in out
    assert main(["check", str(EX / "mlp.pnet"), "--sparse", "block=32,density=0.25", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["sparsity"]
    assert info["flops_after"] < info["flops_before"] and info["weight_bytes_after"] < info["weight_bytes_before"]
    assert [s["weight"] for s in info["skipped"]] == ["mlp.head.w"]
    assert main(["check", str(EX / "mlp.pnet"), "--sparse", "5:4"]) == 2
    err = capsys.readouterr().err
    assert "N=5 exceeds M=4" in err and len(err.strip().splitlines()) == 1
