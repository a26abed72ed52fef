"""One weight format for every backend: .safetensors or .npz files keyed by parameter name.
Loading is all-or-nothing: every key, shape and dtype is checked before anything is returned."""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UsageError
from .ir.graph import Graph
from .ir.types import DTYPES, concrete

# safetensors dtype names -> numpy (BF16 has none: safetensors.numpy cannot read it either)
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32",
                      "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
                      "BOOL": "bool"}
MAX_SAFETENSORS_HEADER = 100_000_000  # the format's own limit on its JSON header


def _npz_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape, dtype) from each member's .npy header, read through the zip stream: no array data is
    decompressed (an untrusted file may hold a huge array the model never asked for)."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member '{info.filename}' is not an .npy array")
            with z.open(info) as f:
                major, _ = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            if dtype.hasobject:
                raise ValueError(f"array '{info.filename[:-4]}' holds Python objects")
            out[info.filename[:-4]] = (tuple(shape), dtype)
    return out


def _safetensors_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape, dtype) from the JSON header at the start of the file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n <= min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
            raise ValueError(f"header length {n} does not fit the file")
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") not in SAFETENSORS_DTYPES:
            raise ValueError(f"tensor '{name}' has dtype {info.get('dtype')!r}, which NumPy cannot hold")
        out[name] = (tuple(int(d) for d in info["shape"]), np.dtype(SAFETENSORS_DTYPES[info["dtype"]]))
    return out


def read_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """The names, shapes and dtypes a weight or input file holds, from its headers alone."""
    return _unreadable(path, lambda: (_safetensors_headers if path.suffix == ".safetensors" else _npz_headers)(path))


def _unreadable(path: Path, fn):
    """fn(), with a malformed file's error (whatever the reader raises) as one UsageError naming the file."""
    try:
        return fn()
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile, numpy, json and safetensors each raise their own
        raise UsageError(f"{path}: not a readable {path.suffix or 'weights'} file ({type(e).__name__}: {str(e)[:80]})") from None


def _read(path: Path, expect: Callable[[dict], None] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a .safetensors/.npz file. Its headers are read first: `expect(headers)` validates the
    names, shapes and dtypes, and the total size is checked against the memory limit, before any data is."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    headers = read_headers(path)
    if expect is not None:
        expect(headers)
    _check_size(path, headers)
    return _unreadable(path, lambda: _read_data(path))


def _check_size(path: Path, headers: dict) -> None:
    from .backends.memory import ENV, format_bytes, max_bytes
    total = sum(int(np.prod(shape, dtype=object)) * dtype.itemsize for shape, dtype in headers.values())
    limit = max_bytes()
    if total > limit:
        raise UsageError(f"{path}: its arrays need {format_bytes(total)}; the limit is {format_bytes(limit)} "
                         f"(set {ENV} to change it)")


def _read_data(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise UsageError(f"{path}: reading .safetensors needs the 'safetensors' package (pip install safetensors)") from None
        return dict(load_file(str(path)))
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _check_params(path: Path, graph: Graph, found: dict) -> None:
    """Every parameter present with the model's shape and dtype, nothing else (`found`: name -> (shape, dtype),
    from the headers, then again from the arrays read)."""
    want = {p.name: p.value.type for p in graph.params}
    missing = [k for k in want if k not in found]
    if missing:
        raise UsageError(f"{path}: missing parameter '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [k for k in found if k not in want]
    if extra:
        raise UsageError(f"{path}: unexpected parameter '{extra[0]}' (the model has no such parameter)")
    for name, t in want.items():
        shape, dtype = found[name]
        if list(shape) != [concrete(d) for d in t.shape]:
            raise UsageError(f"{path}: parameter '{name}' has shape {list(shape)}, the model wants {[concrete(d) for d in t.shape]}")
        if dtype != DTYPES[t.dtype]:
            raise UsageError(f"{path}: parameter '{name}' is {dtype}, the model wants {t.dtype}")


def _warn_not_finite(path: Path, arrays: dict) -> None:
    """NaN/Inf in a weight file is legal but rarely meant: one line on stderr naming the tensor."""
    bad = [(k, int(a.size - np.count_nonzero(np.isfinite(a)))) for k, a in arrays.items() if a.dtype.kind == "f"]
    bad = [(k, n) for k, n in bad if n]
    if bad:
        more = f" (and {len(bad) - 1} more parameters)" if len(bad) > 1 else ""
        print(f"pnet: warning: {path}: parameter '{bad[0][0]}' has {bad[0][1]:,} NaN/Inf values{more}", file=sys.stderr)


def load_params(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    path = Path(path)
    data = _read(path, lambda headers: _check_params(path, graph, headers))
    _check_params(path, graph, {k: (a.shape, a.dtype) for k, a in data.items()})  # the file may have changed since
    _warn_not_finite(path, data)
    return {p.name: data[p.name] for p in graph.params}


def save_params(path: str | Path, params: dict[str, np.ndarray]) -> None:
    path = Path(path)
    arrays = {k: np.asarray(v, order="C") for k, v in params.items()}
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file
        save_file(arrays, str(path))
    elif path.suffix == ".npz":
        np.savez(path, **arrays)
    else:   # np.savez would write `path.npz` without a word
        got = f"'{path.suffix}'" if path.suffix else "no extension"
        raise UsageError(f"{path}: unknown weight-file extension ({got}); use .safetensors or .npz")


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


def _check_inputs(path: Path, graph: Graph, found: dict) -> None:
    """Every input present with the model's dtype, nothing else (shapes are checked when the dims are bound)."""
    names = [n for n, _ in graph.inputs]
    missing = [n for n in names if n not in found]
    if missing:
        raise UsageError(f"{path}: missing input '{missing[0]}' (the model's inputs: {', '.join(names)})")
    extra = [k for k in found if k not in names]
    if extra:
        raise UsageError(f"{path}: unexpected array '{extra[0]}' (the model's inputs: {', '.join(names)})")
    for n, v in graph.inputs:
        if found[n][1] != DTYPES[v.type.dtype]:
            raise UsageError(f"{path}: input '{n}' is {found[n][1]}, the model wants {v.type.dtype}")


def load_inputs(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    path = Path(path)
    data = _read(path, lambda headers: _check_inputs(path, graph, headers))
    _check_inputs(path, graph, {k: (a.shape, a.dtype) for k, a in data.items()})  # the file may have changed since
    return data
