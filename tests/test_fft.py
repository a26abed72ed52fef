"""Complex values and FFTs (ir/ops/fft.py, issue 21 item 4): each transform's reference against an explicit DFT
sum (an oracle independent of numpy.fft) and against torch.fft; the torch lowerings and the Triton backend's
counted fallbacks against the reference by the tolerance rule (complex results part by part); the complex parts,
abs, angle and complex arithmetic; gradients (torch's conjugate-Wirtinger convention) against torch.autograd and
finite differences; c64 inputs and outputs through `pnet run`; and bad input as a located one-line error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pnet

from conftest import op_ref, op_torch, op_triton
from pnet.backends import numpy_ref
from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.testing.gradcheck import check_gradients
from pnet.testing.tolerance import check_close

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

NORMS = ("backward", "ortho", "forward")


def _dft(x, axis, inverse=False, norm="backward"):
    """The DFT along `axis` as an explicit sum (float64 / complex128), numpy's sign and scaling conventions."""
    x = np.moveaxis(np.asarray(x, np.complex128), axis, -1)
    n = x.shape[-1]
    k = np.arange(n)
    w = np.exp((2j if inverse else -2j) * np.pi * np.outer(k, k) / n)
    scale = {"backward": 1 / n if inverse else 1.0, "forward": 1.0 if inverse else 1 / n, "ortho": n ** -0.5}[norm]
    return np.moveaxis(x @ w.T * scale, -1, axis)


def _irfft_oracle(c, n, axis, norm):
    """irfft as the inverse DFT of the Hermitian-completed spectrum (the imaginary parts of the bins a real signal
    holds once, 0 and n / 2, dropped), real part."""
    c = np.moveaxis(np.asarray(c, np.complex128), axis, -1)
    h = n // 2 + 1
    c = c[..., :h] if c.shape[-1] >= h else np.concatenate([c, np.zeros(c.shape[:-1] + (h - c.shape[-1],))], -1)
    full = np.zeros(c.shape[:-1] + (n,), np.complex128)
    full[..., :h] = c
    full[..., 0] = c[..., 0].real
    if n % 2 == 0:
        full[..., n // 2] = c[..., n // 2].real
    for k in range(1, (n + 1) // 2):
        full[..., n - k] = np.conj(c[..., k])
    return np.moveaxis(_dft(full, -1, True, norm).real, -1, axis)


def _cplx(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# ---- references against explicit sums and torch.fft ---------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("axis", [0, -1])
def test_transforms_match_an_explicit_dft(norm, axis):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    z = _cplx(rng, 5, 6)
    n = x.shape[axis]
    np.testing.assert_allclose(op_ref("fft", x, axis=axis, norm=norm), _dft(x, axis, norm=norm), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(op_ref("ifft", z, axis=axis, norm=norm), _dft(z, axis, True, norm), rtol=1e-5, atol=1e-5)
    half = np.take(_dft(x, axis, norm=norm), np.arange(n // 2 + 1), axis=axis)
    np.testing.assert_allclose(op_ref("rfft", x, axis=axis, norm=norm), half, rtol=1e-5, atol=1e-5)
    for m in (n, n - 1, n + 2):       # irfft's output length, its default 2 (k - 1) included
        c = np.take(z, np.arange(m // 2 + 1), axis=axis)
        got = op_ref("irfft", c, n=m, axis=axis, norm=norm)
        np.testing.assert_allclose(got, _irfft_oracle(c, m, axis, norm), rtol=1e-5, atol=1e-5)
    c = np.take(z, np.arange(3), axis=axis)
    assert op_ref("irfft", c, axis=axis).shape[axis] == 4
    two = _dft(_dft(z, 0, norm=norm), 1, norm=norm)
    np.testing.assert_allclose(op_ref("fft2", z, axes=[0, 1], norm=norm), two, rtol=1e-5, atol=1e-4)


def test_dtypes():
    """f32 -> c64 -> f32; f64 -> c128 -> f64 (the float64 reference); f16 computed in f32."""
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    assert op_ref("rfft", x).dtype == np.complex64 and op_ref("fft", x.astype(np.float64)).dtype == np.complex128
    assert op_ref("irfft", op_ref("rfft", x)).dtype == np.float32
    assert op_ref("rfft", x.astype(np.float16)).dtype == np.complex64
    z = op_ref("complex", x, x[::-1].copy())
    assert z.dtype == np.complex64 and op_ref("abs", z).dtype == np.float32 and op_ref("angle", z).dtype == np.float32
    g = load_source("model m() {\n  input z: c64[4]\n  output y = fft(z)\n  output a = abs(z)\n}\n", "m.pnet").graph
    out = numpy_ref.run(g, {"z": _cplx(np.random.default_rng(0), 4)}, {}, float64=True)
    assert out["y"].dtype == np.complex128 and out["a"].dtype == np.float64


TORCH_CASES = [
    ("fft", lambda r: (r.standard_normal((3, 8)).astype(np.float32),), {}),
    ("fft", lambda r: (_cplx(r, 3, 5),), {"axis": 0, "norm": "ortho"}),
    ("ifft", lambda r: (_cplx(r, 3, 5),), {"norm": "forward"}),
    ("rfft", lambda r: (r.standard_normal((3, 7)).astype(np.float32),), {}),
    ("rfft", lambda r: (r.standard_normal((4, 3)).astype(np.float32),), {"axis": 0, "norm": "ortho"}),
    ("irfft", lambda r: (_cplx(r, 3, 5),), {}),
    ("irfft", lambda r: (_cplx(r, 3, 5),), {"n": 9, "norm": "ortho"}),
    ("irfft", lambda r: (_cplx(r, 3, 5),), {"n": 4, "axis": 1, "norm": "forward"}),
    ("fft2", lambda r: (r.standard_normal((2, 4, 6)).astype(np.float32),), {}),
    ("ifft2", lambda r: (_cplx(r, 2, 4, 6),), {"axes": [0, 2], "norm": "ortho"}),
    ("rfft2", lambda r: (r.standard_normal((2, 4, 6)).astype(np.float32),), {"axes": [2, 1]}),
    ("irfft2", lambda r: (_cplx(r, 2, 4, 4),), {"n": 7}),
    ("complex", lambda r: (r.standard_normal((3, 4)).astype(np.float32), r.standard_normal(4).astype(np.float32)), {}),
    ("real", lambda r: (_cplx(r, 3, 4),), {}), ("imag", lambda r: (_cplx(r, 3, 4),), {}),
    ("conj", lambda r: (_cplx(r, 3, 4),), {}), ("angle", lambda r: (_cplx(r, 3, 4),), {}),
    ("abs", lambda r: (_cplx(r, 3, 4),), {}),
]
TORCH_FFT = {"fft": torch.fft.fft, "ifft": torch.fft.ifft, "rfft": torch.fft.rfft, "irfft": torch.fft.irfft,
             "fft2": torch.fft.fftn, "ifft2": torch.fft.ifftn, "rfft2": torch.fft.rfftn, "irfft2": torch.fft.irfftn}


def _refs(op, args, attrs):
    r32 = op_ref(op, *args, **attrs)
    wide = [a.astype(np.complex128 if np.iscomplexobj(a) else np.float64) for a in args]
    return r32, op_ref(op, *wide, **attrs)


@pytest.mark.parametrize("op, make, attrs", TORCH_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_torch_lowering_and_torch_fft_match_the_reference(op, make, attrs):
    args = make(np.random.default_rng(3))
    r32, r64 = _refs(op, args, attrs)
    check_close(op, op_torch(op, *args, **attrs), r32, r64)
    if op in TORCH_FFT:   # torch.fft itself, called directly: an oracle of its own
        t = torch.from_numpy(args[0].astype(np.complex128 if np.iscomplexobj(args[0]) else np.float64))
        kw = {"norm": attrs.get("norm", "backward")}
        if op.endswith("2"):
            kw["dim"] = tuple(attrs.get("axes", [-2, -1]))
            if op == "irfft2" and "n" in attrs:
                kw["s"] = (t.shape[kw["dim"][0]], attrs["n"])
        else:
            kw["dim"] = attrs.get("axis", -1)
            if "n" in attrs:
                kw["n"] = attrs["n"]
        np.testing.assert_allclose(TORCH_FFT[op](t, **kw).numpy(), r64, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op, make, attrs", TORCH_CASES[::2] + [TORCH_CASES[5], TORCH_CASES[-1]],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_triton_runs_complex_ops_as_counted_fallbacks(op, make, attrs):
    args = make(np.random.default_rng(4))
    r32, r64 = _refs(op, args, attrs)
    kinds, got = op_triton(op, *args, **attrs)
    assert kinds == ["fallback"], kinds
    check_close(op, got, r32, r64)


def test_plan_counts_every_complex_op_and_real_ops_keep_their_kernels():
    from pnet.backends import triton as triton_backend
    src = ("model m() {\n  input x: f32[2, 8]\n  param w: [5] = normal(0, 1)\n  h = relu(x) * 2.0\n"
           "  y = irfft(rfft(h) * complex(w, w), n=8)\n  output o = exp(y) + 1.0\n}\n")
    g = load_source(src, "m.pnet").graph
    compiled = triton_backend.compile(g)
    fallback_ops = sorted(n.op for k in compiled.plan.kernels if k.kind == "fallback" for n in k.nodes)
    assert fallback_ops == ["complex", "irfft", "mul", "rfft"], fallback_ops
    assert [k.kind for k in compiled.plan.kernels].count("pointwise") == 2
    x = {"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}
    params = numpy_ref.init_params(g, 0)
    got = compiled.run(x, params)
    r32 = numpy_ref.run(g, x, params)
    r64 = numpy_ref.run(g, x, params, float64=True)
    check_close("o", got["o"], r32["o"], r64["o"])


# ---- complex arithmetic and parts --------------------------------------------------------------------------------
def test_complex_arithmetic_against_numpy_and_torch():
    rng = np.random.default_rng(5)
    a, b = _cplx(rng, 3, 4), _cplx(rng, 4)
    r = rng.standard_normal(4).astype(np.float32)
    src = ("model m() {\n  input a: c64[3, 4]\n  input b: c64[4]\n  input r: f32[4]\n"
           "  output p = a * b - r\n  output q = a / b + 2.0\n  output s = -conj(a) * r\n"
           "  output t = sum(a, axis=0) + mean(a * a, axis=0)\n  output u = a @ transpose(a, [1, 0])\n"
           "  output v = concat([a[:, 1:], expand_dims(b[:3], 0)], 0)\n  output w = where(r > 0.0, a, b)\n"
           "  output x = einsum([a, b], equation=\"ij,j->i\")\n}\n")
    g = load_source(src, "m.pnet").graph
    inputs = {"a": a, "b": b, "r": r}
    got = numpy_ref.run(g, inputs, {})
    a64, b64 = a.astype(np.complex128), b.astype(np.complex128)
    want = {"p": a64 * b64 - r, "q": a64 / b64 + 2, "s": -np.conj(a64) * r, "t": a64.sum(0) + (a64 * a64).mean(0),
            "u": a64 @ a64.T, "v": np.concatenate([a64[:, 1:], b64[None, :3]], 0), "w": np.where(r > 0, a64, b64),
            "x": a64 @ b64}
    r64 = numpy_ref.run(g, inputs, {}, float64=True)
    from pnet.backends.torch_backend import to_module
    module_out = {k: v.numpy() for k, v in to_module(g)(**{k: torch.from_numpy(v) for k, v in inputs.items()}).items()}
    for k, w in want.items():
        assert got[k].dtype == np.complex64, (k, got[k].dtype)
        np.testing.assert_allclose(r64[k], w, rtol=1e-12, atol=1e-12)
        check_close(k, got[k], got[k], r64[k])
        check_close(k, module_out[k], got[k], r64[k])


def test_parts_abs_and_angle():
    z = np.array([3 + 4j, -1 + 0j, complex(-1, -0.0), 0j, 1j, np.inf + 0j, complex(np.nan, 1)], np.complex64)
    np.testing.assert_array_equal(op_ref("abs", z)[:5], [5, 1, 1, 0, 1])
    assert op_ref("abs", z)[5] == np.inf and np.isnan(op_ref("abs", z)[6])
    np.testing.assert_allclose(op_ref("angle", z)[:5], [np.arctan2(4, 3), np.pi, -np.pi, 0, np.pi / 2], rtol=1e-6)
    for op in ("abs", "angle", "real", "imag", "conj"):
        got, want = op_torch(op, z), op_ref(op, z)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-6)
    c = op_ref("complex", np.array([np.inf, 1.0], np.float32), np.array([2.0, np.nan], np.float32))
    assert c[0].real == np.inf and c[0].imag == 2 and c[1].real == 1 and np.isnan(c[1].imag)   # no NaN from inf * 1j


# ---- gradients -------------------------------------------------------------------------------------------------
GRADS = {
    "spectral filter": ("input x: f64[3, 8]\n  input w: f64[5]\n  input v: f64[5]",
                        "irfft(rfft(x) * complex(w, v), n=8)"),
    "odd length, ortho": ("input x: f64[3, 7]\n  input w: f64[4]\n  input v: f64[4]",
                          'irfft(rfft(x, norm="ortho") * complex(w, v), n=7, norm="ortho")'),
    "irfft n != input": ("input x: f64[3, 8]\n  input w: f64[5]\n  input v: f64[5]",
                         'irfft(rfft(x) * complex(w, v), n=6, norm="forward") + irfft(rfft(x), n=11)[:, :6]'),
    "axis 0": ("input x: f64[6, 3]\n  input w: f64[4, 1]\n  input v: f64[4, 1]",
               "irfft(rfft(x, axis=0) * complex(w, v), n=6, axis=0)"),
    "abs of fft": ("input x: f64[3, 8]", "abs(fft(x))"),
    "abs of ifft of complex": ("input x: f64[3, 8]\n  input w: f64[8]", 'abs(ifft(complex(x, w), norm="forward"))'),
    "angle and divide": ("input x: f64[3, 8]\n  input w: f64[8]", "angle(fft(complex(x, w)) / complex(w, x))"),
    "fft2 and parts": ("input x: f64[2, 4, 6]",
                       'real(ifft2(fft2(x) * fft2(x), norm="ortho")) + imag(conj(fft2(x, axes=[0, 2])) * fft2(x))'),
    "rfft2": ("input x: f64[2, 4, 6]\n  input w: f64[4, 4]", "irfft2(rfft2(x) * complex(w, w * 2.0), n=6)"),
    "rfft2 axes swapped": ("input x: f64[5, 4, 3]\n  input w: f64[3, 4, 1]",
                           "irfft2(rfft2(x, axes=[1, 0]) * complex(w, w * w), n=5, axes=[1, 0])"),
    "einsum mixing (FNO)": ("input x: f64[2, 3, 8]\n  input w: f64[3, 4, 5]\n  input v: f64[3, 4, 5]",
                            'irfft(einsum([rfft(x), complex(w, v)], equation="bix,iox->box"), n=8)'),
    "matmul, sum, mean, pad": ("input x: f64[3, 8]\n  input w: f64[5, 5]",
                               "abs(mean(rfft(x), axis=0) + sum(rfft(x) @ complex(w, w), axis=0))"
                               " + real(pad(rfft(x)[:, :3], [[0, 0], [1, 1]]))[0, :]"),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradients_match_torch_autograd_and_finite_differences(name):
    ins, expr = GRADS[name]
    g = load_source(f"model m() {{\n  {ins}\n  output y = {expr}\n}}\n", "m.pnet").graph
    rng = np.random.default_rng(11)
    inputs = {k: rng.standard_normal([int(d) for d in v.type.shape]) for k, v in g.inputs}
    check_gradients(g, inputs)


def test_complex_input_gets_no_gradient_but_flows_through():
    """A c64 input is not differentiated (grad of a real loss w.r.t. real values only); its path still carries the
    gradient of the real ones."""
    g = load_source("model m() {\n  input z: c64[4]\n  input x: f64[4]\n  output y = abs(z * x)\n}\n", "m.pnet").graph
    rng = np.random.default_rng(2)
    check_gradients(g, {"z": _cplx(rng, 4).astype(np.complex128), "x": rng.standard_normal(4)}, wrt=["x"])


# ---- the command line --------------------------------------------------------------------------------------------
def test_run_prints_and_saves_complex_outputs(tmp_path, capsys):
    from pnet.cli import main
    p = tmp_path / "spec.pnet"
    p.write_text("model spec() {\n  input z: c64[B, 6]\n  output s = fft(z)\n  output a = abs(z)\n}\n")
    out = tmp_path / "o.npz"
    for backend in ("numpy", "torch"):
        assert main(["run", str(p), "-b", backend, "-o", str(out)]) == 0
        text = capsys.readouterr().out
        assert "s: complex64[2, 6] mean=" in text and "j mean|z|=" in text, text
        saved = np.load(out)
        assert saved["s"].dtype == np.complex64 and saved["a"].dtype == np.float32
    assert main(["check", str(p)]) == 0
    assert "input  z: c64[B, 6]" in capsys.readouterr().out


# ---- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ("  input x: f32[8]\n  output y = relu(fft(x))\n",
     r"m.pnet:3:14: error: relu: relu is not defined on complex tensors, got c64\[8\] \(take real\(z\)"),
    ("  input x: f32[8]\n  output y = exp(rfft(x))\n", r"m.pnet:3:14: error: exp: exp is not defined on complex"),
    ("  input x: f32[8]\n  output y = softmax(fft(x), -1)\n", r"error: softmax: softmax is not defined on complex"),
    ("  input x: f32[8]\n  z = fft(x)\n  output y = z > z\n", r"m.pnet:4:14: error: gt: gt is not defined on complex"),
    ("  input x: f32[8]\n  output y = max(fft(x), axis=0)\n", r"error: max: max is not defined on complex"),
    ("  input x: f32[8]\n  output y = cast(fft(x), \"f32\")\n", r"error: cast: cast is not defined on complex"),
    ("  input z: c64[8]\n  output y = rfft(z)\n", r"m.pnet:3:14: error: rfft: rfft expects a real float tensor, got c64\[8\]"),
    ("  input x: f32[8]\n  output y = irfft(x)\n", r"error: irfft: irfft expects a complex tensor \(c64\), got f32\[8\]"),
    ("  input x: f32[8]\n  output y = real(x)\n", r"error: real: real expects a complex tensor \(c64\), got f32\[8\]"),
    ("  input x: i32[8]\n  output y = complex(x, x)\n", r"error: complex: complex\(re, im\) expects real float tensors"),
    ("  input x: f32[8]\n  output y = fft(x, norm=\"none\")\n", r"error: fft: norm must be one of 'backward', 'ortho', 'forward'"),
    ("  input x: f32[8]\n  output y = fft(x, axis=2)\n", r"m.pnet:3:14: error: fft: axis 2 out of range for a rank-1 tensor"),
    ("  input x: f32[8, 4]\n  output y = fft2(x, axes=[1, 1])\n", r"error: fft2: axes \[1, 1\] name one axis twice"),
    ("  input x: f32[8]\n  output y = irfft(rfft(x), n=0)\n", r"error: irfft: n must be a positive integer, got 0"),
    ("  input x: f32[8]\n  output y = irfft(rfft(x)[:1])\n", r"error: irfft: .* gives 0 output points"),
])
def test_bad_input_is_a_located_one_line_error(body, message):
    with pytest.raises(PnetError, match=message) as e:
        load_source("model m() {\n" + body + "}\n", "m.pnet")
    assert "\n" not in str(e.value).strip()


# ---- the stdlib's spectral convolutions (stdlib/nn/spectral.pnet) ------------------------------------------------
def test_spectral_convs_match_the_fno_formula_and_differentiate():
    """spectral_conv1d / 2d against the reference implementation's formula written in NumPy (rfft, the kept corner
    modes times complex weights, irfft), and the gradients of a small FNO through every param."""
    src = ('import nn.spectral\nmodel m() {\n  input x: f64[2, 3, 10]\n  input v: f64[1, 2, 6, 8]\n'
           '  output y = spectral_conv1d(x, 4, 3) as s1\n  output y2 = spectral_conv2d(v, 3, 2, 3) as s2\n}\n')
    g = load_source(src, "m.pnet").graph
    rng = np.random.default_rng(8)
    inputs = {"x": rng.standard_normal((2, 3, 10)), "v": rng.standard_normal((1, 2, 6, 8))}
    params = {k: v.astype(np.float64) for k, v in numpy_ref.init_params(g, 0).items()}
    out = numpy_ref.run(g, inputs, params, float64=True)
    w = params["s1.w_re"] + 1j * params["s1.w_im"]
    X = np.fft.rfft(inputs["x"], axis=-1)
    Y = np.zeros((2, 4, 6), complex)
    Y[..., :3] = np.einsum("bix,iox->box", X[..., :3], w)
    np.testing.assert_allclose(out["y"], np.fft.irfft(Y, n=10, axis=-1), rtol=1e-12, atol=1e-12)
    X2 = np.fft.rfft2(inputs["v"])
    Y2 = np.zeros((1, 3, 6, 5), complex)
    for rows, k in ((slice(0, 2), "w1"), (slice(4, 6), "w2")):
        wk = params[f"s2.{k}_re"] + 1j * params[f"s2.{k}_im"]
        Y2[:, :, rows, :3] = np.einsum("bixy,ioxy->boxy", X2[:, :, rows, :3], wk)
    np.testing.assert_allclose(out["y2"], np.fft.irfft2(Y2, s=(6, 8)), rtol=1e-12, atol=1e-12)
    check_gradients(g, inputs, params)


def test_fno_demo_on_every_backend():
    from pnet.backends import triton as triton_backend
    from pnet.backends.torch_backend import to_module
    from pnet.dsl.compile import load_file
    g = load_file(Path(pnet.__file__).parent / "stdlib" / "nn" / "spectral.pnet").graph
    rng = np.random.default_rng(1)
    inputs = {"u": rng.standard_normal((2, 2, 16)).astype(np.float32),
              "v": rng.standard_normal((2, 2, 8, 8)).astype(np.float32)}
    params = numpy_ref.init_params(g, 0)
    r32, r64 = numpy_ref.run(g, inputs, params), numpy_ref.run(g, inputs, params, float64=True)
    module = to_module(g)
    state = module.state_dict()
    with torch.no_grad():
        for k, v in params.items():
            state[k].copy_(torch.from_numpy(v))
    got = {k: t.detach().numpy() for k, t in module(**{k: torch.from_numpy(v) for k, v in inputs.items()}).items()}
    tri = triton_backend.compile(g).run(inputs, params)
    for k in ("y", "y2"):
        check_close(k, got[k], r32[k], r64[k])
        check_close(k, tri[k], r32[k], r64[k])


def test_a_transformed_axis_bound_to_0_is_the_same_located_error_on_every_backend():
    from pnet.backends import triton as triton_backend
    from pnet.backends.torch_backend import to_module
    g = load_source("model m() {\n  input x: f32[B, N]\n  output y = abs(fft(x))\n}\n", "m.pnet").graph
    x = {"x": np.zeros((2, 0), np.float32)}
    runs = {"numpy": lambda: numpy_ref.run(g, x, {}), "torch": lambda: to_module(g)(x=torch.from_numpy(x["x"])),
            "triton": lambda: triton_backend.compile(g).run(x, {})}
    for name, run in runs.items():
        with pytest.raises(PnetError, match=r"m.pnet:3:18: error: fft: axis 1 of f32\[2, 0\] has length 0"):
            run()


def test_an_empty_batch_gives_empty_results_on_every_backend():
    """A dim bound to 0 off the transformed axes: empty results, as numpy (torch's MKL transforms refuse one)."""
    from pnet.backends import triton as triton_backend
    from pnet.backends.torch_backend import to_module
    src = ("model m() {\n  input x: f32[B, 4, 6]\n  output y = irfft2(rfft2(x) * complex(1.0, 0.5), n=6)\n"
           "  output a = abs(fft(x, axis=1))\n}\n")
    g = load_source(src, "m.pnet").graph
    x = {"x": np.zeros((0, 4, 6), np.float32)}
    for got in (numpy_ref.run(g, x, {}), {k: v.numpy() for k, v in to_module(g)(x=torch.from_numpy(x["x"])).items()},
                triton_backend.compile(g).run(x, {})):
        assert got["y"].shape == (0, 4, 6) and got["a"].shape == (0, 4, 6)
        assert got["y"].dtype == np.float32 and got["a"].dtype == np.float32
