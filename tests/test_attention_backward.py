"""sdpa_grad (ir/ops/attention_backward.py), attention's backward as one op: its NumPy reference against
torch.autograd of F.scaled_dot_product_attention in float64, its torch lowering, the Triton flash-attention-2
backward kernels (backends/triton/attention_grad_codegen.py, under the interpreter) against the reference, the
gradient rule that emits it, and the training plan: no [Tq, Tk] tensor in memory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import sympy

from pnet.backends import numpy_ref
from pnet.cli import main
from pnet.dsl.compile import load_source
from pnet.ir.registry import get
from pnet.passes.autodiff import grad_graph
from pnet.passes.fuse import plan
from pnet.passes.manager import run_passes
from pnet.testing.tolerance import assert_outputs_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

OP = get("sdpa_grad")


def _torch_sdpa(q, k, v, mask, causal, scale):
    """F.scaled_dot_product_attention with pnet's semantics: broadcast batches expanded, causal folded into a
    mask, and a query row with no allowed key opened up and then zeroed (F.sdpa gives NaN or 0 there)."""
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    if mask is None and not causal:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & mask
    empty = ~allowed.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | empty, scale=scale)
    return out.masked_fill(empty, 0.0)


def _case(shapes, mask=None, causal=False, scale=None, seed=0):
    """float64 q, k, v, the forward output o, a cotangent do, and torch.autograd's (dq, dk, dv) summed back to
    q, k, v's shapes."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s) for s in shapes)
    leaves = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    tm = None if mask is None else torch.tensor(mask)
    out = _torch_sdpa(*leaves, tm, causal, scale)
    do = rng.standard_normal(tuple(out.shape))
    out.backward(torch.tensor(do))
    return (q, k, v, out.detach().numpy(), do), [t.grad.numpy() for t in leaves]


def _sum_to(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    return g.sum(axis=tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1), keepdims=True)


_EMPTY_ROW = np.random.default_rng(3).random((5, 7)) < 0.5
_EMPTY_ROW[2] = False          # query 2 may attend to no key: output 0, gradients 0
_EMPTY_ROW[[0, 1, 3, 4], 0] = True
CASES = {   # q, k, v shapes; mask; causal; scale
    "plain": (((2, 5, 3), (2, 7, 3), (2, 7, 4)), None, False, None),
    "odd_sizes_scale": (((5, 3), (7, 3), (7, 3)), None, False, 0.7),
    "causal_more_keys": (((2, 5, 3), (2, 7, 3), (2, 7, 2)), None, True, None),
    "causal_more_queries": (((2, 7, 3), (2, 5, 3), (2, 5, 4)), None, True, 0.5),
    "bool_mask_empty_row": (((2, 5, 3), (2, 7, 3), (2, 7, 4)), _EMPTY_ROW, False, None),
    "bool_mask_causal": (((2, 5, 3), (2, 7, 3), (2, 7, 4)), _EMPTY_ROW, True, None),
    "gqa_broadcast": (((2, 3, 5, 4), (2, 1, 7, 4), (1, 1, 7, 3)), None, True, None),
    "multi_block": (((2, 37, 20), (2, 29, 20), (2, 29, 5)), None, True, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_and_torch_lowering_match_torch_autograd(case):
    shapes, mask, causal, scale = CASES[case]
    args, want = _case(shapes, mask, causal, scale)
    got = OP.ref(*args, mask, causal=causal, scale=scale)
    lowered = OP.torch(torch, *(torch.tensor(a) for a in args), None if mask is None else torch.tensor(mask),
                       causal=causal, scale=scale)
    for g, t, w, shape in zip(got, lowered, want, shapes):
        np.testing.assert_allclose(_sum_to(g, shape), w, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(t.numpy(), g, rtol=1e-10, atol=1e-12)
    if mask is not None:   # the row that attends to nothing gets no gradient, nor gives any to k, v
        assert np.all(got[0][..., 2, :] == 0)


def test_type_rule_flops_and_refusals():
    from pnet.errors import ShapeError
    from pnet.ir.types import TensorType
    B, T = sympy.Symbol("B", integer=True, positive=True), sympy.Symbol("T", integer=True, positive=True)
    q, k = TensorType("f32", (B, 2, T, 8)), TensorType("f32", (B, 1, T, 8))
    v, o = TensorType("f32", (1, 1, T, 4)), TensorType("f32", (B, 2, T, 4))
    attrs = OP.bind_attrs({"causal": True})
    outs = OP.infer_types([q, k, v, o, o, None], attrs)
    assert [t.shape for t in outs] == [(B, 2, T, 8), (B, 2, T, 8), (B, 2, T, 4)]   # the forward's batch
    # 2.5x the forward's FLOPs when dv = d: 2 * batch * Tq * Tk * (3 d + 2 dv)
    fwd = get("sdpa").count_flops([q, k, q, None], [TensorType("f32", (B, 2, T, 8))], attrs)
    bwd = OP.count_flops([q, k, q, TensorType("f32", (B, 2, T, 8)), TensorType("f32", (B, 2, T, 8)), None],
                         [q, q, q], attrs)
    assert sympy.simplify(bwd / fwd) == sympy.Rational(5, 2)
    with pytest.raises(ShapeError, match="sdpa's output type"):
        OP.infer_types([q, k, v, TensorType("f32", (B, 2, T, 5)), o, None], attrs)


# ---- the gradient rule emits it; the float-mask case keeps the IR rule ---------------------------------------------
def _graph(body: str):
    return load_source("model m() {\n  " + body.strip().replace("\n", "\n  ") + "\n}\n", "m.pnet").graph


def test_rule_emits_sdpa_grad_except_for_an_additive_mask():
    g = _graph("input q: f32[2, 5, 3]\ninput k: f32[2, 7, 3]\ninput m: bool[5, 7]\noutput y = sdpa(q, k, k, m)")
    ops = [n.op for n in grad_graph(g, cotangents=["y"], wrt=["q", "k"]).nodes]
    assert "sdpa_grad" in ops and "softmax" not in ops
    g = _graph("input q: f32[2, 5, 3]\ninput k: f32[2, 7, 3]\ninput m: f32[5, 7]\noutput y = sdpa(q, k, k, m)")
    gg = grad_graph(g, cotangents=["y"], wrt=["q", "m"])
    assert "sdpa_grad" not in [n.op for n in gg.nodes] and "grad.m" in dict(gg.outputs)


def test_second_order_self_attention_with_bool_mask():
    """sdpa_grad's own rule (its IR form, differentiated) with k = v = q, one value read three times: d<dq, c2>
    against torch's double backward."""
    from pnet.testing.gradcheck import run_gradient_graph
    g = _graph("input x: f32[2, 5, 3]\ninput m: bool[5, 5]\noutput y = sdpa(x, x, x, m, causal=true)")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 3))
    m = rng.random((5, 5)) < 0.7
    m[:, 0] = True
    c1, c2 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))
    gg = grad_graph(g, cotangents=["y"], wrt=["x"])
    assert "sdpa_grad" in [n.op for n in gg.nodes]
    gg.outputs = [("dx" if name == "grad.x" else name, v) for name, v in gg.outputs]
    got = run_gradient_graph(grad_graph(gg, cotangents=["dx"], wrt=["x"]), {"x": x, "m": m}, {},
                             cotangents={"y": c1, "dx": c2})
    tx = torch.tensor(x, requires_grad=True)
    (gx,) = torch.autograd.grad((_torch_sdpa(tx, tx, tx, torch.tensor(m), True, None) * torch.tensor(c1)).sum(), tx,
                                create_graph=True)
    (gx * torch.tensor(c2)).sum().backward()
    np.testing.assert_allclose(got["x"], tx.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---- the Triton kernels (interpreter) against the reference -------------------------------------------------------
@pytest.fixture
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PNET_CACHE", str(tmp_path_factory.getbasetemp() / "pnet-cache"))


def _triton_matches_reference(g, inputs, dims=None):
    pytest.importorskip("triton")
    from pnet.backends import triton as triton_backend
    g = run_passes(g)
    assert any(k.kind == "attention_grad" for k in plan(g).kernels)
    got = triton_backend.compile(g).run(inputs, {})
    ref32 = numpy_ref.run(g, inputs, {})
    ref64 = numpy_ref.run(g, inputs, {}, float64=True)
    assert_outputs_close(got, ref32, ref64)
    return got


TRITON_CASES = {   # the op called directly: shapes (q, k, v), mask shape, causal
    "multi_block_causal": (("2, 37, 20", "2, 29, 20", "2, 29, 5"), None, True),
    "more_keys_causal": (("19, 8", "40, 8", "40, 8"), None, True),
    "bool_mask_empty_row": (("2, 5, 3", "2, 7, 3", "2, 7, 4"), "5, 7", False),
    "bool_mask_causal_blocks": (("2, 33, 4", "2, 33, 4", "2, 33, 4"), "2, 33, 33", True),
    "gqa_broadcast": (("2, 3, 17, 4", "2, 1, 18, 4", "1, 1, 18, 3"), None, False),
}


@pytest.mark.parametrize("case", sorted(TRITON_CASES))
def test_triton_kernels_match_reference(case, private_cache):
    (qs, ks, vs), ms, causal = TRITON_CASES[case]
    shapes = [tuple(int(d) for d in s.split(",")) for s in (qs, ks, vs)]
    batch = np.broadcast_shapes(*(s[:-2] for s in shapes))
    os_ = ", ".join(str(d) for d in batch + (shapes[0][-2], shapes[2][-1]))
    body = (f"input q: f32[{qs}]\ninput k: f32[{ks}]\ninput v: f32[{vs}]\ninput o: f32[{os_}]\ninput d: f32[{os_}]\n"
            + (f"input m: bool[{ms}]\n" if ms else "")
            + f"dq, dk, dv = sdpa_grad(q, k, v, o, d{', m' if ms else ''}, causal={str(causal).lower()})\n"
            "output a = dq\noutput b = dk\noutput c = dv")
    g = _graph(body)
    rng = np.random.default_rng(1)
    inputs = {n: rng.standard_normal([int(x) for x in v.type.shape]).astype(np.float32)
              for n, v in g.inputs if v.type.dtype == "f32"}
    if ms:
        m = rng.random([int(x) for x in ms.split(",")]) < 0.5
        m[..., 2, :] = False          # a query row with no key
        m[..., 3, :] = True
        inputs["m"] = m
    got = _triton_matches_reference(g, inputs)
    if ms:
        assert np.all(got["a"][..., 2, :] == 0)


def test_triton_training_gradients_symbolic_dims(private_cache):
    """Through autodiff: grouped-query heads, a shared bool mask with an empty row, symbolic B and T."""
    g = _graph("input q: f32[B, 2, T, 6]\ninput k: f32[B, 1, T, 6]\ninput v: f32[B, 1, T, 3]\ninput m: bool[T, T]\n"
               "output y = sdpa(q, k, v, m, causal=true)")
    gg = grad_graph(g, cotangents=["y"], wrt=["q", "k", "v"])
    rng = np.random.default_rng(2)
    inputs = {n: rng.standard_normal([3 if str(d) == "B" else 21 if str(d) == "T" else int(d) for d in v.type.shape])
              .astype(np.float32) for n, v in gg.inputs if v.type.dtype == "f32"}
    m = rng.random((21, 21)) < 0.7
    m[4] = False
    inputs["m"] = m
    got = _triton_matches_reference(gg, inputs)
    assert np.all(got["grad.q"][:, :, 4] == 0)


# ---- the training plan: the backward kernel, and no [Tq, Tk] value in memory ----------------------------------------
TINY = """import nn.attention
model tiny_attn() {
  input x: f32[B, 6, 8]
  h = mha(x, heads=2, causal=true)
  output loss = mean(h * h)
}
"""


def test_show_train_plan_has_the_backward_kernel_and_no_scores(tmp_path, capsys):
    path = tmp_path / "tiny_attn.pnet"
    path.write_text(TINY)
    assert main(["show", str(path), "--set", "B=2", "--kernels", "--train", "--json"]) == 0
    kernels = json.loads(capsys.readouterr().out)["kernels"]
    grad = [k for k in kernels if k["ops"] == ["sdpa_grad"]]
    assert len(grad) == 1 and grad[0]["kind"] == "attention_grad"
    # reads q, k, v (views of the projections), o and dO; writes dq, dk, dv: [B, T, 8] = 96 floats each
    assert grad[0]["bytes"] == 8 * 96 * 4
    assert grad[0]["flops"] == 2 * 2 * 2 * 6 * 6 * (3 * 4 + 2 * 4)
    assert not any("softmax" in k["ops"] for k in kernels)
    for k in kernels:
        for t in k["inputs"] + k["outputs"]:
            assert not t.endswith("6, 6]"), f"{k['name']} moves a [Tq, Tk] tensor {t}"


def test_backward_kernels_build_for_an_h100_without_spilling(private_cache):
    """Triton's real compiler (backends/triton/aot.py, no GPU needed) builds both kernels for sm_90 at a head dim
    of 64, at the interpreter's 16 x 16 tiles, with no register spill (the GPU tiles: GRAD_TILES' comment)."""
    pytest.importorskip("triton")
    from pnet.backends import triton as triton_backend
    from pnet.backends.triton import aot
    g = _graph("input q: f32[2, 2, 64, 64]\ninput k: f32[2, 1, 64, 64]\ninput v: f32[2, 1, 64, 64]\n"
               "input m: bool[64, 64]\noutput y = sdpa(q, k, v, m, causal=true)")
    gg = run_passes(grad_graph(g, cotangents=["y"], wrt=["q", "k", "v"]))
    compiled = triton_backend.compile(gg)
    launches = [x for x in aot.capture(compiled, numpy_ref.random_inputs(gg, 0), {}, candidates=False)
                if "sdpa_grad" in x.kernel]
    builds = aot.build(compiled, launches, 90)
    assert sorted(b.launch.kernel.rsplit("_", 1)[-1] for b in builds) == ["dkdv", "dq"]
    assert all(b.ok and b.spill_bytes == 0 for b in builds), aot.format_report(builds, 90)
