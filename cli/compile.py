"""`pnet compile FILE -b triton -o DIR [--target sm_90 [-v]]` and `pnet compile FILE -b torch -o model.py`: write
the generated Triton kernels, launcher and kernel plan (and, with --target, every kernel built for that GPU), or a
plain PyTorch module; with --quantize / --sparse the rewritten weights go beside the output; with --train, the
training step (forward, gradients and optimizer update: passes/train.py) instead of the forward."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .common import (EXIT_FAILED, EXIT_OK, add_lossy_options, add_model_args, load_model, maybe_quantize,
                     maybe_sparsify, run_pipeline, save_quantized_next_to, save_sparse_next_to)
from .paths import check_output_dir, check_output_file
from .train import add_train_args, step_graph_of


def add_parser(sub) -> None:
    sp = sub.add_parser("compile", help="compile to Triton kernels + launcher (a directory), or to torch source (a file)")
    add_model_args(sp)
    sp.add_argument("-b", "--backend", default="triton", choices=["triton", "torch"],
                    help="triton: kernels + launcher in a directory (default); torch: one PyTorch module file")
    sp.add_argument("-o", "--output", required=True, help="output directory (triton) or .py file (torch)")
    sp.add_argument("--target", metavar="ARCH", help="also build every kernel for this GPU (sm_80, sm_90, ...) with "
                    "Triton's compiler and ptxas, no GPU needed: PTX, cubin, registers, spills, shared memory")
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="with --target: print each kernel as it is built, then every kernel's resources")
    add_lossy_options(sp)
    add_train_args(sp)   # --train: compile the training step (cli/train.py)
    sp.set_defaults(fn=run)


def _lossy_graph(args):
    """The model after the pass pipeline, --sparse and --quantize: (graph, the rewritten params or None)."""
    result = load_model(args)
    g = run_pipeline(result.graph, args)
    g, sparams, _ = maybe_sparsify(args, g)
    g, qparams = maybe_quantize(args, g, sparams)
    return (step_graph_of(args, g) if args.train else g), qparams


def _save_weights_next_to(args, qparams, out: Path) -> None:
    save_quantized_next_to(args, qparams, out)
    save_sparse_next_to(args, qparams, out)


def run(args) -> int:
    from ..backends.triton import aot
    arch = aot.parse_arch(args.target) if args.target is not None else None   # a bad flag fails before any work
    if arch is not None and args.backend != "triton":
        raise UsageError(f"--target {args.target}: GPU targets are for -b triton")
    if args.backend == "triton":   # where the output goes is checked before the model loads
        check_output_dir("-o", args.output)
    elif args.backend == "torch":
        check_output_file("-o", args.output)
    if args.backend != "triton":
        if args.backend == "torch":
            from ..backends.torch_source import to_source
            g, qparams = _lossy_graph(args)
            out = Path(args.output)
            out.write_text(to_source(g), encoding="utf-8")
            print(f"wrote {out}")
            _save_weights_next_to(args, qparams, out)
            return EXIT_OK
        raise UsageError(f"-b {args.backend}: compile supports triton and torch")
    from ..backends import triton as triton_backend
    from ..backends.numpy_ref import bind_dims
    from ..passes.fuse import format_plan
    g, qparams = _lossy_graph(args)
    compiled = triton_backend.compile(g)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.py").write_text(compiled.source)
    (out / "plan.txt").write_text(format_plan(compiled.plan, bind_dims(g)))
    print(f"wrote {out / 'model.py'} ({len(compiled.plan.kernels)} kernels) and {out / 'plan.txt'}")
    _save_weights_next_to(args, qparams, out)
    if arch is None:
        return EXIT_OK
    # every kernel through Triton's GPU compiler and ptxas: no GPU needed
    where = out / f"sm_{arch}"
    from ..backends.progress import Progress
    with Progress(0, verbose=args.verbose):   # aot.build reports each kernel as its worker finishes it
        builds, report = aot.compile_for_gpu(compiled, g, qparams, arch, where)
    where.mkdir(exist_ok=True)
    (where / "resources.txt").write_text(report + "\n")
    lines = report.splitlines()
    print("\n".join(lines if args.verbose else [ln for ln, b in zip(lines[1:], builds) if not b.ok] + lines[-1:]))
    print(f"wrote each kernel's PTX and cubin, and resources.txt, to {where}")
    return EXIT_OK if all(b.ok for b in builds) else EXIT_FAILED
