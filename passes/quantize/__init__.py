"""The quantization pass: float weights become integer parameters with scales, and the layers that use them
compute in integers (ops of ir/ops/quant.py), exact in the reference.

    new_graph, new_params = quantize(graph, params, "w8a8", calib={"x": x_calib})

Which layers: with a `scheme` every quantizable layer of the model (a `matmul(x, W)` or `matmul(x, W.T)` with a
rank-2 float weight parameter W, or a conv1d/2d/3d with a float weight parameter); `@quantize(...)` on a node
overrides the scheme for that node (`@quantize("none")` keeps it float), and `@quantize(...)` on a `param`
quantizes that parameter weight-only. Without a scheme only the annotated layers and params are quantized,
and an annotation that covers no quantizable layer is an error at the annotation.

Schemes (`SCHEMES`):
- `w8a8`: int8 weights, symmetric per output channel ([-127, 127]); int8 activations, per-tensor static
  scales from calibration data (`act="static"`: min/max, percentile or mse observer; affine with a zero
  point over [-128, 127] where the layer allows it, see `_affine_ok`) or per-token dynamic scales
  (`act="dynamic"`, the default without calibration data); `qmatmul`/`qconv` accumulate in int32, and the
  epilogue dequantizes (one combined scale for static activations);
- `w8`, `w4`: weight-only, group-wise symmetric scales along the reduction axis (`group_size`, one group
  when the axis is not a multiple of it); int4 weights are packed two per byte (`pack_bits`), unpacked and
  dequantized in the graph, the layer itself runs in float;
- `binary` / `ternary`: weights sign(w) / {-1, 0, +1} (threshold 0.7 mean|w|) with a per-output-channel
  scale (the mean |w| of the kept weights), stored 1 / 2 bits a weight (`STORAGE_BITS`), activations sign(x)
  with a dynamic mean|x| scale (XNOR-Net);
- `fake=True`: quantize-dequantize in float instead (`fake_quant`, straight-through gradient in the torch
  backend) for quantization-aware training; weights stay float parameters (w8a8, w8, w4; per channel).

The package's rooms: schemes.py (scheme names, Options), layers.py (which layers: Site, the reports),
rounding.py (scales, round to nearest, GPTQ, packing), calibration.py (everything that runs the model:
activation scales, GPTQ's inputs, the error figures; it takes a `run_graph` callable), rewrite.py (the graph
rewrite). This file is the pass itself, and re-exports the names callers use.
"""
from __future__ import annotations

import numpy as np

from ...errors import UsageError
from ...ir.graph import Graph, clone
from ...ir.types import BYTES, concrete
from ..cleanup import _cse, _dce, drop_unused_params
from ..verify import verify
from .calibration import RunGraph, _calibrate, _gptq_weights, capture, check_calib, compare
from .layers import LayerReport, QuantResult, Site, _select
from .rewrite import _rewrite
from .rounding import QWeight, gptq, weight_scale
from .schemes import SCHEMES, STORAGE_BITS, Options, _act_mode, _options, scheme_name

__all__ = ["quantize", "quantize_model", "compare", "capture", "check_calib", "gptq", "weight_scale", "scheme_name",
           "SCHEMES", "STORAGE_BITS", "Options", "Site", "LayerReport", "QuantResult", "QWeight", "RunGraph"]


# ---- the public entry points ----------------------------------------------------------------------
def quantize(graph: Graph, params: dict, scheme: str | None = None, calib: dict | None = None, *,
             group_size: int = 128, act: str = "auto", observer: str = "minmax", percentile: float = 99.99,
             fake: bool = False, gptq_rounding: bool = True, run_graph: RunGraph | None = None) -> tuple[Graph, dict]:
    """(new_graph, new_params): see the module doc. The new graph is verified. `run_graph` runs the model on the
    calibration data (by default the NumPy reference; see calibration.py)."""
    r = quantize_model(graph, params, scheme, calib, group_size=group_size, act=act, observer=observer,
                       percentile=percentile, fake=fake, gptq_rounding=gptq_rounding, run_graph=run_graph)
    return r.graph, r.params


def quantize_model(graph: Graph, params: dict, scheme: str | None = None, calib: dict | None = None, *,
                   group_size: int = 128, act: str = "auto", observer: str = "minmax", percentile: float = 99.99,
                   fake: bool = False, gptq_rounding: bool = True, run_graph: RunGraph | None = None) -> QuantResult:
    """Like `quantize`, with the per-layer figures (weight error, scales) and the byte counts. With
    calibration data, dense-layer weights (w8, w4, w8a8) are rounded by GPTQ when the data has at least
    two rows per input feature (`gptq_rounding=False`: round to nearest everywhere)."""
    default = _options(scheme, group_size, act, observer, percentile) if scheme is not None else None
    if default is not None and default.scheme == "none":
        default = None  # nothing by default; annotations can still pick layers
    missing = [p.name for p in graph.params if p.name not in params]
    if missing:
        raise UsageError(f"quantize: missing parameter '{missing[0]}'")
    mapping: dict = {}
    g = clone(graph, mapping)
    inverse = {new: old for old, new in mapping.items()}
    sites, param_opts = _select(g, default, strict=scheme is None)
    for s in sites:
        s.orig_output = inverse.get(s.node.outputs[0])
    if fake:
        bad = {s.opts.scheme for s in sites} | {o.scheme for o in param_opts.values()}
        bad -= {"w8a8", "w8", "w4"}
        if bad:
            raise UsageError(f"fake-quant supports w8a8, w8 and w4, not {', '.join(sorted(bad))}")
    static = [s for s in sites if s.opts.scheme == "w8a8" and _act_mode(s.opts, calib) == "static"]
    if static:
        _calibrate(g, params, static, calib, run_graph)
    result = QuantResult(g, {})
    new_params = dict(params)
    plans = _plans(sites, param_opts)
    rounded = _gptq_weights(g, params, sites, plans, calib, run_graph) if calib is not None and gptq_rounding and not fake else {}
    _rewrite(g, new_params, sites, param_opts, plans, fake, calib, result, rounded)
    _cse(g)   # layers reading one activation (Q, K, V) quantize it once, and then share one kernel
    _dce(g)   # what the integer layers replaced (a tied weight's float transpose) no longer reaches an output
    drop_unused_params(g, new_params)
    verify(g)
    result.graph, result.params, result.sites = g, new_params, sites
    result.bytes_before = _bytes(graph)
    result.bytes_after = _bytes(g)
    return result


def _plans(sites: list[Site], param_opts: dict) -> dict[str, tuple[Options, int, int]]:
    """Which params get quantized, with which options, channel axis and group axis: a param annotation's
    options win, else those of the param's first site."""
    plans: dict[str, tuple[Options, int, int]] = {}
    for s in sites:
        plans.setdefault(s.param.name, (s.opts, s.channel_axis, s.group_axis))
    for name, opts in param_opts.items():
        prev = plans.get(name)
        ch, ga = (prev[1], prev[2]) if prev else (0, 1)
        plans[name] = (opts, ch, ga)
    return plans


def _bytes(g: Graph) -> int:
    return sum(int(np.prod([concrete(d) for d in p.value.type.shape])) * BYTES[p.value.type.dtype] for p in g.params)
