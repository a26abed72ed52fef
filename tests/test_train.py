"""Training through pnet (passes/train.py, `pnet train`): the step graph's update equals torch.optim applied to
torch autograd's gradients; one step of every example with a loss gives the same loss and parameters on the
numpy, torch and triton backends; the CLI trains the example and its loss falls; the kernel plan of the MLP
example's training step is pinned."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402

from pnet.backends import numpy_ref, run as run_backend  # noqa: E402
from pnet.backends.torch_backend import to_module  # noqa: E402
from pnet.dsl.compile import load_file, load_source  # noqa: E402
from pnet.errors import PnetError  # noqa: E402
from pnet.ir.builder import Emitter  # noqa: E402
from pnet.ir.types import is_float  # noqa: E402
from pnet.passes.fuse import plan  # noqa: E402
from pnet.passes.manager import run_passes  # noqa: E402
from pnet.passes.train import STEP_PIPELINE, model_params, step_graph  # noqa: E402
from pnet.testing.tolerance import assert_outputs_close  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (tests/conftest.py)

SMALL = """
import nn.core
import nn.norm
model reg(hidden: int = 6) {
  input x: f32[B, 3]
  input target: f32[B, 2]
  h = tanh(linear(x, hidden) as l1)
  h = layer_norm(h) as ln
  y = linear(h, 2) as l2
  output y
  output loss = mean((y - target) ** 2)
}
"""

OPTIMIZERS = {
    "sgd": (dict(lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgd-momentum-wd": (dict(lr=0.1, momentum=0.9, weight_decay=0.01),
                        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adamw": (dict(lr=0.01), lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.0)),
    "adamw-wd-betas": (dict(lr=0.02, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6),
                       lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)),
}


def _step(graph, optimizer="sgd", **kw):
    return run_passes(step_graph(graph, kw.pop("loss", None), optimizer, **kw), STEP_PIPELINE)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_matches_torch_optim(name):
    """3 steps in float64: the loss and every parameter after each step equal torch.optim's on torch autograd's
    gradients of the same module."""
    kw, make = OPTIMIZERS[name]
    g = load_source(SMALL).graph
    sg = _step(g, name.split("-")[0], **kw)
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((5, 3)), "target": rng.standard_normal((5, 2))}
    state = {k: v.astype(np.float64) for k, v in numpy_ref.init_params(sg, 0).items()}
    module = to_module(g, "f64", params={k: state[k] for k in model_params(sg)})
    opt = make(list(module.parameters()))
    for step in range(3):
        out = numpy_ref.run(sg, inputs, state, float64=True)
        opt.zero_grad()
        loss = module.run_named({k: torch.tensor(v) for k, v in inputs.items()})["loss"]
        loss.backward()
        opt.step()
        assert abs(float(out["loss"]) - float(loss.detach())) < 1e-12, step
        state = {p.name: out[f"new.{p.name}"] for p in sg.params}
        for n, p in module.named_parameters():
            np.testing.assert_allclose(state[n], p.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{name} {n}")


def test_step_graph_interface():
    g = load_source(SMALL).graph
    sg = _step(g, "adamw")
    names = [p.name for p in g.params]
    state = [p.name for p in sg.params if p.name.startswith("opt.")]
    assert [p.name for p in sg.params][:len(names)] == names
    assert state[0] == "opt.step" and sorted(state[1:]) == sorted([f"opt.m.{n}" for n in names] +
                                                                  [f"opt.v.{n}" for n in names])
    assert all(str(p.init) == "zeros()" for p in sg.params if p.name.startswith("opt."))
    assert [n for n, _ in sg.outputs] == ["loss"] + [f"new.{p.name}" for p in sg.params]
    assert [p.name for p in _step(g, "sgd").params] == names          # no momentum: no state
    with pytest.raises(PnetError, match="name the loss"):
        step_graph(load_source(SMALL.replace("output loss", "output loss2 = mean(y)\n  output loss")).graph)
    with pytest.raises(PnetError, match="must be a float scalar"):
        step_graph(g, "y")
    with pytest.raises(PnetError, match="no output 'nope'"):
        step_graph(g, "nope")


def test_state_passes_through():
    """`state` is not trained: without an `update` its new value is the old one, as torch.optim leaves buffers
    (tests/test_state.py: with one, the updated value)."""
    src = """
import nn.core
model bn(c: int = 3) {
  input x: f32[B, 3, 4]
  state rmean: [3] = zeros()
  state rvar: [3] = ones()
  param w: [3] = ones()
  h = batchnorm(x, rmean, rvar, w, w, eps=1e-5)
  output loss = mean(h * h) + mean(linear(h, 2))
}
"""
    g = load_source(src).graph
    sg = _step(g, "adamw", lr=0.1)
    out = numpy_ref.run(sg, numpy_ref.random_inputs(sg, 0), params := numpy_ref.init_params(sg, 0))
    for n in ("rmean", "rvar"):
        np.testing.assert_array_equal(out[f"new.{n}"], params[n])
        assert f"opt.m.{n}" not in params
    assert not np.allclose(out["new.w"], params["w"])


# ---- a step on every backend ---------------------------------------------------------------------------------
TINY = {   # small shapes: the Triton interpreter runs every kernel program as NumPy
    "mlp": dict(d_in=8, hidden=8, classes=4, B=4),
    "gpt": dict(vocab=16, ctx=4, d=8, heads=2, layers=1, B=2, T=4),
    "cnn": dict(width=2, classes=4, B=2),
    "train_regression": dict(hidden=8, B=8),
}


def _examples_with_loss() -> list[str]:
    names = []
    for p in sorted((ROOT / "examples").glob("*.pnet")):
        outs = load_file(p).graph.outputs
        if any(v.type.rank == 0 and is_float(v.type.dtype) for _, v in outs):
            names.append(p.stem)
    return sorted(set(names) | {"mlp", "cnn"})


def _example(name: str):
    overrides = {k: str(v) for k, v in TINY.get(name, {}).items()}
    r = load_file(ROOT / "examples" / f"{name}.pnet", None, overrides)   # sizes the dims of `overrides` too
    g = run_passes(r.graph)
    if "loss" not in dict(g.outputs):   # (cnn) a loss built in the test: the logits' mean square
        e = Emitter(None)
        y = dict(g.outputs)["logits"]
        loss = e("mean", [e("mul", [y, y])], axis=list(range(y.type.rank)), keepdims=False)
        g.nodes += e.nodes
        g.outputs.append(("loss", loss))
    return g


@pytest.mark.parametrize("name", _examples_with_loss())
def test_training_step_same_on_every_backend(name):
    pytest.importorskip("triton")
    g = _example(name)
    sg = _step(g, "adamw", loss="loss", lr=0.01, weight_decay=0.1)
    inputs, params = numpy_ref.random_inputs(sg, 0), numpy_ref.init_params(sg, 0)
    ref32 = numpy_ref.run(sg, inputs, params)
    ref64 = numpy_ref.run(sg, inputs, params, float64=True)
    assert set(ref64) == {"loss"} | {f"new.{p.name}" for p in sg.params}
    for backend in ("torch", "triton"):
        assert_outputs_close(run_backend(backend, sg, inputs, params), ref32, ref64)


# ---- the kernel plan of a training step ------------------------------------------------------------------------
# examples/mlp.pnet at its defaults (B bound to 2), the training step of its `loss` after the cleanup pipeline.
# Forward (all outputs): kernels=8 bytes=109772 compulsory=105180 flops=104711 (tests/test_triton_backend.py).
# The update fuses into the weight-gradient matmul / bias-gradient reduction epilogues (sgd), or is one pointwise
# kernel per parameter (sgd with momentum, adamw: the state is written too).
PINNED_TRAIN = {
    "sgd": {"kernels": 19, "bytes": 400748, "compulsory_bytes": 209508, "flops": 332592, "fallbacks": 0},
    "sgd-momentum": {"kernels": 25, "bytes": 818700, "compulsory_bytes": 418484, "flops": 384836, "fallbacks": 0},
    "adamw": {"kernels": 26, "bytes": 1236716, "compulsory_bytes": 627468, "flops": 619941, "fallbacks": 0},
}


@pytest.mark.parametrize("name", PINNED_TRAIN)
def test_mlp_training_step_plan_pinned(name):
    g = run_passes(load_file(ROOT / "examples" / "mlp.pnet").graph)
    sg = _step(g, name.split("-")[0], momentum=0.9 if name == "sgd-momentum" else 0.0)
    totals = plan(sg).totals(numpy_ref.bind_dims(sg))
    print(name, {k: totals[k] for k in PINNED_TRAIN[name]})
    for k, v in PINNED_TRAIN[name].items():
        assert totals[k] == v, f"{name}: {k} = {totals[k]}, pinned {v}"
    assert totals["bytes"] >= totals["compulsory_bytes"]


# ---- the CLI ---------------------------------------------------------------------------------------------------
def _pnet(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pnet", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_trains_the_example(tmp_path):
    from pnet.weights import load_params
    r = _pnet("train", str(ROOT / "examples" / "train_regression.pnet"), "--test-config", "--optimizer", "adamw",
              "--lr", "0.02", "--steps", "20", "-o", "w.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    losses = [float(line.split("loss")[1]) for line in r.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 20 and losses[-1] < 0.7 * losses[0], r.stdout
    assert "wrote w.safetensors" in r.stdout
    g = load_file(ROOT / "examples" / "train_regression.pnet", None, {"B": "16", "hidden": "8"}).graph
    w = load_params(tmp_path / "w.safetensors", g)   # model parameters only, no optimizer state
    assert set(w) == {p.name for p in g.params}


def test_cli_trains_with_batches_and_params(tmp_path):
    """-i with --batch slices the file; --params starts from given weights; -b torch gives numpy's losses."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((12, 2)).astype(np.float32))
    src = ROOT / "examples" / "train_regression.pnet"
    common = ("--set", "hidden=4", "-i", "data.npz", "--batch", "4", "--steps", "5", "--lr", "0.05")
    a = _pnet("train", str(src), *common, "-o", "a.npz", cwd=tmp_path)
    assert a.returncode == 0, a.stderr
    b = _pnet("train", str(src), *common, "-b", "torch", "--params", "a.npz", "-o", "b.npz", cwd=tmp_path)
    assert b.returncode == 0, b.stderr
    la = [float(s.split("loss")[1]) for s in a.stdout.splitlines() if s.startswith("step")]
    lb = [float(s.split("loss")[1]) for s in b.stdout.splitlines() if s.startswith("step")]
    assert lb[0] < la[0]   # b starts from a's trained weights


@pytest.mark.parametrize("args, message", [
    (("--loss", "nope"), "no output 'nope'"),
    (("--loss", "y"), "must be a float scalar"),
    (("--steps", "0"), "--steps 0"),
    (("--batch", "4"), "--batch N: needs -i"),
    (("--betas", "0.9"), "--betas 0.9"),
    (("-o", "w.txt"), "-o"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    r = _pnet("train", str(ROOT / "examples" / "train_regression.pnet"), "--test-config", *args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_show_and_compile_plan_the_step(tmp_path):
    src = str(ROOT / "examples" / "mlp.pnet")
    r = _pnet("show", src, "--kernels", "--train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kernels=19 " in r.stdout
    r = _pnet("compile", src, "--train", "--optimizer", "adamw", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(26 kernels)" in r.stdout and (tmp_path / "out" / "model.py").exists()
