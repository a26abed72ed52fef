"""What the subcommands of `pnet` share: the exit codes, the parser class whose errors are one line, the model
options (FILE, --model, --set, --passes) and loading a model with them, and the `--quantize SCHEME` / `--sparse
SPEC` options of check / show / run / compile with the functions that apply them (passes/quantize/,
passes/sparsify.py) and report the bytes and FLOPs before and after.

Every subcommand module imports this one; this one imports no subcommand."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other pnet error
        raise UsageError(f"{self.prog}: {message}")


# ---- the model options and loading ---------------------------------------------------------------------------
def add_model_args(sp, passes_help: str = "pass pipeline: 'cleanup' (default), 'none', or a list like fold,cse,dce") -> None:
    sp.add_argument("file", help="a .pnet file, or a stdlib model by name (stdlib:gpt2, or gpt2 when no such file exists)")
    sp.add_argument("--model", help="which model in the file (default: the first)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter or bind a symbolic dim")
    sp.add_argument("--test-config", action="store_true",
                    help="apply the file's small test configuration (its '# test: --set ...' line); --set overrides it")
    sp.add_argument("--passes", metavar="SPEC", help=passes_help)


def parse_sets(pairs) -> dict:
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise UsageError(f"--set {item}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise UsageError(f"--set {item}: '{k}' is not a name")
        out[k] = v.strip()
    return out


def resolve_file(spec: str) -> tuple[Path, str | None]:
    """The file a FILE argument names, and the model it picks (None: the file's first): `stdlib:NAME` is the
    stdlib model NAME (a model or file name); a bare NAME is one too when no file of that name exists here."""
    from ..dsl import stdlib
    if spec.startswith("stdlib:"):
        name = spec[len("stdlib:"):]
    elif Path(spec).exists() or "/" in spec or "\\" in spec or spec.endswith(".pnet"):
        return Path(spec), None
    else:
        name = spec
    entry = stdlib.find_or_none(name)
    if entry is None:
        hint = stdlib.did_you_mean(name)
        raise UsageError(f"{spec}: no such file, and no stdlib model named '{name}'{hint} (see `pnet stdlib list`)"
                         if not spec.startswith("stdlib:") else
                         f"{spec}: no stdlib model named '{name}'{hint} (see `pnet stdlib list`)")
    return entry.path, (entry.name if entry.name == name else None)


def model_overrides(args, path: Path) -> dict:
    """--test-config's settings (the file's `# test:` line), then --set's on top."""
    overrides = {}
    if getattr(args, "test_config", False):
        from ..dsl.stdlib import small_config
        config = small_config(path)
        if config is None:
            raise UsageError(f"--test-config: {path} has no '# test: --set KEY=VALUE ...' line in its header")
        overrides.update(config)
    overrides.update(parse_sets(args.set))
    return overrides


def load_model(args):
    from ..dsl.compile import load_file
    path, model = resolve_file(args.file)
    overrides = model_overrides(args, path)
    # dims given with --set must be integers; hyperparameters are coerced by their declared type
    # training: `run --train-mode`, or a compiled training step (`pnet train`, `--train`): batch statistics
    # and `update`d state
    step = bool(getattr(args, "train", False) or getattr(args, "train_step", False))
    result = load_file(path, getattr(args, "model", None) or model, overrides,
                       training=step or bool(getattr(args, "train_mode", False)),
                       dim_label=lambda k, v: f"--set {k}={v}")
    if step:   # no dropout in a compiled step yet: its seed is a constant, so the mask would repeat every step
        from ..ir.ops.random import set_run_mode
        set_run_mode(result.graph, training=False)
    for w in result.warnings:   # the front end's warnings (arguments easy to swap, ...): stderr, the run goes on
        print(w, file=sys.stderr)
    return result


def run_pipeline(graph, args):
    from ..passes.manager import run_passes
    spec = getattr(args, "passes", None) or "cleanup"
    return run_passes(graph, spec, stop_after=getattr(args, "after", None))


def json_dim(d):
    """A dim for --json: a number when it is one, the symbol or expression as text when not ("B", "2*T")."""
    return int(d) if getattr(d, "is_Integer", False) or isinstance(d, int) else str(d)


def tensor_info(name, v):
    return {"name": name, "dtype": v.type.dtype, "shape": [json_dim(d) for d in v.type.shape]}


def add_lossy_options(sp) -> None:
    """--quantize SCHEME (with --calib, --group-size, ...) and --sparse SPEC, for check / show / run / compile."""
    add_quantize_options(sp)
    add_sparse_options(sp)


# ---- --quantize SCHEME ---------------------------------------------------------------------------------------
def add_quantize_options(sp, scheme_flag: bool = True) -> None:
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
    sp.add_argument("--percentile", type=float, default=99.99,
                    help="with --observer percentile: the percentile of |x| that sets the scale (default 99.99)")
    sp.add_argument("--fake", action="store_true", help="fake-quant (quantize-dequantize in float) for QAT")


def load_calib(path, graph) -> dict:
    from ..passes.quantize import check_calib
    from ..weights import _read
    return check_calib(graph, _read(Path(path)), f"{path}")


def apply_quantize(args, graph, params: dict, scheme=None):
    """(graph, params) quantized as the options say; unchanged when no scheme was asked for."""
    scheme = scheme if scheme is not None else getattr(args, "quantize", None)
    if scheme is None:
        return graph, params, None
    from ..passes.quantize import quantize_model
    calib = load_calib(args.calib, graph) if getattr(args, "calib", None) else None
    if scheme == "annotations":
        scheme = None
    r = quantize_model(graph, params, scheme, calib, group_size=args.group_size, act=args.act,
                       observer=args.observer, percentile=args.percentile, fake=args.fake,
                       gptq_rounding=not getattr(args, "no_gptq", False))
    return r.graph, r.params, r


def maybe_quantize(args, graph, params: dict | None = None):
    """For check / show / run / compile: (graph, params) after `--quantize SCHEME`, or as they were. Without
    `params` the weights come from `--params` or the seeded init (quantizing needs concrete weights)."""
    if getattr(args, "quantize", None) is None:
        return graph, params
    if params is None:
        from ..backends import numpy_ref
        from ..weights import load_params
        p = getattr(args, "params", None)
        params = load_params(p, graph) if p else numpy_ref.init_params(graph, getattr(args, "seed", 0))
    g, params, _ = apply_quantize(args, graph, params)
    return g, params


def weight_bytes(args, before, after) -> dict | None:
    """check / show --kernels with `--quantize`: every parameter's bytes before and after (scales included)."""
    if getattr(args, "quantize", None) is None:
        return None
    from ..ir.analysis import param_bytes
    return {"scheme": args.quantize, "param_bytes_before": param_bytes(before), "param_bytes_after": param_bytes(after)}


def weight_bytes_line(fig: dict) -> str:
    ratio = fig["param_bytes_before"] / fig["param_bytes_after"] if fig["param_bytes_after"] else float("nan")
    return (f"weights: {fig['param_bytes_before']:,} -> {fig['param_bytes_after']:,} bytes ({ratio:.2f}x smaller, "
            f"quantized: {fig['scheme']}; scales included)")


def save_quantized_next_to(args, params: dict, out: Path) -> None:
    """`pnet compile --quantize`: the quantized weights go beside the compiled output."""
    if getattr(args, "quantize", None) is None or params is None:
        return
    from ..weights import save_beside
    save_beside(out, params, "quantized")


# ---- --sparse SPEC -------------------------------------------------------------------------------------------
def add_sparse_options(sp) -> None:
    sp.add_argument("--sparse", metavar="SPEC", default=None,
                    help="sparsify the model first: N:M (2:4), block=B,density=D, density=D (unstructured), "
                         "or 'annotations' (only the @sparse-annotated layers)")


def maybe_sparsify(args, graph, params: dict | None = None):
    """(graph, params, result) after `--sparse SPEC`, or (graph, params, None) as they were. Without `params` the
    weights come from `--params` or the seeded init (magnitude pruning needs concrete weights)."""
    spec = getattr(args, "sparse", None)
    if spec is None:
        return graph, params, None
    from ..passes.sparsify import sparsify_model
    if params is None:
        from ..backends import numpy_ref
        from ..weights import load_params
        p = getattr(args, "params", None)
        p = p if isinstance(p, str) else None  # `show --params` is a flag, not a weight file
        params = load_params(p, graph) if p else numpy_ref.init_params(graph, getattr(args, "seed", 0))
    r = sparsify_model(graph, params, None if spec == "annotations" else spec)
    return r.graph, r.params, r


def sparsity_figures(before, after, dims: dict) -> dict:
    """The kernel plans' totals and the parameter bytes of the dense and the sparsified graph."""
    from ..ir.analysis import param_bytes
    from ..passes.fuse import plan
    t0, t1 = plan(before).totals(dims), plan(after).totals(dims)
    return {"flops_before": t0["flops"], "flops_after": t1["flops"], "bytes_before": t0["bytes"],
            "bytes_after": t1["bytes"], "weight_bytes_before": param_bytes(before), "weight_bytes_after": param_bytes(after)}


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)  # a figure with unbound dims is an expression


def _ratio(a, b) -> str:
    """after / before (below 1: the sparse model is cheaper)."""
    return f"after/before {b / a:.3f}" if isinstance(a, int) and isinstance(b, int) and a else "-"


def sparsity_lines(args, result, fig: dict) -> list[str]:
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


def sparsity_json(result, fig: dict) -> dict:
    return {**fig, "layers": [{"weight": l.weight, "layer": l.name, "layout": l.layout, "op": l.op,
                               "density": l.density, "weight_bytes_before": l.bytes_before,
                               "weight_bytes_after": l.bytes_after, "weight_rel_l2": l.weight_rel_l2}
                              for l in result.layers],
            "skipped": [{"weight": n, "why": w} for n, w in result.skipped]}


def save_sparse_next_to(args, params: dict, out: Path) -> None:
    """`pnet compile --sparse` (without --quantize, which writes the weights itself): the sparse weights (values and
    index params) go beside the compiled output."""
    if getattr(args, "sparse", None) is None or getattr(args, "quantize", None) is not None or params is None:
        return
    from ..weights import save_beside
    save_beside(out, params, "sparse")
