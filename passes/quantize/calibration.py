"""The part of quantization that runs the model: checking calibration data, capturing each layer's input on it,
static activation scales (min/max, percentile or mse observers; affine where the layer allows), GPTQ rounding
of the dense weights on the inputs the already-quantized model gives, and the error figures of `pnet quantize`.

Running a graph is a backend's job, and passes never import backends. The one exception is graph_runner()
below: every function here takes `run_graph` (a callable like numpy_ref.run: (graph, inputs, params) ->
outputs by name), and only when a caller gives none does graph_runner() import the NumPy reference."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...errors import ShapeError, UsageError
from ...ir.graph import Graph, Value
from ...ir.ops.quant import _dequantize_np, _quantize_np
from ...ir.types import DTYPES, is_float
from .layers import QuantResult, Site, _free_values
from .rounding import QWeight, _quantize_weight, _rel, _search_clip
from .schemes import CLIP_RATIOS, Options

RunGraph = Callable[[Graph, dict, dict], dict]   # (graph, inputs, params) -> {output name: array}


def graph_runner(run_graph: RunGraph | None) -> RunGraph:
    """`run_graph`, or the NumPy reference's run when none is given: the single place a pass imports a backend
    (the documented exception to "passes never import backends"), so that calibration can run the model."""
    if run_graph is not None:
        return run_graph
    from ...backends import numpy_ref
    return numpy_ref.run


# ---- calibration --------------------------------------------------------------------------------------
def check_calib(graph: Graph, calib: dict, where: str = "calibration data") -> dict:
    """Every input present, of the model's rank, dtype kind and static dims; one-line errors otherwise."""
    if not isinstance(calib, dict):
        raise UsageError(f"{where}: expected arrays by input name")
    names = [n for n, _ in graph.inputs]
    out = {}
    for name, v in graph.inputs:
        if name not in calib:
            raise UsageError(f"{where}: missing input '{name}' (the model's inputs: {', '.join(names)})")
        arr = np.asarray(calib[name])
        if arr.ndim != v.type.rank:
            raise UsageError(f"{where}: input '{name}' has shape {list(arr.shape)}, the model wants {v.type} (rank {v.type.rank})")
        for i, (d, n) in enumerate(zip(v.type.shape, arr.shape)):
            if d.is_Integer and int(d) != n:
                raise UsageError(f"{where}: input '{name}' has shape {list(arr.shape)}, the model wants {v.type} "
                                 f"(dim {i} is {n}, not {int(d)})")
        if is_float(v.type.dtype) != (arr.dtype.kind == "f"):
            raise UsageError(f"{where}: input '{name}' is {arr.dtype}, the model wants {v.type.dtype}")
        out[name] = arr.astype(DTYPES[v.type.dtype], copy=False)
    return out


def capture(graph: Graph, values: list[Value], inputs: dict, params: dict, run_graph: RunGraph | None = None) -> list[np.ndarray]:
    """The arrays of some values of the top-level graph, as `run_graph` (by default the reference) computes them."""
    tmp = Graph(graph.name, graph.inputs, graph.params, graph.nodes, [(f"v{i}", v) for i, v in enumerate(values)],
                dict(graph.dims))
    out = graph_runner(run_graph)(tmp, inputs, params)
    return [out[f"v{i}"] for i in range(len(values))]


def _layer_inputs(g: Graph, params: dict, sites: list[Site], calib: dict, run_graph: RunGraph | None) -> list[np.ndarray]:
    """Each layer's float input on the calibration data (checked against the model's inputs first)."""
    data = check_calib(g, calib)
    try:
        return capture(g, [s.node.inputs[0] for s in sites], data, params, run_graph)
    except ShapeError as e:
        raise UsageError(f"calibration data: {e.message}") from None


def _calibrate(g: Graph, params: dict, sites: list[Site], calib: dict | None, run_graph: RunGraph | None):
    if calib is None:
        raise UsageError("quantize: static activation scales need calibration data (--calib inputs.npz), "
                         "or use act='dynamic'")
    for s, a in zip(sites, _layer_inputs(g, params, sites, calib, run_graph)):
        if _affine_ok(s.node):
            s.act_scale, s.act_zero_point = _affine_range(a.astype(np.float32).ravel(), s.opts)
            continue
        m = np.abs(a.astype(np.float64)).ravel()
        if s.opts.observer == "percentile":
            v = float(np.percentile(m, s.opts.percentile)) if m.size else 0.0
        else:
            v = float(m.max()) if m.size else 0.0
        s.act_scale = float(np.float32(v / 127.0)) if v > 0 else 1.0
        if s.opts.observer == "mse" and v > 0:
            x = a.astype(np.float32).ravel()
            s.act_scale = float(_search_clip(x, np.asarray([s.act_scale], np.float32), 8)[0])


def _affine_ok(n: Node) -> bool:
    """Whether the layer can take an activation zero point: its integer product then needs only a per-output
    -channel correction zp * sum(W). A padded conv cannot (its zero padding would have to be zp, and the
    correction would change at the borders), so it keeps symmetric activations."""
    return n.op == "matmul" or all(p == 0 for p in n.attrs["padding"])


def _affine(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point mapping [lo, hi] (widened to hold 0, which stays exact) onto int8 [-128, 127]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = float(np.float32((hi - lo) / 255.0))
    return scale, int(np.clip(np.rint(-128.0 - lo / scale), -128, 127))


def _affine_range(x: np.ndarray, opts: Options) -> tuple[float, int]:
    """Static affine activation parameters from calibration values: the min/max, the `percentile` on both
    sides, or (mse) the shrinking of the min/max range with the least squared quantization error."""
    if not x.size:
        return 1.0, 0
    if opts.observer == "percentile":
        return _affine(float(np.percentile(x, 100.0 - opts.percentile)), float(np.percentile(x, opts.percentile)))
    lo, hi = float(x.min()), float(x.max())
    if opts.observer != "mse":
        return _affine(lo, hi)

    def err(sz):
        s, z = np.asarray(sz[0], np.float32), np.asarray(sz[1], np.int32)
        return float(((_dequantize_np(_quantize_np(x, s, z, 8, False), s, z, dtype="f32") - x).astype(np.float64) ** 2).sum())
    return min((_affine(r * lo, r * hi) for r in CLIP_RATIOS), key=err)


def _gptq_weights(g: Graph, params: dict, sites: list[Site], plans: dict, calib: dict,
                  run_graph: RunGraph | None) -> dict[str, "QWeight"]:
    """The dense weights (w8, w4, w8a8), rounded by GPTQ one after another in the order the model first
    reads them. Each layer's Hessian is taken on its input in the model whose earlier weights are already
    quantized, and a weight read by one layer only is first moved to the least-squares target
    W* = argmin ||X~ W* - X W|| (X: the float model's input, X~: the quantized model's), so that it also
    corrects the error the earlier layers left in its input (asymmetric calibration, as in GPTAQ, Li et al.
    2025). A weight shared with other ops (a tied embedding) keeps its values: changing them would move its
    other uses. Layers with fewer than two calibration rows per input feature round to nearest."""
    chosen: dict[str, Site] = {}
    for s in sites:
        if s.node.op == "matmul" and plans[s.param.name][0].scheme in ("w8", "w4", "w8a8"):   # GPTQ's setting
            chosen.setdefault(s.param.name, s)
    if not chosen:
        return {}
    first_use, uses = {}, {}
    for i, n in enumerate(g.nodes):
        for v in {v for v in n.inputs if v is not None} | (set(_free_values(n.body)) if n.body is not None else set()):
            first_use.setdefault(v, i)
            uses[v] = uses.get(v, 0) + 1
    order = sorted(chosen.values(), key=lambda s: first_use[s.param.value])
    float_inputs = _layer_inputs(g, params, order, calib, run_graph)
    data = check_calib(g, calib)
    current = dict(params)          # the model so far: quantized weights dequantized in place
    out = {}
    for s, x in zip(order, float_inputs):
        w = np.asarray(params[s.param.name])
        k = w.shape[1 - s.channel_axis]
        xf = x.reshape(-1, k).astype(np.float64)
        if len(xf) < 2 * k:          # fewer rows than ~2 per feature: H is too rank-poor, GPTQ would overfit
            continue
        xq = capture(g, [s.node.inputs[0]], data, current, run_graph)[0].reshape(-1, k).astype(np.float64)
        if plans[s.param.name][0].scheme == "w8a8":
            xq = _act_fake_quant(xq, s)   # the layer sees int8 activations: round its weights for those
        h = xq.T @ xq / len(xq)
        target = w
        if uses[s.param.value] == 1:
            w_kn = (w.T if s.transposed else w).astype(np.float64)
            damp = 0.01 * float(np.mean(np.diag(h))) * np.eye(k)
            t = np.linalg.solve(h + damp, xq.T @ xf / len(xq) @ w_kn + damp @ w_kn).astype(w.dtype)
            target = t.T if s.transposed else t
        opts, ch, ga = plans[s.param.name]
        qw = _quantize_weight(s.param, target, opts, ch, ga, (h, s.transposed))
        current[s.param.name] = _dequantize_np(qw.q, qw.scale, dtype="f32").astype(w.dtype)
        out[s.param.name] = qw
    return out


def _act_fake_quant(x: np.ndarray, s: Site) -> np.ndarray:
    """[rows, K] activations as a w8a8 layer computes with them: its static (affine) scale, else per row."""
    if s.act_scale is not None:
        scale = np.float32(s.act_scale)
        zp = None if s.act_zero_point is None else np.int32(s.act_zero_point)
        q = _quantize_np(x.astype(np.float32), scale, zp, 8, zp is None)
        return _dequantize_np(q, scale, zp, dtype="f32").astype(np.float64)
    scale = np.abs(x).max(axis=1, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.rint(x / scale), -127, 127) * scale


# ---- figures for `pnet quantize` ------------------------------------------------------------------------
def compare(graph: Graph, params: dict, result: QuantResult, inputs: dict, run_graph: RunGraph | None = None) -> dict:
    """Per-layer output errors (filled into the layers' reports) and each float model output's error against
    the float model: {output: {"max_abs", "rel_l2"}}."""
    sites = [s for s in result.sites if s.new_output is not None and s.orig_output is not None]
    ref_outs, ref_sites = _run_all(graph, inputs, params, [s.orig_output for s in sites], run_graph)
    q_outs, q_sites = _run_all(result.graph, inputs, result.params, [s.new_output for s in sites], run_graph)
    for s, a, b in zip(sites, ref_sites, q_sites):
        if s.report is not None:
            s.report.out_max_abs = float(np.abs(b.astype(np.float64) - a).max()) if a.size else 0.0
            s.report.out_rel_l2 = _rel(b, a)
    outs = {}
    for name, a in ref_outs.items():
        b = q_outs[name]
        if a.dtype.kind == "f":
            outs[name] = {"max_abs": float(np.abs(b.astype(np.float64) - a).max()) if a.size else 0.0,
                          "rel_l2": _rel(b, a)}
    return outs


def _run_all(g: Graph, inputs, params, extra: list[Value], run_graph: RunGraph | None):
    names = [n for n, _ in g.outputs]
    tmp = Graph(g.name, g.inputs, g.params, g.nodes, list(g.outputs) + [(f"__site{i}", v) for i, v in enumerate(extra)],
                dict(g.dims))
    out = graph_runner(run_graph)(tmp, inputs, params)
    return {k: out[k] for k in names}, [out[f"__site{i}"] for i in range(len(extra))]
