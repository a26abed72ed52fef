"""Gradient rules of the contractions (ir/ops/linalg_grad.py, conv_grad.py), the sparse weight layouts
(sparse_grad.py) and the quantization ops (quant_grad.py): hand-written small programs covering every op and
its attributes, differentiated by passes/autodiff.py and run by the reference in float64, against torch.autograd
in float64 on the torch lowering and against central finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from pnet.backends import numpy_ref, torch_backend
from pnet.dsl.compile import load_source
from pnet.ir.types import is_float
from pnet.passes.autodiff import grad_graph
from pnet.passes.verify import verify
from pnet.testing.gradcheck import along, check_gradients, default_wrt, directional_derivative, run_gradient_graph
from pnet.testing.tolerance import assert_outputs_close

torch = pytest.importorskip("torch")


def _f64(arrays: dict) -> dict:
    return {k: v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v for k, v in arrays.items()}


def check(body: str, given: dict | None = None, fd: bool = True, seed: int = 1):
    """Differentiate output y of `model m() { body }` wrt every float input and param; compare with torch
    autograd (and finite differences along one random direction when `fd`). `given`: inputs to use instead of
    random ones (integer layouts)."""
    g = load_source("model m() {\n" + body + "\n}\n", "<grad>").graph
    inputs = _f64(numpy_ref.random_inputs(g, seed) | {k: np.asarray(v) for k, v in (given or {}).items()})
    params = _f64(numpy_ref.init_params(g, 2))
    wrt = default_wrt(g)   # (no batchnorm here: every float param is trainable)
    y = numpy_ref.run(g, inputs, params, float64=True)["y"]
    rng = np.random.default_rng(seed + 10)
    cot = {"y": rng.standard_normal(y.shape)}
    direction = {k: rng.standard_normal(np.shape(inputs.get(k, params.get(k)))) for k in wrt} if fd else False
    gg = grad_graph(g, cotangents=["y"], wrt=wrt)
    verify(gg)
    got = check_gradients(g, inputs, params, cotangents=cot, wrt=wrt, direction=direction, rtol=1e-5, atol=1e-6)
    # the gradient graph itself lowers to torch (what `pnet train -b torch` runs) and gives the same
    feeds = inputs | {"cotangent.y": cot["y"]}
    lowered = torch_backend.to_module(gg, "f64", params=params)(**{k: torch.tensor(v) for k, v in feeds.items()})
    lowered = {k[len("grad."):]: v.detach().numpy() for k, v in lowered.items() if k.startswith("grad.")}
    assert_outputs_close(lowered, got, got, "f64")
    return got, gg


# ---- matmul ----------------------------------------------------------------------------------------------
MATMUL = {
    "2d": ("f32[3, 4]", "f32[4, 5]"),
    "batched": ("f32[2, 3, 4]", "f32[2, 4, 5]"),
    "broadcast_batch": ("f32[2, 1, 3, 4]", "f32[5, 4, 2]"),
    "broadcast_lhs": ("f32[3, 4]", "f32[2, 4, 5]"),
    "vec_mat": ("f32[4]", "f32[2, 4, 5]"),
    "mat_vec": ("f32[2, 3, 4]", "f32[4]"),
    "vec_vec": ("f32[4]", "f32[4]"),
    "mat_vec_2d": ("f32[3, 4]", "f32[4]"),
}


@pytest.mark.parametrize("case", sorted(MATMUL))
def test_matmul(case):
    a, b = MATMUL[case]
    check(f"  input a: {a}\n  input b: {b}\n  output y = a @ b")


def test_matmul_gradient_uses_transposes_not_copies():
    _, gg = check("  input a: f32[3, 4]\n  input b: f32[4, 5]\n  output y = a @ b")
    ops = [n.op for n in gg.nodes]
    assert ops.count("matmul") == 3 and ops.count("transpose") == 2 and "reshape" not in ops


def test_matmul_with_an_integer_operand():
    got, _ = check("  input a: f32[3, 4]\n  input b: i32[4, 2]\n  output y = a @ b", fd=False)
    assert set(got) == {"a"}


# ---- einsum ----------------------------------------------------------------------------------------------
EINSUM = {
    "matmul": ("ij,jk->ik", ["f32[3, 4]", "f32[4, 5]"]),
    "batched": ("bij,bjk->bik", ["f32[2, 3, 4]", "f32[2, 4, 5]"]),
    "transpose": ("ij->ji", ["f32[3, 4]"]),
    "total": ("ij->", ["f32[3, 4]"]),
    "summed_alone": ("ij,j->j", ["f32[3, 4]", "f32[4]"]),
    "outer": ("i,j->ij", ["f32[3]", "f32[4]"]),
    "three": ("ij,jk,kl->il", ["f32[2, 3]", "f32[3, 4]", "f32[4, 2]"]),
    "trace": ("ii->", ["f32[3, 3]"]),
    "diagonal": ("ii->i", ["f32[3, 3]"]),
    "diag_mix": ("iij,jk->ik", ["f32[3, 3, 2]", "f32[2, 4]"]),
    "broadcast_one": ("ij,ij->ij", ["f32[1, 4]", "f32[3, 4]"]),
    "broadcast_summed": ("bij,bj->i", ["f32[1, 3, 4]", "f32[2, 4]"]),
    "dot": ("i,i->", ["f32[5]", "f32[5]"]),
}


@pytest.mark.parametrize("case", sorted(EINSUM))
def test_einsum(case):
    eq, shapes = EINSUM[case]
    names = "abcd"[:len(shapes)]
    decl = "".join(f"  input {n}: {s}\n" for n, s in zip(names, shapes))
    check(f"{decl}  output y = einsum([{', '.join(names)}], equation=\"{eq}\")")


# ---- convolutions ----------------------------------------------------------------------------------------
CONV = {
    "1d": ("conv1d", "f32[2, 3, 9]", "f32[4, 3, 3]", ""),
    "1d_strided": ("conv1d", "f32[2, 4, 10]", "f32[6, 2, 3]", ", stride=2, padding=2, dilation=2, groups=2"),
    "1d_partial_step": ("conv1d", "f32[1, 2, 8]", "f32[3, 2, 2]", ", stride=3, padding=1"),
    "2d": ("conv2d", "f32[2, 3, 6, 5]", "f32[4, 3, 3, 2]", ", padding=1"),
    "2d_strided": ("conv2d", "f32[2, 4, 7, 8]", "f32[4, 2, 3, 3]", ", stride=[2, 3], padding=[1, 2], dilation=[2, 1], groups=2"),
    "2d_depthwise": ("conv2d", "f32[1, 3, 5, 5]", "f32[6, 1, 3, 3]", ", stride=2, groups=3"),
    "2d_big_padding": ("conv2d", "f32[1, 2, 4, 4]", "f32[2, 2, 2, 2]", ", padding=3"),
    "3d": ("conv3d", "f32[1, 2, 4, 5, 4]", "f32[3, 2, 2, 3, 2]", ", padding=1"),
    "3d_strided": ("conv3d", "f32[2, 4, 5, 6, 7]", "f32[4, 2, 2, 2, 3]", ", stride=[2, 1, 3], padding=[0, 1, 2], dilation=[1, 2, 1], groups=2"),
    "3d_big_padding": ("conv3d", "f32[1, 1, 3, 3, 3]", "f32[2, 1, 2, 2, 2]", ", stride=2, padding=3"),
}


@pytest.mark.parametrize("case", sorted(CONV))
@pytest.mark.parametrize("bias", [True, False])
def test_conv(case, bias):
    op, x, w, attrs = CONV[case]
    f = w.split("[")[1].split(",")[0]
    b = f"  param b: f32[{f}]\n" if bias else ""
    check(f"  input x: {x}\n  param w: {w}\n{b}  output y = {op}(x, w{', b' if bias else ''}{attrs})")


CONV_T = {
    "plain": ("f32[2, 3, 4, 5]", "f32[3, 2, 3, 3]", ""),
    "strided": ("f32[2, 4, 5, 3]", "f32[4, 3, 3, 2]", ", stride=2, padding=1, output_padding=1"),
    "grouped": ("f32[1, 4, 5, 3]", "f32[4, 1, 2, 3]", ", stride=[3, 1], dilation=[1, 2], groups=2"),
    "dilated_outpad": ("f32[1, 2, 3, 3]", "f32[2, 2, 2, 2]", ", stride=1, dilation=3, output_padding=2"),
}


@pytest.mark.parametrize("case", sorted(CONV_T))
def test_conv_transpose2d(case):
    x, w, attrs = CONV_T[case]
    check(f"  input x: {x}\n  param w: {w}\n  param b: f32[{int(w.split(',')[1]) * (2 if 'groups=2' in attrs else 1)}]\n"
          f"  output y = conv_transpose2d(x, w, b{attrs})")


@pytest.mark.parametrize("op, x, w", [("conv1d", "f32[B, 2, W]", "f32[3, 2, 3]"),
                                     ("conv2d", "f32[B, 2, H, W]", "f32[3, 2, 3, 3]"),
                                     ("conv3d", "f32[B, 2, 5, H, W]", "f32[3, 2, 3, 3, 2]")])
def test_conv_symbolic_sizes(op, x, w):
    """A batch and spatial sizes bound at run time: the partial last stride step is covered and sliced."""
    check(f"  input x: {x}\n  param w: {w}\n  output y = {op}(x, w, stride=2, padding=1)")


# ---- sparse weight layouts -------------------------------------------------------------------------------
@pytest.mark.parametrize("x", ["f32[3, 8]", "f32[2, 3, 8]", "f32[8]"])
def test_nm_matmul(x):
    """2:4 over K=8, N=3: meta picks each value's row in its group; one entry is outside [0, 4) (stores
    nothing, its value gets no gradient) and one row is stored twice (both get it)."""
    meta = np.array([[0, 1, 3], [2, 3, 3], [1, 0, 2], [3, 7, 2]], np.uint8)
    got, _ = check(f"  input x: {x}\n  input meta: u8[4, 3]\n  param v: f32[4, 3]\n"
                   f"  output y = nm_matmul(x, v, meta, n=2, m=4)", {"meta": meta})
    assert got["v"][3, 1] == 0


def test_nm_matmul_one_of_three():
    meta = np.array([[2, 0], [1, 1]], np.int32)
    check("  input x: f32[2, 6]\n  input meta: i32[2, 2]\n  param v: f32[2, 2]\n"
          "  output y = nm_matmul(x, v, meta, n=1, m=3)", {"meta": meta})


@pytest.mark.parametrize("x", ["f32[3, 6]", "f32[2, 2, 6]", "f32[6]"])
def test_bsr_matmul(x):
    """K=6 in blocks of 2 (kb=3), N=4 in blocks of 2 (R=2); 4 stored blocks: block-column 0 holds blocks
    0, 1; block-column 1 holds blocks 2, 3, where block 3's col_idx is outside W (no gradient)."""
    col_idx = np.array([2, 0, 1, 5], np.int32)
    row_ptr = np.array([0, 2, 4], np.int32)
    got, _ = check(f"  input x: {x}\n  input c: i32[4]\n  input r: i32[3]\n  param v: f32[4, 2, 2]\n"
                   f"  output y = bsr_matmul(x, v, c, r)", {"c": col_idx, "r": row_ptr})
    assert (got["v"][3] == 0).all()


def test_bsr_matmul_csr_with_a_shared_block():
    """1x1 blocks (CSR); block 1 listed under both columns (row_ptr not non-decreasing) gets both gradients."""
    col_idx = np.array([0, 2, 1], np.int64)
    row_ptr = np.array([0, 2, 1, 3], np.int64)
    check("  input x: f32[2, 3]\n  input c: i64[3]\n  input r: i64[4]\n  param v: f32[3, 1, 1]\n"
          "  output y = bsr_matmul(x, v, c, r)", {"c": col_idx, "r": row_ptr})


# ---- quantization ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale, zp", [("f32[]", None), ("f32[4]", None), ("f32[3, 1]", "i8[3, 1]"),
                                       ("f32[3, 2]", None), ("f32[2]", "i32[4]"), ("f32[1, 2]", "i8[3, 1]")])
def test_dequantize(scale, zp):
    """The scale's gradient, broadcast or blocked (2 blocks of the 4 columns); zero points as given."""
    rng = np.random.default_rng(0)
    given = {"q": rng.integers(-128, 128, (3, 4)).astype(np.int8)}
    decl = "  input q: i8[3, 4]\n  param s: " + scale + "\n"
    if zp is not None:
        given["z"] = rng.integers(-5, 5, [int(d) for d in zp.split("[")[1][:-1].split(",")]).astype(
            np.int8 if zp.startswith("i8") else np.int32)
        decl += f"  input z: {zp}\n"
    got, _ = check(decl + f"  output y = dequantize(q, s{', z' if zp else ''}) * 1.5", given)
    assert set(got) == {"s"}


@pytest.mark.parametrize("scale, zp, attrs", [("f32[]", None, ""), ("f32[4]", "i8[4]", ", bits=4"),
                                              ("f32[3, 2]", None, ", narrow=true"),
                                              ("f32[1, 2]", "i8[3, 1]", ", bits=3"),
                                              ("f32[2]", "i8[2]", "")])
def test_fake_quant(scale, zp, attrs):
    """Straight-through inside the range, zero where x saturates; the scale gets none (as the lowering)."""
    rng = np.random.default_rng(5)
    bits = int(attrs.split("bits=")[1]) if "bits=" in attrs else 8
    given = {"x": rng.standard_normal((3, 4)) * 0.1 * (2 ** (bits - 1) - 1)}   # about a third saturates
    decl = "  input x: f32[3, 4]\n  input s: " + scale + "\n"
    shape = [int(d) for d in scale.split("[")[1][:-1].split(",") if d.strip()]
    given["s"] = np.abs(rng.standard_normal(shape)) * 0.02 + 0.1
    if zp is not None:
        given["z"] = rng.integers(-3, 3, [int(d) for d in zp.split("[")[1][:-1].split(",")]).astype(np.int8)
        decl += f"  input z: {zp}\n"
    # fake_quant is flat almost everywhere: finite differences see 0, not the straight-through gradient
    got, _ = check(decl + f"  output y = fake_quant(x, s{', z' if zp else ''}{attrs})", given, fd=False)
    passed = got["x"] != 0
    assert passed.any() and not passed.all()
    assert (got["s"] == 0).all()


def test_fake_quant_nan_gets_no_gradient():
    got, _ = check("  input x: f32[4]\n  param s: f32[]\n  output y = fake_quant(x, s)",
                   {"x": np.array([0.5, np.nan, -1.0, 1e9])}, fd=False)
    assert got["x"][1] == 0 and got["x"][3] == 0 and got["x"][0] != 0


def test_sign_quant_states_the_straight_through_way():
    from pnet.ir import registry
    assert "straight_through" in registry.get("sign_quant").no_grad


# ---- gradients of gradients ------------------------------------------------------------------------------
SECOND = {
    "matmul": "  input a: f32[2, 3, 4]\n  input b: f32[4]\n  output y = sum(square(a @ b))",
    "einsum": "  input a: f32[3, 3, 2]\n  input b: f32[2, 4]\n  output y = sum(square(einsum([a, b], equation=\"iij,jk->ik\")))",
    "conv1d": "  input a: f32[2, 4, 9]\n  input b: f32[2, 2, 3]\n  output y = sum(square(conv1d(a, b, stride=2, groups=2)))",
    "conv2d": "  input a: f32[2, 3, 6, 5]\n  input b: f32[4, 3, 3, 2]\n  output y = sum(square(conv2d(a, b, stride=2, padding=1)))",
    "conv3d": "  input a: f32[1, 2, 4, 5, 4]\n  input b: f32[3, 2, 2, 3, 2]\n  output y = sum(square(conv3d(a, b, stride=2, padding=1)))",
    "conv_transpose2d": "  input a: f32[2, 4, 5, 3]\n  input b: f32[4, 3, 3, 2]\n"
                        "  output y = sum(square(conv_transpose2d(a, b, stride=2, padding=1, output_padding=1)))",
    "dequantize": "  input q: i8[3, 4]\n  input a: f32[3, 2]\n  input b: f32[4]\n  output y = sum(square(dequantize(q, a) * b))",
}


@pytest.mark.parametrize("case", sorted(SECOND))
def test_gradient_of_gradient(case):
    """The rules are themselves differentiable: d<grad_a(x), c>/dx against finite differences of grad_a."""
    g = load_source("model m() {\n" + SECOND[case] + "\n}\n", "<grad>").graph
    rng = np.random.default_rng(0)
    ins = _f64(numpy_ref.random_inputs(g, 3))
    names = [n for n, v in g.inputs if is_float(v.type.dtype)]
    gg = grad_graph(g, wrt=names)
    c = rng.standard_normal(ins["a"].shape)
    second = run_gradient_graph(grad_graph(gg, cotangents=["grad.a"], wrt=names), ins, {},
                                cotangents={"grad.a": c})
    direction = {n: rng.standard_normal(ins[n].shape) for n in names}
    numeric = directional_derivative(gg, ins, {}, cotangents={"grad.a": c}, direction=direction, h=1e-6)
    analytic = along(second, direction)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-6), (analytic, numeric)
