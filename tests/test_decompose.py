"""passes/decompose.py: composite ops lowered, before planning, into ops with Triton kernels.

For every rewrite: the decomposed graph verifies, no longer holds the op, is a fixed point of the
pass, and computes the reference result within the tolerance rule (NumPy); the Triton backend (under
the interpreter in CI) matches the reference and plans no fallback for the op."""
from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pnet.backends import numpy_ref
from pnet.dsl.compile import load_file, load_source
from pnet.ir.text import parse_graph, print_graph
from pnet.passes.decompose import decompose
from pnet.passes.verify import verify
from pnet.testing.tolerance import assert_outputs_close

from conftest import model_files, small_config


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PNET_CACHE", str(tmp_path_factory.getbasetemp() / "pnet-cache"))


def ops(g) -> set[str]:
    out = set()
    for n in g.nodes:
        out.add(n.op)
        if n.body is not None:
            out |= ops(n.body)
    return out


def model(body: str, inputs: dict[str, str]) -> str:
    decl = "".join(f"  input {k}: {t}\n" for k, t in inputs.items())
    return "model m() {\n" + decl + textwrap.indent(textwrap.dedent(body).strip(), "  ") + "\n}\n"


def check(src: str, op: str, *, triton: bool = True, seed: int = 0, lowered: bool = True, kernel: bool | None = None):
    """Decompose the model of `src`; `lowered`: `op` must be gone (else it must stay); `kernel` (default:
    `lowered`): the Triton plan must run no `op` as a fallback."""
    g = load_source(src, "<decompose>").graph
    d = decompose(g)
    verify(d)
    assert (op not in ops(d)) == lowered, print_graph(d)
    assert print_graph(decompose(d)) == print_graph(d), "decompose is not idempotent"
    inputs, params = numpy_ref.random_inputs(g, seed), numpy_ref.init_params(g, seed)
    ref32 = numpy_ref.run(g, inputs, params)
    ref64 = numpy_ref.run(g, inputs, params, float64=True)
    got = numpy_ref.run(d, inputs, params)
    for k in ref32:
        assert got[k].dtype == ref32[k].dtype and got[k].shape == ref32[k].shape
    assert_outputs_close(got, ref32, ref64)
    if triton:
        pytest.importorskip("triton")
        pytest.importorskip("torch")
        from pnet.backends import triton as tb
        compiled = tb.compile(g)
        assert_outputs_close(compiled.run(inputs, params), ref32, ref64)
        if lowered if kernel is None else kernel:
            assert op not in compiled.plan.totals()["fallback_ops"]
    return d


# ---- einsum ---------------------------------------------------------------------------------------
SIZES = {"a": "B", "b": "3", "c": "4", "d": "2", "e": "5", "f": "3", "i": "4", "j": "3", "k": "2", "l": "3"}


def einsum_src(eq: str, sizes=SIZES) -> str:
    specs = eq.split("->")[0].split(",")
    inputs = {f"x{i}": "f32[" + ", ".join(sizes[c] for c in s) + "]" for i, s in enumerate(specs)}
    args = ", ".join(inputs)
    return model(f'output y = einsum({args}, equation="{eq}")', inputs)


EINSUMS = [
    "aij,jk->aik",        # plain batched matmul
    "abc,abc->a",         # two contracted indices: mul + sum
    "abcd,abd->abc",      # matrix-vector per batch
    "abce,ed->abcd",      # several left indices: broadcast batch
    "abcfe,efd->abcd",    # two contracted indices
    "abe,aecd->abcd",     # several right indices
    "ac,acb->ab",
    "acd,bd->abc",
    "ace,bed->abcd",
    "bcd,abd->abc",
    "ij,kl->ijkl",        # outer product: mul only
    "i,i->",              # dot product to a scalar
    "ij,ij->ij",          # Hadamard product
    "ija,ajk->aki",       # output permuted
    "abi,bcj->ac",        # indices summed out before the product
    "d,abde,dec->abc",    # three operands
    "da,bd,cd->abc",
    "bcd,ac,ad->ab",
    "ij->ji",             # one operand: transpose
    "aij->ai",            # one operand: sum
]


@pytest.mark.parametrize("eq", EINSUMS)
def test_einsum_lowered(eq):
    check(einsum_src(eq), "einsum")


def test_einsum_with_a_diagonal_stays():
    check(einsum_src("ii,ij->j"), "einsum", lowered=False, triton=False)


def test_einsum_batched_lowers_to_matmul():
    d = check(einsum_src("abe,aecd->abcd"), "einsum", triton=False)
    assert "matmul" in ops(d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_einsum_random_equations(data):
    letters = "abcde"
    sa = "".join(data.draw(st.permutations(letters))[:data.draw(st.integers(1, 4))])
    sb = "".join(data.draw(st.permutations(letters))[:data.draw(st.integers(1, 4))])
    union = sorted(set(sa) | set(sb))
    keep = data.draw(st.lists(st.sampled_from(union), unique=True, max_size=len(union)))
    sizes = {c: str(data.draw(st.integers(1, 3))) for c in letters}
    sizes["a"] = "B"
    check(einsum_src(f"{sa},{sb}->{''.join(keep)}", sizes), "einsum", triton=False)


# ---- global_avg_pool / pools ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["f32[B, 3, 5]", "f32[B, 4, 3, 5]", "f32[B, 2, 3, 2, 2]"])
def test_global_avg_pool_lowered(shape):
    check(model("output y = global_avg_pool(x)", {"x": shape}), "global_avg_pool")


@pytest.mark.parametrize("op", ["avg_pool2d", "max_pool2d"])
@pytest.mark.parametrize("kernel,shape", [("2", "f32[B, 3, 8, 6]"), ("[2, 3]", "f32[B, 2, 4, 9]"), ("[1, 4]", "f32[2, 2, 3, 8]")])
def test_pool_with_stride_equal_to_kernel_lowered(op, kernel, shape):
    check(model(f"output y = {op}(x, {kernel})", {"x": shape}), op)


@pytest.mark.parametrize("op", ["avg_pool2d", "max_pool2d"])
@pytest.mark.parametrize("call", ["{op}(x, 3, stride=2, padding=1)", "{op}(x, 2)", "{op}(x, 3, stride=1, padding=1)",
                                  "{op}(x, [3, 2], stride=[1, 2], padding=[1, 0])", "{op}(x, 4, stride=3, padding=2)"])
def test_pool_windows_lowered(op, call):
    # overlapping windows, padding, a dim the kernel does not divide (7): padded strided slices
    check(model("output y = " + call.format(op=op) + " + 0.0", {"x": "f32[B, 2, 7, 7]"}), op)


def test_max_pool_padding_never_wins():
    # all-negative input: replicated edges must not beat -inf padding (they equal an element in the window)
    src = model("output y = max_pool2d(0.0 - exp(x), 3, stride=2, padding=1)", {"x": "f32[2, 2, 6, 5]"})
    check(src, "max_pool2d")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["avg_pool2d", "max_pool2d"]), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(4, 8), st.integers(4, 8))
def test_pool_random_windows(op, k, sh, sw, p, h, w):
    p = min(p, k // 2)
    src = model(f"output y = {op}(x, [{k}, 2], stride=[{sh}, {sw}], padding=[{p}, 1])", {"x": f"f32[2, 3, {h}, {w}]"})
    check(src, op, triton=False)


# ---- normalizations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,groups,affine,eps", [
    ("f32[B, 8, 5, 5]", 2, True, 1e-5), ("f32[B, 6, 7]", 3, False, 1e-6), ("f32[B, 4, 3, 2, 2]", 4, True, 1e-5),
    ("f32[B, 4, 3]", 1, True, 1e-3), ("f32[2, 6, T]", 2, True, 1e-5)])
def test_groupnorm_lowered(shape, groups, affine, eps):
    c = shape.split(",")[1].strip()
    inputs = {"x": shape, "w": f"f32[{c}]", "b": f"f32[{c}]"}
    args = "x, w, b" if affine else "x"
    check(model(f"output y = groupnorm({args}, groups={groups}, eps={eps})", inputs), "groupnorm")


def test_batchnorm_with_batch_statistics_lowered():
    src = model("""
        m = mean(x, [0, 2, 3])
        v = var(x, [0, 2, 3])
        output y = batchnorm(x, m, v, w, b, eps=1e-3)
        output z = batchnorm(relu(x), m, v)
        """, {"x": "f32[B, 4, 3, 5]", "w": "f32[4]", "b": "f32[4]"})
    check(src, "batchnorm")


def test_batchnorm_with_sliced_running_statistics_lowered():
    src = model("""
        output y = batchnorm(x, rm[0:3], rv[0:3], w[0:3], b[0:3])
        """, {"x": "f32[B, 3, 4]", "rm": "f32[5]", "rv": "f32[5]", "w": "f32[5]", "b": "f32[5]"})
    check(src.replace("input rv: f32[5]", "input rv0: f32[5]").replace("rv[0:3]", "exp(rv0)[0:3]"), "batchnorm")


def test_inference_batchnorm_affine_is_hoisted():
    d = decompose(parse_graph(textwrap.dedent("""
        graph m(%x: f32[B, 2, 3], %m: f32[2], %v: f32[2]) {
          %0 = relu(%x) : f32[B, 2, 3]
          %1 = batchnorm(%0, %m, %v, _, _) {eps=1e-05} : f32[B, 2, 3]
          return y=%1
        }""")))
    verify(d)
    # the per-channel scale (parameter-only) comes before the per-element work
    order = [n.op for n in d.nodes]
    assert order.index("rsqrt") < order.index("relu") < order.index("sub")


# ---- matmul ------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [("f32[5]", "f32[5, 3]"), ("f32[B, 2, 5]", "f32[5]"), ("f32[5]", "f32[B, 5, 3]"),
                                 ("f32[5]", "f32[5]"), ("f32[4, 5]", "f32[5]")])
def test_matmul_with_a_vector_lowered(a, b):
    g = load_source(model("output y = a @ b", {"a": a, "b": b}), "<mm>").graph
    d = check(model("output y = a @ b", {"a": a, "b": b}), "matmul", lowered=False, kernel=True)
    # matmul stays, but only with operands of rank >= 2 (the kind the matmul kernel takes)
    assert all(v.type.rank >= 2 for n in d.nodes if n.op == "matmul" for v in n.inputs)
    assert len(d.nodes) > len(g.nodes)


def test_integer_matmul_stays():
    d = check(model("output y = a @ b", {"a": "i32[5]", "b": "i32[5, 3]"}), "matmul", lowered=False, triton=False)
    assert [n.op for n in d.nodes] == ["matmul"]


# ---- prod ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,shape", [("prod(x, axis=2)", "f32[B, 3, 2]"), ("prod(x, axis=[0, 2], keepdims=true)", "f32[2, B, 3]"),
                                        ("prod(x, axis=-1)", "f32[B, 4]")])
def test_prod_over_small_axes_lowered(call, shape):
    check(model(f"output y = {call}", {"x": shape}), "prod")


def test_prod_over_a_symbolic_axis_stays():
    check(model("output y = prod(x, axis=0)", {"x": "f32[B, 3]"}), "prod", lowered=False, triton=False)


# ---- IR text in, IR text out; every model ------------------------------------------------------------
def test_global_avg_pool_ir_conv1d_stays():
    """conv1d has a Triton template of its own (backends/triton/conv_codegen.py): it is not rewritten."""
    d = decompose(parse_graph(textwrap.dedent("""
        graph m(%x: f32[B, 4, T], %w: f32[6, 2, 3]) {
          %0 = conv1d(%x, %w, _) {stride=[2], padding=[1], dilation=[1], groups=2} : f32[B, 6, floor(T/2 - 1/2) + 1]
          %1 = global_avg_pool(%0) : f32[B, 6]
          return y=%1
        }""")))
    verify(d)
    assert print_graph(d) == print_graph(parse_graph(textwrap.dedent("""
        graph m(%x: f32[B, 4, T], %w: f32[6, 2, 3]) {
          %0 = conv1d(%x, %w, _) {stride=[2], padding=[1], dilation=[1], groups=2} : f32[B, 6, floor(T/2 - 1/2) + 1]
          %1 = mean(%0) {axis=[2], keepdims=false} : f32[B, 6]
          return y=%1
        }""")))


@pytest.mark.parametrize("path", model_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_model_keeps_semantics(path):
    from pnet.passes.manager import run_passes
    graph = run_passes(load_file(path, overrides=small_config(path)).graph)
    d = decompose(graph)
    verify(d)
    assert print_graph(decompose(d)) == print_graph(d), "decompose is not idempotent"
    if print_graph(d) == print_graph(graph):
        return
    inputs, params = numpy_ref.random_inputs(graph, 0), numpy_ref.init_params(graph, 0)
    ref32 = numpy_ref.run(graph, inputs, params)
    assert_outputs_close(numpy_ref.run(d, inputs, params), ref32, numpy_ref.run(graph, inputs, params, float64=True))
