"""One weight format for every backend: .safetensors or .npz files keyed by parameter name.
Loading is all-or-nothing: every key, shape and dtype is checked before anything is returned."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import UsageError
from .ir.graph import Graph
from .ir.types import DTYPES, concrete


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise UsageError(f"{path}: reading .safetensors needs the 'safetensors' package (pip install safetensors)") from None
            return dict(load_file(str(path)))
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except UsageError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise UsageError(f"{path}: not a readable {path.suffix or 'weights'} file ({type(e).__name__}: {str(e)[:80]})") from None
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise UsageError(f"{path}: not a readable {path.suffix or 'weights'} file ({type(e).__name__}: {str(e)[:80]})") from None


def load_params(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    path = Path(path)
    data = _read(path)
    want = {p.name: p.value.type for p in graph.params}
    missing = [k for k in want if k not in data]
    if missing:
        raise UsageError(f"{path}: missing parameter '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [k for k in data if k not in want]
    if extra:
        raise UsageError(f"{path}: unexpected parameter '{extra[0]}' (the model has no such parameter)")
    out = {}
    for name, t in want.items():
        arr = data[name]
        shape = [concrete(d) for d in t.shape]
        if list(arr.shape) != shape:
            raise UsageError(f"{path}: parameter '{name}' has shape {list(arr.shape)}, the model wants {shape}")
        if arr.dtype != DTYPES[t.dtype]:
            raise UsageError(f"{path}: parameter '{name}' is {arr.dtype}, the model wants {t.dtype}")
        out[name] = arr
    return out


def save_params(path: str | Path, params: dict[str, np.ndarray]) -> None:
    path = Path(path)
    arrays = {k: np.asarray(v, order="C") for k, v in params.items()}
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file
        save_file(arrays, str(path))
    else:
        np.savez(path, **arrays)


def save_beside(out: Path, params: dict[str, np.ndarray], what: str) -> Path:
    """Weights written next to a compiled output (a directory or a file): `pnet compile --quantize/--sparse`."""
    path = (out / "weights.safetensors") if out.is_dir() else out.with_suffix(".weights.safetensors")
    try:
        save_params(path, params)
    except ImportError:  # safetensors not installed
        path = path.with_suffix(".npz")
        save_params(path, params)
    print(f"wrote {path} ({what} weights)")
    return path


def load_inputs(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    path = Path(path)
    data = _read(path)
    names = [n for n, _ in graph.inputs]
    missing = [n for n in names if n not in data]
    if missing:
        raise UsageError(f"{path}: missing input '{missing[0]}' (the model's inputs: {', '.join(names)})")
    extra = [k for k in data if k not in names]
    if extra:
        raise UsageError(f"{path}: unexpected array '{extra[0]}' (the model's inputs: {', '.join(names)})")
    for n, v in graph.inputs:
        if data[n].dtype != DTYPES[v.type.dtype]:
            raise UsageError(f"{path}: input '{n}' is {data[n].dtype}, the model wants {v.type.dtype}")
    return data
