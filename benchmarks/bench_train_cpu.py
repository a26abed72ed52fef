"""A training step on the CPU: pnet's own IR gradients against torch autograd, both on the torch backend.

For the MLP and GPT examples (examples/mlp.pnet, examples/gpt.pnet, each with its cross-entropy `loss`), with SGD
(momentum 0.9) and AdamW:
  pnet   the step graph (passes/train.py: forward, IR backward, optimizer update) run as one torch module under
         torch.no_grad(), its `new.*` outputs copied into the parameters (what `pnet train -b torch` does);
  torch  pnet's forward module (the same graph with only the loss output, so both compute the same function),
         loss.backward() through torch autograd, then torch.optim.SGD / AdamW (default implementation).
Both start from the same seeded parameters and take the same inputs every step; after the warm-up steps their
parameters are compared, so the two sides provably train alike. Steps are timed in rounds, pnet and torch
interleaved (machine-load drift hits both), and the table gives the median step time of each and the ratio.
It is a CPU figure (small models: per-op overhead dominates), not a GPU one.

    PYTHONPATH=<dir holding pnet> python benchmarks/bench_train_cpu.py [--steps 100] [--threads 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pnet.backends import numpy_ref
from pnet.backends.torch_backend import to_module
from pnet.dsl.compile import load_file
from pnet.passes.manager import run_passes
from pnet.passes.train import STEP_PIPELINE, model_params, step_graph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODELS = {   # (file, overrides: hyperparameters and dims)
    "mlp": ("mlp.pnet", {"B": "64"}),                   # 64 -> 128 -> 128 -> 10, 26k parameters
    "gpt": ("gpt.pnet", {"B": "8", "T": "16"}),         # vocab 64, d 32, 4 heads, 2 layers, 27k parameters
}
OPTIMIZERS = {
    "sgd": (dict(lr=0.01, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)),
    "adamw": (dict(lr=1e-3, weight_decay=0.01), lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01)),
}


def load(name: str):
    file, overrides = MODELS[name]
    r = load_file(EXAMPLES / file, None, overrides)   # sizes the dims of `overrides` too
    g = r.graph
    g.outputs = [(n, v) for n, v in g.outputs if n == "loss"]   # the loss alone: both sides compute the same
    return run_passes(g)


def sides(name: str, opt: str):
    """(pnet step, torch step, pnet module, torch module, parameter names, parameter count)."""
    g = load(name)
    kw, make = OPTIMIZERS[opt]
    sg = run_passes(step_graph(g, "loss", opt, **kw), STEP_PIPELINE)
    state = numpy_ref.init_params(sg, 0)
    inputs = {k: torch.as_tensor(v) for k, v in numpy_ref.random_inputs(sg, 0).items()}
    names = model_params(sg)

    # (copies: a module's parameters may share the arrays' memory, and each side updates its own)
    pm = to_module(sg, "f32", params={n: np.array(v, copy=True) for n, v in state.items()})
    slots = pm.state_dict()
    every = [p.name for p in sg.params]

    def pnet_step():
        with torch.no_grad():
            out = pm.run_named(inputs)
            for n in every:
                slots[n].copy_(out[f"new.{n}"])
        return out["loss"]

    tm = to_module(g, "f32", params={n: np.array(state[n], copy=True) for n in names})
    optim = make(list(tm.parameters()))

    def torch_step():
        optim.zero_grad(set_to_none=True)
        loss = tm.run_named(inputs)["loss"]
        loss.backward()
        optim.step()
        return loss.detach()

    count = int(sum(np.asarray(state[n]).size for n in names))
    return pnet_step, torch_step, pm, tm, names, count


def check_same(pm, tm, names) -> float:
    """The largest difference between the two sides' parameters (after the same steps), relative to each tensor's
    largest value or 1e-3 if smaller. Tensors whose last torch gradient is below 1e-6 everywhere are skipped: an
    attention key bias's gradient is zero in exact arithmetic, so it is rounding noise on both sides, which
    AdamW's g / (sqrt(v) + eps) turns into +-lr steps of either sign."""
    a, b = pm.state_dict(), tm.state_dict()
    grads = dict(tm.named_parameters())
    worst = 0.0
    for n in names:
        g = grads[n].grad
        if g is not None and g.abs().max().item() < 1e-6:
            continue
        d = (a[n] - b[n]).abs().max().item() / max(b[n].abs().max().item(), 1e-3)
        worst = max(worst, d)
    return worst


def bench(name: str, opt: str, steps: int, warmup: int) -> dict:
    pnet_step, torch_step, pm, tm, names, count = sides(name, opt)
    losses = []
    for _ in range(warmup):
        losses.append((float(pnet_step()), float(torch_step())))
    diff = check_same(pm, tm, names)
    if diff > 1e-3 or any(abs(a - b) > 1e-4 * max(1.0, abs(b)) for a, b in losses):
        raise SystemExit(f"{name} {opt}: the two sides differ after {warmup} steps (params {diff:.2e}, "
                         f"losses {losses})")
    tp, tt = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        pnet_step()
        t1 = time.perf_counter()
        torch_step()
        t2 = time.perf_counter()
        tp.append(t1 - t0)
        tt.append(t2 - t1)
    p, t = statistics.median(tp) * 1e3, statistics.median(tt) * 1e3
    return {"model": name, "optimizer": opt, "params": count, "pnet_ms": p, "torch_ms": t, "ratio": p / t,
            "max_param_rel_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="timed steps per side (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps, after which the sides are compared")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(m, o, args.steps, args.warmup) for m in MODELS for o in OPTIMIZERS]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"training step on the CPU, torch {torch.__version__}, {args.threads} thread(s), median of {args.steps} "
          f"steps (ratio = pnet / torch; < 1 means pnet's step is faster)")
    print(f"{'model':6} {'optimizer':9} {'params':>7} {'pnet IR grads ms':>16} {'torch autograd ms':>17} "
          f"{'ratio':>6}")
    for r in rows:
        print(f"{r['model']:6} {r['optimizer']:9} {r['params']:>7} {r['pnet_ms']:>16.3f} {r['torch_ms']:>17.3f} "
              f"{r['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
