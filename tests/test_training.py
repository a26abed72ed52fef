"""Training through the torch backend: the loss falls for a classifier and for a recurrence written with
`scan` (backprop through time), gradients reach every parameter, and weights trained in torch run
unchanged in the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402

from pnet.backends import numpy_ref  # noqa: E402
from pnet.backends.torch_backend import load_state, to_module  # noqa: E402
from pnet.dsl.compile import load_file, load_source  # noqa: E402
from pnet.testing.tolerance import assert_outputs_close  # noqa: E402
from pnet.weights import load_params, save_params  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (tests/conftest.py)


# An Elman RNN that reads a sequence and must output its running sum (squashed) at every step.
RNN = """
import nn.core
model rnn(d: int = 2, h: int = 16) {
  input xs: f32[B, T, d]
  hs, hT = scan(x_t in xs along 1; s = zeros([B, h])) {
    s = tanh(linear(x_t, h) as inp + linear(s, h, bias=false) as rec)
    yield s
  }
  output y = linear(hs, 1) as head
}
"""


def _train(module, batches, loss_fn, steps, lr, momentum=0.9):
    """Plain SGD with momentum, written out: torch.optim's first step imports torch._dynamo (seconds)."""
    params = [p for p in module.parameters() if p.requires_grad]
    velocity = [torch.zeros_like(p) for p in params]
    losses = []
    for step in range(steps):
        inputs, target = batches(step)
        for p in params:
            p.grad = None
        loss = loss_fn(module(**inputs), target)
        loss.backward()
        with torch.no_grad():
            for p, v in zip(params, velocity):
                v.mul_(momentum).add_(p.grad)
                p.sub_(lr * v)
        losses.append(loss.item())
    return losses


def test_mlp_classifier_learns():
    """examples/mlp.pnet computes its own cross-entropy (`loss` output); labels come from a random teacher."""
    g = load_file(ROOT / "examples" / "mlp.pnet", overrides={"hidden": 32, "classes": 4}).graph
    torch.manual_seed(0)
    teacher = torch.randn(64, 4)
    x_all = torch.randn(512, 64)
    y_all = (x_all @ teacher).argmax(-1)

    def batches(step):
        i = (step * 64) % 512
        return {"x": x_all[i:i + 64], "labels": y_all[i:i + 64]}, None

    losses = _train(to_module(g), batches, lambda out, _: out["loss"], steps=40, lr=0.05)
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5]), losses


def test_scan_rnn_learns_running_sum():
    g = load_source(RNN).graph
    module = to_module(g)
    gen = torch.Generator().manual_seed(0)

    def batches(step):
        xs = torch.randn(16, 6, 2, generator=gen) * 0.5
        return {"xs": xs}, torch.tanh(xs.sum(-1).cumsum(1)).unsqueeze(-1)

    losses = _train(module, batches, lambda out, t: torch.mean((out["y"] - t) ** 2), steps=80, lr=0.05)
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5]), losses
    grads = [p.grad for p in module.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_gradients_reach_every_parameter_through_scan():
    """The LSTM example: two stacked scans; backprop through time reaches every parameter."""
    g = load_file(ROOT / "examples" / "lstm.pnet").graph
    module = to_module(g)
    inputs = numpy_ref.random_inputs(g)
    out = module(**inputs)
    (out["logits"].square().mean() + out["h_last"].sum() + out["c_last"].sum()).backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_trained_weights_run_in_the_reference(tmp_path, suffix):
    """Train a little in torch, save with weights.save_params, and the NumPy reference reproduces the module."""
    g = load_source(RNN).graph
    module = to_module(g)
    gen = torch.Generator().manual_seed(1)

    def batches(step):
        xs = torch.randn(8, 5, 2, generator=gen)
        return {"xs": xs}, xs.sum(-1, keepdim=True)

    _train(module, batches, lambda out, t: torch.mean((out["y"] - t) ** 2), steps=5, lr=0.05)
    path = tmp_path / f"trained{suffix}"
    save_params(path, {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
    params = load_params(path, g)
    assert not all(np.array_equal(params[k], v) for k, v in numpy_ref.init_params(g).items())  # it did train
    inputs = {"xs": np.random.default_rng(2).standard_normal((3, 7, 2)).astype(np.float32)}
    ref32 = numpy_ref.run(g, inputs, params)
    ref64 = numpy_ref.run(g, inputs, params, float64=True)
    with torch.no_grad():
        got = {k: v.numpy() for k, v in module(**inputs).items()}
    assert_outputs_close(got, ref32, ref64)
    fresh = to_module(g, seed=9)  # and back into a new module
    load_state(fresh, path, g)
    with torch.no_grad():
        again = {k: v.numpy() for k, v in fresh(**inputs).items()}
    np.testing.assert_array_equal(again["y"], got["y"])
