"""Compile time of a GPT-2-small-size model (12 layers, d=768) through the Triton backend on CPU:
parse + elaborate + cleanup passes + fusion plan + code generation (no kernel launch).

    python benchmarks/bench_compile.py
"""
from __future__ import annotations

import time
from pathlib import Path

from pnet.backends import triton as triton_backend
from pnet.dsl.compile import load_file
from pnet.passes.manager import run_passes

GPT2 = Path(__file__).resolve().parent.parent / "stdlib" / "backbones" / "gpt2.pnet"


def main() -> None:
    stages = {}
    t0 = time.perf_counter()
    graph = load_file(GPT2).graph
    stages["parse + elaborate"] = time.perf_counter() - t0
    t = time.perf_counter()
    graph = run_passes(graph)
    stages["cleanup passes (verified)"] = time.perf_counter() - t
    t = time.perf_counter()
    compiled = triton_backend.compile(graph)
    stages["fusion plan + Triton codegen"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    print(f"GPT-2 small ({len(graph.nodes)} IR nodes, {len(compiled.plan.kernels)} kernels, "
          f"{len(compiled.source.splitlines())} lines of generated source)")
    for k, v in stages.items():
        print(f"  {k:<30} {v:6.3f} s")
    print(f"  {'total':<30} {total:6.3f} s   (target: < 2 s)")


if __name__ == "__main__":
    main()
