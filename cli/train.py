"""`pnet train FILE [--loss NAME] [--optimizer sgd|adamw] [--lr LR] [--steps N] [-i data.npz [--batch N]]
[--params in.safetensors] [-o out.safetensors] [-b numpy|torch|triton]`: train a model through pnet.

The model's forward, its gradients (passes/autodiff.py) and the optimizer update are one step graph
(passes/train.py), run on the chosen backend once per step with the `new.*` outputs fed back as the parameters
and optimizer state of the next. Inputs come from -i (with --batch N: consecutive slices of N along axis 0 of
every array, cycling), else seeded random inputs (the same every step). The loss is printed per step (every k
steps for a long run, with a counter on a terminal); the trained model parameters (not the optimizer state)
are written to -o. `add_train_args` / `step_graph_of` give `pnet show --kernels --train` and `pnet compile
--train` the same step graph."""
from __future__ import annotations

import sys

import numpy as np

from ..backends import BACKENDS
from ..errors import UsageError
from .common import EXIT_FAILED, EXIT_OK, add_model_args, load_model, run_pipeline
from .paths import WEIGHT_SUFFIXES, check_output_file, check_weight_file

PRINT_LINES = 20   # a run of more steps prints the loss every steps // PRINT_LINES steps (and the first and last)


def add_parser(sub) -> None:
    sp = sub.add_parser("train", help="train the model: forward, gradients and optimizer step as one graph")
    add_model_args(sp)
    add_train_args(sp, flag=False)
    sp.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    sp.add_argument("-i", "--inputs", help=".npz (or .safetensors) of inputs by name (default: seeded random, "
                                           "the same every step)")
    sp.add_argument("--batch", type=int, metavar="N", help="with -i: each step takes the next N rows (axis 0) of "
                                                           "every input, cycling")
    sp.add_argument("--cast", action="store_true", help="cast -i arrays to the model's dtypes even when values change")
    sp.add_argument("--params", help="initial weights (.safetensors or .npz); default: seeded init")
    sp.add_argument("-o", "--output", default="trained.safetensors",
                    help="where the trained weights go (.safetensors or .npz; default trained.safetensors)")
    sp.add_argument("-b", "--backend", default="numpy", choices=list(BACKENDS), help="where to run it (default: numpy)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random inputs and initial parameters (default 0)")
    sp.set_defaults(fn=run)


def add_train_args(sp, flag: bool = True) -> None:
    """The step graph's options; `flag`: also `--train` (show, compile), which asks for the step graph."""
    if flag:
        sp.add_argument("--train", action="store_true",
                        help="the training step instead of the forward: forward, gradients and optimizer update")
    sp.add_argument("--loss", metavar="NAME",
                    help="the scalar output to minimise (default: the only float scalar output)")
    sp.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"], help="the update rule (default sgd)")
    sp.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    sp.add_argument("--momentum", type=float, default=0.0, help="sgd momentum (default 0: no buffer)")
    sp.add_argument("--weight-decay", type=float, default=0.0,
                    help="weight decay: sgd's adds wd*p to the gradient, adamw's is decoupled (default 0)")
    sp.add_argument("--betas", default="0.9,0.999", metavar="B1,B2", help="adamw's betas (default 0.9,0.999)")
    sp.add_argument("--eps", type=float, default=1e-8, help="adamw's eps (default 1e-8)")


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--betas {text}: expected two numbers B1,B2 (like 0.9,0.999)") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise UsageError(f"--betas {text}: each beta must be in [0, 1)")
    return b1, b2


def step_graph_of(args, graph):
    """The cleaned-up training step of `graph` (after the pass pipeline) as the options say."""
    from ..passes.manager import run_passes
    from ..passes.train import STEP_PIPELINE, step_graph
    if not np.isfinite(args.lr) or args.lr < 0:
        raise UsageError(f"--lr {args.lr}: expected a finite number >= 0")
    sg = step_graph(graph, args.loss, args.optimizer, lr=args.lr, momentum=args.momentum, betas=_betas(args.betas),
                    eps=args.eps, weight_decay=args.weight_decay)
    return run_passes(sg, STEP_PIPELINE)


def run(args) -> int:
    from ..backends import numpy_ref
    from ..weights import load_params, save_params
    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: expected at least 1")
    if args.batch is not None and (args.batch < 1 or not args.inputs):
        raise UsageError("--batch N: needs -i FILE and N >= 1")
    out = check_output_file("-o", args.output, WEIGHT_SUFFIXES, "weight-file")
    if args.params:
        check_weight_file("--params", args.params)
    args.train_step = True   # elaborate for training: batch statistics, `update`d state (cli/common.load_model)
    g = run_pipeline(load_model(args).graph, args)
    sg = step_graph_of(args, g)
    batches = _batches(args, g)
    params = load_params(args.params, g) if args.params else numpy_ref.init_params(g, args.seed)
    state = numpy_ref.init_params(sg, args.seed)   # the optimizer state: zeros
    state.update(params)
    names = [p.name for p in g.params]
    step = _stepper(args.backend, sg, state, batches[0])
    every = max(1, args.steps // PRINT_LINES)
    first = last = None
    from ..backends.progress import Progress
    with Progress(args.steps) if args.backend != "triton" else _Quiet() as progress:
        for i in range(args.steps):
            progress.step(f"step {i + 1}")
            loss = step(batches[i % len(batches)])
            if not np.isfinite(loss):
                print(f"pnet: error: the loss is {loss} at step {i + 1}: training stopped, no weights written "
                      f"(try a smaller --lr)", file=sys.stderr)
                return EXIT_FAILED
            first = loss if first is None else first
            last = loss
            if i == 0 or i == args.steps - 1 or (i + 1) % every == 0:
                print(f"step {i + 1:>{len(str(args.steps))}}/{args.steps}  loss {loss:.6g}", flush=True)
    trained = step.params()
    save_params(out, {n: trained[n] for n in names})
    print(f"loss {first:.6g} -> {last:.6g} over {args.steps} steps ({args.optimizer}, lr {args.lr:g}, "
          f"-b {args.backend}); wrote {out}")
    return EXIT_OK


class _Quiet:
    """No counter (under -b triton the launcher reports kernels to an open Progress)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self, label: str) -> None:
        pass


def _batches(args, g) -> list[dict]:
    """The inputs of each step: one dict (random, or the whole -i file), or the --batch slices of the file."""
    import argparse
    from ..backends import numpy_ref
    from .inputs import load_inputs
    if not args.inputs:
        return [numpy_ref.random_inputs(g, args.seed)]
    if args.batch is None:
        return [load_inputs(args, g)]
    # the file holds the whole data set: its axis 0 is not the model's batch dim, so --set is not checked against it
    data = load_inputs(argparse.Namespace(inputs=args.inputs, set=None, test_config=False, cast=args.cast), g)
    sizes = {k: a.shape[0] if a.ndim else None for k, a in data.items()}
    if any(s is None for s in sizes.values()) or len(set(sizes.values())) != 1:
        raise UsageError(f"--batch {args.batch}: every array of {args.inputs} needs the same length along axis 0 "
                         f"({', '.join(f'{k}: {s}' for k, s in sizes.items())})")
    n = next(iter(sizes.values()))
    if n < args.batch:
        raise UsageError(f"--batch {args.batch}: {args.inputs} has only {n} rows")
    return [{k: a[s:s + args.batch] for k, a in data.items()} for s in range(0, n - args.batch + 1, args.batch)]


def _stepper(backend: str, sg, state: dict, sample: dict):
    """A function running one step on `backend` (returns the loss, keeps the parameters and state)."""
    from ..backends import _check_memory
    if backend not in BACKENDS:
        raise UsageError(f"-b {backend}: unknown backend (available: {', '.join(BACKENDS)})")
    names = [p.name for p in sg.params]
    if backend != "numpy":   # (numpy_ref.run sizes its run itself)
        _check_memory(sg, sample, False)
    if backend == "torch":
        return _TorchStepper(sg, state, names)
    if backend == "triton":
        from ..backends import triton as triton_backend
        return _ArrayStepper(triton_backend.compile(sg).run, state, names)
    from ..backends import numpy_ref
    return _ArrayStepper(lambda inputs, params: numpy_ref.run(sg, inputs, params), state, names)


class _ArrayStepper:
    def __init__(self, fn, state: dict, names: list[str]):
        self.fn, self.state, self.names = fn, dict(state), names

    def __call__(self, inputs: dict) -> float:
        out = self.fn(inputs, self.state)
        self.state = {n: out[f"new.{n}"] for n in self.names}
        return float(out["loss"])

    def params(self) -> dict:
        return self.state


class _TorchStepper:
    """The step graph as one torch module, built once: each step's `new.*` outputs are copied into its parameters."""

    def __init__(self, sg, state: dict, names: list[str]):
        from ..backends.torch_backend import to_module
        self.module = to_module(sg, "f32", params=state)
        self.names = names
        self.slots = self.module.state_dict()

    def __call__(self, inputs: dict) -> float:
        import torch
        with torch.no_grad():
            out = self.module.run_named(inputs)
            loss = float(out["loss"])
            for n in self.names:
                self.slots[n].copy_(out[f"new.{n}"])
        return loss

    def params(self) -> dict:
        from ..backends.torch_backend import state_arrays
        return state_arrays(self.module, self.module.graph)
