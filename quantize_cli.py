"""`pnet quantize FILE --scheme w8a8 [--calib data.npz] [--params w.safetensors] [--group-size N] [-o q.safetensors]`,
and the `--quantize SCHEME` option of `pnet run` / `pnet compile` (the logic lives here; cli.py only wires it)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import UsageError


def add_options(sp, scheme_flag: bool = True) -> None:
    """The quantization options of check / show / run / compile (`pnet quantize` has --scheme instead)."""
    if scheme_flag:
        sp.add_argument("--quantize", metavar="SCHEME", default=None,
                        help="quantize the model first: w8a8, w8, w4, binary, ternary, or 'annotations' "
                             "(only the @quantize-annotated layers)")
    sp.add_argument("--calib", metavar="NPZ", help="calibration inputs (.npz by input name): static activation scales, "
                                                   "and GPTQ rounding of w8/w4 weights")
    sp.add_argument("--no-gptq", action="store_true", help="with --calib, round weights to nearest instead of GPTQ")
    sp.add_argument("--group-size", type=int, default=128, help="group size of w8/w4 weight scales (default 128)")
    sp.add_argument("--act", default="auto", choices=["auto", "static", "dynamic"],
                    help="w8a8 activation scales: static (calibrated; default with --calib) or dynamic per token")
    sp.add_argument("--observer", default="minmax", choices=["minmax", "percentile", "mse"],
                    help="calibration observer for static activation scales")
    sp.add_argument("--percentile", type=float, default=99.99)
    sp.add_argument("--fake", action="store_true", help="fake-quant (quantize-dequantize in float) for QAT")


def load_calib(path, graph) -> dict:
    from .passes.quantize import check_calib
    from .weights import _read
    return check_calib(graph, _read(Path(path)), f"{path}")


def apply(args, graph, params: dict, scheme=None):
    """(graph, params) quantized as the options say; unchanged when no scheme was asked for."""
    scheme = scheme if scheme is not None else getattr(args, "quantize", None)
    if scheme is None:
        return graph, params, None
    from .passes.quantize import quantize_model
    calib = load_calib(args.calib, graph) if getattr(args, "calib", None) else None
    if scheme == "annotations":
        scheme = None
    r = quantize_model(graph, params, scheme, calib, group_size=args.group_size, act=args.act,
                       observer=args.observer, percentile=args.percentile, fake=args.fake,
                       gptq_rounding=not getattr(args, "no_gptq", False))
    return r.graph, r.params, r


def add_parser(sub) -> None:
    sp = sub.add_parser("quantize", help="quantize a model's weights (and activations); print per-layer scales, "
                                         "errors against the float model, and weight bytes before/after")
    sp.add_argument("file", help="a .pnet file")
    sp.add_argument("--model", help="which model in the file (default: the first)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter or bind a symbolic dim")
    sp.add_argument("--passes", metavar="SPEC", help="pass pipeline before quantizing (default cleanup)")
    sp.add_argument("--scheme", default=None,
                    help="w8a8, w8, w4, binary, ternary (default: only the @quantize-annotated layers)")
    sp.add_argument("--params", help="float weights (.safetensors or .npz); default: seeded init")
    sp.add_argument("--seed", type=int, default=0, help="seed of the default weights and evaluation inputs")
    sp.add_argument("-i", "--inputs", help="evaluation inputs (.npz); default: seeded random")
    sp.add_argument("-o", "--output", help="write the quantized parameters (.safetensors or .npz)")
    sp.add_argument("--json", action="store_true")
    add_options(sp, scheme_flag=False)
    sp.set_defaults(fn=run)


def run(args) -> int:
    from .backends import numpy_ref
    from .cli import _load, _passes
    from .passes.quantize import compare
    from .weights import load_inputs, load_params, save_params
    result = _load(args)
    g = _passes(result.graph, args)
    params = load_params(args.params, g) if args.params else numpy_ref.init_params(g, args.seed)
    qg, qparams, r = apply(args, g, params, scheme=args.scheme if args.scheme is not None else "annotations")
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
    return 0


def maybe_quantize(args, graph, params: dict | None = None):
    """For check / show / run / compile: (graph, params) after `--quantize SCHEME`, or as they were. Without
    `params` the weights come from `--params` or the seeded init (quantizing needs concrete weights)."""
    if getattr(args, "quantize", None) is None:
        return graph, params
    if params is None:
        from .backends import numpy_ref
        from .weights import load_params
        p = getattr(args, "params", None)
        params = load_params(p, graph) if p else numpy_ref.init_params(graph, getattr(args, "seed", 0))
    g, params, _ = apply(args, graph, params)
    return g, params


def weight_bytes(args, before, after) -> dict | None:
    """check / show --kernels with `--quantize`: every parameter's bytes before and after (scales included)."""
    if getattr(args, "quantize", None) is None:
        return None
    from .ir.analysis import param_bytes
    return {"scheme": args.quantize, "param_bytes_before": param_bytes(before), "param_bytes_after": param_bytes(after)}


def weight_bytes_line(fig: dict) -> str:
    ratio = fig["param_bytes_before"] / fig["param_bytes_after"] if fig["param_bytes_after"] else float("nan")
    return (f"weights: {fig['param_bytes_before']:,} -> {fig['param_bytes_after']:,} bytes ({ratio:.2f}x smaller, "
            f"quantized: {fig['scheme']}; scales included)")


def save_next_to(args, params: dict, out: Path) -> None:
    """`pnet compile --quantize`: the quantized weights go beside the compiled output."""
    if getattr(args, "quantize", None) is None or params is None:
        return
    from .weights import save_beside
    save_beside(out, params, "quantized")
