"""`pnet check FILE [--json] [--equivariance] [--quantize SCHEME] [--sparse SPEC]`: parse and shape-check a model;
print its inputs, outputs, parameter count and bytes, and FLOPs (and with --quantize / --sparse, before and after)."""
from __future__ import annotations

import json

from .common import (EXIT_OK, add_lossy_options, add_model_args, load_model, maybe_quantize, maybe_sparsify,
                     run_pipeline, sparsity_figures, sparsity_json, sparsity_lines, tensor_info, weight_bytes,
                     weight_bytes_line)


def add_parser(sub) -> None:
    sp = sub.add_parser("check", help="parse and shape-check; print inputs, outputs, params, FLOPs")
    add_model_args(sp)
    sp.add_argument("--json", action="store_true", help="print JSON (numbers as numbers) instead of text")
    sp.add_argument("--equivariance", action="store_true",
                    help="tie @equivariant layers, report params before/after and the max |f(g.x) - g.f(x)| per output")
    sp.add_argument("-v", "--verbose", action="store_true", help="print each step (elaborate, passes) as it starts")
    add_lossy_options(sp)
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..backends.numpy_ref import bind_dims
    from ..ir.analysis import at, flops, param_bytes, param_count
    from ..backends.progress import Progress
    with Progress(2, verbose=args.verbose) as progress:   # a large model takes seconds to elaborate
        progress.step(f"elaborate {args.file} ...")
        result = load_model(args)
        progress.step(f"passes ({args.passes or 'cleanup'}) over {sum(1 for _ in result.graph.walk()):,} ops ...")
        g = run_pipeline(result.graph, args)
    if getattr(args, "equivariance", False):  # testing/equivariance.py: tie, then measure |f(g.x) - g.f(x)|
        from ..testing.equivariance import cli_check
        return cli_check(g, args.json)
    g_dense = g  # --sparse SPEC: pruned first; FLOPs/bytes before and after below
    g, sparams, sparse = maybe_sparsify(args, g)
    g_float = g  # --quantize SCHEME
    g, _ = maybe_quantize(args, g, sparams)
    quant = weight_bytes(args, g_float, g)
    dims = bind_dims(g)
    check_at_bound_dims(g, dims)
    f = flops(g)
    info = {
        "model": g.name,
        "inputs": [tensor_info(n, v) for n, v in g.inputs],
        "outputs": [tensor_info(n, v) for n, v in g.outputs],
        "params": param_count(g),            # trainable: the published count (torch's model.parameters())
        "param_bytes": param_bytes(g),
        "state": param_count(g, state=True),  # `state` tensors: running statistics, frozen weights (buffers)
        "state_bytes": param_bytes(g, state=True),
        "flops": at(f, dims),
        "flops_expr": str(f),
        "dims": dims,
        "hyperparameters": {k: (v if isinstance(v, (int, float, bool, str)) else str(v)) for k, v in result.hyper.items()},
    }
    if sparse is not None:
        info["sparsity"] = sparsity_json(sparse, sparsity_figures(g_dense, g, dims))
    if quant is not None:
        info["quantization"] = quant
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"model {g.name}: ok")
    for n, v in g.inputs:
        print(f"  input  {n}: {v.type}")
    for n, v in g.outputs:
        print(f"  output {n}: {v.type}")
    print(f"  params {info['params']:,} ({info['param_bytes']:,} bytes)")
    if info["state"]:
        print(f"  state  {info['state']:,} ({info['state_bytes']:,} bytes, not trained)")
    dim_text = ", ".join(f"{k}={v}" for k, v in dims.items())
    print(f"  flops  {info['flops']:,}" + (f" at {dim_text} ({f})" if dims else ""))
    if quant is not None:
        print("  " + weight_bytes_line(quant))
    if sparse is not None:
        print("\n".join(sparsity_lines(args, sparse, info["sparsity"])))
    return EXIT_OK


def check_at_bound_dims(g, dims: dict) -> None:
    """With dims bound by --set (or --test-config), what a run at those sizes would refuse before touching data
    (a slice past the end, an arange(T) index past a table of ctx rows: backends/bound_check.py) fails the check
    too, with run's message and the sizes it assumed. Without bound dims the check stays symbolic: the default
    sizes are a run's convenience, not the user's claim."""
    if not g.dims:
        return
    from ..backends.bound_check import check_bound
    from ..errors import PnetError
    try:
        check_bound(g, dims)
    except PnetError as e:
        e.message += f" (at {', '.join(f'{k}={v}' for k, v in dims.items())})"
        raise
