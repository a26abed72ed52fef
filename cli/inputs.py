"""`pnet run -i FILE [--cast]`: the input arrays of a .npz / .safetensors file, checked against the model.

An array whose dtype is not the model's is cast with a one-line notice when no value changes (an int64 id
array for an i32 input, float64 values that are exactly float32); otherwise it is refused with the flag that
forces the cast (`--cast`), since a silent float64 -> f32 rounding or float -> int truncation is a trap. A
`--set DIM=N` that the file's shapes contradict is an error naming the dim, the value, the input and its shape
(without this check the file's shape silently wins)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .common import parse_sets


def load_inputs(args, graph) -> dict[str, np.ndarray]:
    from ..ir.types import DTYPES
    from ..weights import _check_inputs, _read
    path = Path(args.inputs)
    want = {n: v.type.dtype for n, v in graph.inputs}   # the model's dtype names (f32, i64, ...)
    # names first, from the headers, before any data is read; dtypes are settled below
    data = _read(path, lambda headers: _check_inputs(path, graph, {k: (s, DTYPES[want[k]] if k in want else d)
                                                                  for k, (s, d) in headers.items()}))
    check_set_dims(args, graph, data, path)
    force = getattr(args, "cast", False)
    for name, model_dtype in want.items():
        if data[name].dtype != DTYPES[model_dtype]:
            data[name] = _cast(path, name, data[name], model_dtype, force)
    _check_inputs(path, graph, {k: (a.shape, a.dtype) for k, a in data.items()})
    return data


def _cast(path: Path, name: str, arr: np.ndarray, model_dtype: str, force: bool) -> np.ndarray:
    from ..ir.types import DTYPES
    dtype = DTYPES[model_dtype]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)   # complex to real: refused below unless --cast
        out = arr.astype(dtype)
        changed = _first_changed(arr, out)
    same_kind = np.can_cast(arr.dtype, dtype, "same_kind")
    if (same_kind and changed is None) or force:
        how = "every value is exact" if same_kind and changed is None else "--cast: values may change"
        print(f"pnet: note: {path}: input '{name}' is {arr.dtype}, cast to {model_dtype} ({how})", file=sys.stderr)
        return out
    why = (f"casting changes its values ({changed[0]} becomes {changed[1]})" if same_kind and changed is not None else
           f"{arr.dtype} to {model_dtype} is not a cast of the same kind")
    raise UsageError(f"{path}: input '{name}' is {arr.dtype} and the model wants {model_dtype}: {why}; "
                     f"add --cast to cast it anyway")


def _first_changed(arr: np.ndarray, out: np.ndarray):
    """(value, cast value) of the first element the cast changes (NaN stays NaN), or None."""
    back = out.astype(arr.dtype)
    same = (back == arr) | ((back != back) & (arr != arr))
    if same.all():
        return None
    i = np.flatnonzero(~same.reshape(-1))[0]
    return arr.reshape(-1)[i].item(), out.reshape(-1)[i].item()


def check_set_dims(args, graph, inputs: dict, path) -> None:
    """A dim bound with --set must agree with every input that has it (the arrays would otherwise win)."""
    sets = {k: v for k, v in parse_sets(getattr(args, "set", None)).items() if k in graph.dims}
    for name, v in graph.inputs:
        shape = np.shape(inputs[name])
        if len(shape) != v.type.rank:
            continue  # the rank error is the backend's, with the declared type
        for d, n in zip(v.type.shape, shape):
            if d.is_Symbol and d.name in sets and graph.dims[d.name] != n:
                raise UsageError(f"--set {d.name}={sets[d.name]}: input '{name}' in {path} has shape {list(shape)} "
                                 f"({v.type}), where {d.name} is {n}")
