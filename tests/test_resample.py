"""Resampling and pooling (ir/ops/resample.py, resample_grad.py): interpolate, grid_sample, max_pool3d /
avg_pool3d, adaptive average / max pools. The oracle is torch's own functional (F.interpolate, F.grid_sample,
F.*_pool*) in float64 plus hand-computed values; the torch lowering and the Triton backend (a counted torch
fallback) agree with the reference; gradients match torch.autograd and finite differences; bad calls are one-line
located errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from pnet.dsl.compile import load_source
from pnet.errors import PnetError
from pnet.testing.gradcheck import check_gradients

from conftest import op_ref, op_torch, op_triton

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RNG = np.random.default_rng(21)
MODES = [("nearest", 1), ("nearest", 2), ("nearest", 3), ("linear", 1), ("bilinear", 2), ("bicubic", 2),
         ("trilinear", 3)]


def _t(a):
    return torch.from_numpy(np.asarray(a))


# ---- interpolate -----------------------------------------------------------------------------------------------
def _interp_cases():
    rng = np.random.default_rng(5)
    cases = []
    for mode, nd in MODES:
        for ac in ([False] if mode == "nearest" else [False, True]):
            for trial in range(4):
                ins = [int(v) for v in rng.integers(1, 6, nd)]
                if trial % 2:
                    kw = {"size": [int(v) for v in rng.integers(1, 9, nd)]}
                else:
                    sf = [float(rng.choice([0.5, 0.75, 1.5, 2.0, 3.0])) for _ in range(nd)]
                    if any(math.floor(n * s) < 1 for n, s in zip(ins, sf)):
                        sf = [2.0] * nd
                    kw = {"scale_factor": sf}
                cases.append(pytest.param(mode, ac, ins, kw, id=f"{mode}{nd}d-ac{int(ac)}-{trial}"))
    return cases


@pytest.mark.parametrize("mode, ac, ins, kw", _interp_cases())
def test_interpolate_matches_torch_functional(mode, ac, ins, kw):
    x = RNG.standard_normal((2, 3, *ins))
    want = TF.interpolate(_t(x), mode=mode, align_corners=None if mode == "nearest" else ac, **kw).numpy()
    got = op_ref("interpolate", x, mode=mode, align_corners=ac, **kw)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    got32 = op_torch("interpolate", x.astype(np.float32), mode=mode, align_corners=ac, **kw)
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)


def test_interpolate_known_values():
    x = np.array([[[0.0, 1.0, 4.0]]])
    # nearest is torch's floor(o * in / out) rule, not 'nearest-exact' (which would give [0, 1, 1, 4, 4])
    assert op_ref("interpolate", x, size=5).tolist() == [[[0.0, 0.0, 1.0, 1.0, 4.0]]]
    assert op_ref("interpolate", x, size=5, mode="linear", align_corners=True).tolist() == \
        [[[0.0, 0.5, 1.0, 2.5, 4.0]]]
    # half-pixel centres, clamped at the border: o = 0 reads source -0.25 -> 0
    np.testing.assert_allclose(op_ref("interpolate", x, scale_factor=2.0, mode="linear"),
                               [[[0.0, 0.25, 0.75, 1.75, 3.25, 4.0]]])
    # bicubic (A = -0.75) of a linear ramp inside the border is exact; at the border the clamped taps bend it
    ramp = np.arange(6.0).reshape(1, 1, 1, 6) * np.ones((1, 1, 2, 1))
    y = op_ref("interpolate", ramp, size=[2, 11], mode="bicubic", align_corners=True)
    np.testing.assert_allclose(y[0, 0, 0, 2:9], np.arange(2, 9) / 2, atol=1e-12)
    assert y[0, 0, 0, 1] != 0.5   # 0.40625: the tap at -1 reads the clamped x[0]


def test_interpolate_non_finite_values_land_where_torch_puts_them():
    x = RNG.standard_normal((1, 2, 4, 5))
    x[0, 0, 1, 2], x[0, 1, 3, 0], x[0, 1, 0, 4] = np.inf, np.nan, -np.inf
    for mode, ac in (("nearest", False), ("bilinear", False), ("bilinear", True), ("bicubic", False)):
        want = TF.interpolate(_t(x), size=[7, 3], mode=mode, align_corners=None if mode == "nearest" else ac).numpy()
        got = op_ref("interpolate", x, size=[7, 3], mode=mode, align_corners=ac)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=mode)
        np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=1e-12, err_msg=mode)


# ---- grid_sample ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("ac", [False, True])
def test_grid_sample_matches_torch_functional(mode, padding_mode, ac):
    x = RNG.standard_normal((2, 3, 4, 5))
    grid = RNG.uniform(-1.4, 1.4, (2, 3, 6, 2))
    want = TF.grid_sample(_t(x), _t(grid), mode=mode, padding_mode=padding_mode, align_corners=ac).numpy()
    got = op_ref("grid_sample", x, grid, mode=mode, padding_mode=padding_mode, align_corners=ac)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    got32 = op_torch("grid_sample", x.astype(np.float32), grid.astype(np.float32), mode=mode,
                     padding_mode=padding_mode, align_corners=ac)
    np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-4)


def test_grid_sample_identity_grid_reproduces_the_input():
    x = RNG.standard_normal((2, 3, 4, 5))
    theta = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (2, 1, 1))
    for ac in (False, True):
        grid = TF.affine_grid(_t(theta), [2, 3, 4, 5], align_corners=ac).numpy()
        np.testing.assert_allclose(op_ref("grid_sample", x, grid, align_corners=ac), x, atol=1e-12)


def test_grid_sample_non_finite_grid_and_values_match_torch():
    x = RNG.standard_normal((1, 2, 3, 4))
    x[0, 0, 1, 1] = np.inf
    grid = RNG.uniform(-1, 1, (1, 2, 3, 2))
    grid[0, 0, 0, 0], grid[0, 1, 2, 1], grid[0, 1, 1, 0] = np.nan, np.inf, -np.inf
    for mode in ("bilinear", "nearest"):
        for pm in ("zeros", "border", "reflection"):
            want = TF.grid_sample(_t(x), _t(grid), mode=mode, padding_mode=pm, align_corners=False).numpy()
            got = op_ref("grid_sample", x, grid, mode=mode, padding_mode=pm)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=(mode, pm))
            np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=1e-12, err_msg=(mode, pm))


# ---- pools ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool3d_matches_torch(kind):
    x = RNG.standard_normal((2, 3, 5, 6, 4))
    for attrs in ({"kernel": 2}, {"kernel": [2, 3, 2], "stride": [1, 2, 2], "padding": [1, 1, 0]}):
        a = {"stride": None, "padding": 0, **attrs}
        want = getattr(TF, f"{kind}_pool3d")(_t(x), a["kernel"], a["stride"], a["padding"]).numpy()
        np.testing.assert_allclose(op_ref(f"{kind}_pool3d", x, **attrs), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pools_match_torch(kind, nd):
    rng = np.random.default_rng(nd)
    for _ in range(4):
        ins = [int(v) for v in rng.integers(1, 8, nd)]
        out = [int(v) for v in rng.integers(1, 7, nd)]
        x = rng.standard_normal((2, 3, *ins))
        want = getattr(TF, f"adaptive_{kind}_pool{nd}d")(_t(x), out).numpy()
        np.testing.assert_allclose(op_ref(f"adaptive_{kind}_pool{nd}d", x, output_size=out), want, rtol=1e-12)


def test_adaptive_windows_known_values():
    x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    # windows [floor(o * 5 / 2), ceil((o + 1) * 5 / 2)) = [0, 3), [2, 5): they overlap at 3
    assert op_ref("adaptive_avg_pool1d", x, output_size=2).tolist() == [[[2.0, 4.0]]]
    assert op_ref("adaptive_max_pool1d", x, output_size=2).tolist() == [[[3.0, 5.0]]]
    assert op_ref("adaptive_avg_pool1d", x, output_size=7).shape == (1, 1, 7)   # more outputs than inputs


# ---- backends: the torch lowering and Triton's counted fallback ------------------------------------------------------
BACKEND_CASES = [
    ("interpolate", [(1, 2, 3, 4)], {"size": [5, 3], "mode": "bicubic"}),
    ("interpolate", [(1, 2, 3, 2, 2)], {"scale_factor": 1.5, "mode": "trilinear", "align_corners": True}),
    ("interpolate", [(1, 2, 5)], {"size": 3}),
    ("grid_sample", [(1, 2, 3, 4), (1, 2, 3, 2)], {"padding_mode": "reflection"}),
    ("max_pool3d", [(1, 2, 4, 4, 3)], {"kernel": 2, "stride": 1, "padding": 1}),
    ("avg_pool3d", [(1, 2, 4, 4, 3)], {"kernel": [2, 2, 1]}),
    ("adaptive_avg_pool2d", [(1, 2, 5, 4)], {"output_size": [2, 3]}),
    ("adaptive_max_pool3d", [(1, 2, 3, 4, 5)], {"output_size": 2}),
    ("adaptive_max_pool1d", [(2, 2, 7)], {"output_size": 3}),
]


@pytest.mark.parametrize("op, shapes, attrs", BACKEND_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(BACKEND_CASES)])
def test_torch_and_triton_agree_with_the_reference(op, shapes, attrs):
    rng = np.random.default_rng(1)
    args = [rng.uniform(-1.2, 1.2, s).astype(np.float32) for s in shapes]
    want = op_ref(op, *[a.astype(np.float64) for a in args], **attrs)
    np.testing.assert_allclose(op_torch(op, *args, **attrs), want, rtol=1e-5, atol=1e-5)
    kinds, got = op_triton(op, *args, **attrs)
    assert kinds == ["fallback"], kinds   # no kernel yet: one counted torch fallback, never silent
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- gradients -------------------------------------------------------------------------------------------------------
def _grad_cases():
    cases = []
    for mode, nd in MODES:
        sp = [3, 4, 2][:nd]
        for ac in ([False] if mode == "nearest" else [False, True]):
            ac_s = str(ac).lower()
            cases.append((f'interpolate(x, size={[5, 3, 4][:nd]}, mode="{mode}", align_corners={ac_s})', {"x": [2, 2, *sp]}))
            cases.append((f'interpolate(x, scale_factor=1.5, mode="{mode}", align_corners={ac_s})', {"x": [1, 2, *sp]}))
    for nd in (1, 2, 3):
        for kind in ("avg", "max"):
            cases.append((f"adaptive_{kind}_pool{nd}d(x, output_size={[3, 3, 2][:nd]})", {"x": [2, 2, *[5, 4, 3][:nd]]}))
    cases.append(("max_pool3d(x, kernel=2, stride=1, padding=1)", {"x": [1, 2, 3, 4, 3]}))
    cases.append(("avg_pool3d(x, kernel=[2, 3, 2], stride=2, padding=1)", {"x": [1, 2, 3, 4, 3]}))
    for pm in ("zeros", "border", "reflection"):
        for mode in ("bilinear", "nearest"):
            for ac in ("false", "true"):
                cases.append((f'grid_sample(x, grid, mode="{mode}", padding_mode="{pm}", align_corners={ac})',
                              {"x": [2, 2, 3, 4], "grid": [2, 3, 2, 2]}))
    return cases


@pytest.mark.parametrize("call, shapes", _grad_cases())
def test_gradients_match_torch_autograd_and_finite_differences(call, shapes):
    decls = "\n".join(f"  input {n}: f64[{', '.join(map(str, s))}]" for n, s in shapes.items())
    g = load_source(f"model m() {{\n{decls}\n  output y = {call}\n}}\n", "<grad>").graph
    rng = np.random.default_rng(7)
    check_gradients(g, {n: rng.uniform(-1.2, 1.2, s) for n, s in shapes.items()})


def test_adaptive_max_gradient_goes_to_the_first_maximum():
    g = load_source("model m() {\n  input x: f64[1, 1, 5]\n  output y = adaptive_max_pool1d(x, output_size=2)\n}\n",
                    "<grad>").graph
    x = np.array([[[3.0, 1.0, 3.0, 2.0, 0.0]]])   # window [0, 3) holds the maximum twice
    grads = check_gradients(g, {"x": x}, cotangents={"y": np.array([[[1.0, 10.0]]])}, direction=False)
    assert grads["x"].tolist() == [[[1.0, 0.0, 10.0, 0.0, 0.0]]]


# ---- errors ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decl, call, message", [
    ("f32[1, 2, 3, 4]", 'interpolate(x, mode="bilinear")', "give exactly one of size and scale_factor"),
    ("f32[1, 2, 3, 4]", 'interpolate(x, size=[2, 2], mode="linear")', "expects input [N, C, L]"),
    ("f32[1, 2, 3, 4]", 'interpolate(x, size=2, mode="area")', "mode must be one of"),
    ("f32[1, 2, 3, 4]", "interpolate(x, size=2, align_corners=true)", "align_corners=true needs a linear"),
    ("f32[1, 2, 3]", "interpolate(x, scale_factor=0.2)", "makes an empty output"),
    ("f32[1, 2, 3, 4]", "interpolate(x, size=[2, 2, 2])", "size has 3 entries, expected 2"),
    ("i32[1, 2, 3, 4]", "interpolate(x, size=2)", "must be a float tensor"),
    ("f32[1, 2, 3, 4]", "grid_sample(x, x)", "grid must be f32[1, H_out, W_out, 2]"),
    ("f32[1, 2, 3, 4]", 'grid_sample(x, x, padding_mode="wrap")', "padding_mode must be one of"),
    ("f32[1, 2, 3, 4]", "max_pool3d(x, kernel=2)", "expects input [N, C, D, H, W]"),
    ("f32[1, 2, 3, 4, 4]", "avg_pool3d(x, kernel=2, padding=2)", "at most half the kernel"),
    ("f32[1, 2, 3, 4]", "adaptive_avg_pool2d(x, output_size=[2, 0])", "output_size must be >= 1"),
    ("f32[1, 2, 3]", "adaptive_max_pool2d(x, output_size=2)", "expects input [N, C, H, W]"),
])
def test_bad_calls_are_one_line_located_errors(decl, call, message):
    src = f"model m() {{\n  input x: {decl}\n  output y = {call}\n}}\n"
    with pytest.raises(PnetError) as err:
        load_source(src, "m.pnet")
    text = str(err.value)
    assert text.startswith("m.pnet:3:") and "\n" not in text and message in text, text


@pytest.mark.parametrize("op, out", [("adaptive_avg_pool2d", [4, 3]), ("adaptive_max_pool2d", 2),
                                     ("adaptive_avg_pool1d", 4), ("adaptive_max_pool3d", [2, 2, 1])])
def test_adaptive_pools_of_regular_tiles_are_triton_kernels(op, out):
    """A spatial dim that is a multiple of its output size: the windows are regular tiles, so decompose makes the
    pool a reshape and a row reduction (a kernel, no fallback) with the reference's values."""
    nd = int(op[-2])
    x = np.random.default_rng(0).normal(size=(2, 3) + (8, 6, 2)[:nd]).astype(np.float32)
    kinds, y = op_triton(op, x, output_size=out)
    assert "fallback" not in kinds
    np.testing.assert_allclose(y, op_ref(op, x, output_size=out), rtol=1e-6, atol=1e-6)
