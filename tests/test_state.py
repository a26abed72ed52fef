"""`state` declarations (tensors that are not trained: torch's buffers) and `update` (their next value in a
training run): counts, buffers, IR text, formatting, errors, and batch norm's running statistics against
torch.nn.BatchNorm2d in train mode, through the reference, both torch backends, Triton and `pnet train`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pnet.backends import numpy_ref, torch_backend, torch_source
from pnet.cli import main
from pnet.dsl.compile import load_source
from pnet.dsl.fmt import format_source
from pnet.errors import PnetError
from pnet.ir.analysis import param_count
from pnet.ir.graph import STATE_OUTPUT_PREFIX
from pnet.ir.text import parse_graph, print_graph
from pnet.passes.manager import run_passes
from pnet.passes.train import STEP_PIPELINE, step_graph

from conftest import ROOT

EMA = """
model ema(c: int = 4) {
  input x: f32[B, c]
  param w: [c, c] = ones()
  state avg: [c] = zeros()
  y = x @ w
  mu = mean(y, 0) if training else avg
  update avg = 0.9 * avg + 0.1 * mean(y, 0)
  output z = y - mu
}
"""

BN = """
import nn.norm
model bn(c: int = 3) {
  input x: f32[B, c, 4, 5]
  output y = batch_norm(x, momentum=0.25)
  output loss = mean(y * y * y)
}
"""


def test_state_is_counted_apart_and_not_trained():
    g = load_source(EMA).graph
    assert [(p.name, p.state) for p in g.params] == [("w", False), ("avg", True)]
    assert param_count(g) == 16 and param_count(g, state=True) == 4 and g.param_count() == 16


def test_resnet18_counts_match_torchvision(capsys):
    code = main(["check", str(ROOT / "stdlib" / "backbones" / "resnet18.pnet"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["params"] == 11_689_512 and info["state"] == 9_600   # 4,800 BN channels x 2


def test_update_is_an_output_only_when_training():
    assert [n for n, _ in load_source(EMA).graph.outputs] == ["z"]
    g = load_source(EMA, training=True).graph
    assert [n for n, _ in g.outputs] == [STATE_OUTPUT_PREFIX + "avg", "z"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = numpy_ref.run(g, {"x": x}, {"w": np.eye(4, dtype=np.float32), "avg": np.ones(4, np.float32)})
    np.testing.assert_allclose(out["state:avg"], 0.9 + 0.1 * x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(out["z"], x - x.mean(0), rtol=1e-6)


def test_ir_text_and_formatter_keep_state_and_update():
    g = load_source(EMA, training=True).graph
    text = print_graph(g)
    assert "  state %avg: f32[4] = zeros()" in text and '"state:avg"=' in text
    again = parse_graph(text)
    assert print_graph(again) == text and [p.state for p in again.params] == [False, True]
    src = format_source(EMA.strip() + "\n")
    assert "  state avg: [c] = zeros()" in src and "  update avg = 0.9 * avg + 0.1 * mean(y, 0)" in src
    assert format_source(src) == src


def test_torch_modules_register_state_as_buffers():
    g = load_source(EMA, training=True).graph
    params = {"w": np.eye(4, dtype=np.float32), "avg": np.zeros(4, np.float32)}
    x = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    m = torch_backend.to_module(g, params=params)
    ns: dict = {}
    exec(torch_source.to_source(g), ns)
    gen = ns["Model"]()
    gen.load_state_dict(m.state_dict())
    for module in (m, gen):
        assert [n for n, _ in module.named_parameters()] == ["w"]
        assert "avg" in module.state_dict() and "avg" in dict(module.named_buffers())
        module(x)   # train() is torch's default: the update is written into the buffer
        np.testing.assert_allclose(dict(module.named_buffers())["avg"].numpy(), 0.1 * x.mean(0).numpy(), rtol=1e-6)
        module.eval()
        module(x)   # eval(): the buffer stays
        np.testing.assert_allclose(dict(module.named_buffers())["avg"].numpy(), 0.1 * x.mean(0).numpy(), rtol=1e-6)


def _torch_bn(x: np.ndarray, params: dict, momentum: float):
    bn = torch.nn.BatchNorm2d(x.shape[1], momentum=momentum)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["batch_norm.scale"]))
        bn.bias.copy_(torch.from_numpy(params["batch_norm.shift"]))
        bn.running_mean.copy_(torch.from_numpy(params["batch_norm.running_mean"]))
        bn.running_var.copy_(torch.from_numpy(params["batch_norm.running_var"]))
    return bn


@pytest.mark.parametrize("backend", ["numpy", "torch", "torch_source", "triton"])
def test_batch_norm_training_matches_torch(backend):
    g = load_source(BN, training=True).graph
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (2, 3, 4, 5)).astype(np.float32)
    params = {k: rng.normal(1.0, 0.2, v.shape).astype(np.float32) + (1.0 if k.endswith("var") else 0.0)
              for k, v in numpy_ref.init_params(g, 0).items()}
    bn = _torch_bn(x, params, 0.25).train()
    want = bn(torch.from_numpy(x)).detach().numpy()
    if backend == "numpy":
        out = numpy_ref.run(g, {"x": x}, params)
    elif backend == "triton":
        from pnet.backends import triton as triton_backend
        out = triton_backend.compile(run_passes(g)).run({"x": x}, params)
    else:
        m = torch_backend.to_module(g, params=params)
        if backend == "torch_source":
            ns: dict = {}
            exec(torch_source.to_source(g), ns)
            m2 = ns["Model"]()
            m2.load_state_dict(m.state_dict())
            m = m2
        out = {k: v.detach().numpy() for k, v in m(torch.from_numpy(x)).items()}
        bufs = dict(m.named_buffers())
        np.testing.assert_allclose(bufs["batch_norm.running_var"].numpy(), bn.running_var.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["y"], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["state:batch_norm.running_mean"], bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["state:batch_norm.running_var"], bn.running_var.numpy(), rtol=1e-5)


def test_batch_norm_inference_reads_the_running_statistics():
    g = load_source(BN).graph
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    params = {k: rng.uniform(0.5, 1.5, v.shape).astype(np.float32) for k, v in numpy_ref.init_params(g, 0).items()}
    bn = _torch_bn(x, params, 0.1).eval()
    np.testing.assert_allclose(numpy_ref.run(g, {"x": x}, params)["y"], bn(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_training_step_updates_running_statistics_and_trains_the_rest():
    g = run_passes(load_source(BN, training=True).graph)
    sg = run_passes(step_graph(g, "loss", "sgd", lr=0.1), STEP_PIPELINE)
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, (2, 3, 4, 5)).astype(np.float32)
    params = numpy_ref.init_params(g, 0)
    out = numpy_ref.run(sg, {"x": x}, params)
    bn = _torch_bn(x, params, 0.25).train()
    loss = (bn(torch.from_numpy(x)) ** 3).mean()
    loss.backward()
    np.testing.assert_allclose(out["new.batch_norm.running_mean"], bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["new.batch_norm.running_var"], bn.running_var.numpy(), rtol=1e-5)
    want_scale = params["batch_norm.scale"] - 0.1 * bn.weight.grad.numpy()
    np.testing.assert_allclose(out["new.batch_norm.scale"], want_scale, rtol=1e-4, atol=1e-6)


def test_frozen_statement_makes_its_params_state():
    src = """
import nn.core
model m() {
  input x: f32[B, 4]
  @frozen h = linear(x, 4) as backbone
  output y = linear(h, 2) as head
}
"""
    g = load_source(src).graph
    assert {p.name: p.state for p in g.params} == {"backbone.w": True, "backbone.b": True, "head.w": False, "head.b": False}


@pytest.mark.parametrize("body, message", [
    ("  param w: [4] = ones()\n  update w = w * 2.0\n", "'w' is not a state declared in this model"),
    ("  state s: [4] = ones()\n  update s = x\n", "the new value is f32[B, 4], the state is f32[4]"),
    ("  state s: [4] = ones()\n  update s = s + 1.0\n  update s = s + 2.0\n", "state 's' updated twice"),
    ("  state s: [B] = ones()\n", "state dims must be known at compile time"),
    ("  state s: [4] = ones()\n  ys, c = scan(r in x; acc = s) {\n    update s = acc\n    yield r\n  }\n",
     "`update` inside a scan body"),
])
def test_state_errors_are_located(body, message):
    src = "model m() {\n  input x: f32[B, 4]\n" + body + "  output y = x\n}\n"
    with pytest.raises(PnetError) as e:
        load_source(src, "bad.pnet", training=True)
    assert message in str(e.value) and "bad.pnet:" in str(e.value)
