"""The training step as one graph: forward, backward (passes/autodiff.py) and the optimizer update, all IR.

`step_graph(graph, loss, optimizer=...)` differentiates the scalar output `loss` with respect to every trainable
parameter and appends the optimizer's update as pointwise ops, so every backend runs the whole step and the
fusion pass plans it like any other graph (the update of each parameter is one elementwise chain). The
optimizer's state is extra parameters of the step graph, initialised with zeros: `opt.m.NAME` (SGD's momentum
buffer, AdamW's first moment), `opt.v.NAME` (AdamW's second moment) and `opt.step` (an f32 scalar counting the
steps, for AdamW's bias correction). The outputs are `loss`, then `new.NAME` for every parameter of the step
graph, model parameters first, then the optimizer state: a driver feeds each `new.NAME` back as NAME for the
next step (cli/train.py). `state` tensors (batchnorm running statistics, frozen weights) are not trained: each
takes its `update`d value (the graph's "state:NAME" output, when elaborated for training), else passes through.

The semantics are torch.optim's, with the hyperparameters baked in as constants:
  sgd:   g += wd p (coupled weight decay); with momentum: buf = momentum buf + g, g = buf; p -= lr g
  adamw: p -= lr wd p (decoupled); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; t += 1;
         p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
"""
from __future__ import annotations

from ..errors import UsageError
from ..ir.analysis import frozen_params
from ..ir.builder import Emitter
from ..ir.graph import STATE_OUTPUT_PREFIX, Graph, Init, Param, Value
from ..ir.types import TensorType, is_float
from .autodiff import GradError, grad_graph

OPTIMIZERS = ("sgd", "adamw")
STATE_PREFIX = "opt."
STEP = "opt.step"
# the cleanup run on a step graph: the default pipeline (constants with a value over dims, such as the 1/(2*B) of
# a mean's gradient, stay ops)
STEP_PIPELINE = ["canonicalize", "fold", "cse", "dce"]


def loss_output(graph: Graph, loss: str | None = None) -> str:
    """The output to train on: `loss` (checked: a float scalar output), or the graph's only float scalar output."""
    outputs = dict(graph.outputs)
    scalars = [n for n, v in graph.outputs if v.type.rank == 0 and is_float(v.type.dtype)]
    if loss is None:
        if not scalars:
            raise GradError(f"{graph.name} has no float scalar output to minimise (outputs: "
                            f"{', '.join(outputs) or 'none'}): add a loss output")
        if len(scalars) > 1:
            raise GradError(f"{graph.name} has {len(scalars)} float scalar outputs ({', '.join(scalars)}): "
                            f"name the loss with --loss NAME")
        return scalars[0]
    if loss not in outputs:
        raise GradError(f"{graph.name} has no output '{loss}' (outputs: {', '.join(outputs) or 'none'})")
    if loss not in scalars:
        raise GradError(f"the loss '{loss}' must be a float scalar, got {outputs[loss].type}")
    return loss


def trainable(graph: Graph) -> list[str]:
    """The parameters the optimizer updates: the float ones that are not `state`."""
    frozen = frozen_params(graph)
    return [p.name for p in graph.params if is_float(p.value.type.dtype) and p.name not in frozen]


def step_graph(graph: Graph, loss: str | None = None, optimizer: str = "sgd", lr: float = 1e-3,
               momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.0) -> Graph:
    """One training step of `graph` on its output `loss` (see the module docstring). The result is not cleaned
    up: run the pass pipeline (CSE, DCE) on it, as on any graph."""
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"optimizer '{optimizer}': expected one of {', '.join(OPTIMIZERS)}")
    for p in graph.params:
        if p.name.startswith(STATE_PREFIX):
            raise UsageError(f"parameter '{p.name}': names starting with '{STATE_PREFIX}' are the optimizer's state")
    loss = loss_output(graph, loss)
    wrt = trainable(graph)
    if not wrt:
        raise GradError(f"{graph.name} has no trainable parameter (float, not `state`)")
    g = grad_graph(graph, loss, wrt)
    outs = dict(g.outputs)
    e = Emitter(None)
    hyper = _Hyper(e, lr, momentum, betas, eps, weight_decay)
    state: list[tuple[str, Value]] = []   # (new.NAME, value) of the optimizer state, after the model's

    def new_state(name: str, t: TensorType) -> Value:
        v = Value(t)
        g.params.append(Param(name, v, Init("zeros")))
        return v

    if optimizer == "adamw":
        step = new_state(STEP, TensorType("f32", ()))
        t = e("add", [step, e.const(1.0, "f32")])
        state.append((f"new.{STEP}", t))
        b1, b2 = betas
        # 1 - b^t as exp(t log b): t is a float counter, pow of a constant base is the same value
        bc1 = e("sub", [e.const(1.0, "f32"), e("pow", [e.const(float(b1), "f32"), t])])
        bc2 = e("sub", [e.const(1.0, "f32"), e("pow", [e.const(float(b2), "f32"), t])])
        step_size = e("div", [e.const(float(lr), "f32"), bc1])
        bc2_sqrt = e("sqrt", [bc2])
    new_params: dict[str, Value] = {}
    for p in list(graph.params):
        pv = dict((q.name, q.value) for q in g.params)[p.name]
        if p.name not in wrt:   # a `state` tensor: its `update` (a training-mode graph's "state:NAME"), else as is
            new_params[p.name] = outs.get(STATE_OUTPUT_PREFIX + p.name, pv)
            continue
        grad = outs[f"grad.{p.name}"]
        if optimizer == "sgd":
            if weight_decay:
                grad = e("add", [grad, e("mul", [hyper.k("wd", pv), pv])])
            if momentum:
                buf = new_state(f"opt.m.{p.name}", pv.type)
                grad = e("add", [e("mul", [hyper.k("momentum", pv), buf]), grad])
                state.append((f"new.opt.m.{p.name}", grad))
            new_params[p.name] = e("sub", [pv, e("mul", [hyper.k("lr", pv), grad])])
        else:
            m = new_state(f"opt.m.{p.name}", pv.type)
            v = new_state(f"opt.v.{p.name}", pv.type)
            if weight_decay:
                pv_d = e("mul", [pv, hyper.k("decay", pv)])
            else:
                pv_d = pv
            m2 = e("add", [e("mul", [hyper.k("b1", pv), m]), e("mul", [hyper.k("1-b1", pv), grad])])
            v2 = e("add", [e("mul", [hyper.k("b2", pv), v]), e("mul", [hyper.k("1-b2", pv), e("mul", [grad, grad])])])
            denom = e("add", [e("div", [e("sqrt", [v2]), e.like(bc2_sqrt, TensorType(pv.type.dtype, ()))]),
                              hyper.k("eps", pv)])
            upd = e("mul", [e.like(step_size, TensorType(pv.type.dtype, ())), e("div", [m2, denom])])
            new_params[p.name] = e("sub", [pv_d, upd])
            state += [(f"new.opt.m.{p.name}", m2), (f"new.opt.v.{p.name}", v2)]
    g.nodes += e.nodes
    by_name = dict(state)
    ordered_state = [(f"new.{q.name}", by_name[f"new.{q.name}"]) for q in g.params if q.name.startswith(STATE_PREFIX)]
    g.outputs = [("loss", outs[loss])] + [(f"new.{p.name}", new_params[p.name]) for p in graph.params] + ordered_state
    g.name = f"{graph.name}_train_step"
    return g


class _Hyper:
    """The hyperparameters as scalar constants in a parameter's dtype (one per name and dtype)."""

    def __init__(self, e: Emitter, lr, momentum, betas, eps, weight_decay):
        self.e = e
        self.values = {"lr": lr, "momentum": momentum, "wd": weight_decay, "b1": betas[0], "b2": betas[1],
                       "1-b1": 1.0 - betas[0], "1-b2": 1.0 - betas[1], "eps": eps, "decay": 1.0 - lr * weight_decay}
        self.cache: dict[tuple[str, str], Value] = {}

    def k(self, name: str, like: Value) -> Value:
        key = (name, like.type.dtype)
        if key not in self.cache:
            self.cache[key] = self.e.const(float(self.values[name]), like.type.dtype)
        return self.cache[key]


def model_params(step: Graph) -> list[str]:
    """The step graph's parameters that are the model's (not the optimizer's state)."""
    return [p.name for p in step.params if not p.name.startswith(STATE_PREFIX)]
