"""`pnet show FILE [--params] [--kernels] [--after PASS] [--json] [--train]`: the IR after the pass pipeline (or after
one pass), the parameter list, or the kernel plan (with --quantize / --sparse, its bytes and FLOPs before and after);
with --train, those of the training step (forward, gradients and optimizer update: passes/train.py)."""
from __future__ import annotations

import json
import sys

from .common import (EXIT_OK, add_lossy_options, add_model_args, load_model, maybe_quantize, maybe_sparsify,
                     run_pipeline, sparsity_figures, sparsity_json, sparsity_lines, weight_bytes, weight_bytes_line)
from .train import add_train_args, step_graph_of


def add_parser(sub) -> None:
    sp = sub.add_parser("show", help="print the IR (or the parameters)")
    add_model_args(sp)
    sp.add_argument("--params", action="store_true", help="list every parameter's name, shape and dtype")
    sp.add_argument("--kernels", action="store_true", help="the kernel plan: kernels, bytes moved, FLOPs, fallbacks")
    sp.add_argument("--after", metavar="PASS", help="print the IR after this pass of the pipeline")
    sp.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_lossy_options(sp)
    add_train_args(sp)   # --train: the training step's IR / kernel plan (cli/train.py)
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..ir.text import print_graph
    result = load_model(args)
    g = run_pipeline(result.graph, args)
    g_dense = g  # --sparse SPEC
    g, sparams, sparse = maybe_sparsify(args, g)
    g_float = g
    g, _ = maybe_quantize(args, g, sparams)
    quant = weight_bytes(args, g_float, g)
    if args.train:
        g = step_graph_of(args, g)
    if args.kernels:
        return _kernels(args, g, g_dense, sparse, quant)
    if args.params:
        return _params(args, g)
    if args.json:
        print(json.dumps({"model": g.name, "ir": print_graph(g)}, indent=2))
    else:
        sys.stdout.write(print_graph(g))
    return EXIT_OK


def _kernels(args, g, g_dense, sparse, quant) -> int:
    """`--kernels`: the fusion pass's kernel plan, and the weight bytes (before -> after with --quantize)."""
    from ..backends.numpy_ref import bind_dims
    from ..ir.analysis import param_bytes
    from ..passes.fuse import describe, format_plan, plan
    kp = plan(g)
    dims = bind_dims(g)
    if sparse is not None:
        sfig = sparsity_json(sparse, sparsity_figures(g_dense, g, dims))
    if args.json:
        print(json.dumps({**describe(kp, dims), "weight_bytes": param_bytes(g),
                          **({"sparsity": sfig} if sparse is not None else {}),
                          **({"quantization": quant} if quant is not None else {})}, indent=2))
    else:
        sys.stdout.write(format_plan(kp, dims))
        print(weight_bytes_line(quant) if quant is not None else f"weights: {param_bytes(g):,} bytes")
        from ..passes.equivariant import param_counts
        before, after = param_counts(g)
        if before != after:
            print(f"params: {before:,} before equivariance tying, {after:,} after")
        if sparse is not None:
            print("\n".join(sparsity_lines(args, sparse, sfig)))
    return EXIT_OK


def _params(args, g) -> int:
    """`--params`: every parameter's name, dtype, shape and initializer (`state`: not trained, a buffer)."""
    from .common import json_dim
    rows = [{"name": p.name, "shape": [json_dim(d) for d in p.value.type.shape], "dtype": p.value.type.dtype,
             "init": str(p.init), "state": p.state} for p in g.params]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['dtype']}[{', '.join(map(str, r['shape']))}]  {r['init']}"
                  + ("  (state)" if r["state"] else ""))
    return EXIT_OK
