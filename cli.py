"""The `pnet` command line. Exit codes: 0 ok, 1 a check failed, 2 usage or input error."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .backends import BACKENDS, run as run_backend
from .errors import PnetError, UsageError, read_source

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other pnet error
        raise UsageError(f"{self.prog}: {message}")


def _sets(pairs) -> dict:
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


def _load(args):
    from .dsl.compile import load_file, set_dim_sizes
    overrides = _sets(args.set)
    # dims given with --set must be integers; hyperparameters are coerced by their declared type
    result = load_file(args.file, getattr(args, "model", None), overrides)
    set_dim_sizes(result, overrides, lambda k, v: f"--set {k}={v}", from_text=True)
    return result


def _passes(graph, args):
    from .passes.manager import run_passes
    spec = getattr(args, "passes", None) or "cleanup"
    return run_passes(graph, spec, stop_after=getattr(args, "after", None))


def _tensor_info(name, v):
    return {"name": name, "dtype": v.type.dtype, "shape": [str(d) for d in v.type.shape]}


def cmd_check(args) -> int:
    from .backends.numpy_ref import bind_dims
    from .ir.analysis import at, flops, param_bytes, param_count
    result = _load(args)
    g = _passes(result.graph, args)
    if getattr(args, "equivariance", False):  # testing/equivariance.py: tie, then measure |f(g.x) - g.f(x)|
        from .testing.equivariance import cli_check
        return cli_check(g, args.json)
    from .sparsify_cli import maybe_sparsify  # --sparse SPEC: pruned first; FLOPs/bytes before and after below
    g_dense = g
    g, sparams, sparse = maybe_sparsify(args, g)
    from .quantize_cli import maybe_quantize, weight_bytes, weight_bytes_line  # --quantize SCHEME
    g_float = g
    g, _ = maybe_quantize(args, g, sparams)
    quant = weight_bytes(args, g_float, g)
    dims = bind_dims(g)
    f = flops(g)
    info = {
        "model": g.name,
        "inputs": [_tensor_info(n, v) for n, v in g.inputs],
        "outputs": [_tensor_info(n, v) for n, v in g.outputs],
        "params": param_count(g),
        "param_bytes": param_bytes(g),
        "flops": at(f, dims),
        "flops_expr": str(f),
        "dims": dims,
        "hyperparameters": {k: (v if isinstance(v, (int, float, bool, str)) else str(v)) for k, v in result.hyper.items()},
    }
    if sparse is not None:
        from .sparsify_cli import as_json, figures
        info["sparsity"] = as_json(sparse, figures(g_dense, g, dims))
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
    dim_text = ", ".join(f"{k}={v}" for k, v in dims.items())
    print(f"  flops  {info['flops']:,}" + (f" at {dim_text} ({f})" if dims else ""))
    if quant is not None:
        print("  " + weight_bytes_line(quant))
    if sparse is not None:
        from .sparsify_cli import lines
        print("\n".join(lines(args, sparse, info["sparsity"])))
    return EXIT_OK


def cmd_show(args) -> int:
    from .ir.text import print_graph
    result = _load(args)
    g = _passes(result.graph, args)
    from .sparsify_cli import maybe_sparsify  # --sparse SPEC
    g_dense = g
    g, sparams, sparse = maybe_sparsify(args, g)
    from .quantize_cli import maybe_quantize, weight_bytes, weight_bytes_line
    g_float = g
    g, _ = maybe_quantize(args, g, sparams)
    quant = weight_bytes(args, g_float, g)
    if args.kernels:
        from .backends.numpy_ref import bind_dims
        from .ir.analysis import param_bytes
        from .passes.fuse import describe, format_plan, plan
        kp = plan(g)
        dims = bind_dims(g)
        if sparse is not None:
            from .sparsify_cli import as_json, figures, lines
            sfig = as_json(sparse, figures(g_dense, g, dims))
        if args.json:
            print(json.dumps({**describe(kp, dims), "weight_bytes": param_bytes(g),
                              **({"sparsity": sfig} if sparse is not None else {}),
                              **({"quantization": quant} if quant is not None else {})}, indent=2))
        else:
            sys.stdout.write(format_plan(kp, dims))
            print(weight_bytes_line(quant) if quant is not None else f"weights: {param_bytes(g):,} bytes")
            from .passes.equivariant import param_counts
            before, after = param_counts(g)
            if before != after:
                print(f"params: {before:,} before equivariance tying, {after:,} after")
            if sparse is not None:
                print("\n".join(lines(args, sparse, sfig)))
        return EXIT_OK
    if args.params:
        rows = [{"name": p.name, "shape": [str(d) for d in p.value.type.shape], "dtype": p.value.type.dtype,
                 "init": str(p.init)} for p in g.params]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            width = max((len(r["name"]) for r in rows), default=4)
            for r in rows:
                print(f"{r['name']:<{width}}  {r['dtype']}[{', '.join(r['shape'])}]  {r['init']}")
        return EXIT_OK
    if args.json:
        print(json.dumps({"model": g.name, "ir": print_graph(g)}, indent=2))
    else:
        sys.stdout.write(print_graph(g))
    return EXIT_OK


def cmd_run(args) -> int:
    from .backends import numpy_ref
    from .weights import load_inputs, load_params, save_params
    if args.backend not in BACKENDS:
        raise UsageError(f"-b {args.backend}: unknown backend (available: {', '.join(BACKENDS)})")
    result = _load(args)
    g = _passes(result.graph, args)
    inputs = load_inputs(args.inputs, g) if args.inputs else numpy_ref.random_inputs(g, args.seed)
    params = load_params(args.params, g) if args.params else numpy_ref.init_params(g, args.seed)
    from .sparsify_cli import maybe_sparsify
    g, params, _ = maybe_sparsify(args, g, params)
    from .quantize_cli import maybe_quantize
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


def cmd_compile(args) -> int:
    from .backends.triton import aot
    arch = aot.parse_arch(args.target) if args.target is not None else None   # a bad flag fails before any work
    if arch is not None and args.backend != "triton":
        raise UsageError(f"--target {args.target}: GPU targets are for -b triton")
    if args.backend != "triton":
        if args.backend == "torch":
            from .backends.torch_source import to_source
            result = _load(args)
            g = _passes(result.graph, args)
            from .sparsify_cli import maybe_sparsify, save_next_to as save_sparse_next_to
            g, sparams, _ = maybe_sparsify(args, g)
            from .quantize_cli import maybe_quantize, save_next_to
            g, qparams = maybe_quantize(args, g, sparams)
            out = Path(args.output)
            out.write_text(to_source(g), encoding="utf-8")
            print(f"wrote {out}")
            save_next_to(args, qparams, out)
            save_sparse_next_to(args, qparams, out)
            return EXIT_OK
        raise UsageError(f"-b {args.backend}: compile supports triton and torch")
    from .backends import triton as triton_backend
    from .backends.numpy_ref import bind_dims
    from .passes.fuse import format_plan
    result = _load(args)
    g = _passes(result.graph, args)
    from .sparsify_cli import maybe_sparsify, save_next_to as save_sparse_next_to
    g, sparams, _ = maybe_sparsify(args, g)
    from .quantize_cli import maybe_quantize, save_next_to
    g, qparams = maybe_quantize(args, g, sparams)
    compiled = triton_backend.compile(g)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.py").write_text(compiled.source)
    (out / "plan.txt").write_text(format_plan(compiled.plan, bind_dims(g)))
    print(f"wrote {out / 'model.py'} ({len(compiled.plan.kernels)} kernels) and {out / 'plan.txt'}")
    save_next_to(args, qparams, out)
    save_sparse_next_to(args, qparams, out)
    if arch is None:
        return EXIT_OK
    # every kernel through Triton's GPU compiler and ptxas: no GPU needed
    where = out / f"sm_{arch}"
    builds, report = aot.compile_for_gpu(compiled, g, qparams, arch, where)
    where.mkdir(exist_ok=True)
    (where / "resources.txt").write_text(report + "\n")
    lines = report.splitlines()
    print("\n".join(lines if args.verbose else [ln for ln, b in zip(lines[1:], builds) if not b.ok] + lines[-1:]))
    print(f"wrote each kernel's PTX and cubin, and resources.txt, to {where}")
    return EXIT_OK if all(b.ok for b in builds) else EXIT_FAILED


def cmd_fmt(args) -> int:
    from .dsl.fmt import format_source
    path = Path(args.file)
    try:
        src = read_source(path, keep_bom=True)   # fmt drops a byte-order mark: --check reports it, -w removes it
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    out = format_source(src, str(path))
    if args.check:
        if out != src:
            print(f"{path}: would reformat", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    if args.write:
        if out != src:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(out, encoding="utf-8")
            tmp.replace(path)
        return EXIT_OK
    sys.stdout.write(out)
    return EXIT_OK


def cmd_stdlib(args) -> int:
    from .dsl import stdlib
    if args.action == "coverage":
        from pathlib import Path as _P
        d = _P(args.papers) if args.papers else stdlib.default_catalogue_dir()
        if d is None or not d.is_dir():
            raise UsageError("pnet stdlib coverage: no catalogue folder found; give it with --papers DIR")
        rows = stdlib.coverage(d)
        if args.json:
            print(json.dumps(rows, indent=2))
            return EXIT_OK
        for r in rows:
            print(f"{r['catalogue']}: {r['modelled_yes']}/{r['stdlib_yes']} stdlib-yes papers modelled "
                  f"({r['modelled_total']} models, {r['papers']} papers in the catalogue)")
        total_yes = sum(r["stdlib_yes"] for r in rows)
        total = sum(r["modelled_yes"] for r in rows)
        print(f"total: {total}/{total_yes}")
        return EXIT_OK
    if args.action == "path":
        if not args.name:
            raise UsageError("pnet stdlib path NAME: give a model name")
        print(stdlib.find(args.name).path)
        return EXIT_OK
    rows = stdlib.entries()
    if args.json:
        print(json.dumps([{"name": e.name, "path": str(e.path), "kind": e.kind, "paper": e.paper, "seed": e.seed} for e in rows], indent=2))
        return EXIT_OK
    width = max((len(e.name) for e in rows), default=4)
    for e in rows:
        extra = f"  {e.seed:<8}  {e.paper}" if e.paper else ""
        print(f"{e.name:<{width}}  {e.kind:<9}{extra}")
    return EXIT_OK


def _add_quant_options(sp):
    from .quantize_cli import add_options  # --quantize SCHEME, --calib, --group-size, ...
    add_options(sp)
    from .sparsify_cli import add_options as add_sparse_options  # --sparse SPEC (passes/sparsify.py)
    add_sparse_options(sp)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pnet", description="A compiler for neural networks written as text.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def model_args(sp):
        sp.add_argument("file", help="a .pnet file")
        sp.add_argument("--model", help="which model in the file (default: the first)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter or bind a symbolic dim")
        sp.add_argument("--passes", metavar="SPEC", help="pass pipeline: 'cleanup' (default), 'none', or a list like fold,cse,dce")

    sp = sub.add_parser("check", help="parse and shape-check; print inputs, outputs, params, FLOPs")
    model_args(sp)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--equivariance", action="store_true",
                    help="tie @equivariant layers, report params before/after and the max |f(g.x) - g.f(x)| per output")
    _add_quant_options(sp)
    sp.set_defaults(fn=cmd_check)

    sp = sub.add_parser("show", help="print the IR (or the parameters)")
    model_args(sp)
    sp.add_argument("--params", action="store_true", help="list every parameter's name, shape and dtype")
    sp.add_argument("--kernels", action="store_true", help="the kernel plan: kernels, bytes moved, FLOPs, fallbacks")
    sp.add_argument("--after", metavar="PASS", help="print the IR after this pass of the pipeline")
    sp.add_argument("--json", action="store_true")
    _add_quant_options(sp)
    sp.set_defaults(fn=cmd_show)

    sp = sub.add_parser("run", help="run the model and write its outputs to .npz")
    model_args(sp)
    sp.add_argument("-b", "--backend", default="numpy")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("-i", "--inputs", help=".npz of inputs by name (default: seeded random)")
    sp.add_argument("--params", help="weights file (.safetensors or .npz); default: seeded init")
    sp.add_argument("--save-params", metavar="FILE", help="also write the parameters used")
    sp.add_argument("-o", "--output", default="outputs.npz")
    sp.add_argument("--float64", action="store_true", help="compute every float tensor in float64")
    _add_quant_options(sp)
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("compile", help="compile to Triton kernels + launcher (a directory), or to torch source (a file)")
    model_args(sp)
    sp.add_argument("-b", "--backend", default="triton")
    sp.add_argument("-o", "--output", required=True, help="output directory (triton) or .py file (torch)")
    sp.add_argument("--target", metavar="ARCH", help="also build every kernel for this GPU (sm_80, sm_90, ...) with "
                    "Triton's compiler and ptxas, no GPU needed: PTX, cubin, registers, spills, shared memory")
    sp.add_argument("-v", "--verbose", action="store_true", help="with --target: print every kernel's resources")
    _add_quant_options(sp)
    sp.set_defaults(fn=cmd_compile)

    sp = sub.add_parser("fmt", help="print the file in canonical form")
    sp.add_argument("file")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if the file is not formatted")
    g.add_argument("-w", "--write", action="store_true", help="rewrite the file in place")
    sp.set_defaults(fn=cmd_fmt)

    sp = sub.add_parser("stdlib", help="list the standard library's models, print one's path, or the catalogue coverage")
    sp.add_argument("action", nargs="?", default="list", choices=["list", "path", "coverage"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("--papers", metavar="DIR", help="catalogue folder for `coverage` (default: ../shared/papers)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_stdlib)

    from .testing.fuzz import add_parser as add_fuzz_parser  # the differential tester's long-run mode
    add_fuzz_parser(sub)
    from .quantize_cli import add_parser as add_quantize_parser  # pnet quantize (passes/quantize.py)
    add_quantize_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "fn", None):
            parser.print_help()
            return EXIT_USAGE
        return args.fn(args)
    except PnetError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `pnet show ... | head`
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("pnet: interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        print("pnet: error: program nests too deeply", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # an internal bug: still one line, never a traceback
        print(f"pnet: internal error: {type(e).__name__}: {e} (please report; set PNET_TRACEBACK=1 for details)", file=sys.stderr)
        import os
        if os.environ.get("PNET_TRACEBACK"):
            raise
        return 3


if __name__ == "__main__":
    sys.exit(main())
