"""`pnet quantize FILE --scheme w8a8|w8|w4|binary|ternary [--calib data.npz] [--params w.safetensors]
[--group-size N] [-o q.safetensors]`: quantize a model's weights (passes/quantize/) and print per layer the scales
and the error against the float model, the outputs' errors, and the weight bytes before/after. (The `--quantize
SCHEME` option of check / show / run / compile is in common.py.)"""
from __future__ import annotations

import json

from .common import EXIT_OK, add_model_args, add_quantize_options, apply_quantize, load_model, run_pipeline


def add_parser(sub) -> None:
    sp = sub.add_parser("quantize", help="quantize a model's weights (and activations); print per-layer scales, "
                                         "errors against the float model, and weight bytes before/after")
    add_model_args(sp, passes_help="pass pipeline before quantizing (default cleanup)")
    sp.add_argument("--scheme", default=None,
                    help="w8a8, w8, w4, binary, ternary (default: only the @quantize-annotated layers)")
    sp.add_argument("--params", help="float weights (.safetensors or .npz); default: seeded init")
    sp.add_argument("--seed", type=int, default=0, help="seed of the default weights and evaluation inputs")
    sp.add_argument("-i", "--inputs", help="evaluation inputs (.npz); default: seeded random")
    sp.add_argument("-o", "--output", help="write the quantized parameters (.safetensors or .npz)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_quantize_options(sp, scheme_flag=False)
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..backends import numpy_ref
    from ..passes.quantize import compare
    from ..weights import load_inputs, load_params, save_params
    from .paths import WEIGHT_SUFFIXES, check_output_file, check_weight_file
    if args.output:   # before the model loads: a bad -o fails now, not after the calibration
        check_output_file("-o", args.output, WEIGHT_SUFFIXES, "weight-file")
    if args.params:
        check_weight_file("--params", args.params)
    result = load_model(args)
    g = run_pipeline(result.graph, args)
    params = load_params(args.params, g) if args.params else numpy_ref.init_params(g, args.seed)
    qg, qparams, r = apply_quantize(args, g, params, scheme=args.scheme if args.scheme is not None else "annotations")
    inputs = load_inputs(args.inputs, g) if args.inputs else numpy_ref.random_inputs(g, args.seed + 1)
    outs = compare(g, params, r, inputs)
    if args.output:
        save_params(args.output, qparams)
    info = {
        "model": g.name, "scheme": args.scheme or "annotations",
        "layers": [{"layer": l.name, "op": l.op, "scheme": l.scheme, "weight": l.weight,
                    "weight_scale_min": l.weight_scale[0], "weight_scale_max": l.weight_scale[1],
                    "act_scale": l.act_scale, "weight_max_abs": l.weight_max_abs, "weight_rel_l2": l.weight_rel_l2,
                    "out_max_abs": l.out_max_abs, "out_rel_l2": l.out_rel_l2} for l in r.layers],
        "outputs": outs,
        "quantized_weight_bytes_before": r.float_weight_bytes, "quantized_weight_bytes_after": r.quant_weight_bytes,
        "param_bytes_before": r.bytes_before, "param_bytes_after": r.bytes_after,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"model {g.name}: {info['scheme']}, {len(r.layers)} layer{'s' * (len(r.layers) != 1)} quantized")
        width = max((len(l.name) for l in r.layers), default=5)
        for l in r.layers:
            out = (f"  out max_abs={l.out_max_abs:.4g} rel_l2={l.out_rel_l2:.4g}" if l.out_rel_l2 is not None else "")
            print(f"  {l.name:<{width}}  {l.op:<8} {l.scheme:<8} w_scale=[{l.weight_scale[0]:.4g}, {l.weight_scale[1]:.4g}]"
                  f"  act={l.act_scale}  w max_abs={l.weight_max_abs:.4g} rel_l2={l.weight_rel_l2:.4g}{out}")
        for name, e in outs.items():
            print(f"  output {name}: max_abs={e['max_abs']:.4g} rel_l2={e['rel_l2']:.4g}")
        ratio = r.float_weight_bytes / r.quant_weight_bytes if r.quant_weight_bytes else float("nan")
        print(f"  quantized weights: {r.float_weight_bytes:,} -> {r.quant_weight_bytes:,} bytes ({ratio:.2f}x, scales included)")
        tot = r.bytes_before / r.bytes_after if r.bytes_after else float("nan")
        print(f"  all parameters:    {r.bytes_before:,} -> {r.bytes_after:,} bytes ({tot:.2f}x)")
        if args.output:
            print(f"wrote {args.output}")
    return EXIT_OK
