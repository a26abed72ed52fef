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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import PnetError, ShapeError, UsageError
from ..ir.analysis import weight_of_matmul
from .cleanup import _cse, _dce, drop_unused_params
from ..ir import registry
from ..ir.graph import Annotation, Graph, Init, Node, Param, Value, clone, replace_uses
from ..ir.ops.quant import _dequantize_np, _pack_np, _quantize_np, expand_np, qrange
from ..ir.types import BYTES, DTYPES, TensorType, concrete, is_float
from .verify import verify

SCHEMES = ("w8a8", "w8", "w4", "binary", "ternary")
ALIASES = {"int8": "w8a8", "i8": "w8a8", "int4": "w4", "i4": "w4", "a8w8": "w8a8", "int8_weight": "w8",
           "none": "none", "off": "none", "float": "none"}
OBSERVERS = ("minmax", "percentile", "mse")
CLIP_RATIOS = np.linspace(0.5, 1.0, 26)
ACTS = ("auto", "static", "dynamic")
CONVS = ("conv1d", "conv2d", "conv3d")
STORAGE_BITS = {"w4": 4, "ternary": 2, "binary": 1}   # packed storage (pack_bits); the others are int8
ANNOTATION_KEYS = ("scheme", "group_size", "act", "observer", "percentile")


def scheme_name(s, loc=None) -> str:
    """A scheme name (aliases resolved); unknown names are a one-line error."""
    if s is False or s is None:
        return "none"
    key = str(s).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCHEMES and key != "none":
        raise UsageError(f"unknown quantization scheme '{s}' (schemes: {', '.join(SCHEMES)}; "
                         f"aliases: {', '.join(k for k in ALIASES if ALIASES[k] != 'none')}; 'none' keeps a layer float)",
                         loc) if loc is None else PnetError(
            f"@quantize: unknown scheme '{s}' (schemes: {', '.join(SCHEMES)}, or 'none')", loc)
    return key


@dataclass
class Options:
    scheme: str
    group_size: int = 128
    act: str = "auto"
    observer: str = "minmax"
    percentile: float = 99.99
    weight_observer: str = "mse"


@dataclass
class Site:
    """A quantizable layer: the node, its weight param, and where the output channels are in that param."""
    node: Node
    param: Param
    channel_axis: int          # in the param's own layout
    reduce_axes: tuple         # in the param's own layout
    group_axis: int            # the axis groups split (the reduction axis of a dense weight, C_in of a conv)
    transposed: bool = False   # matmul(x, transpose(W))
    opts: Options | None = None
    int_path: bool = False     # computes qmatmul/qconv (else weight-only dequantize)
    new_output: Value | None = None
    act_scale: float | None = None
    act_zero_point: int | None = None   # static affine activations (int8 [-128, 127]); None: symmetric
    orig_output: Value | None = None   # the float graph's output of this layer
    report: "LayerReport | None" = None


@dataclass
class LayerReport:
    name: str
    op: str
    scheme: str
    weight: str
    weight_scale: tuple       # (min, max) of the weight scales
    act_scale: str            # "static 0.0123" | "dynamic per-token" | "-"
    weight_max_abs: float
    weight_rel_l2: float
    out_max_abs: float | None = None
    out_rel_l2: float | None = None


@dataclass
class QuantResult:
    graph: Graph
    params: dict
    layers: list = field(default_factory=list)
    float_weight_bytes: int = 0      # the quantized weights, as float
    quant_weight_bytes: int = 0      # the same weights as integers + their scales
    bytes_before: int = 0            # every parameter
    bytes_after: int = 0
    skipped: list = field(default_factory=list)   # (what, why)
    sites: list = field(default_factory=list)


# ---- the public entry points ----------------------------------------------------------------------
def quantize(graph: Graph, params: dict, scheme: str | None = None, calib: dict | None = None, *,
             group_size: int = 128, act: str = "auto", observer: str = "minmax", percentile: float = 99.99,
             fake: bool = False, gptq_rounding: bool = True) -> tuple[Graph, dict]:
    """(new_graph, new_params): see the module doc. The new graph is verified."""
    r = quantize_model(graph, params, scheme, calib, group_size=group_size, act=act, observer=observer,
                       percentile=percentile, fake=fake, gptq_rounding=gptq_rounding)
    return r.graph, r.params


def quantize_model(graph: Graph, params: dict, scheme: str | None = None, calib: dict | None = None, *,
                   group_size: int = 128, act: str = "auto", observer: str = "minmax", percentile: float = 99.99,
                   fake: bool = False, gptq_rounding: bool = True) -> QuantResult:
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
        _calibrate(g, params, static, calib)
    result = QuantResult(g, {})
    new_params = dict(params)
    plans = _plans(sites, param_opts)
    rounded = _gptq_weights(g, params, sites, plans, calib) if calib is not None and gptq_rounding and not fake else {}
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


def _gptq_weights(g: Graph, params: dict, sites: list[Site], plans: dict, calib: dict) -> dict[str, "QWeight"]:
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
    float_inputs = _layer_inputs(g, params, order, calib)
    data = check_calib(g, calib)
    current = dict(params)          # the model so far: quantized weights dequantized in place
    out = {}
    for s, x in zip(order, float_inputs):
        w = np.asarray(params[s.param.name])
        k = w.shape[1 - s.channel_axis]
        xf = x.reshape(-1, k).astype(np.float64)
        if len(xf) < 2 * k:          # fewer rows than ~2 per feature: H is too rank-poor, GPTQ would overfit
            continue
        xq = capture(g, [s.node.inputs[0]], data, current)[0].reshape(-1, k).astype(np.float64)
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


def _options(scheme, group_size, act, observer, percentile, loc=None) -> Options:
    name = scheme_name(scheme, loc)
    err = (lambda m: PnetError(m, loc)) if loc is not None else UsageError
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise err(f"quantize: group size must be a positive integer, got {group_size!r}")
    if act not in ACTS:
        raise err(f"quantize: act must be one of {', '.join(ACTS)}, got {act!r}")
    if observer not in OBSERVERS:
        raise err(f"quantize: observer must be one of {', '.join(OBSERVERS)}, got {observer!r}")
    if not isinstance(percentile, (int, float)) or isinstance(percentile, bool) or not 0 < percentile <= 100:
        raise err(f"quantize: percentile must be in (0, 100], got {percentile!r}")
    return Options(name, int(group_size), act, observer, float(percentile))


def _act_mode(opts: Options, calib) -> str:
    if opts.act == "auto":
        return "static" if calib is not None else "dynamic"
    return opts.act


def _bytes(g: Graph) -> int:
    return sum(int(np.prod([concrete(d) for d in p.value.type.shape])) * BYTES[p.value.type.dtype] for p in g.params)


# ---- which layers -----------------------------------------------------------------------------------
def _annotation_options(a: Annotation, base: Options | None) -> Options:
    kw = dict(a.kwargs)
    for k in kw:
        if k not in ANNOTATION_KEYS:
            raise PnetError(f"@quantize: unknown argument '{k}' (arguments: {', '.join(ANNOTATION_KEYS)})", a.loc)
    if len(a.args) > 1:
        raise PnetError("@quantize takes one positional argument, the scheme", a.loc)
    scheme = a.args[0] if a.args else kw.get("scheme", base.scheme if base else "w8a8")
    b = base or Options("w8a8")
    return _options(scheme, kw.get("group_size", b.group_size), kw.get("act", b.act),
                    kw.get("observer", b.observer), kw.get("percentile", b.percentile), loc=a.loc)


def _quant_annotation(annots):
    """The innermost @quantize annotation (annotations run outer to inner), or None."""
    qs = [a for a in annots if a.name == "quantize"]
    return qs[-1] if qs else None


def _site(g: Graph, n: Node, pvals: dict) -> Site | None:
    """The quantizable layer `n` is, or None."""
    if n.op == "matmul":
        found = weight_of_matmul(n, pvals)
        if found is None:
            return None
        p, transposed = found
        ch = 0 if transposed else 1
        return Site(n, p, ch, (1 - ch,), 1 - ch, transposed)
    if n.op in CONVS:
        x, w = n.inputs[0], n.inputs[1]
        p = pvals.get(w)
        if p is None or not is_float(w.type.dtype) or not is_float(x.type.dtype):
            return None
        return Site(n, p, 0, tuple(range(1, w.type.rank)), 1)
    return None


def _select(g: Graph, default: Options | None, strict: bool):
    pvals = {p.value: p for p in g.params}
    sites: list[Site] = []
    covers: dict = {}   # annotation (by source position) -> [covered sites or params]
    ops_seen: dict = {}
    for n in g.nodes:
        a = _quant_annotation(n.annotations)
        s = _site(g, n, pvals)
        if a is not None:
            key = (a.loc, a) if a.loc is not None else a
            covers.setdefault(key, [])
            ops_seen.setdefault(key, []).append(n.op)
            if s is not None:
                covers[key].append(s)
        if s is None:
            continue
        opts = default
        if a is not None:
            try:
                opts = _annotation_options(a, default)
            except PnetError:
                if strict:
                    raise
                opts = default  # with a whole-model scheme an annotation the pass cannot read is left alone
        if opts is None or opts.scheme == "none":
            continue
        s.opts = opts
        sites.append(s)
    param_opts: dict[str, Options] = {}
    for p in g.params:
        a = _quant_annotation(p.annotations)
        if a is None:
            continue
        key = (a.loc, a) if a.loc is not None else a
        covers.setdefault(key, [])
        try:
            opts = _annotation_options(a, default)
        except PnetError:
            if strict:
                raise
            continue
        if p.value.type.rank < 2 or not is_float(p.value.type.dtype):
            ops_seen.setdefault(key, []).append(f"parameter {p.name} {p.value.type}")
            continue  # biases and norm scales stay float
        covers[key].append(p)
        if opts.scheme != "none":
            param_opts[p.name] = opts
    if strict:
        for key, covered in covers.items():
            if not covered:
                a = key[1] if isinstance(key, tuple) else key
                seen = sorted(set(ops_seen.get(key, [])))
                raise PnetError(f"@quantize: covers no quantizable op (a matmul or conv with a float weight parameter, "
                                f"or a float parameter of rank >= 2); it covers: {', '.join(seen) or 'nothing'}", a.loc)
    return sites, param_opts


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


def capture(graph: Graph, values: list[Value], inputs: dict, params: dict) -> list[np.ndarray]:
    """The reference's arrays for some values of the top-level graph."""
    from ..backends import numpy_ref
    tmp = Graph(graph.name, graph.inputs, graph.params, graph.nodes, [(f"v{i}", v) for i, v in enumerate(values)],
                dict(graph.dims))
    out = numpy_ref.run(tmp, inputs, params)
    return [out[f"v{i}"] for i in range(len(values))]


def _layer_inputs(g: Graph, params: dict, sites: list[Site], calib: dict) -> list[np.ndarray]:
    """Each layer's float input on the calibration data (checked against the model's inputs first)."""
    data = check_calib(g, calib)
    try:
        return capture(g, [s.node.inputs[0] for s in sites], data, params)
    except ShapeError as e:
        raise UsageError(f"calibration data: {e.message}") from None


def _calibrate(g: Graph, params: dict, sites: list[Site], calib: dict | None):
    if calib is None:
        raise UsageError("quantize: static activation scales need calibration data (--calib inputs.npz), "
                         "or use act='dynamic'")
    for s, a in zip(sites, _layer_inputs(g, params, sites, calib)):
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


# ---- weights ------------------------------------------------------------------------------------------
def weight_scale(w: np.ndarray, bits: int, channel_axis: int, group_axis: int | None, group_size: int,
                 method: str = "absmax") -> np.ndarray:
    """Symmetric scales, keepdims over the non-channel axes; group-wise along `group_axis` when it splits."""
    qmax = qrange(bits)[1]
    a = np.abs(w.astype(np.float64))
    shape = list(w.shape)
    if group_axis is not None and group_size < shape[group_axis] and shape[group_axis] % group_size == 0:
        ng = shape[group_axis] // group_size
        split = shape[:group_axis] + [ng, group_size] + shape[group_axis + 1:]
        a = a.reshape(split)
        axes = tuple(i for i in range(len(split)) if i != channel_axis + (1 if channel_axis > group_axis else 0)
                     and i != group_axis)
        s = a.max(axis=axes, keepdims=True) / qmax
        s = s.reshape([d if i in (channel_axis, group_axis) else 1 for i, d in
                       enumerate(shape[:group_axis] + [ng] + shape[group_axis + 1:])])
    else:
        axes = tuple(i for i in range(w.ndim) if i != channel_axis)
        s = a.mean(axis=axes, keepdims=True) if method == "absmean" else (a.max(axis=axes, keepdims=True) / qmax)
    s = s.astype(np.float32)
    s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
    if method == "mse":
        s = _search_clip(w, s, bits)
    return s


def _search_clip(w: np.ndarray, s: np.ndarray, bits: int) -> np.ndarray:
    """Per scale entry, the clip ratio (of the absmax scale) with the least squared rounding + clipping error."""
    from ..ir.ops.quant import expand_np
    best, best_err = s, None
    for r in CLIP_RATIOS:
        c = (s * np.float32(r)).astype(np.float32)
        e = (_dequantize_np(_quantize_np(w, c, None, bits, True), c, dtype="f32") - w).astype(np.float64) ** 2
        # the error summed over each scale entry's block
        err = _block_sum(e, s.shape)
        if best_err is None:
            best, best_err = c, err
        else:
            better = err < best_err
            best, best_err = np.where(better, c, best), np.where(better, err, best_err)
    return best.astype(np.float32)


def _block_sum(e: np.ndarray, sshape) -> np.ndarray:
    shape = list(e.shape)
    split, axes = [], []
    for i, (dx, ds) in enumerate(zip(shape, sshape)):
        if ds == dx:
            split.append(dx)
        elif ds == 1:
            axes.append(len(split))
            split.append(dx)
        else:
            split += [ds, dx // ds]
            axes.append(len(split) - 1)
    return e.reshape(split).sum(axis=tuple(axes)).reshape(sshape)


def _squeeze_leading(s: np.ndarray) -> np.ndarray:
    while s.ndim > 1 and s.shape[0] == 1:
        s = s[0]
    return s


def _binary_weights(w: np.ndarray, channel_axis: int, ternary: bool):
    axes = tuple(i for i in range(w.ndim) if i != channel_axis)
    a = np.abs(w.astype(np.float64))
    if ternary:
        thr = 0.7 * a.mean(axis=axes, keepdims=True)
        keep = a > thr
        q = (np.sign(w) * keep).astype(np.int8)
        cnt = np.maximum(keep.sum(axis=axes, keepdims=True), 1)
        alpha = (a * keep).sum(axis=axes, keepdims=True) / cnt
    else:
        q = np.where(w >= 0, 1, -1).astype(np.int8)
        alpha = a.mean(axis=axes, keepdims=True)
    alpha = np.where(alpha > 0, alpha, 1.0).astype(np.float32)
    return q, alpha


@dataclass
class QWeight:
    """A quantized parameter: its new params and how to get it back as a float value."""
    scheme: str
    channel_axis: int
    qname: str
    sname: str
    q: np.ndarray                 # the integer values, unpacked (i8)
    scale: np.ndarray             # broadcastable against the weight
    stored: np.ndarray            # what the param holds (packed for w4)
    packed_axis: int | None = None
    bits: int = 8                 # of storage, when packed
    float_value: Value | None = None   # dequantized in the graph, made on first need
    int_value: Value | None = None     # the i8 weight in the graph
    scale_value: Value | None = None
    stored_value: Value | None = None  # the param as stored (packed bytes for sub-byte widths)


def gptq(w_kn: np.ndarray, hessian: np.ndarray, scale_kn: np.ndarray, bits: int, damp: float = 0.01) -> np.ndarray | None:
    """GPTQ (Frantar et al., 2023) with fixed scales: quantize the rows of W [K, N] (K = input features) in
    order, spreading each row's rounding error over the rows not yet quantized through the Cholesky factor
    of the inverse Hessian H = X^T X of the calibration inputs, so that x @ Q (not Q entry by entry)
    approximates x @ W. Returns the int8 values, or None when H cannot be factored."""
    w = w_kn.astype(np.float64).copy()
    k = w.shape[0]
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) <= 0                        # features never active in the calibration data
    h[dead, dead] = 1.0
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).T   # upper: H^-1 = u^T u
    except np.linalg.LinAlgError:
        return None
    lo, hi = qrange(bits, narrow=True)
    s = scale_kn.astype(np.float64)
    q = np.empty(w.shape, np.int8)
    for i in range(k):
        qi = np.clip(np.rint(w[i] / s[i]), lo, hi)
        q[i] = qi
        err = (w[i] - qi * s[i]) / u[i, i]
        w[i + 1:] -= np.outer(u[i, i + 1:], err)
    return q


def _quantize_weight(p: Param, w: np.ndarray, opts: Options, channel_axis: int, group_axis: int,
                     hessian: tuple | None = None) -> QWeight:
    """`hessian`: (H, transposed) of the dense layer using `w`, from calibration data: GPTQ rounding."""
    scheme = opts.scheme
    if scheme in ("binary", "ternary"):
        q, s = _binary_weights(w, channel_axis, scheme == "ternary")
    else:
        bits = 4 if scheme == "w4" else 8
        per_channel = scheme == "w8a8"
        s = weight_scale(w.astype(np.float32), bits, channel_axis, None if per_channel else group_axis, opts.group_size,
                         method="mse" if opts.weight_observer == "mse" else "absmax")
        q = _quantize_np(w.astype(np.float32), s, None, bits, True)
        if hessian is not None and w.ndim == 2:
            h, transposed = hessian
            full = np.broadcast_to(expand_np(s, w.shape), w.shape)
            g = gptq(w.T if transposed else w, h, full.T if transposed else full, bits)
            if g is not None:
                q = g.T.copy() if transposed else g
    s = _squeeze_leading(s)
    stored, packed_axis = q, None
    bits = STORAGE_BITS.get(scheme, 8)
    if bits < 8:   # packed 8/bits to a byte along the first axis (the group axis preferred) that they divide
        fits = [i for i in [group_axis] + list(range(w.ndim)) if w.shape[i] % (8 // bits) == 0]
        if fits:
            packed_axis = fits[0]
            stored = _pack_np(q, bits=bits, axis=packed_axis)
    base = p.name
    return QWeight(scheme, channel_axis, base + (f".q{bits}" if packed_axis is not None else ".q"), base + ".scale",
                   q, s, stored, packed_axis, bits)


# ---- the rewrite ----------------------------------------------------------------------------------------
class _Emitter:
    def __init__(self, g: Graph):
        self.g = g
        self.hoisted: list[Node] = []

    def node(self, op, inputs, attrs, anchor: Node | Param, into: list, annotations=()) -> Value:
        opdef = registry.get(op)
        attrs = opdef.bind_attrs(attrs)
        if not opdef.variadic:  # every input slot present, `None` for an absent optional one
            inputs = list(inputs) + [None] * (len(opdef.inputs) - len(inputs))
        types = opdef.infer_types([v.type if v is not None else None for v in inputs], attrs)
        scope = getattr(anchor, "scope", "") or (anchor.name.rsplit(".", 1)[0] if isinstance(anchor, Param) else "")
        node = Node(op, list(inputs), attrs, [], anchor.loc, scope, tuple(annotations))
        node.outputs = [Value(t, node) for t in types]
        into.append(node)
        return node.outputs[0]

    def param(self, name: str, arr: np.ndarray, dtype: str, like: Param, params: dict) -> Value:
        if any(p.name == name for p in self.g.params):
            raise PnetError(f"quantize: parameter name '{name}' is taken")
        v = Value(TensorType(dtype, arr.shape))
        self.g.params.append(Param(name, v, Init("zeros"), like.loc))
        params[name] = np.asarray(arr.astype(DTYPES[dtype]), order="C")
        return v


def _rewrite(g: Graph, params: dict, sites: list[Site], param_opts: dict, plans: dict, fake: bool, calib,
             result: QuantResult, rounded: dict):
    """`rounded`: weights already quantized (by GPTQ); the others are rounded to nearest here."""
    em = _Emitter(g)
    qweights: dict[str, QWeight] = {}
    by_node = {id(s.node): s for s in sites}
    site_params = {s.param.name for s in sites}
    pmap = {p.name: p for p in g.params}

    if fake:
        _rewrite_fake(g, em, params, sites, plans, pmap, calib, result)
        return

    for name, (opts, ch, ga) in plans.items():
        p = pmap[name]
        w = np.asarray(params[name])
        qw = rounded.get(name) or _quantize_weight(p, w, opts, ch, ga)
        qweights[name] = qw
        qdtype = "u8" if qw.packed_axis is not None else "i8"
        stored = em.param(qw.qname, qw.stored, qdtype, p, params)
        qw.scale_value = em.param(qw.sname, qw.scale, "f32", p, params)
        iv = stored
        if qw.packed_axis is not None:
            iv = em.node("unpack_bits", [stored], {"bits": qw.bits, "axis": qw.packed_axis}, p, em.hoisted)
        qw.int_value, qw.stored_value = iv, stored
        deq = _dequantize_np(qw.q, qw.scale, dtype="f32")
        err = deq.astype(np.float64) - w.astype(np.float64)
        result.layers.append(LayerReport(name, "param", opts.scheme, name, (float(qw.scale.min()), float(qw.scale.max())),
                                         "-", float(np.abs(err).max()) if err.size else 0.0, _rel(deq, w)))
        result.float_weight_bytes += w.size * BYTES[p.value.type.dtype]
        result.quant_weight_bytes += qw.stored.nbytes + qw.scale.nbytes

    def float_weight(name) -> Value:
        qw = qweights[name]
        if qw.float_value is None:
            qw.float_value = em.node("dequantize", [qw.int_value, qw.scale_value], {"dtype": pmap[name].value.type.dtype},
                                     pmap[name], em.hoisted)
        return qw.float_value

    body: list[Node] = []
    qvals = {pmap[k].value: k for k in qweights}
    for n in g.nodes:
        s = by_node.get(id(n))
        qw = qweights.get(s.param.name) if s is not None else None
        if s is not None and qw is not None and qw.channel_axis == s.channel_axis and s.opts.scheme in ("w8a8", "binary", "ternary") \
                and qw.scheme == s.opts.scheme:
            y = _int_layer(em, n, s, qw, body, calib, params, result)
            s.int_path, s.new_output = True, y
            replace_uses(g, n.outputs[0], y)
            continue
        if n.op == "embedding" and n.inputs[0] in qvals and _rows_dequantize(qweights[qvals[n.inputs[0]]]):
            y = _lookup_dequantized(em, n, qweights[qvals[n.inputs[0]]], body)
            replace_uses(g, n.outputs[0], y)
            continue
        # any other use of a quantized param reads its dequantized value
        n.inputs = [float_weight(qvals[v]) if v is not None and v in qvals else v for v in n.inputs]
        if n.body is not None and any(v in qvals for v in _free_values(n.body)):
            raise PnetError(f"quantize: parameter used inside a scan body is not supported yet ({n.op})", n.loc)
        if s is not None:
            s.new_output = n.outputs[0]
        body.append(n)
    g.nodes = em.hoisted + body
    # reports for the sites (weight figures are per param; the layer row names the node)
    rows = {r.name: r for r in result.layers}
    result.layers = []
    for s in sites:
        r = rows.get(s.param.name)
        if r is None:
            continue
        act = ("static %.6g" % s.act_scale + ("" if s.act_zero_point is None else " zp %d" % s.act_zero_point)) \
            if s.int_path and s.act_scale is not None else \
            ("dynamic per-token" if s.int_path and s.opts.scheme == "w8a8" else
             ("dynamic mean|x| (sign)" if s.int_path else "float (weight-only)"))
        s.report = LayerReport(s.node.scope or s.param.name, s.node.op, s.opts.scheme, s.param.name,
                               r.weight_scale, act, r.weight_max_abs, r.weight_rel_l2)
        result.layers.append(s.report)
    for name in param_opts:
        if name not in site_params and name in rows:
            result.layers.append(rows[name])


def _rel(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float(np.linalg.norm(a - b))


def _rows_dequantize(qw: QWeight) -> bool:
    """Whether a looked-up row of the quantized table is its own integer row times its own scale row: the
    scales (and any packing) are per row of the table, axis 0."""
    return qw.q.ndim == 2 and qw.channel_axis == 0 and qw.packed_axis in (None, 1) and qw.scale.ndim == 2 \
        and qw.scale.shape[0] == qw.q.shape[0]


def _lookup_dequantized(em: _Emitter, n: Node, qw: QWeight, body: list) -> Value:
    """embedding(dequantize(q, s), ids) as dequantize(embedding(q, ids), embedding(s, ids)): the looked-up
    rows are gathered as stored (int8, or packed bytes unpacked after the gather) and dequantized where they
    land, so no float copy of the table is ever made (a tied embedding / LM-head weight stays quantized)."""
    ids = n.inputs[1]
    rows = em.node("embedding", [qw.stored_value, ids], {}, n, body)
    if qw.packed_axis is not None:
        rows = em.node("unpack_bits", [rows], {"bits": qw.bits, "axis": rows.type.rank - 1}, n, body)
    scales = em.node("embedding", [qw.scale_value, ids], {}, n, body)
    return em.node("dequantize", [rows, scales], {"dtype": n.outputs[0].type.dtype}, n, body)


def _int_layer(em: _Emitter, n: Node, s: Site, qw: QWeight, body: list, calib, params, result) -> Value:
    """x -> quantize/sign -> qmatmul/qconv (int32) -> dequantize epilogue (-> + bias)."""
    x = n.inputs[0]
    conv = n.op in CONVS
    rank_out = n.outputs[0].type.rank
    ann = n.annotations
    xz = None
    if s.opts.scheme == "w8a8":
        mode = _act_mode(s.opts, calib)
        if mode == "static":
            xs, xz = _static_act_params(em, n, s, params)
        else:
            axis = list(range(1, x.type.rank)) if conv else -1
            xs = em.node("dynamic_scale", [x], {"axis": axis, "bits": 8}, n, body, ann)
        xq = em.node("quantize", [x, xs] + ([xz] if xz is not None else []), {"bits": 8, "narrow": xz is None}, n, body, ann)
    else:
        axis = list(range(1, x.type.rank)) if conv else -1
        xs = em.node("dynamic_scale", [x], {"axis": axis, "method": "absmean"}, n, body, ann)
        xq = em.node("sign_quant", [x], {}, n, body, ann)
    wq = qw.int_value
    if conv:
        acc = em.node("q" + n.op, [xq, wq], {k: n.attrs[k] for k in ("stride", "padding", "dilation", "groups")}, n, body, ann)
        cout = n.outputs[0].type.shape[1]
        epi_shape = [cout] + [1] * (rank_out - 2)
    else:
        if s.transposed:
            wq = em.node("transpose", [wq], {"perm": [1, 0]}, n, em.hoisted)
        acc = em.node("qmatmul", [xq, wq], {}, n, body, ann)
        epi_shape = [n.outputs[0].type.shape[-1]] if rank_out >= 1 else []
    ws = qw.scale_value
    if list(ws.type.shape) != list(epi_shape):
        ws = em.node("reshape", [ws], {"shape": epi_shape}, n, em.hoisted)
    dtype = n.outputs[0].type.dtype
    if s.opts.scheme == "w8a8" and xs.producer is None:  # static: one combined scale in the epilogue
        ws = em.node("mul", [ws, xs], {}, n, em.hoisted)
        corr = []
        if xz is not None:  # sum_k (x_k - zp) w_k = acc - zp * sum_k w_k: the zero point's term, a constant
            zsum = s.act_zero_point * qw.q.astype(np.int64).sum(axis=s.reduce_axes)
            corr = [em.param(_fresh(em.g, f"{s.param.name}.in_zero_sum", n), zsum.reshape(epi_shape).astype(np.int32),
                             "i32", s.param, params)]
        y = em.node("dequantize", [acc, ws] + corr, {"dtype": dtype}, n, body, ann)
    else:
        y = em.node("dequantize", [acc, ws], {"dtype": dtype}, n, body, ann)
        y = em.node("mul", [y, xs], {}, n, body, ann)
    if conv and len(n.inputs) > 2 and n.inputs[2] is not None:
        b = em.node("reshape", [n.inputs[2]], {"shape": epi_shape}, n, em.hoisted)
        y = em.node("add", [y, b], {}, n, body, ann)
    return y


def _fresh(g, name, n: Node) -> str:
    """`name`, or `name_<id>` when another layer reading the same weight has taken it."""
    return f"{name}_{n.outputs[0].id}" if any(p.name == name for p in g.params) else name


def _static_act_params(em: _Emitter, n: Node, s: Site, params: dict) -> tuple[Value, Value | None]:
    """The layer's static activation scale param, and its zero point param (i32 scalar) when affine."""
    xs = em.param(_fresh(em.g, f"{s.param.name}.in_scale", n), np.asarray(s.act_scale, np.float32), "f32", s.param, params)
    if s.act_zero_point is None:
        return xs, None
    return xs, em.param(_fresh(em.g, f"{s.param.name}.in_zero_point", n), np.asarray(s.act_zero_point, np.int32),
                        "i32", s.param, params)


def _rewrite_fake(g, em, params, sites, plans, pmap, calib, result):
    """Quantization-aware training form: fake_quant on the weights (scales computed in the graph, so they follow
    training) and on the inputs of w8a8 layers; weights stay float parameters."""
    wfq: dict[str, Value] = {}
    for name, (opts, ch, ga) in plans.items():
        p = pmap[name]
        bits = 4 if opts.scheme == "w4" else 8
        axes = [i for i in range(p.value.type.rank) if i != ch]
        sv = em.node("dynamic_scale", [p.value], {"axis": axes, "bits": bits}, p, em.hoisted)
        wfq[name] = em.node("fake_quant", [p.value, sv], {"bits": bits, "narrow": True}, p, em.hoisted)
        w = np.asarray(params[name])
        s = weight_scale(w, bits, ch, None, 1)
        deq = _dequantize_np(_quantize_np(w, s, None, bits, True), s, dtype="f32")
        result.layers.append(LayerReport(name, "param", opts.scheme + " (fake)", name, (float(s.min()), float(s.max())),
                                         "-", float(np.abs(deq - w).max()) if w.size else 0.0, _rel(deq, w)))
    by_node = {id(s.node): s for s in sites}
    pv = {pmap[k].value: k for k in wfq}
    rows = list(result.layers)
    body = []
    for n in g.nodes:
        s = by_node.get(id(n))
        if s is not None and s.opts.scheme == "w8a8":
            x = n.inputs[0]
            xz = None
            if _act_mode(s.opts, calib) == "static":
                xs, xz = _static_act_params(em, n, s, params)
            else:
                axis = list(range(1, x.type.rank)) if n.op in CONVS else -1
                xs = em.node("dynamic_scale", [x], {"axis": axis, "bits": 8}, n, body, n.annotations)
            n.inputs[0] = em.node("fake_quant", [x, xs] + ([xz] if xz is not None else []),
                                  {"bits": 8, "narrow": xz is None}, n, body, n.annotations)
        n.inputs = [wfq[pv[v]] if v is not None and v in pv else v for v in n.inputs]
        if s is not None:
            s.new_output = n.outputs[0]
            s.report = LayerReport(n.scope or s.param.name, n.op, s.opts.scheme + " (fake)", s.param.name,
                                   (0.0, 0.0), "fake-quant" if s.opts.scheme == "w8a8" else "float (weight-only)",
                                   0.0, 0.0)
            for r in rows:
                if r.weight == s.param.name:
                    s.report.weight_scale, s.report.weight_max_abs, s.report.weight_rel_l2 = \
                        r.weight_scale, r.weight_max_abs, r.weight_rel_l2
        body.append(n)
    g.nodes = em.hoisted + body
    result.layers = [s.report for s in sites if s.report is not None]


def _free_values(body: Graph):
    for n in body.walk():
        yield from (v for v in n.inputs if v is not None)


# ---- figures for `pnet quantize` ------------------------------------------------------------------------
def compare(graph: Graph, params: dict, result: QuantResult, inputs: dict) -> dict:
    """Per-layer output errors (filled into the layers' reports) and each float model output's error against
    the float model: {output: {"max_abs", "rel_l2"}}."""
    sites = [s for s in result.sites if s.new_output is not None and s.orig_output is not None]
    ref_outs, ref_sites = _run_all(graph, inputs, params, [s.orig_output for s in sites])
    q_outs, q_sites = _run_all(result.graph, inputs, result.params, [s.new_output for s in sites])
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


def _run_all(g: Graph, inputs, params, extra: list[Value]):
    from ..backends import numpy_ref
    names = [n for n, _ in g.outputs]
    tmp = Graph(g.name, g.inputs, g.params, g.nodes, list(g.outputs) + [(f"__site{i}", v) for i, v in enumerate(extra)],
                dict(g.dims))
    out = numpy_ref.run(tmp, inputs, params)
    return {k: out[k] for k in names}, [out[f"__site{i}"] for i in range(len(extra))]
