"""pnet's Triton kernels against torch eager and torch.compile on a GPU (issue 6 item 6; issues 7 and 8).

Per kernel class (fused softmax, layernorm, GEMM + bias + GELU, causal attention, an LSTM scan), per model
(GPT-style decoder, ResNet-style CNN, MLP), block-sparse x @ W at densities 0.5 / 0.25 / 0.1 against the
dense layer, and a w8a8 int8 GEMM: the same graph runs as pnet's compiled Triton module, as the torch
backend's nn.Module (eager) and as torch.compile of that module (and a 2:4 layer also through torch's
semi-structured sparse matmul), timed in one run (triton.testing.do_bench,
median ms). Achieved memory bandwidth and FLOP/s come from the kernel plan's deterministic bytes and FLOPs,
printed as a fraction of the device's peak (targets: memory-bound >= 85% of peak bandwidth, GEMM >= 0.9x
torch, whole models >= 1.0x torch.compile). Record what you measure in benchmarks/RESULTS.md.

    PYTHONPATH=<dir holding pnet> python benchmarks/bench_gpu.py [--only NAME ...] [--json]
    PYTHONPATH=<dir holding pnet> python benchmarks/bench_gpu.py --smoke   # tiny sizes on the CPU: checks the script

Without a GPU it exits 2 with a message, unless --smoke (Triton interpreter, no torch.compile, timings
meaningless). Kernels compute in f32 (tl.dot with IEEE precision), so torch runs with TF32 off.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (source or example path, GPU run {hyperparameters and dims}, --smoke run, extra pass: None | "w8a8" | sparse spec)
LIN = "import nn.core\nmodel m(n: int = 16) {\n  input x: f32[B, n]\n  output y = BODY\n}\n"
ROWS = "model m(n: int = 16) {\n  input x: f32[B, n]\n  param w: [n] = ones()\n  param b: [n] = zeros()\n  output y = BODY\n}\n"
BIG, TINY = {"B": 8192, "n": 4096}, {"B": 4, "n": 16}
CASES = {
    "softmax": (ROWS.replace("BODY", "softmax(x, -1)"), BIG, TINY, None),
    "layernorm": (ROWS.replace("BODY", "layernorm(x, w, b)"), BIG, TINY, None),
    "gemm_bias_gelu": (LIN.replace("BODY", "gelu(linear(x, n))"), {"B": 4096, "n": 4096}, TINY, None),
    "attention": ("model m(t: int = 8) {\n  input q: f32[B, 16, t, 64]\n  input k: f32[B, 16, t, 64]\n  input v: f32[B, 16, t, 64]\n"
                  "  output y = sdpa(q, k, v, causal=true)\n}\n", {"B": 8, "t": 1024}, {"B": 1, "t": 8}, None),
    "lstm_scan": (ROOT / "examples" / "lstm.pnet", {"B": 64, "T": 128, "d": 512, "hidden": 512}, {"B": 2, "T": 3}, None),
    "gpt": (ROOT / "examples" / "gpt.pnet", {"B": 8, "T": 512, "ctx": 512, "d": 768, "heads": 12, "layers": 12, "vocab": 50257},
            {"B": 1, "T": 4}, None),
    "cnn": (ROOT / "examples" / "cnn.pnet", {"B": 128, "width": 64, "blocks": 2}, {"B": 1}, None),
    "mlp": (ROOT / "examples" / "mlp.pnet", {"B": 8192, "d_in": 1024, "hidden": 4096}, {"B": 4}, None),
    "w8a8_gemm": (LIN.replace("BODY", "linear(x, n)"), {"B": 4096, "n": 4096}, TINY, "w8a8"),
    "dense_4096": (LIN.replace("BODY", "linear(x, n, bias=false)"), {"B": 4096, "n": 4096}, TINY, None),
}
CASES["nm_2:4"] = (CASES["dense_4096"][0], {"B": 4096, "n": 4096}, TINY, "2:4")
for _d in (0.5, 0.25, 0.1):
    CASES[f"bsr_density_{_d}"] = (CASES["dense_4096"][0], {"B": 4096, "n": 4096}, {"B": 4, "n": 64}, f"block=32,density={_d}")

# device -> (peak memory bandwidth B/s, peak f32 FLOP/s without tensor cores); dense f32 FMA is what the
# kernels' IEEE tl.dot uses
PEAKS = {"H100 PCIe": (2.0e12, 51e12), "H100": (3.35e12, 67e12), "H200": (4.8e12, 67e12), "A100": (2.0e12, 19.5e12)}


def peak(name: str):
    for key, value in PEAKS.items():
        if key in name:
            return value
    return None, None


def build(case, smoke: bool):
    """(graph, params, inputs) of one case: its pass (quantize / sparsify) applied, dims bound."""
    from pnet.backends import numpy_ref
    from pnet.dsl.compile import load_file, load_source
    from pnet.passes.manager import run_passes
    src, config, small, extra = case
    config = small if smoke else config
    hyper = {k: str(v) for k, v in config.items() if k not in ("B", "T")}
    res = load_file(src, None, hyper) if isinstance(src, Path) else load_source(src, "<bench>", overrides=hyper)
    dims = {k: v for k, v in config.items() if k in ("B", "T")}   # the symbolic dims of the inputs
    graph = run_passes(res.graph)
    params = numpy_ref.init_params(graph, 0)
    if extra == "w8a8":
        from pnet.passes.quantize import quantize
        graph, params = quantize(graph, params, "w8a8")
    elif extra:
        from pnet.passes.sparsify import sparsify
        graph, params = sparsify(graph, params, extra)
    return graph, params, numpy_ref.random_inputs(graph, 0, dims), numpy_ref.bind_dims(graph, None, dims)


def timer(gpu: bool):
    if gpu:
        import triton.testing
        return lambda fn: float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))

    def cpu(fn, reps=3):
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps * 1e3
    return cpu


def run_case(name, case, gpu: bool, smoke: bool) -> dict:
    import torch

    from pnet.backends import triton as triton_backend
    from pnet.backends.torch_backend import to_module
    graph, params, inputs, bindings = build(case, smoke)
    dev = "cuda" if gpu else "cpu"
    compiled = triton_backend.compile(graph)
    mod = compiled.module()
    t_in = {k: torch.as_tensor(v).to(dev) for k, v in inputs.items()}
    t_par = {k: torch.as_tensor(v).to(dev) for k, v in params.items()}
    eager = to_module(graph, params=params).to(dev).eval()
    bench = timer(gpu)
    row = {"case": name}
    with torch.no_grad():
        row["pnet_ms"] = bench(lambda: mod.forward(t_in, t_par))
        row["eager_ms"] = bench(lambda: eager(**t_in))
        if gpu:
            compiled_eager = torch.compile(eager)
            compiled_eager(**t_in)   # compile outside the timing
            row["compile_ms"] = bench(lambda: compiled_eager(**t_in))
        if gpu and case[3] == "2:4":
            row["torch_semi_structured_ms"] = _torch_semi_structured(graph, params, t_in, bench)
    totals = compiled.plan.totals(bindings)
    row.update(kernels=totals["kernels"], fallbacks=totals["fallbacks"], bytes=totals["bytes"], flops=totals["flops"])
    seconds = row["pnet_ms"] / 1e3
    row["GB/s"] = totals["bytes"] / seconds / 1e9
    row["TFLOP/s"] = totals["flops"] / seconds / 1e12
    return row


def _torch_semi_structured(graph, params, t_in, bench):
    """The same 2:4 layer through torch's semi-structured sparse kernels (cuSPARSELt / CUTLASS, f16), for
    comparison: y^T = W^T (2:4 along K, the sparse first operand) @ x^T. None where torch cannot run it."""
    import torch

    from pnet.ir.ops.sparse import nm_dense_np
    node = next(n for n in graph.walk() if n.op == "nm_matmul")
    by_value = {p.value: p.name for p in graph.params}
    values, meta = (params[by_value[v]] for v in node.inputs[1:3])
    w_t = torch.as_tensor(nm_dense_np(values, meta, node.attrs["n"], node.attrs["m"])).T.contiguous().half().cuda()
    x_t = next(iter(t_in.values())).half().T.contiguous()
    try:
        sparse = torch.sparse.to_sparse_semi_structured(w_t)
        return bench(lambda: torch.mm(sparse, x_t))
    except Exception as e:  # noqa: BLE001 - an unsupported GPU or shape: say so in the row
        print(f"bench_gpu: torch semi-structured sparse unavailable here: {e}", file=sys.stderr)
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run (default: all)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU under the Triton interpreter")
    args = ap.parse_args(argv)
    import torch
    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        print("bench_gpu: no CUDA device; run it on a GPU (or --smoke to check the script on the CPU)", file=sys.stderr)
        return 2
    from pnet.backends.triton import runtime
    runtime.ensure_mode(quiet=True)
    torch.backends.cuda.matmul.allow_tf32 = False   # the kernels' tl.dot runs in IEEE f32
    torch.backends.cudnn.allow_tf32 = False
    device = torch.cuda.get_device_name() if gpu else "cpu (smoke: timings meaningless)"
    bw, fl = peak(device) if gpu else (None, None)
    rows = [run_case(n, CASES[n], gpu, args.smoke) for n in (args.only or CASES)]
    for r in rows:
        r["bw_frac"] = r["GB/s"] * 1e9 / bw if bw else None
        r["flop_frac"] = r["TFLOP/s"] * 1e12 / fl if fl else None
    if args.json:
        print(json.dumps({"device": device, "rows": rows}, indent=1))
        return 0
    print(f"device: {device}; peaks: {bw and bw / 1e12} TB/s, {fl and fl / 1e12} TFLOP/s (f32)")
    head = f"{'case':<20}{'pnet ms':>10}{'eager ms':>10}{'compile':>10}{'x eager':>9}{'x compile':>10}{'GB/s':>9}{'%bw':>6}{'TFLOP/s':>9}{'%fl':>6}{'kern':>5}"
    print(head)
    for r in rows:
        comp = r.get("compile_ms")
        print(f"{r['case']:<20}{r['pnet_ms']:>10.3f}{r['eager_ms']:>10.3f}{(comp or float('nan')):>10.3f}"
              f"{r['eager_ms'] / r['pnet_ms']:>9.2f}{(comp / r['pnet_ms'] if comp else float('nan')):>10.2f}"
              f"{r['GB/s']:>9.1f}{(100 * r['bw_frac'] if r['bw_frac'] else float('nan')):>6.0f}"
              f"{r['TFLOP/s']:>9.2f}{(100 * r['flop_frac'] if r['flop_frac'] else float('nan')):>6.0f}{r['kernels']:>5}")
    print("x eager / x compile: speedup of pnet over torch (above 1: pnet is faster)")
    for r in rows:
        if r.get("torch_semi_structured_ms"):
            print(f"{r['case']}: torch semi-structured (f16) {r['torch_semi_structured_ms']:.3f} ms vs pnet {r['pnet_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
