"""The Python API: load a .pnet model once, then run it on any backend or get a torch module.

    import pnet
    m = pnet.load("examples/mlp.pnet", width=64)      # hyperparameters and dims by keyword
    outs = m.run({"x": x})                            # NumPy reference; inputs/params drawn from a seed if omitted
    module = m.torch_module(dtype="f32")              # nn.Module, state_dict keys = m.graph's parameter names
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends import BACKENDS, run as run_backend
from .errors import UsageError
from .ir.graph import Graph


class Model:
    """A compiled model: its IR graph, the hyperparameters it was built with, and ways to run it."""

    def __init__(self, graph: Graph, hyper: dict, path: str | None = None):
        self.graph = graph
        self.hyper = hyper
        self.path = path

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {v.type}" for n, v in self.graph.inputs)
        return f"<pnet.Model {self.graph.name}({ins}) params={self.graph.param_count()}>"

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self.graph.outputs]

    def params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Freshly initialised parameters (each one's random stream depends on the seed and its name)."""
        from .backends.numpy_ref import init_params
        return init_params(self.graph, seed)

    def inputs(self, seed: int = 0, **dims) -> dict[str, np.ndarray]:
        """Seeded random inputs (symbolic dims from `dims`, else the model's small defaults)."""
        from .backends.numpy_ref import random_inputs
        return random_inputs(self.graph, seed, dims or None)

    def run(self, inputs: dict | None = None, params: dict | str | Path | None = None, backend: str = "numpy",
            *, seed: int = 0, float64: bool = False, dtype: str = "f32") -> dict[str, np.ndarray]:
        """Outputs by name as NumPy arrays. `params` is a dict, a weight file (.npz/.safetensors) or None (seeded);
        missing inputs are drawn from `seed`."""
        from .backends import numpy_ref
        if backend not in BACKENDS:
            raise UsageError(f"backend '{backend}': available backends are {', '.join(BACKENDS)}")
        inputs = dict(inputs) if inputs is not None else numpy_ref.random_inputs(self.graph, seed)
        if isinstance(params, (str, Path)):
            from .weights import load_params
            params = load_params(params, self.graph)
        if params is None:
            params = numpy_ref.init_params(self.graph, seed)
        return run_backend(backend, self.graph, inputs, params, seed=seed, float64=float64, dtype=dtype)

    def quantize(self, scheme: str | None = "w8a8", params: dict | None = None, calib: dict | None = None,
                 *, seed: int = 0, **options) -> tuple["Model", dict]:
        """(quantized model, its params): passes/quantize/ over the whole model (scheme=None: only the
        @quantize-annotated layers). Options: group_size, act, observer, percentile, fake."""
        from .passes.quantize import quantize
        params = params if params is not None else self.params(seed)
        graph, qparams = quantize(self.graph, params, scheme, calib, **options)
        return Model(graph, self.hyper, self.path), qparams

    def sparsify(self, spec: str | None = "2:4", params: dict | None = None, *, seed: int = 0) -> tuple["Model", dict]:
        """(sparsified model, its params): passes/sparsify.py over the whole model with `spec` ("2:4",
        "block=32,density=0.25", "density=0.1"; None: only the @sparse-annotated layers)."""
        from .passes.sparsify import sparsify
        params = params if params is not None else self.params(seed)
        graph, sparams = sparsify(self.graph, params, spec)
        return Model(graph, self.hyper, self.path), sparams

    def torch_module(self, dtype: str = "f32", device="cpu", *, seed: int = 0, params: dict | None = None):
        from .backends.torch_backend import to_module
        return to_module(self.graph, dtype, device, seed=seed, params=params)

    def torch_source(self) -> str:
        from .backends.torch_source import to_source
        return to_source(self.graph)


def load(path: str | Path, model: str | None = None, *, training: bool = False, **hyper) -> Model:
    """Compile `path` (the first `model` in it, or the one named `model`). Keyword arguments set the model's
    hyperparameters (`width=64`) or the default sizes of its symbolic dims (`B=8`). `training=True` compiles
    for training (the builtin `training`: batch statistics, dropout, `update`d state as `state:NAME` outputs)."""
    from .dsl.compile import load_file
    return _model(load_file(path, model, hyper, training=training, **_DIMS), str(path))


def loads(source: str, model: str | None = None, *, training: bool = False, **hyper) -> Model:
    """Like `load`, from source text (imports resolve against the stdlib)."""
    from .dsl.compile import load_source
    return _model(load_source(source, "<string>", model, hyper, training=training, **_DIMS), None)


# Keywords that are not hyperparameters must be dims of the inputs: the front end sets those dims' default
# sizes (integers only: Python callers pass numbers, not the CLI's text).
_DIMS = {"dim_label": lambda k, v: f"{k}={v!r}", "dims_from_text": False}


def _model(result, path) -> Model:
    return Model(result.graph, result.hyper, path)
