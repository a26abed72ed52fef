"""The graph rewrite: each quantized weight becomes integer parameters (packed for sub-byte widths) with their
scales; a layer on the integer path quantizes its input (static, dynamic or sign) and runs qmatmul / qconv with
a dequantize epilogue; an embedding lookup gathers the integer rows; any other use reads the dequantized
weight. The fake-quant form (for quantization-aware training) keeps the weights float."""
from __future__ import annotations

import numpy as np

from ...errors import PnetError
from ...ir import registry
from ...ir.graph import Graph, Init, Node, Param, Value, replace_uses
from ...ir.ops.quant import _dequantize_np, _quantize_np
from ...ir.types import BYTES, DTYPES, TensorType
from .layers import LayerReport, QuantResult, Site, _free_values
from .rounding import QWeight, _quantize_weight, _rel, weight_scale
from .schemes import CONVS, _act_mode


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
