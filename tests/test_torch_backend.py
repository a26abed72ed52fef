"""The torch backend (backends/torch_backend.py) and the source writer (backends/torch_source.py).

- every model under examples/ and stdlib/: the module's f32 outputs against the NumPy reference with the one
  tolerance rule, and the generated source (imported in a subprocess whose path has no pnet) likewise;
- every op of the registry, as a one-node graph: forward against the reference (f32, and f16/bf16 with their
  looser bound), the generated source, and the gradient against central differences of the float64 reference;
- state_dict keys, symbolic dims, dtypes, weight files (all-or-nothing, one-line errors), torch.compile, API.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT, model_files, small_config  # noqa: E402

from pnet.backends import numpy_ref  # noqa: E402
from pnet.backends.torch_backend import TORCH_DTYPES, load_state, save_state, state_arrays, to_module  # noqa: E402
from pnet.backends.torch_source import TEMPLATES, to_source, untemplated_ops  # noqa: E402
from pnet.dsl.compile import load_file, load_source  # noqa: E402
from pnet.errors import PnetError, UsageError  # noqa: E402
from pnet.ir.graph import Graph, Value  # noqa: E402
from pnet.ir.registry import REQUIRED, all_ops, get  # noqa: E402
from pnet.ir.types import DTYPES, TensorType, is_float  # noqa: E402
from pnet.testing.tolerance import assert_outputs_close  # noqa: E402
from pnet.weights import save_params  # noqa: E402

MAX_PARAMS = 2_000_000  # bigger default configs are skipped (stdlib files should carry a small `# test:` config)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (tests/conftest.py)


def numpy_out(outputs: dict) -> dict:
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy() for k, v in outputs.items()}


def references(graph, inputs, params):
    return numpy_ref.run(graph, inputs, params), numpy_ref.run(graph, inputs, params, float64=True)


# ---- every model ---------------------------------------------------------------------------------------
MODEL_RE = re.compile(r"^\s*model\s+(\w+)\s*\(", re.M)


def _models():
    out = []
    for path in model_files():
        for name in MODEL_RE.findall(path.read_text()):
            out.append(pytest.param(path, name, id=f"{path.relative_to(ROOT)}::{name}"))
    return out


MODELS = _models()
_graphs: dict = {}
_refs: dict = {}


def model_graph(path, name):
    if (path, name) not in _graphs:
        _graphs[path, name] = load_file(path, name, small_config(path)).graph
    return _graphs[path, name]


def model_case(path, name):
    """(graph, inputs, params, ref32, ref64) for a model, computed once for the module and the source tests."""
    if (path, name) not in _refs:
        g = model_graph(path, name)
        inputs, params = numpy_ref.random_inputs(g, seed=1), numpy_ref.init_params(g, seed=0)
        _refs[path, name] = (g, inputs, params) + references(g, inputs, params)
    return _refs[path, name]


def _skip_big(graph):
    n = graph.param_count()
    if n > MAX_PARAMS:
        reason = f"{graph.name}: {n} parameters in its default config (> {MAX_PARAMS}); give the file a small `# test:` config"
        print(reason)
        pytest.skip(reason)


def test_models_found():
    assert len(MODELS) >= 5, "expected the examples and stdlib models"


@pytest.mark.parametrize("path, name", MODELS)
def test_model_matches_reference(path, name):
    _skip_big(model_graph(path, name))
    g, inputs, params, ref32, ref64 = model_case(path, name)
    module = to_module(g)  # seed 0: the same parameters as init_params(g, 0)
    assert_outputs_close(numpy_out(module(**inputs)), ref32, ref64)
    assert sorted(module.state_dict()) == sorted(p.name for p in g.params)  # torch orders by container


# ---- one-node graphs for every op ----------------------------------------------------------------------
class Spec:
    """A typed random input: dtype, shape, and how to fill it."""

    def __init__(self, dtype, shape, fill="normal", high=None):
        self.dtype, self.shape, self.fill, self.high = dtype, tuple(shape), fill, high

    def array(self, rng):
        if self.dtype == "c64":   # complex (ir/ops/fft.py): normal real and imaginary parts
            return (rng.standard_normal(self.shape) + 1j * rng.standard_normal(self.shape)).astype(np.complex64)
        if self.dtype == "bool":
            return rng.random(self.shape) < 0.5
        if not is_float(self.dtype):
            low = 1 if self.fill == "positive" else (-3 if self.high is None else 0)
            return rng.integers(low, self.high or 4, self.shape).astype(DTYPES[self.dtype])
        if self.fill == "positive":
            return rng.uniform(0.5, 2.0, self.shape).astype(np.float32)
        if self.fill == "unit":   # inside (-1, 1): erfinv's domain
            return rng.uniform(-0.9, 0.9, self.shape).astype(np.float32)
        if self.fill == "spd":   # symmetric positive definite, eigenvalues well apart (eigh's gradient divides by gaps)
            n = self.shape[-1]
            a = rng.standard_normal(self.shape) * 0.3
            return (a @ np.swapaxes(a, -1, -2) + np.diag(np.arange(1.0, n + 1) * 2)).astype(np.float32)
        return rng.standard_normal(self.shape).astype(np.float32)


def F(*shape):
    return Spec("f32", shape)


def P(*shape):
    return Spec("f32", shape, "positive")


def SPD(*shape):
    return Spec("f32", shape, "spd")


def I(high, *shape, dtype="i64"):  # noqa: E743 - an index tensor in [0, high)
    return Spec(dtype, shape, high=high)


def Bo(*shape):
    return Spec("bool", shape)


def case(*inputs, **attrs):
    return (list(inputs), attrs)


X = F(2, 3, 4)
CASES = {
    "add": [case(F(2, 3, 4), F(3, 4)), case(I(None, 2, 3, dtype="i32"), I(None, 3, dtype="i32"))],
    "div": [case(X, P(3, 4)), case(I(None, 2, 3), Spec("i64", (2, 3), "positive"))],
    "pow": [case(P(2, 3, 4), F(3, 4))],
    "mod": [case(X, P(2, 3, 4))],
    "logical_and": [case(Bo(2, 3), Bo(3))], "logical_or": [case(Bo(2, 3), Bo(2, 3))], "logical_not": [case(Bo(2, 3))],
    "where": [case(Bo(2, 3, 4), X, F(4))],
    **{op: [case(P(2, 3, 4))] for op in ("log", "sqrt", "rsqrt", "reciprocal")},
    "abs": [case(X), case(I(None, 5, dtype="i32"))],
    "clamp": [case(X, min=-0.5, max=0.5), case(X, min=0.1)],
    "scale": [case(X, factor=2.5)],
    "gelu": [case(X), case(X, approximate="tanh")],
    "cast": [case(X, dtype="i64"), case(X, dtype="f16"), case(I(None, 3, 2), dtype="f32"), case(X, dtype="bool")],
    "const": [case(value=1.5, shape=[2, 3]), case(value=[1.0, 2.0, 3.0], shape=[2, 3], dtype="f32")],
    "arange": [case(n=5)],
    **{op: [case(X, axis=[1]), case(X, axis=[0, 2], keepdims=True), case(X)]
       for op in ("sum", "mean", "max", "min", "logsumexp")},
    "prod": [case(P(2, 3, 4), axis=[1]), case(P(2, 3, 4), axis=[0, 2])],
    "var": [case(X, axis=[1], correction=1)], "std": [case(X, axis=[2], keepdims=True)],
    "argmax": [case(X, axis=1)], "argmin": [case(X, axis=-1, keepdims=True)], "cumsum": [case(X, axis=1)],
    "matmul": [case(F(2, 3, 4), F(4, 5)), case(F(4), F(4, 3))],
    "einsum": [case(F(2, 3, 4), F(4, 5), equation="bij,jk->bik")],
    "reshape": [case(X, shape=[6, 4]), case(X, shape=[-1, 2])],
    "transpose": [case(X, perm=[2, 0, 1]), case(X)],
    "expand_dims": [case(X, axis=1)], "squeeze": [case(F(2, 1, 4), axis=[1])],
    "concat": [case(F(2, 3), F(2, 5), axis=1)],
    "split": [case(X, sizes=[1, 2], axis=1), case(F(4, 2), sizes=2)],
    "slice": [case(X, slices=[[0, 2, 1], [1, 3, 1]]), case(F(5, 4), slices=[[0, 5, 2]])],
    "pad": [case(X, pads=[[1, 2]], value=0.5), case(X, pads=[[1, 1], [2, 0]], mode="reflect"),
            case(X, pads=[[1, 1]], mode="replicate"), case(X, pads=[[1, 2], [0, 1]], mode="circular")],
    "broadcast_to": [case(F(3, 1), shape=[2, 3, 4])],
    "repeat": [case(X, repeats=2, axis=1)], "tile": [case(X, reps=[1, 2, 1])],
    "flip": [case(X, axis=[0, 2])], "roll": [case(X, shift=1, axis=1)],
    "conv1d": [case(F(2, 4, 7), F(6, 2, 3), F(6), stride=2, padding=1, groups=2)],
    "conv2d": [case(F(2, 3, 6, 6), F(4, 3, 3, 3), F(4), padding=1), case(F(1, 2, 5, 5), F(3, 2, 2, 2), None, dilation=2)],
    "conv3d": [case(F(1, 2, 4, 4, 4), F(3, 2, 2, 2, 2), F(3))],
    "conv_transpose2d": [case(F(2, 4, 3, 3), F(4, 3, 3, 3), F(3), stride=2, padding=1, output_padding=1)],
    "softmax": [case(X, axis=1)], "log_softmax": [case(X)],
    "layernorm": [case(X, F(4), F(4)), case(X, F(3, 4), None, axis=[1, 2])],
    "rmsnorm": [case(X, F(4)), case(X, None)],
    "batchnorm": [case(F(2, 3, 4, 4), F(3), P(3), F(3), F(3))],
    "groupnorm": [case(F(2, 4, 3), F(4), F(4), groups=2)],
    "max_pool1d": [case(F(2, 3, 8), kernel=2)], "avg_pool1d": [case(F(2, 3, 8), kernel=3, stride=1, padding=1)],
    "max_pool2d": [case(F(2, 3, 6, 6), kernel=2)], "avg_pool2d": [case(F(2, 3, 6, 6), kernel=3, stride=2, padding=1)],
    "global_avg_pool": [case(F(2, 3, 4, 4))],
    "sort": [case(F(2, 5), descending=True)], "topk": [case(F(2, 5), k=2), case(F(3, 4), k=2, axis=0, largest=False)],
    "take": [case(F(5, 3), I(5, 2, 4)), case(F(3, 5), I(5, 4), axis=1)],
    "embedding": [case(F(6, 3), I(6, 2, 4))],
    "gather": [case(F(3, 4), I(4, 3, 2), axis=1)],
    "scatter_add": [case(F(5, 3), I(5, 2, 3), F(2, 3))],
    **{op: [case(F(6, 3), I(4, 6), num_segments=4)] for op in ("segment_sum", "segment_mean", "segment_max")},
    "one_hot": [case(I(5, 2, 3), depth=5)],
    "sdpa": [case(F(2, 2, 4, 8), F(2, 2, 5, 8), F(2, 2, 5, 8)), case(F(2, 4, 8), F(2, 4, 8), F(2, 4, 8), causal=True),
             case(F(2, 2, 4, 8), F(1, 2, 5, 8), F(2, 1, 5, 8), Bo(4, 5), scale=0.5)],
    # attention's backward (what sdpa's gradient rule emits): q, k, v, o, do (o need not be the forward's here)
    "sdpa_grad": [case(F(2, 2, 4, 8), F(2, 2, 5, 8), F(2, 2, 5, 6), F(2, 2, 4, 6), F(2, 2, 4, 6)),
                  case(F(2, 4, 8), F(1, 5, 8), F(2, 5, 3), F(2, 4, 3), F(2, 4, 3), Bo(4, 5), causal=True, scale=0.5)],
    # quantized ops (ir/ops/quant.py): i8 operands in [-3, 4) (I(None, ...)), u8 bytes, positive scales
    "quantize": [case(X, P(4)), case(X, P(1), I(None, 1, dtype="i32"), bits=4)],
    "dequantize": [case(I(None, 2, 3, 4, dtype="i8"), P(4))],
    "fake_quant": [case(X, P(3, 1))],
    "qmatmul": [case(I(None, 2, 3, 4, dtype="i8"), I(None, 4, 5, dtype="i8"))],
    "qconv1d": [case(I(None, 2, 4, 7, dtype="i8"), I(None, 6, 2, 3, dtype="i8"), stride=2, padding=1, groups=2)],
    "qconv2d": [case(I(None, 1, 3, 5, 5, dtype="i8"), I(None, 4, 3, 3, 3, dtype="i8"), padding=1)],
    "qconv3d": [case(I(None, 1, 2, 4, 4, 4, dtype="i8"), I(None, 3, 2, 2, 2, 2, dtype="i8"))],
    "pack_bits": [case(I(None, 2, 4, dtype="i8")), case(I(None, 2, 8, dtype="i8"), bits=1),
                  case(I(None, 4, 3, dtype="i8"), bits=2, axis=0)],
    "unpack_bits": [case(I(256, 2, 3, dtype="u8")), case(I(256, 2, 3, dtype="u8"), bits=1),
                    case(I(256, 2, 3, dtype="u8"), bits=2, axis=0)],
    # sparse weight layouts (ir/ops/sparse.py): N:M meta in [0, m), BSR block indices (any row_ptr is defined)
    "nm_matmul": [case(F(2, 3, 8), F(4, 5), I(4, 4, 5, dtype="u8"), n=2, m=4), case(F(6), F(2, 3), I(3, 2, 3, dtype="u8"), n=1, m=3)],
    "bsr_matmul": [case(F(2, 3, 8), F(3, 2, 2), I(4, 3, dtype="i32"), I(4, 4, dtype="i32")),
                   case(F(3, 4), F(5, 1, 1), I(4, 5, dtype="i32"), I(6, 3, dtype="i32"))],
    "topk_mask": [case(F(2, 5), k=2), case(F(3, 4), k=2, axis=0)],
}
CASES["sum"].append(case(I(None, 2, 3, dtype="i32"), axis=[1]))  # torch widens to i64; the module must not
CASES.update({  # issue 21 item 3: dense linear algebra (ir/ops/dense_linalg.py), on well-conditioned matrices
    "solve": [case(SPD(2, 3, 3), F(2, 3, 2))], "inv": [case(SPD(2, 3, 3))], "cholesky": [case(SPD(2, 3, 3))],
    "triangular_solve": [case(SPD(2, 3, 3), F(2, 3, 2)), case(SPD(3, 3), F(2, 3), upper=True, left=False)],
    "eigh": [case(SPD(2, 3, 3))], "qr": [case(F(2, 4, 3))], "slogdet": [case(SPD(2, 3, 3))],
    "matrix_exp": [case(F(2, 3, 3))],
})
CASES.update({op: [case(Spec("f32", (2, 3, 4), "unit"))] for op in ("erfinv", "asin", "acos", "log1p")})
CASES["xlogy"] = [case(F(2, 3, 4), P(3, 4))]
CASES.update({op: [case(P(2, 3, 4))] for op in ("lgamma", "digamma")})   # away from the poles at 0, -1, ...
CASES.update({  # issue 21 item 2: Philox samplers (ir/ops/random.py), keyed explicitly (no call site here)
    "rand_uniform": [case(shape=[3, 4], key=7, seed=1)], "rand_normal": [case(shape=[2, 5], key=8, seed=1)],
    "randint": [case(low=-2, high=5, shape=[4, 3], key=9)], "gumbel": [case(shape=[3, 3], key=10)],
    "bernoulli": [case(P(3, 4), key=11)], "dropout": [case(X, p=0.25, training=True, key=12), case(X)],
})
CASES.update({  # issue 21 item 5: resampling and pooling (ir/ops/resample.py)
    "interpolate": [case(F(2, 3, 4, 5), size=[6, 3], mode="bilinear"), case(F(1, 2, 3, 4), scale_factor=2.0, mode="bicubic",
                    align_corners=True), case(F(2, 3, 5), size=7)],
    "grid_sample": [case(F(2, 3, 4, 5), F(2, 3, 2, 2)), case(F(1, 2, 3, 3), F(1, 2, 4, 2), mode="nearest", padding_mode="border")],
    "max_pool3d": [case(F(1, 2, 4, 4, 4), kernel=2)], "avg_pool3d": [case(F(1, 2, 4, 5, 4), kernel=3, stride=2, padding=1)],
    **{f"adaptive_{k}_pool{n}d": [case(F(2, 3, *[5, 4, 3][:n]), output_size=[3, 2, 2][:n])] for k in ("avg", "max") for n in (1, 2, 3)},
})


CASES.update({  # issue 21 item 4: complex values and FFTs (ir/ops/fft.py); C: a c64 input
    "complex": [case(F(2, 3, 4), F(3, 4))], "real": [case(Spec("c64", (2, 3, 4)))], "imag": [case(Spec("c64", (2, 3, 4)))],
    "conj": [case(Spec("c64", (2, 3, 4)))], "angle": [case(Spec("c64", (2, 3, 4)))],
    "fft": [case(X), case(Spec("c64", (2, 3, 4)), axis=1, norm="ortho")], "ifft": [case(Spec("c64", (2, 3, 4)), norm="forward")],
    "rfft": [case(X), case(F(2, 5, 3), axis=1, norm="ortho")],
    "irfft": [case(Spec("c64", (2, 3, 3))), case(Spec("c64", (2, 3, 4)), n=5, axis=-1, norm="ortho")],
    "fft2": [case(X)], "ifft2": [case(Spec("c64", (2, 3, 4)), axes=[0, 2])], "rfft2": [case(F(2, 3, 5))],
    "irfft2": [case(Spec("c64", (2, 3, 3)), n=5), case(Spec("c64", (2, 3, 4)), axes=[2, 1], norm="forward")],
})
CASES["abs"].append(case(Spec("c64", (2, 3, 4))))   # |z|, a real tensor


def op_cases(name):
    """The op's listed cases, or the generic one: a float [2, 3, 4] for every input (ops with no required attrs)."""
    if name in CASES:
        return CASES[name]
    op = get(name)
    if any(v is REQUIRED for v in op.attrs.values()) or op.variadic or any(k == "?" for _, k in op.inputs):
        return None
    return [case(*[X if k == "" else None for _, k in op.inputs])]


OPS = sorted(n for n, op in all_ops().items() if op.kind != "control")
OP_CASES = [pytest.param(n, i, id=f"{n}-{i}") for n in OPS for i in range(len(op_cases(n) or [None]))]


def one_node(name, i):
    """(graph, inputs) for case i of op `name`: one node whose inputs are graph inputs."""
    cases = op_cases(name)
    if cases is None:
        pytest.fail(f"op '{name}' needs a case in CASES of {__file__} (it has required attributes or odd inputs)")
    specs, attrs = cases[i]
    op = get(name)
    if not op.variadic:  # omitted trailing optional inputs are None, as the elaborator leaves them
        specs = specs + [None] * (len(op.inputs) - len(specs))
    g = Graph(f"op_{name}")
    values = []
    for j, s in enumerate(specs):
        if s is None:
            values.append(None)
            continue
        v = Value(TensorType(s.dtype, s.shape))
        g.inputs.append((f"in{j}", v))
        values.append(v)
    bound = op.bind_attrs(dict(attrs))
    types = op.infer_types([v.type if v is not None else None for v in values], bound)
    node = g.add(name, values, bound, types)
    g.outputs = [(f"out{j}", v) for j, v in enumerate(node.outputs)]
    rng = np.random.default_rng([7, OPS.index(name), i])
    inputs = {f"in{j}": s.array(rng) for j, s in enumerate(specs) if s is not None}
    return g, inputs


def test_every_op_is_tested():
    missing = [n for n in OPS if op_cases(n) is None]
    assert not missing, f"ops without a case in CASES: {missing}"


@pytest.mark.parametrize("name, i", OP_CASES)
def test_op_forward(name, i):
    g, inputs = one_node(name, i)
    ref32, ref64 = references(g, inputs, {})
    got = to_module(g)(**inputs)
    for (n, v) in g.outputs:  # the declared dtypes, exactly
        assert got[n].dtype == TORCH_DTYPES[v.type.dtype], (n, got[n].dtype, v.type)
    assert_outputs_close(numpy_out(got), ref32, ref64)


# zero almost everywhere: checked all the same (bernoulli: a step in p at each sample's threshold)
NOT_DIFFERENTIABLE = {"floor", "round", "sign", "heaviside", "bernoulli"}
# quantization-aware training's straight-through estimators: their gradient is by definition not the derivative
# (tests/test_quantize.py checks it is the identity inside the range and zero where values saturate); and the ops
# that steer gradients on purpose (tests/test_autodiff.py checks stop_gradient and straight_through)
STRAIGHT_THROUGH = {"fake_quant", "sign_quant", "stop_gradient", "straight_through"}


def _cases_where(applies) -> list:
    """The op cases a test applies to, chosen at collection (an integer-only op has no gradient to check)."""
    out = []
    for case in OP_CASES:
        name, i = case.values
        if op_cases(name) is not None and applies(name, *one_node(name, i)):
            out.append(case)
    return out


def _float_out(name, g, inputs):   # (a cast's low-precision form is its own dtype attribute)
    return name != "cast" and any(is_float(v.type.dtype) for _, v in g.outputs)


def _differentiable(name, g, inputs):
    return name not in STRAIGHT_THROUGH and any(is_float(v.type.dtype) for _, v in g.inputs) \
        and any(is_float(v.type.dtype) for _, v in g.outputs)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("name, i", _cases_where(_float_out))
def test_op_low_precision(name, i, dtype):
    g, inputs = one_node(name, i)
    ref32, ref64 = references(g, inputs, {})
    got = numpy_out(to_module(g, dtype)(**inputs))
    assert_outputs_close(got, ref32, ref64, dtype)


@pytest.mark.parametrize("name, i", _cases_where(_differentiable))
def test_op_gradient(name, i):
    """Autograd through the lowering against central differences of the float64 reference."""
    g, inputs = one_node(name, i)
    float_in = [n for n, v in g.inputs if is_float(v.type.dtype)]
    float_out = [n for n, v in g.outputs if is_float(v.type.dtype)]
    rng = np.random.default_rng(3)
    weights = {n: rng.standard_normal(numpy_ref.run(g, inputs, {})[n].shape) for n in float_out}
    direction = {n: rng.standard_normal(inputs[n].shape) for n in float_in}

    def objective(arrays):
        out = numpy_ref.run(g, arrays, {}, float64=True)
        return sum(float(np.sum(out[n] * weights[n])) for n in float_out)

    module = to_module(g, "f64")
    leaves = {n: torch.tensor(inputs[n], dtype=torch.float64, requires_grad=True) if n in float_in
              else torch.as_tensor(inputs[n]) for n in inputs}
    out = module(**leaves)
    loss = sum((out[n] * torch.as_tensor(weights[n])).sum() for n in float_out)
    if loss.requires_grad:
        loss.backward()
    else:  # a piecewise-constant op (heaviside): no graph at all, i.e. a zero gradient
        assert name in NOT_DIFFERENTIABLE, name
    analytic = sum(float((leaves[n].grad * torch.as_tensor(direction[n])).sum()) for n in float_in
                   if leaves[n].grad is not None)
    h = 1e-6
    plus = {n: (inputs[n].astype(np.float64) + h * direction[n] if n in float_in else inputs[n]) for n in inputs}
    minus = {n: (inputs[n].astype(np.float64) - h * direction[n] if n in float_in else inputs[n]) for n in inputs}
    numeric = (objective(plus) - objective(minus)) / (2 * h)
    assert abs(analytic - numeric) <= 1e-5 * (1 + abs(numeric)), (name, analytic, numeric)


# ---- generated source, imported where pnet is not --------------------------------------------------------
_RUNNER = r'''
import importlib.util, json, sys
import numpy as np, torch
torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation (and spin under load)
# pnet may be installed in this interpreter (an editable install in CI): make every import of it fail,
# so a generated module that needs pnet fails here instead of passing silently
for _name in [m for m in sys.modules if m == "pnet" or m.startswith("pnet.")]:
    del sys.modules[_name]
sys.modules["pnet"] = None
try:
    import pnet  # noqa: F401
    sys.exit("pnet is still importable: the test would prove nothing")
except ImportError:
    pass
results = {}
for name in json.load(open(sys.argv[1])):
    try:
        spec = importlib.util.spec_from_file_location(name, f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.Model()
        model.load_state_dict(torch.load(f"{name}.pt"))
        inputs = dict(np.load(f"{name}_in.npz"))
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        np.savez(f"{name}_out.npz", **{k: v.numpy() for k, v in out.items()})
        results[name] = "ok"
    except Exception as e:
        results[name] = f"{type(e).__name__}: {e}"
json.dump(results, open("results.json", "w"))
'''


def _source_cases():
    """(key, make) with make() -> (graph, inputs, ref32, ref64 or None: computed on demand)."""
    cases = []
    for p in MODELS:
        path, name = p.values
        cases.append(("model_" + re.sub(r"\W", "_", name), lambda path=path, name=name: _model_source_case(path, name)))
    for p in OP_CASES:
        name, i = p.values
        cases.append((f"op_{name}_{i}", lambda name=name, i=i: one_node(name, i) + (None, None)))
    return cases


def _model_source_case(path, name):
    g = model_graph(path, name)
    if g.param_count() > MAX_PARAMS:
        return g, None, None, None
    g, inputs, _, ref32, ref64 = model_case(path, name)
    return g, inputs, ref32, ref64


SOURCE_KEYS = [k for k, _ in _source_cases()]
SOURCE_CHUNK = 16   # cases written and run together in one clean subprocess (torch starts once a chunk)
_source_chunks: dict[int, tuple] = {}


def _source_chunk(i: int, tmp_path_factory):
    """Write chunk i's model and op graphs as source and run them all in ONE clean subprocess; cached per worker.
    The tests of a chunk share an xdist group, so `-n 2` runs each chunk once, not once per worker."""
    if i not in _source_chunks:
        d = tmp_path_factory.mktemp(f"torch_source_{i}")
        made, broken = {}, {}
        for key, make in _source_cases()[i * SOURCE_CHUNK:(i + 1) * SOURCE_CHUNK]:
            try:
                g, inputs, ref32, ref64 = make()
            except PnetError as e:  # a model that does not compile fails its own test, not every other one
                broken[key] = str(e)
                continue
            if inputs is None:  # too big
                continue
            (d / f"{key}.py").write_text(to_source(g))
            torch.save(to_module(g).state_dict(), d / f"{key}.pt")
            np.savez(d / f"{key}_in.npz", **inputs)
            made[key] = (g, inputs, ref32, ref64)
        (d / "names.json").write_text(json.dumps(sorted(made)))
        (d / "runner.py").write_text(_RUNNER)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        proc = subprocess.run([sys.executable, "-I", "runner.py", "names.json"], cwd=d, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        _source_chunks[i] = (d, made, broken, json.loads((d / "results.json").read_text()))
    return _source_chunks[i]


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.xdist_group(f"torch_source_{i // SOURCE_CHUNK}"))
                                 for i, k in enumerate(SOURCE_KEYS)])
def test_source_matches_reference(tmp_path_factory, key):
    d, made, broken, results = _source_chunk(SOURCE_KEYS.index(key) // SOURCE_CHUNK, tmp_path_factory)
    if key in broken:
        pytest.fail(f"does not compile: {broken[key]}")
    if key not in made:
        pytest.skip("too big for the default config")
    assert results[key] == "ok", results[key]
    g, inputs, ref32, ref64 = made[key]
    got = dict(np.load(d / f"{key}_out.npz"))
    if ref32 is None:
        ref32, ref64 = references(g, inputs, numpy_ref.init_params(g, 0))
    assert_outputs_close(got, ref32, ref64)


def test_source_is_readable_python():
    g = model_graph(ROOT / "examples" / "mlp.pnet", "mlp_classifier")
    src = to_source(g)
    compile(src, "mlp.py", "exec")
    imports = {m.group(1) for m in re.finditer(r"^\s*(?:import|from) (\w+)", src, re.M)}
    assert imports <= {"torch", "math"}, imports
    assert "def forward(self, x, labels):" in src


def test_source_scan_is_a_loop_over_a_method():
    g = load_source(RNN_SRC).graph
    src = to_source(g)
    assert "for t in range(T):" in src and "def _scan0(self," in src


def test_untemplated_ops_are_reported():
    missing = sorted(n for n in OPS if n not in TEMPLATES)
    print("ops written by copying their registry lowering:", ", ".join(missing))
    g = model_graph(ROOT / "examples" / "gnn.pnet", "gnn_node_classifier")
    assert untemplated_ops(g) <= set(missing)


# ---- the module's contract ------------------------------------------------------------------------------
RNN_SRC = """
import nn.core
model rnn(d: int = 3, h: int = 5) {
  input xs: f32[B, T, d]
  param h0: [h] = zeros()
  hs, hT = scan(x_t in xs along 1; s = broadcast_to(h0, [B, h])) {
    s = tanh(linear(x_t, h) as inp + linear(s, h, bias=false) as rec)
    yield s
  }
  output hs
  output y = linear(hT, 2) as head
}
"""


def test_symbolic_dims_bind_per_call():
    g = load_source(RNN_SRC).graph
    m = to_module(g)
    params = numpy_ref.init_params(g)
    for b, t in ((2, 4), (3, 1), (1, 7)):
        x = np.random.default_rng(b).standard_normal((b, t, 3)).astype(np.float32)
        out = m(x)
        assert out["hs"].shape == (b, t, 5)
        ref32, ref64 = references(g, {"xs": x}, params)
        assert_outputs_close(numpy_out(out), ref32, ref64)
    assert m.outputs_tuple(torch.zeros(2, 4, 3))[0].shape == (2, 4, 5)
    assert m.output_names == ["hs", "y"]


def test_input_errors_are_one_line():
    m = to_module(load_source(RNN_SRC).graph)
    for call, match in ((lambda: m(torch.zeros(2, 4)), "should have rank 3"),
                        (lambda: m(torch.zeros(2, 4, 7)), r"should have shape \[2, 4, 3\]"),
                        (lambda: m(), "missing input: xs"),
                        (lambda: m(torch.zeros(2, 4, 3), ys=1), "no input named 'ys'")):
        with pytest.raises(PnetError, match=match) as e:
            call()
        assert "\n" not in str(e.value)


def test_dotted_names_and_state_dict():
    g = model_graph(ROOT / "examples" / "gpt.pnet", "gpt")
    m = to_module(g)
    assert sorted(m.state_dict()) == sorted(p.name for p in g.params)
    assert any("." in p.name for p in g.params)
    fresh = numpy_ref.init_params(g, seed=0)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), fresh[k])
    assert {n for n, _ in m.named_parameters()} == {p.name for p in g.params}


def test_state_dict_keys_are_what_pnet_show_prints(capsys):
    from pnet.cli import main
    path = ROOT / "examples" / "mlp.pnet"
    assert main(["show", str(path), "--params", "--json"]) == 0
    shown = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert sorted(to_module(load_file(path).graph).state_dict()) == sorted(shown)


def test_batchnorm_running_stats_are_buffers():
    g = load_source("import nn.norm\nmodel m() { input x: f32[B, 3, 4]\n output y = batch_norm(x) }").graph
    m = to_module(g)
    assert {n: p.requires_grad for n, p in m.named_parameters()} == {"batch_norm.scale": True, "batch_norm.shift": True}
    assert {"batch_norm.running_mean", "batch_norm.running_var"} <= set(m.state_dict())


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_low_precision_model(dtype):
    g = model_graph(ROOT / "examples" / "gpt.pnet", "gpt")
    m = to_module(g, dtype)
    assert all(p.dtype == {"f16": torch.float16, "bf16": torch.bfloat16}[dtype] for p in m.parameters())
    inputs, params = numpy_ref.random_inputs(g, seed=1), numpy_ref.init_params(g)
    ref32, ref64 = references(g, inputs, params)
    assert_outputs_close(numpy_out(m(**inputs)), ref32, ref64, dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda():
    g = model_graph(ROOT / "examples" / "lstm.pnet", "lstm_lm")
    inputs, params = numpy_ref.random_inputs(g, seed=1), numpy_ref.init_params(g)
    ref32, ref64 = references(g, inputs, params)
    m = to_module(g, device="cuda")
    out = m(**{k: torch.as_tensor(v).cuda() for k, v in inputs.items()})
    assert all(v.is_cuda for v in out.values())
    assert_outputs_close(numpy_out(out), ref32, ref64)


# ---- weights ----------------------------------------------------------------------------------------------
@pytest.fixture
def mlp():
    g = model_graph(ROOT / "examples" / "mlp.pnet", "mlp_classifier")
    return g, to_module(g)


def _snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_weights_round_trip(mlp, tmp_path, suffix):
    g, m = mlp
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5)
    path = tmp_path / f"w{suffix}"
    save_state(m, path, g)
    other = to_module(g, seed=3)
    load_state(other, path, g)
    for k, v in m.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    inputs = numpy_ref.random_inputs(g)
    ref32, ref64 = references(g, inputs, state_arrays(m, g))
    assert_outputs_close(numpy_out(other(**inputs)), ref32, ref64)


def _bad_files(g, tmp_path):
    good = numpy_ref.init_params(g, seed=5)
    first = g.params[0].name
    yield "missing", {k: v for k, v in good.items() if k != first}, f"missing parameter '{first}'"
    yield "extra", {**good, "nope.w": np.zeros(2, np.float32)}, "unexpected parameter 'nope.w'"
    yield "shape", {**good, first: np.zeros((1, 2), np.float32)}, f"parameter '{first}' has shape"
    yield "dtype", {**good, first: good[first].astype(np.float64)}, f"parameter '{first}' is float64"


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_bad_weight_files(mlp, tmp_path, suffix):
    g, m = mlp
    before = _snapshot(m)
    for what, arrays, message in _bad_files(g, tmp_path):
        path = tmp_path / f"{what}{suffix}"
        save_params(path, arrays)
        with pytest.raises(UsageError, match=re.escape(message)) as e:
            load_state(m, path, g)
        assert "\n" not in str(e.value), what
    good = tmp_path / f"good{suffix}"
    save_params(good, numpy_ref.init_params(g, seed=5))
    data = good.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="not a readable") as e:
        load_state(m, tmp_path / f"cut{suffix}", g)
    assert "\n" not in str(e.value)
    after = m.state_dict()  # nothing was loaded half-way
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- torch.compile ----------------------------------------------------------------------------------------
def _compile_works() -> bool:
    try:
        import torch._dynamo  # noqa: F401
        import torch._inductor  # noqa: F401
    except Exception:
        return False
    from shutil import which
    return bool(which(os.environ.get("CXX", "g++")) or which("cc") or which("clang++"))


@pytest.mark.skipif(not _compile_works(), reason="torch.compile unavailable here (no inductor or no C++ compiler)")
def test_torch_compile():
    import torch._dynamo
    g = load_source(RNN_SRC).graph
    m = to_module(g)
    compiled = torch.compile(m, fullgraph=True)
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    ref32, ref64 = references(g, {"xs": x}, numpy_ref.init_params(g))
    assert_outputs_close(numpy_out(compiled(torch.from_numpy(x))), ref32, ref64)
    torch._dynamo.reset()


# ---- API --------------------------------------------------------------------------------------------------
def test_api_load_run_torch():
    from pnet.api import load
    m = load(ROOT / "examples" / "mlp.pnet", hidden=16, B=3)
    assert m.graph.dims["B"] == 3 and m.hyper["hidden"] == 16
    inputs = m.inputs(seed=1)
    assert inputs["x"].shape == (3, 64)
    ref = m.run(inputs)
    got = m.run(inputs, backend="torch")
    ref64 = m.run(inputs, float64=True)
    assert_outputs_close(got, ref, ref64)
    module = m.torch_module()
    assert sorted(module.state_dict()) == sorted(m.params())
    with pytest.raises(UsageError, match="backend 'jax'"):
        m.run(inputs, backend="jax")
    with pytest.raises(UsageError, match="no hyperparameter or dim named 'widht'"):
        load(ROOT / "examples" / "mlp.pnet", widht=3)
