"""`pnet run FILE [-b numpy|torch|triton] [--seed N] [-i in.npz] [--params w.safetensors] [-o out.npz] [--float64]`:
run a model on a backend (seeded random inputs and parameters unless given) and write its outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends import BACKENDS, run as run_backend
from ..errors import UsageError
from .common import EXIT_OK, add_lossy_options, add_model_args, load_model, maybe_quantize, maybe_sparsify, run_pipeline


def add_parser(sub) -> None:
    sp = sub.add_parser("run", help="run the model and write its outputs to .npz")
    add_model_args(sp)
    sp.add_argument("-b", "--backend", default="numpy")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("-i", "--inputs", help=".npz of inputs by name (default: seeded random)")
    sp.add_argument("--params", help="weights file (.safetensors or .npz); default: seeded init")
    sp.add_argument("--save-params", metavar="FILE", help="also write the parameters used")
    sp.add_argument("-o", "--output", default="outputs.npz")
    sp.add_argument("--float64", action="store_true", help="compute every float tensor in float64")
    add_lossy_options(sp)
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..backends import numpy_ref
    from ..weights import load_inputs, load_params, save_params
    if args.backend not in BACKENDS:
        raise UsageError(f"-b {args.backend}: unknown backend (available: {', '.join(BACKENDS)})")
    result = load_model(args)
    g = run_pipeline(result.graph, args)
    inputs = load_inputs(args.inputs, g) if args.inputs else numpy_ref.random_inputs(g, args.seed)
    params = load_params(args.params, g) if args.params else numpy_ref.init_params(g, args.seed)
    g, params, _ = maybe_sparsify(args, g, params)
    g, params = maybe_quantize(args, g, params)
    outputs = run_backend(args.backend, g, inputs, params, float64=args.float64)
    out_path = Path(args.output)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, **outputs)
    tmp.replace(out_path if out_path.suffix == ".npz" else out_path)  # written whole, then moved into place
    if args.save_params:
        save_params(args.save_params, params)
    for k, v in outputs.items():
        finite = bool(np.all(np.isfinite(v))) if v.dtype.kind == "f" else True
        stats = f" mean={float(np.mean(v)):.6g} std={float(np.std(v)):.6g}" if v.size else " (empty)"  # a dim bound to 0
        print(f"{k}: {v.dtype}{list(v.shape)}{stats}" + ("" if finite else " (NOT FINITE)"))
    print(f"wrote {out_path}")
    return EXIT_OK
