"""`pnet run FILE [-b numpy|torch|triton] [--seed N] [-i in.npz] [--params w.safetensors] [-o out.npz] [--float64]`:
run a model on a backend (seeded random inputs and parameters unless given) and write its outputs. Outputs that
hold NaN or Inf get a warning each (`--debug-nan` names the op that made the first one); under the Triton
interpreter a costly model gets a notice first, and `-v` prints each kernel as it starts."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, run as run_backend
from ..errors import UsageError
from .common import EXIT_OK, add_lossy_options, add_model_args, load_model, maybe_quantize, maybe_sparsify, run_pipeline
from .paths import WEIGHT_SUFFIXES, check_output_file, check_weight_file

# FLOPs above which a Triton-interpreter run gets a notice: the interpreter executes each kernel program as
# NumPy on the CPU, some 1e6-1e7 FLOP/s on a laptop core, so 1e8 is already tens of seconds
SLOW_INTERPRETER_FLOPS = 1e8


def add_parser(sub) -> None:
    sp = sub.add_parser("run", help="run the model and write its outputs to .npz")
    add_model_args(sp)
    sp.add_argument("-b", "--backend", default="numpy", choices=list(BACKENDS), help="where to run it (default: numpy)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random inputs and parameters (default 0)")
    sp.add_argument("-i", "--inputs", help=".npz (or .safetensors) of inputs by name (default: seeded random)")
    sp.add_argument("--cast", action="store_true", help="cast -i arrays to the model's dtypes even when values change")
    sp.add_argument("--params", help="weights file (.safetensors or .npz); default: seeded init")
    sp.add_argument("--save-params", metavar="FILE", help="also write the parameters used (.safetensors or .npz)")
    sp.add_argument("-o", "--output", default="outputs.npz", help="where the outputs go (.npz; default outputs.npz)")
    sp.add_argument("--float64", action="store_true", help="compute every float tensor in float64")
    sp.add_argument("--train-mode", action="store_true", help="run dropout as in training (default: off, the identity)")
    sp.add_argument("--debug-nan", action="store_true",
                    help="when an output holds NaN/Inf, name the first op (file:line:col) that produced one")
    sp.add_argument("-v", "--verbose", action="store_true", help="-b triton: print each kernel as it starts")
    add_lossy_options(sp)
    sp.set_defaults(fn=run)


def _check_paths(args) -> Path:
    """Every path the run will write or read by name, before the model loads (exit 2 naming the flag)."""
    out = check_output_file("-o", args.output, (".npz",), "output-file")
    if args.save_params:
        check_output_file("--save-params", args.save_params, WEIGHT_SUFFIXES, "weight-file")
    if args.params:
        check_weight_file("--params", args.params)
    return out


def run(args) -> int:
    from ..backends import numpy_ref
    from ..weights import load_params, save_params
    from .inputs import load_inputs  # -i with the dtype casts and the --set agreement
    if args.backend not in BACKENDS:
        raise UsageError(f"-b {args.backend}: unknown backend (available: {', '.join(BACKENDS)})")
    out_path = _check_paths(args)
    result = load_model(args)
    from ..ir.ops.random import set_run_mode
    set_run_mode(result.graph, seed=args.seed, training=args.train_mode)   # random ops: the run's seed, dropout's mode
    g = run_pipeline(result.graph, args)
    inputs = load_inputs(args, g) if args.inputs else numpy_ref.random_inputs(g, args.seed)
    params = load_params(args.params, g) if args.params else numpy_ref.init_params(g, args.seed)
    g, params, _ = maybe_sparsify(args, g, params)
    g, params = maybe_quantize(args, g, params)
    outputs = _run(args, g, inputs, params)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, **outputs)
    tmp.replace(out_path)  # written whole, then moved into place
    if args.save_params:
        save_params(args.save_params, params)
    with np.errstate(all="ignore"):  # NaN/Inf are reported below, not as NumPy RuntimeWarnings
        for k, v in outputs.items():
            finite = bool(np.all(np.isfinite(v))) if v.dtype.kind in "fc" else True
            if v.size and v.dtype.kind == "c":   # complex (ir/ops/fft.py): the mean as a complex number, |z|'s mean
                m = complex(np.mean(v))
                stats = f" mean={m.real:.6g}{m.imag:+.6g}j mean|z|={float(np.mean(np.abs(v))):.6g}"
            else:
                stats = f" mean={float(np.mean(v)):.6g} std={float(np.std(v)):.6g}" if v.size else " (empty)"  # a dim bound to 0
            print(f"{k}: {v.dtype}{list(v.shape)}{stats}" + ("" if finite else " (NOT FINITE)"))
    print(f"wrote {out_path}")
    _report_nonfinite(args, g, inputs, params, outputs)
    return EXIT_OK


def _run(args, g, inputs, params) -> dict:
    if args.backend != "triton":
        return run_backend(args.backend, g, inputs, params, float64=args.float64)
    from ..backends.progress import Progress
    from ..backends.triton.device import ensure_mode
    if ensure_mode() == "interpreter":
        _interpreter_cost_notice(g, inputs)
    with Progress(0, verbose=args.verbose):   # the launcher reports each kernel (runtime.step)
        return run_backend(args.backend, g, inputs, params, float64=args.float64)


def _interpreter_cost_notice(g, inputs) -> None:
    from ..backends.numpy_ref import bind_dims
    from ..ir.analysis import at, flops
    f = at(flops(g), bind_dims(g, inputs))
    if isinstance(f, int) and f > SLOW_INTERPRETER_FLOPS:
        size = f"{f / 1e9:.1f} GFLOP" if f >= 1e9 else f"{f / 1e6:.0f} MFLOP"
        print(f"pnet: note: the Triton interpreter runs on the CPU; this model's {size} may take minutes "
              "(use -b torch or a GPU)", file=sys.stderr)


def _report_nonfinite(args, g, inputs, params, outputs) -> None:
    """One warning per output holding NaN/Inf; with --debug-nan, the op that made the first one."""
    from ..backends.nan_trace import first_nonfinite, nonfinite_warning
    lines = [w for w in (nonfinite_warning(k, v) for k, v in outputs.items()) if w]
    for w in lines:
        print(f"pnet: warning: {w}", file=sys.stderr)
    if not lines:
        return
    if not args.debug_nan:
        print("pnet: note: --debug-nan names the op that produced the first one", file=sys.stderr)
        return
    origin = first_nonfinite(g, inputs, params, float64=args.float64)
    print(f"pnet: note: {origin.text}" if origin else
          f"pnet: note: the reference interpreter's results are finite: -b {args.backend} differs from it "
          "(please report)", file=sys.stderr)
