"""`pnet ops [NAME] [--json]`: every registered op (one per line: name, kind, signature), or one op's full entry
(tensor inputs, attributes with defaults, kind, doc, and how each backend lowers it).

The signature and doc come from the registry (ir/op_reference.py, which also generates the op reference of
docs/language.md); the backend column is worked out here, where the passes are visible. The Triton backend
runs the kernel plan of passes/fuse.py over the graph that passes/decompose.py lowered, so an op is
"lowered by triton" when the planner gives it a kernel (or a view) or when decompose rewrites it into ops
that have one; anything else runs through its torch lowering as a counted fallback."""
from __future__ import annotations

import difflib
import json

from ..errors import UsageError
from .common import EXIT_OK


def add_parser(sub) -> None:
    sp = sub.add_parser("ops", help="list every op (signature, kind), or print one op's full entry and backends")
    sp.add_argument("name", nargs="?", help="an op name: print its signature, attributes, doc and backends")
    sp.add_argument("--json", action="store_true", help="print the entries as a JSON list (defaults as JSON values)")
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..ir.op_reference import as_json, signature
    from ..ir.registry import all_ops
    ops = all_ops()
    if args.name is not None and args.name not in ops:
        raise UsageError(f"pnet ops: no op named '{args.name}'{_did_you_mean(args.name, ops)} (`pnet ops` lists them)")
    chosen = [ops[args.name]] if args.name else list(ops.values())
    if args.json:
        print(json.dumps([{**as_json(op), **backends_json(op)} for op in chosen], indent=2))
        return EXIT_OK
    if args.name:
        print("\n".join(_entry(chosen[0], signature)))
        return EXIT_OK
    width = max(len(n) for n in ops)
    kind_width = max(len(op.kind) for op in ops.values())
    for op in chosen:
        print(f"{op.name:<{width}}  {op.kind:<{kind_width}}  {signature(op)}")
    return EXIT_OK


def _did_you_mean(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _entry(op, signature) -> list[str]:
    from ..ir.op_reference import attr_text, gradient_text, input_text
    lowered = lowerings(op)
    tensors = ", ".join(input_text(n, k) for n, k in op.inputs) or "none"
    attrs = ", ".join(attr_text(n, d) for n, d in op.attrs.items()) or "none"
    lines = [signature(op), f"  kind        {op.kind}", f"  inputs      {tensors}", f"  attributes  {attrs}",
             f"  doc         {op.doc or '-'}", f"  gradient    {gradient_text(op)}", "  backends"]
    lines += [f"    {b:<7} {how}" for b, how in lowered.items()]
    return lines


# ---- which backends lower an op -----------------------------------------------------------------------------
# ops the planner (passes/fuse.py `_Planner.place`) gives a kernel of their own family, by name
_KERNELS = {
    "matmul": "matmul kernel (epilogues fuse)", "qmatmul": "int8 matmul kernel (dequantize epilogue fused)",
    "nm_matmul": "matmul kernel (the N:M tile is decompressed in the kernel)",
    "bsr_matmul": "block-sparse matmul kernel (stored blocks only)",
    "embedding": "lookup kernel", "one_hot": "lookup kernel", "take": "lookup or gather kernel",
    "gather": "gather kernel", "cumsum": "cumsum kernel (one row per program)",
    "sort": "sort kernel (one row per program)", "topk": "sort kernel (one row per program)",
    "sdpa": "flash-attention kernel", "sdpa_grad": "flash-attention backward kernels (dq; dk and dv)",
    "scan": "a loop over its body's kernels", "arange": "pointwise kernel",
    "const": "no kernel (a scalar folded into the code, or a tensor the launcher builds once)",
    "split": "views (strides, no copy)",
}
# decompositions that apply only to some attributes (passes/decompose.py's docstring); otherwise a torch fallback
_CONDITIONS = {
    "prod": "over axes of known size with at most 16 elements per product",
    "avg_pool2d": "stride == kernel dividing the input, or a window of at most 25 taps",
    "max_pool2d": "stride == kernel dividing the input, or a window of at most 25 taps",
    "einsum": "float operands of one dtype, no index repeated within an operand",
    **{f"adaptive_{kind}_pool{nd}d": "every spatial dim a multiple of its output size"
       for nd in (1, 2, 3) for kind in ("avg", "max")},
}
_FALLBACK = "no kernel: runs through its torch lowering, counted in the plan's fallbacks"


def triton_lowering(op) -> str:
    """How the Triton backend computes `op` (for f32-class operands; f64 work always runs through torch)."""
    from ..ir.ops.fft import ALWAYS_COMPLEX
    from ..passes import decompose, fuse
    name = op.name
    if name in ALWAYS_COMPLEX:
        return _FALLBACK + " (Triton has no complex dtype)"
    if name in fuse.VIEW_OPS:
        return "a view (strides, no kernel)" + ("; a copying reshape is a movement kernel" if name == "reshape" else "")
    if name in fuse.MOVE_OPS:
        return "movement kernel (an index map; takes pointwise epilogues)"
    if name in _KERNELS:
        return _KERNELS[name]
    if name in fuse.REDUCE_OPS:
        return "reduction kernel (pointwise prologues and epilogues fuse)"
    if name in fuse.ROW_OPS:
        return "row kernel (softmax / norm family)"
    if name in fuse.SCATTER_OPS:
        return "scatter kernel (atomics)"
    if name in fuse.CONV_OPS:
        return "conv kernel (implicit GEMM, epilogues fuse)"
    if op.kind == "elementwise" and op.triton is not None:
        return "pointwise kernel (fuses with its neighbours)"
    if name in decompose._RULES:   # the table of composite ops decompose() rewrites before planning
        cond = _CONDITIONS.get(name)
        return ("decomposed into ops with kernels (passes/decompose.py)"
                + (f" when {cond}; otherwise {_FALLBACK}" if cond else ""))
    return _FALLBACK


def lowerings(op) -> dict[str, str]:
    """Per backend, how it computes `op`; `-` where it cannot."""
    torch = op.torch is not None or op.kind == "control"   # scan is a loop in the torch backend itself
    return {"numpy": "reference (the oracle)" if op.ref is not None or op.kind == "control" else "-",
            "torch": "torch lowering" if torch else "-",
            "triton": _with_f64_note(op, triton_lowering(op))}


def _with_f64_note(op, how: str) -> str:
    """Kernels compute floats in f32: an op on float64 values runs through torch (passes/fuse.py)."""
    plain = how.startswith(_FALLBACK) or op.kind in ("control", "source")
    if plain:
        return how
    return f"{how}; on f64 or complex values, its torch lowering" if op.complex_ok else f"{how}; on f64 values, its torch lowering"


def backends_json(op) -> dict:
    how = lowerings(op)
    kernel = not how["triton"].startswith("no kernel: runs")
    lowered = [b for b in ("numpy", "torch") if how[b] != "-"] + (["triton"] if kernel else [])
    return {"backends": how, "lowered_by": lowered}
