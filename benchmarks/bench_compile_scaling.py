"""Compile time against program size: every front-end stage and pass must be near-linear in the graph's size.

Times parse, elaborate, each cleanup pass (+ the verifier) and the fusion plan over generated straight-line
programs of 1k, 2k, 4k, 8k statements and over a `for` loop of growing length (unrolled by the elaborator),
and prints the times and, per doubling, the ratio to the previous size (about 2 when linear; 4 is quadratic).

    python benchmarks/bench_compile_scaling.py [--sizes 1000,2000,4000,8000] [--loops 2000,4000,8000,16000]
"""
from __future__ import annotations

import argparse
import gc
import time

from pnet.dsl.compile import load_source
from pnet.passes.cleanup import canonicalize, cse, dce, fold
from pnet.passes.fuse import plan
from pnet.passes.verify import verify

STAGES = ("elaborate", "canonicalize", "fold", "cse", "dce", "verify", "plan")


def straight_line(n: int) -> str:
    """n statements, four kinds in turn, each giving a pass work: a duplicate for CSE (a/b), an identity
    cast for canonicalize, a constant expression for fold, a dead value for DCE."""
    lines = ["model m() {", "  input x: f32[B, 4]", "  h0 = x"]
    k = 0
    for i in range(n):
        j = i // 4
        kind = i % 4
        if kind == 0:
            lines.append(f"  a{j} = tanh(h{k})")
        elif kind == 1:
            lines.append(f"  b{j} = tanh(h{k})")
        elif kind == 2:
            lines.append(f"  c{j} = cast(a{j} + b{j}, \"f32\") * (2.0 * 0.25)")
        else:
            k += 1
            lines.append(f"  h{k} = c{j} + x; d{j} = exp(c{j})")
    lines += [f"  output y = h{k}", "}"]
    return "\n".join(lines) + "\n"


def loop(n: int) -> str:
    """A `for` loop of n iterations, each a duplicated subexpression (CSE merges one per iteration)."""
    return ("model m() {\n  input x: f32[B, 4]\n  h = x\n"
            f"  for i in 0..{n} {{ h = tanh(h) * 0.5 + tanh(h) * 0.5 }}\n  output y = h\n}}\n")


def timed(fn, *args):
    """(result, seconds); the previous stage's garbage is collected first, so it is not billed here."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def time_stages(source: str) -> tuple[dict, int]:
    """Seconds per stage (each pass on the previous pass's result, as the cleanup pipeline runs them)."""
    t = {}
    result, t["elaborate"] = timed(load_source, source, "<bench>")  # parse + elaborate + the front end's verify
    graph = result.graph
    for name, p in (("canonicalize", canonicalize), ("fold", fold), ("cse", cse), ("dce", dce)):
        graph, t[name] = timed(p, graph)
    _, t["verify"] = timed(verify, graph)
    _, t["plan"] = timed(plan, graph)
    return t, len(graph.nodes)


def report(title: str, sizes: list[int], make) -> None:
    print(title)
    print(f"  {'size':>6} {'nodes':>6} " + " ".join(f"{s:>12}" for s in STAGES) + f" {'total':>8}")
    prev = None
    for n in sizes:
        t, nodes = time_stages(make(n))
        total = sum(t.values())
        cells = []
        for s in STAGES:
            ratio = f"x{t[s] / prev[s]:.1f}" if prev and prev[s] > 1e-4 else ""
            cells.append(f"{t[s]:6.3f}{ratio:>6}")
        ratio = f" x{total / sum(prev.values()):.1f}" if prev else ""
        print(f"  {n:>6} {nodes:>6} " + " ".join(cells) + f" {total:8.3f}{ratio}")
        prev = t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2000,4000,8000")
    ap.add_argument("--loops", default="2000,4000,8000,16000")
    args = ap.parse_args()
    report("straight-line statements (seconds; xR = ratio to the previous size, ~2 when linear)",
           [int(s) for s in args.sizes.split(",")], straight_line)
    report("for loop iterations", [int(s) for s in args.loops.split(",")], loop)


if __name__ == "__main__":
    main()
