"""Train examples/mlp.pnet with torch, then check the trained weights in the NumPy reference.

The task is synthetic: 8x8 "images" (64 features) labelled by a random linear teacher. The model computes its
own cross-entropy (its `loss` output), so training is: forward, take out["loss"], backward, step.

    python examples/train_mlp.py                 # with pnet importable (installed, or on PYTHONPATH)
    python examples/train_mlp.py --steps 300 --hidden 64 --out mlp.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import pnet.api
from pnet.backends.torch_backend import save_state
from pnet.testing.tolerance import assert_outputs_close

HERE = Path(__file__).resolve().parent


def synthetic_data(n: int, d_in: int, classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(d_in, classes, generator=gen)
    x = torch.randn(n, d_in, generator=gen)
    return x, (x @ teacher).argmax(-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default="mlp_trained.safetensors", help="where to save the trained weights")
    args = ap.parse_args(argv)

    model = pnet.api.load(HERE / "mlp.pnet", hidden=args.hidden)
    d_in, classes = model.hyper["d_in"], model.hyper["classes"]
    module = model.torch_module()  # parameters start as model.params(seed=0)
    print(f"{model}: state_dict keys {list(module.state_dict())[:3]} ...")

    x, y = synthetic_data(4096, d_in, classes)
    x_test, y_test = x[-512:], y[-512:]  # held out: never trained on
    x, y = x[:-512], y[:-512]
    opt = torch.optim.AdamW(module.parameters(), lr=args.lr)
    for step in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch,))
        loss = module(x=x[idx], labels=y[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            with torch.no_grad():
                acc = (module(x=x_test, labels=y_test)["logits"].argmax(-1) == y_test).float().mean()
            print(f"step {step:4d}  loss {loss.item():.4f}  held-out accuracy {acc:.3f}")

    save_state(module, args.out, model.graph)
    print(f"wrote {args.out}")
    # the trained weights, read back through pnet's loader, give the same outputs in the NumPy reference
    inputs = {"x": x_test[:16].numpy(), "labels": y_test[:16].numpy()}
    ref32 = model.run(inputs, params=args.out)
    ref64 = model.run(inputs, params=args.out, float64=True)
    with torch.no_grad():
        got = {k: v.numpy() for k, v in module(**inputs).items()}
    assert_outputs_close(got, ref32, ref64)
    print(f"NumPy reference agrees with the trained torch module (loss {float(ref32['loss']):.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
