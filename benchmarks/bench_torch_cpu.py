"""pnet's torch backend against the same architecture written by hand in eager torch, on the CPU.

For an MLP, a small ResNet-style CNN and a small GPT-style decoder: the forward pass and one training step
(forward, cross-entropy, backward, SGD step), timed in one run with the two implementations interleaved
round by round (so drift in machine load hits both alike), printed side by side with their ratio.
Before timing, the pnet weights are copied into the hand-written model and the outputs compared, so both
sides provably compute the same function.

    PYTHONPATH=<dir holding pnet> python benchmarks/bench_torch_cpu.py [--rounds 15] [--threads N] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from pnet.backends.torch_backend import to_module
from pnet.dsl.compile import load_source

# ---- the three models in pnet ----------------------------------------------------------------------------
# Written with primitive ops (not the stdlib) so the hand-written twins below match them op for op.
COMMON = """
def lin(x: [..., i], out: int) -> [..., out] {
  param w: [i, out] = normal(0, 1 / sqrt(i))
  param b: [out] = zeros()
  return x @ w + b
}
def ln(x: [..., d]) -> [..., d] {
  param w: [d] = ones()
  param b: [d] = zeros()
  return layernorm(x, w, b)
}
"""

MLP = COMMON + """
model bench_mlp(d_in: int = 256, hidden: int = 512, depth: int = 3, classes: int = 10) {
  input x: f32[B, d_in]
  h = x
  for l in 0..depth as layers { h = relu(lin(h, hidden)) }
  output logits = lin(h, classes) as head
}
"""

CNN = COMMON + """
def conv_bn(x: [B, cin, H, W], cout: int, k: int = 3, stride: int = 1, act: bool = true) -> [B, cout, ...] {
  param w: [cout, cin, k, k] = kaiming()
  param b: [cout] = zeros()
  param scale: [cout] = ones()
  param shift: [cout] = zeros()
  param running_mean: [cout] = zeros()
  param running_var: [cout] = ones()
  h = batchnorm(conv2d(x, w, b, stride=stride, padding=k // 2), running_mean, running_var, scale, shift)
  if act { h = relu(h) }
  return h
}
def block(x: [B, cin, H, W], cout: int, stride: int = 1) -> [B, cout, ...] {
  h = conv_bn(conv_bn(x, cout, 3, stride) as conv1, cout, 3, 1, false) as conv2
  s = x
  if stride != 1 or cin != cout { s = conv_bn(x, cout, 1, stride, false) as down }
  return relu(h + s)
}
model bench_cnn(width: int = 16, classes: int = 10) {
  input img: f32[B, 3, 32, 32]
  h = conv_bn(img, width) as stem
  h = block(h, width) as layer1
  h = block(h, 2 * width, 2) as layer2
  h = block(h, 4 * width, 2) as layer3
  output logits = lin(global_avg_pool(h), classes) as fc
}
"""

GPT = COMMON + """
def attn(x: [B, T, d], heads: int) -> [B, T, d] {
  q = transpose(reshape(lin(x, d) as wq, [B, T, heads, d // heads]), [0, 2, 1, 3])
  k = transpose(reshape(lin(x, d) as wk, [B, T, heads, d // heads]), [0, 2, 1, 3])
  v = transpose(reshape(lin(x, d) as wv, [B, T, heads, d // heads]), [0, 2, 1, 3])
  o = sdpa(q, k, v, causal=true)
  return lin(reshape(transpose(o, [0, 2, 1, 3]), [B, T, d]), d) as wo
}
def block(x: [B, T, d], heads: int) -> [B, T, d] {
  x = x + attn(ln(x) as ln1, heads)
  return x + lin(gelu(lin(ln(x) as ln2, 4 * d) as fc1), d) as fc2
}
model bench_gpt(vocab: int = 256, ctx: int = 64, d: int = 128, heads: int = 4, layers: int = 2) {
  input ids: i64[B, T]
  param wte: [vocab, d] = normal(0, 0.02)
  param wpe: [ctx, d] = normal(0, 0.01)
  h = embedding(wte, ids) + embedding(wpe, arange(T))
  for l in 0..layers as blocks { h = block(h, heads) }
  output logits = ln(h) as ln_f @ wte.T
}
"""


def gpt_graph():
    return load_source(GPT).graph


# ---- the same architectures by hand -----------------------------------------------------------------------
class HandMLP(nn.Module):
    def __init__(self, d_in=256, hidden=512, depth=3, classes=10):
        super().__init__()
        dims = [d_in] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)

    def load_pnet(self, s):
        for i, layer in enumerate(self.layers):
            _linear(layer, s, f"layers.{i}.lin")
        _linear(self.head, s, "head")


class ConvBN(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x):
        h = self.bn(self.conv(x))
        return torch.relu(h) if self.act else h

    def load_pnet(self, s, prefix):
        _copy(self.conv.weight, s[f"{prefix}.w"])
        _copy(self.conv.bias, s[f"{prefix}.b"])
        for ours, theirs in (("weight", "scale"), ("bias", "shift"), ("running_mean", "running_mean"),
                             ("running_var", "running_var")):
            _copy(getattr(self.bn, ours), s[f"{prefix}.{theirs}"])


class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3, 1, act=False)
        self.down = ConvBN(cin, cout, 1, stride, act=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        s = x if self.down is None else self.down(x)
        return torch.relu(self.conv2(self.conv1(x)) + s)

    def load_pnet(self, s, prefix):
        self.conv1.load_pnet(s, f"{prefix}.conv1")
        self.conv2.load_pnet(s, f"{prefix}.conv2")
        if self.down is not None:
            self.down.load_pnet(s, f"{prefix}.down")


class HandCNN(nn.Module):
    def __init__(self, width=16, classes=10):
        super().__init__()
        self.stem = ConvBN(3, width)
        self.layer1 = Block(width, width)
        self.layer2 = Block(width, 2 * width, 2)
        self.layer3 = Block(2 * width, 4 * width, 2)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, img):
        h = self.layer3(self.layer2(self.layer1(self.stem(img))))
        return self.fc(h.mean(dim=(2, 3)))

    def load_pnet(self, s):
        self.stem.load_pnet(s, "stem")
        for name in ("layer1", "layer2", "layer3"):
            getattr(self, name).load_pnet(s, name)
        _linear(self.fc, s, "fc")


class HandGPTBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (lin(h).reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for lin in (self.wq, self.wk, self.wv))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(o.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    def load_pnet(self, s, prefix):
        for name in ("wq", "wk", "wv", "wo"):
            _linear(getattr(self, name), s, f"{prefix}.attn.{name}")
        _linear(self.fc1, s, f"{prefix}.fc1")
        _linear(self.fc2, s, f"{prefix}.fc2")
        _layernorm(self.ln1, s, f"{prefix}.ln1")
        _layernorm(self.ln2, s, f"{prefix}.ln2")


class HandGPT(nn.Module):
    def __init__(self, vocab=256, ctx=64, d=128, heads=4, layers=2):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(HandGPTBlock(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, ids):
        h = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h) @ self.wte.weight.T

    def load_pnet(self, s):
        _copy(self.wte.weight, s["wte"])
        _copy(self.wpe.weight, s["wpe"])
        for i, block in enumerate(self.blocks):
            block.load_pnet(s, f"blocks.{i}.block")
        _layernorm(self.ln_f, s, "ln_f")


def _copy(dst, src):
    with torch.no_grad():
        dst.copy_(src)


def _linear(layer, s, prefix):  # pnet stores [in, out] (x @ w); nn.Linear stores [out, in]
    _copy(layer.weight, s[f"{prefix}.w"].T)
    _copy(layer.bias, s[f"{prefix}.b"])


def _layernorm(layer, s, prefix):
    _copy(layer.weight, s[f"{prefix}.w"])
    _copy(layer.bias, s[f"{prefix}.b"])


# ---- timing -------------------------------------------------------------------------------------------------
def _step_fn(model, x, y, forward):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = forward(model, x)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        opt.step()
    return step


def _forward_fn(model, x, forward):
    def fwd():
        with torch.no_grad():
            forward(model, x)
    return fwd


def interleaved(fns: dict, rounds: int, clock, budget_s: float = 0.05) -> dict:
    """Median over rounds of the mean time per call; each round runs every fn for about `budget_s`."""
    reps = {}
    for name, fn in fns.items():  # warm up, and size the inner loop
        for _ in range(3):
            fn()
        t0 = clock()
        fn()
        reps[name] = max(1, int(budget_s / max(clock() - t0, 1e-6)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(reps[name]):
                fn()
            samples[name].append((clock() - t0) / reps[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def bench(name, graph, hand, inputs, targets, rounds, clock):
    pnet_model = to_module(graph)
    hand.load_pnet(pnet_model.state_dict())
    hand.eval()  # BatchNorm in inference form, as the pnet model is
    in_name = graph.inputs[0][0]

    def run_pnet(m, x):
        return m(**{in_name: x})["logits"]

    def run_hand(m, x):
        return m(x)

    with torch.no_grad():
        a, b = run_pnet(pnet_model, inputs), run_hand(hand, inputs)
    err = float((a - b).abs().max() / (b.abs().max() + 1e-12))
    assert err < 1e-4, f"{name}: the hand-written model computes something else (relative error {err:.2g})"
    fwd = interleaved({"pnet": _forward_fn(pnet_model, inputs, run_pnet), "eager": _forward_fn(hand, inputs, run_hand)},
                      rounds, clock)
    train = interleaved({"pnet": _step_fn(pnet_model, inputs, targets, run_pnet),
                         "eager": _step_fn(hand, inputs, targets, run_hand)}, rounds, clock)
    return {"model": name, "params": sum(p.numel() for p in hand.parameters()),
            "forward_ms": {k: v * 1e3 for k, v in fwd.items()}, "train_ms": {k: v * 1e3 for k, v in train.items()},
            "forward_ratio": fwd["pnet"] / fwd["eager"], "train_ratio": train["pnet"] / train["eager"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this thread's CPU time (with --threads 1 it holds all the work and ignores other "
                         "load on the machine); wall: elapsed time")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        ap.error("--clock cpu measures one thread: use it with --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    gpt = gpt_graph()
    cases = [
        ("mlp (B=128)", load_source(MLP).graph, HandMLP(), torch.randn(128, 256, generator=gen),
         torch.randint(0, 10, (128,), generator=gen)),
        ("resnet-cnn (B=32, 32x32)", load_source(CNN).graph, HandCNN(), torch.randn(32, 3, 32, 32, generator=gen),
         torch.randint(0, 10, (32,), generator=gen)),
        ("gpt (B=8, T=64)", gpt, HandGPT(), torch.randint(0, 256, (8, 64), generator=gen),
         torch.randint(0, 256, (8, 64), generator=gen)),
    ]
    rows = [bench(n, g, h, x, y, args.rounds, clock) for n, g, h, x, y in cases]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} time; "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'model':<26}{'params':>9}  {'fwd pnet':>9} {'fwd eager':>9} {'ratio':>6}  {'step pnet':>9} {'step eager':>10} {'ratio':>6}")
    for r in rows:
        f, t = r["forward_ms"], r["train_ms"]
        print(f"{r['model']:<26}{r['params']:>9}  {f['pnet']:>7.3f}ms {f['eager']:>7.3f}ms {r['forward_ratio']:>6.3f}"
              f"  {t['pnet']:>7.3f}ms {t['eager']:>8.3f}ms {r['train_ratio']:>6.3f}")
    worst = max(max(r["forward_ratio"], r["train_ratio"]) for r in rows)
    print(f"worst ratio {worst:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
