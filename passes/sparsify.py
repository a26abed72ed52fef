"""The sparsity pass: magnitude pruning of matmul weights into explicit sparse layouts (ir/ops/sparse.py), so the
kernel plan and the backends see only what is stored.

    new_graph, new_params = sparsify(graph, params, "2:4")

Which layers: with a `spec` every sparsifiable layer of the model (a `matmul(x, W)` or `matmul(x, W.T)` with a
rank-2 float weight parameter W that nothing else reads); `@sparse(...)` on a node overrides the spec for that
node (`@sparse("none")` keeps it dense), `@sparse(...)` on a `param` sparsifies that weight's layers. Without a
spec only the annotated layers are pruned, and an annotation that covers no sparsifiable layer is an error at
the annotation. With a whole-model spec a layer whose shape does not fit (K not a multiple of M, a dim not a
multiple of the block) stays dense and is listed in `skipped`; if no layer fits, that is an error.

Specs (`parse_spec`; the annotation takes the same as arguments, `@sparse("2:4")`, `@sparse(block=32,
density=0.25)`, `@sparse(density=0.1)`, `@sparse(n=2, m=4)`):
- `N:M` (`2:4`): semi-structured, in every group of M consecutive weights along the reduction axis K of an
  output column keep the N largest |w| -> `nm_matmul(x, values [K*N/M, Nout], meta u8 [K*N/M, Nout])`;
- `block=B,density=D`: keep the round(D * blocks) B x B blocks of W with the largest L2 norm (at least one)
  -> `bsr_matmul(x, values [nnz, B, B], col_idx i32, row_ptr i32)`;
- `density=D`: unstructured, keep the round(D * K * Nout) largest |w| (at least one) -> CSR, i.e. `bsr_matmul`
  with 1x1 blocks.
Ties keep the lower index. The stored values and index params are the pruned weight and its mask together, so a
(fine-tuned) sparse model round-trips through safetensors: load them into the sparsified graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import PnetError, UsageError
from ..ir.analysis import weight_of_matmul
from .cleanup import drop_unused_params
from ..ir import registry
from ..ir.graph import Annotation, Graph, Init, Node, Param, Value, clone, replace_uses
from ..ir.types import BYTES, DTYPES, TensorType, concrete
from .verify import verify

ANNOTATION_KEYS = ("n", "m", "block", "density")


@dataclass(frozen=True)
class Options:
    kind: str                 # nm | block | unstructured | none
    n: int = 2
    m: int = 4
    block: int = 0
    density: float = 1.0

    def __str__(self) -> str:
        if self.kind == "nm":
            return f"{self.n}:{self.m}"
        if self.kind == "block":
            return f"block={self.block},density={self.density:g}"
        if self.kind == "unstructured":
            return f"density={self.density:g}"
        return "none"

    @property
    def target_density(self) -> float:
        return self.n / self.m if self.kind == "nm" else self.density


@dataclass
class Site:
    node: Node
    param: Param
    transposed: bool = False   # matmul(x, transpose(W)): W is [N, K]
    opts: Options | None = None
    annotation: Annotation | None = None


@dataclass
class LayerReport:
    name: str                  # the layer (node scope) or the weight
    weight: str
    layout: str                # 2:4 | block=32,density=0.25 | density=0.1
    op: str
    shape: tuple               # W as [K, N]
    density: float             # kept / total weights
    bytes_before: int
    bytes_after: int
    weight_rel_l2: float       # |W - pruned| / |W|
    transposed: bool = False   # the layer computes x @ W.T (the param is [N, K])


@dataclass
class SparseResult:
    graph: Graph
    params: dict
    layers: list = field(default_factory=list)
    skipped: list = field(default_factory=list)   # (weight, why)
    bytes_before: int = 0                          # every parameter
    bytes_after: int = 0


# ---- specs -------------------------------------------------------------------------------------------
def _err(msg, loc):
    return PnetError(msg, loc) if loc is not None else UsageError(msg)


def _int(v, what, loc) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise _err(f"sparse: {what} must be a positive integer, got {v!r}", loc) from None
        if not f.is_integer():
            raise _err(f"sparse: {what} must be a positive integer, got {v!r}", loc)
        v = int(f)
    if int(v) < 1:
        raise _err(f"sparse: {what} must be a positive integer, got {v!r}", loc)
    return int(v)


def make_options(n=None, m=None, block=None, density=None, loc=None, none=False) -> Options:
    """Options from the spec's parts, checked (one-line errors at `loc`, else UsageError)."""
    if none:
        return Options("none")
    if n is not None or m is not None:
        if block is not None or density is not None:
            raise _err("sparse: N:M takes no block or density (its density is N/M)", loc)
        n = _int(2 if n is None else n, "N", loc)
        m = _int(4 if m is None else m, "M", loc)
        if n > m:
            raise _err(f"sparse: N={n} exceeds M={m} in {n}:{m} (keep N of every M)", loc)
        return Options("nm", n, m)
    if density is None:
        raise _err("sparse: give N:M (e.g. 2:4), block=B,density=D, or density=D", loc)
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise _err(f"sparse: density must be a number in (0, 1], got {density!r}", loc) from None
    if isinstance(density, bool) or not 0 < d <= 1:
        raise _err(f"sparse: density must be in (0, 1], got {density!r}", loc)
    if block is not None:
        return Options("block", block=_int(block, "block size", loc), density=d)
    return Options("unstructured", density=d)


def parse_spec(spec: str, loc=None) -> Options:
    """`2:4`, `n:m`, `block=32,density=0.25`, `density=0.1`, or `none`."""
    text = str(spec).strip().lower()
    if text in ("none", "off", "dense"):
        return Options("none")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    kw: dict = {}
    for p in parts:
        if ":" in p and "=" not in p:
            a, _, b = p.partition(":")
            kw["n"], kw["m"] = a.strip(), b.strip()
        elif "=" in p:
            k, _, v = p.partition("=")
            k = k.strip()
            if k not in ANNOTATION_KEYS:
                raise _err(f"sparse: unknown option '{k}' in '{spec}' (options: {', '.join(ANNOTATION_KEYS)})", loc)
            kw[k] = v.strip()
        else:
            raise _err(f"sparse: cannot read '{spec}' (expected N:M like 2:4, block=B,density=D, or density=D)", loc)
    return make_options(**kw, loc=loc)


def _annotation_options(a: Annotation) -> Options:
    kw = dict(a.kwargs)
    for k in kw:
        if k not in ANNOTATION_KEYS:
            raise PnetError(f"@sparse: unknown argument '{k}' (arguments: a spec like \"2:4\", "
                            f"{', '.join(ANNOTATION_KEYS)})", a.loc)
    if len(a.args) > 1:
        raise PnetError("@sparse takes one positional argument, the spec (\"2:4\", \"block=32,density=0.25\")", a.loc)
    if a.args:
        if kw:
            raise PnetError("@sparse: give the spec either as a string or as arguments, not both", a.loc)
        return parse_spec(a.args[0], a.loc)
    return make_options(kw.get("n"), kw.get("m"), kw.get("block"), kw.get("density"), a.loc)


def _sparse_annotation(annots):
    qs = [a for a in annots if a.name == "sparse"]
    return qs[-1] if qs else None


# ---- the public entry points ----------------------------------------------------------------------
def sparsify(graph: Graph, params: dict, spec: str | Options | None = None) -> tuple[Graph, dict]:
    """(new_graph, new_params): see the module doc. The new graph is verified."""
    r = sparsify_model(graph, params, spec)
    return r.graph, r.params


def sparsify_model(graph: Graph, params: dict, spec: str | Options | None = None) -> SparseResult:
    """Like `sparsify`, with the per-layer figures and the parameter bytes before/after."""
    default = spec if isinstance(spec, Options) else (parse_spec(spec) if spec is not None else None)
    if default is not None and default.kind == "none":
        default = None
    strict = spec is None
    missing = [p.name for p in graph.params if p.name not in params]
    if missing:
        raise UsageError(f"sparsify: missing parameter '{missing[0]}'")
    g = clone(graph)
    result = SparseResult(g, {})
    sites = _select(g, default, strict, result)
    new_params = dict(params)
    _rewrite(g, new_params, sites, strict, result)
    if default is not None and not result.layers and result.skipped:
        name, why = result.skipped[0]
        raise UsageError(f"sparsify {default}: no layer can be sparsified ({name}: {why})")
    drop_unused_params(g, new_params)
    verify(g)
    result.graph, result.params = g, new_params
    result.bytes_before = _bytes(graph)
    result.bytes_after = _bytes(g)
    return result


def _bytes(g: Graph) -> int:
    return sum(int(np.prod([concrete(d) for d in p.value.type.shape])) * BYTES[p.value.type.dtype] for p in g.params)


# ---- which layers -----------------------------------------------------------------------------------
def _site(n: Node, pvals: dict) -> Site | None:
    found = weight_of_matmul(n, pvals)
    return Site(n, *found) if found is not None else None


def _select(g: Graph, default: Options | None, strict: bool, result: SparseResult) -> list[Site]:
    pvals = {p.value: p for p in g.params}
    param_opts: dict[str, tuple[Options, Annotation]] = {}
    covers: dict = {}
    seen_ops: dict = {}
    for p in g.params:
        a = _sparse_annotation(p.annotations)
        if a is None:
            continue
        key = (a.loc, a)
        covers.setdefault(key, [])
        seen_ops.setdefault(key, []).append(f"parameter {p.name} {p.value.type}")
        param_opts[p.name] = (_annotation_options(a), a)
    sites: list[Site] = []
    for n in g.nodes:
        a = _sparse_annotation(n.annotations)
        s = _site(n, pvals)
        if a is not None:
            key = (a.loc, a)
            covers.setdefault(key, [])
            seen_ops.setdefault(key, []).append(n.op)
            if s is not None:
                covers[key].append(s)
        if s is None:
            continue
        opts, ann = default, None
        if s.param.name in param_opts:
            opts, ann = param_opts[s.param.name]
            covers[(ann.loc, ann)].append(s)
        if a is not None:
            opts, ann = _annotation_options(a), a
        if opts is None or opts.kind == "none":
            continue
        s.opts, s.annotation = opts, ann
        sites.append(s)
    if strict:
        for (loc, a), covered in covers.items():
            if not covered:
                seen = sorted(set(seen_ops.get((loc, a), [])))
                raise PnetError(f"@sparse: covers no sparsifiable op (a matmul x @ W or x @ W.T with a float weight "
                                f"parameter W of rank 2); it covers: {', '.join(seen) or 'nothing'}", loc)
    return sites


# ---- pruning ------------------------------------------------------------------------------------------
def _fit_error(o: Options, k: int, n: int) -> str | None:
    if o.kind == "nm" and k % o.m:
        return f"{o} needs the reduction dim K={k} to be a multiple of M={o.m}"
    if o.kind == "block" and (k % o.block or n % o.block):
        bad = k if k % o.block else n
        return f"block size {o.block} does not divide the weight's dim {bad} (W is [{k}, {n}])"
    return None


def _keep_top(scores: np.ndarray, keep: int) -> np.ndarray:
    """A boolean mask of the `keep` largest scores of a flat array (ties: the lower index)."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    mask = np.zeros(scores.shape, bool)
    mask[order[:keep]] = True
    return mask


def prune_nm(w: np.ndarray, n: int, m: int):
    """(values [K*n/m, N], meta u8 [K*n/m, N], mask [K, N]) of W [K, N]: n largest |w| of every m along K."""
    k, cols = w.shape
    grp = np.abs(w).astype(np.float64).reshape(k // m, m, cols)
    order = np.argsort(-grp, axis=1, kind="stable")[:, :n, :]        # [G, n, N]
    meta = np.sort(order, axis=1)
    values = np.take_along_axis(w.reshape(k // m, m, cols), meta, axis=1)
    mask = np.zeros((k // m, m, cols), bool)
    np.put_along_axis(mask, meta, True, axis=1)
    return values.reshape(-1, cols), meta.reshape(-1, cols).astype(np.uint8), mask.reshape(k, cols)


def prune_blocks(w: np.ndarray, bk: int, bn: int, density: float):
    """(values [nnz, bk, bn], col_idx i32, row_ptr i32, mask [K, N]) of W [K, N]: the blocks of largest L2 norm."""
    k, cols = w.shape
    kb, nb = k // bk, cols // bn
    tiles = w.reshape(kb, bk, nb, bn).transpose(2, 0, 1, 3)           # [nb, kb, bk, bn]: by output block-column
    score = np.sqrt((tiles.astype(np.float64) ** 2).sum(axis=(2, 3))).reshape(-1)
    keep = max(1, int(round(density * score.size)))
    bmask = _keep_top(score, keep).reshape(nb, kb)
    r, c = np.nonzero(bmask)                                          # row-major: grouped by block-column r
    values = tiles[r, c]
    row_ptr = np.concatenate([[0], np.cumsum(bmask.sum(axis=1))]).astype(np.int32)
    mask = np.repeat(np.repeat(bmask.T, bk, axis=0), bn, axis=1)
    return values, c.astype(np.int32), row_ptr, mask


def _rewrite(g: Graph, params: dict, sites: list[Site], strict: bool, result: SparseResult):
    users = g.users()
    out_uses = {v for _, v in g.outputs}
    done: dict[str, tuple] = {}   # param name -> (op, stored values, attrs, opts, transposed)
    site_nodes: dict[str, set] = {}
    for s in sites:
        site_nodes.setdefault(s.param.name, set()).add(s.node)
        if s.transposed:
            site_nodes[s.param.name].add(s.node.inputs[1].producer)
    for s in sites:
        p = s.param
        w = np.asarray(params[p.name])
        weff = w.T if s.transposed else w
        k, ncols = weff.shape
        where = s.annotation.loc if s.annotation is not None else None
        why = _fit_error(s.opts, k, ncols)
        others = [u for u in users.get(p.value, []) if u not in site_nodes[p.name]]
        if why is None and (others or p.value in out_uses):
            ops = sorted({u.op for u in others}) or ["a graph output"]
            why = f"the weight is also read by {', '.join(ops)} (it would need its dense value)"
        if why is None and p.name in done and (done[p.name][3] != s.opts or done[p.name][4] != s.transposed):
            why = "the weight is shared with a layer sparsified differently"
        if why is not None:
            if strict or s.annotation is not None:
                if where is not None:
                    raise PnetError(f"@sparse: {p.name}: {why}", where)
                raise UsageError(f"sparsify: {p.name}: {why}")
            result.skipped.append((p.name, why))
            continue
        if p.name not in done:
            done[p.name] = _store(g, params, p, weff, s.opts, result, s) + (s.opts, s.transposed)
        op, inputs, attrs = done[p.name][:3]
        x = s.node.inputs[0]
        opdef = registry.get(op)
        attrs = opdef.bind_attrs(attrs)
        types = opdef.infer_types([x.type] + [v.type for v in inputs], attrs)
        node = Node(op, [x] + list(inputs), attrs, [], s.node.loc, s.node.scope, s.node.annotations)
        node.outputs = [Value(t, node) for t in types]
        g.nodes[g.nodes.index(s.node)] = node
        replace_uses(g, s.node.outputs[0], node.outputs[0])
    # the transposes that fed pruned weights are dead now
    used = set()
    for n in g.walk():
        used.update(v for v in n.inputs if v is not None)
    used.update(v for _, v in g.outputs)
    g.nodes = [n for n in g.nodes if not (n.op == "transpose" and n.inputs[0] in {pp.value for pp in g.params}
                                          and not any(v in used for v in n.outputs))]


def _store(g: Graph, params: dict, p: Param, w: np.ndarray, o: Options, result: SparseResult, s: Site):
    """Prune W [K, N] and add its compressed params: (op, [param values], attrs)."""
    dtype = p.value.type.dtype
    if o.kind == "nm":
        values, meta, mask = prune_nm(w, o.n, o.m)
        stored = [(".values", values, dtype), (".meta", meta, "u8")]
        op, attrs = "nm_matmul", {"n": o.n, "m": o.m}
    else:
        b = o.block if o.kind == "block" else 1
        values, col_idx, row_ptr, mask = prune_blocks(w, b, b, o.density)
        stored = [(".values", values, dtype), (".col_idx", col_idx, "i32"), (".row_ptr", row_ptr, "i32")]
        op, attrs = "bsr_matmul", {}
    vals = []
    for suffix, arr, dt in stored:
        name = p.name + suffix
        if any(q.name == name for q in g.params):
            raise PnetError(f"sparsify: parameter name '{name}' is taken")
        v = Value(TensorType(dt, arr.shape))
        g.params.append(Param(name, v, Init("zeros"), p.loc))
        params[name] = np.ascontiguousarray(arr.astype(DTYPES[dt]))
        vals.append(v)
    pruned = np.where(mask, w, 0).astype(np.float64)
    den = np.linalg.norm(w.astype(np.float64))
    rel = float(np.linalg.norm(pruned - w) / den) if den > 0 else 0.0
    after = sum(int(np.asarray(params[p.name + sfx]).nbytes) for sfx, _, _ in stored)
    result.layers.append(LayerReport(s.node.scope or p.name, p.name, str(o), op, tuple(w.shape),
                                     float(mask.sum()) / mask.size, w.size * BYTES[dtype], after, rel, s.transposed))
    return op, vals, attrs


def dense_weight(result_params: dict, name: str, op: str, attrs: dict, k: int) -> np.ndarray:
    """The dense masked weight [K, N] a sparsified weight `name` stands for (the oracle's W)."""
    from ..ir.ops.sparse import bsr_dense_np, nm_dense_np
    if op == "nm_matmul":
        return nm_dense_np(result_params[name + ".values"], result_params[name + ".meta"], attrs["n"], attrs["m"])
    v = result_params[name + ".values"]
    return bsr_dense_np(v, result_params[name + ".col_idx"], result_params[name + ".row_ptr"], k // v.shape[1])
