"""The `--sparse SPEC` option of `pnet check / show / run / compile` (the logic lives here; cli.py only wires it):
prune the model with passes/sparsify.py first, and report the kernel plan's FLOPs and bytes before and after."""
from __future__ import annotations

from pathlib import Path


def add_options(sp) -> None:
    sp.add_argument("--sparse", metavar="SPEC", default=None,
                    help="sparsify the model first: N:M (2:4), block=B,density=D, density=D (unstructured), "
                         "or 'annotations' (only the @sparse-annotated layers)")


def maybe_sparsify(args, graph, params: dict | None = None):
    """(graph, params, result) after `--sparse SPEC`, or (graph, params, None) as they were. Without `params` the
    weights come from `--params` or the seeded init (magnitude pruning needs concrete weights)."""
    spec = getattr(args, "sparse", None)
    if spec is None:
        return graph, params, None
    from .passes.sparsify import sparsify_model
    if params is None:
        from .backends import numpy_ref
        from .weights import load_params
        p = getattr(args, "params", None)
        p = p if isinstance(p, str) else None  # `show --params` is a flag, not a weight file
        params = load_params(p, graph) if p else numpy_ref.init_params(graph, getattr(args, "seed", 0))
    r = sparsify_model(graph, params, None if spec == "annotations" else spec)
    return r.graph, r.params, r


def figures(before, after, dims: dict) -> dict:
    """The kernel plans' totals and the parameter bytes of the dense and the sparsified graph."""
    from .ir.analysis import param_bytes
    from .passes.fuse import plan
    t0, t1 = plan(before).totals(dims), plan(after).totals(dims)
    return {"flops_before": t0["flops"], "flops_after": t1["flops"], "bytes_before": t0["bytes"],
            "bytes_after": t1["bytes"], "weight_bytes_before": param_bytes(before), "weight_bytes_after": param_bytes(after)}


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)  # a figure with unbound dims is an expression


def _ratio(a, b) -> str:
    """after / before (below 1: the sparse model is cheaper)."""
    return f"after/before {b / a:.3f}" if isinstance(a, int) and isinstance(b, int) and a else "-"


def lines(args, result, fig: dict) -> list[str]:
    """Human-readable report: the per-layer layouts, then FLOPs and bytes before -> after."""
    out = [f"sparsity ({args.sparse}): {len(result.layers)} layer{'s' * (len(result.layers) != 1)} sparsified"]
    for l in result.layers:
        out.append(f"  {l.weight}: {l.layout} -> {l.op}, density {l.density:.4g}, weight bytes {l.bytes_before:,} -> "
                   f"{l.bytes_after:,}, rel_l2 {l.weight_rel_l2:.4g}")
    for name, why in result.skipped:
        out.append(f"  {name}: kept dense ({why})")
    out.append(f"  flops   {_n(fig['flops_before'])} -> {_n(fig['flops_after'])} "
               f"({_ratio(fig['flops_before'], fig['flops_after'])})")
    out.append(f"  bytes   {_n(fig['bytes_before'])} -> {_n(fig['bytes_after'])} moved by the kernel plan "
               f"({_ratio(fig['bytes_before'], fig['bytes_after'])})")
    out.append(f"  weights {_n(fig['weight_bytes_before'])} -> {_n(fig['weight_bytes_after'])} bytes "
               f"({_ratio(fig['weight_bytes_before'], fig['weight_bytes_after'])})")
    return out


def as_json(result, fig: dict) -> dict:
    return {**fig, "layers": [{"weight": l.weight, "layer": l.name, "layout": l.layout, "op": l.op,
                               "density": l.density, "weight_bytes_before": l.bytes_before,
                               "weight_bytes_after": l.bytes_after, "weight_rel_l2": l.weight_rel_l2}
                              for l in result.layers],
            "skipped": [{"weight": n, "why": w} for n, w in result.skipped]}


def save_next_to(args, params: dict, out: Path) -> None:
    """`pnet compile --sparse` (without --quantize, which writes the weights itself): the sparse weights (values and
    index params) go beside the compiled output."""
    if getattr(args, "sparse", None) is None or getattr(args, "quantize", None) is not None or params is None:
        return
    from .weights import save_beside
    save_beside(out, params, "sparse")
