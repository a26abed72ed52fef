"""The Triton backend: kernel plan -> generated module (kernels + launcher), cached on disk by a
hash of the IR, run on a GPU or under Triton's interpreter (TRITON_INTERPRET=1) on the CPU."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..numpy_ref import check_inputs, check_shapes
from ...ir.graph import Graph
from ...ir.text import print_graph

CODEGEN_VERSION = "1"


@dataclass
class Compiled:
    graph: Graph
    source: str
    plan: object
    key: str
    given: Graph | None = None   # the graph as compiled (before composite ops were lowered): checks name its ops

    def module(self):
        from .runtime import load
        return load(self.key, self.source)

    def run(self, inputs: dict, params: dict, device: str | None = None) -> dict:
        """Run on numpy arrays (or torch tensors); returns numpy arrays by output name."""
        import torch

        from .device import ensure_mode
        mode = ensure_mode()
        dev = device or ("cuda" if mode == "gpu" else "cpu")
        mod = self.module()
        # the reference's checks and messages (shapes only: a tensor may live on the GPU)
        shapes = {k: np.broadcast_to(False, tuple(np.shape(v))) for k, v in inputs.items()}
        checked = self.given or self.graph
        check_shapes(checked, check_inputs(checked, shapes))
        # np.asarray(order="C"), not np.ascontiguousarray: that one turns a 0-d array into shape (1,)
        t_in = {k: torch.as_tensor(np.asarray(v, order="C")).to(dev) for k, v in inputs.items()}
        t_par = {k: torch.as_tensor(np.asarray(v, order="C")).to(dev) for k, v in params.items()}
        with np.errstate(divide="ignore", invalid="ignore"):  # the interpreter's masked lanes of a size-0 dim: x % 0
            out = mod.forward(t_in, t_par)
        result = {}
        for k, v in out.items():
            v = v.detach().cpu()
            result[k] = (v.float() if v.dtype == torch.bfloat16 else v).numpy()
        return result


def compile(graph: Graph, fuse: bool = True) -> Compiled:
    """`fuse=False`: one kernel per op (the unfused baseline, for testing the fusion pass)."""
    from .codegen import generate
    source, plan = generate(graph, fuse)
    key = hashlib.sha256((CODEGEN_VERSION + print_graph(graph) + source).encode()).hexdigest()[:20]
    return Compiled(plan.graph, source, plan, key, given=graph)   # plan.graph: what the kernels compute
