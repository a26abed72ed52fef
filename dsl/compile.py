"""The front end in one call: file or source text -> verified IR graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import Loc, PnetError, UsageError, read_source
from .elaborate import Elaborated, Elaborator
from .loader import Loader
from .parser import parse, too_deep
from .suggest import did_you_mean


def load_source(source: str, file: str = "<string>", model: str | None = None, overrides: dict | None = None,
                training: bool = False, dim_label=lambda k, v: f"{k}={v}", dims_from_text: bool = True) -> Elaborated:
    """`training`: elaborate for a training run (the builtin `training` is true; `update` statements become
    "state:NAME" outputs; dropout is active)."""
    loader = Loader()
    module = parse(source, file)
    for imp in module.imports:
        loader.imported(module, imp)
    el = Elaborator(loader, training=training)
    el._main_source = (file, source)
    try:
        result = el.elaborate_model(module, model, overrides)
    except RecursionError:
        raise too_deep("program nests too deeply to elaborate (an expression or call chain thousands deep)",
                       source, file) from None
    except OverflowError as e:  # outside any statement (a hyperparameter default): the file is the place
        raise PnetError(f"a compile-time number is too large ({e})", Loc(file, 1, 1)) from None
    from ..ir.ops.random import assign_keys, set_run_mode
    assign_keys(result.graph)   # each random op's call-site key (call path, op, ordinal)
    if training:
        set_run_mode(result.graph, training=True)
    from ..passes.verify import verify
    verify(result.graph)
    # the overrides that are not hyperparameters size the symbolic dims (`B=8`, or "8" from a `# test:` line)
    set_dim_sizes(result, dict(overrides or {}), dim_label, from_text=dims_from_text)
    return result


def load_file(path: str | Path, model: str | None = None, overrides: dict | None = None,
              training: bool = False, dim_label=lambda k, v: f"{k}={v}", dims_from_text: bool = True) -> Elaborated:
    path = Path(path)
    try:
        source = read_source(path)
    except FileNotFoundError:
        raise PnetError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PnetError(f"cannot read {path}: {e}") from None
    return load_source(source, str(path), model, overrides, training, dim_label, dims_from_text)


def set_dim_sizes(result: Elaborated, overrides: dict, label, from_text: bool = False) -> None:
    """Overrides that are not hyperparameters name the inputs' symbolic dims: each must be one and have a
    non-negative integer size, recorded in `graph.dims` (the default size a run binds). `label(k, v)` words the
    error's prefix (`--set k=v` or `k=v`); `from_text`: sizes may be written as text (the CLI's --set)."""
    graph = result.graph
    dims_in_graph = {s.name for _, v in graph.inputs for d in v.type.shape for s in d.free_symbols}
    for k, v in overrides.items():
        if k in result.hyper:
            continue
        if k not in dims_in_graph:
            hint = did_you_mean(k, list(result.hyper) + sorted(dims_in_graph))
            raise UsageError(f"{label(k, v)}: model '{graph.name}' has no hyperparameter or dim named '{k}'{hint} "
                             f"(hyperparameters: {', '.join(result.hyper) or 'none'}; "
                             f"dims: {', '.join(sorted(dims_in_graph)) or 'none'})")
        size = v
        if from_text and isinstance(v, str):
            try:
                size = int(v)
            except ValueError:
                size = None
        # 0 is a size (empty tensors: every backend gives the reference's result, or its located error)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise UsageError(f"{label(k, v)}: dim '{k}' needs a non-negative integer")
        graph.dims[k] = int(size)
