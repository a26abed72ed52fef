"""The backends, and one entry point that runs a graph on any of them (used by the CLI and the API)."""
from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "torch", "triton")


def run(backend: str, graph, inputs: dict, params: dict, *, seed: int = 0, float64: bool = False,
        dtype: str = "f32") -> dict[str, np.ndarray]:
    """Outputs by name as NumPy arrays. The caller checks `backend` against BACKENDS (to word the error)."""
    if backend == "numpy":   # (numpy_ref.run sizes its run itself, counting every value it keeps)
        from . import numpy_ref
        return numpy_ref.run(graph, inputs, params, seed=seed, float64=float64)
    _check_memory(graph, inputs, float64)
    if backend == "triton":
        from . import triton as triton_backend
        return triton_backend.compile(graph).run(inputs, params)
    import torch
    from .torch_backend import to_module
    module = to_module(graph, "f64" if float64 else dtype, params=params)
    with torch.no_grad():
        out = module.run_named(inputs)
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy() for k, v in out.items()}


def _check_memory(graph, inputs: dict, float64: bool) -> None:
    """Refuse a torch or Triton run that cannot fit (pnet.backends.memory) before it allocates anything: the
    same located PnetError as the reference's, never a MemoryError. These backends free values as they go."""
    from .memory import check_run
    from .numpy_ref import bind_dims
    check_run(graph, bind_dims(graph, inputs), float64, holds_every_value=False)
