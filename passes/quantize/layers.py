"""Which layers a quantization touches: a Site is one quantizable layer (a matmul or conv with a float weight
parameter), chosen by the scheme or by `@quantize(...)` annotations; LayerReport and QuantResult are what the
pass reports about them."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import PnetError
from ...ir.analysis import weight_of_matmul
from ...ir.graph import Annotation, Graph, Node, Param, Value
from ...ir.types import is_float
from .schemes import ANNOTATION_KEYS, CONVS, Options, _options


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


def _free_values(body: Graph):
    for n in body.walk():
        yield from (v for v in n.inputs if v is not None)
