"""Sizes checked before anything is allocated: a run's inputs, parameters and intermediate values are sized
from the IR's shapes (dims bound) and refused with a located one-line error when one of them, or the inputs and
parameters together, exceed the limit -- instead of a MemoryError (or swapping) after trying.

The limit is `PNET_MAX_BYTES` (bytes; `16G`, `512M`, `1.5T` also accepted), else the memory available when
the check runs (Linux's MemAvailable; the physical memory elsewhere).
"""
from __future__ import annotations

import os
import re

from ..errors import PnetError, UsageError
from ..ir.graph import Graph
from ..ir.types import DTYPES, TensorType, concrete, is_float

ENV = "PNET_MAX_BYTES"
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}  # as format_bytes prints
_FALLBACK = 1 << 36   # 64 GiB where the physical memory cannot be read


def max_bytes() -> int:
    """The limit: PNET_MAX_BYTES, else the available memory."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return available_memory()
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:[eE]\d+)?)\s*([KMGTP]?)i?B?", raw, re.I)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"{ENV}={raw!r}: expected a positive number of bytes (e.g. 8000000000 or 8G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as disks and `ls -h --si` count), up to EB."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n:.1f} EB"


def tensor_bytes(t: TensorType, bindings: dict, float64: bool = False) -> int | None:
    """Bytes of a tensor of this type with the dims bound (floats are 8 bytes in a float64 run); None when
    a dim is not bound here (a dim local to a scan body)."""
    try:
        n = 1
        for d in t.shape:
            n *= max(int(concrete(d, bindings)), 0)
    except Exception:  # noqa: BLE001 - an unbound symbol
        return None
    size = 8 if float64 and is_float(t.dtype) else DTYPES[t.dtype].itemsize  # bf16 is held in float32
    return n * size


def _refuse(what: str, t: TensorType, bindings: dict, nbytes: int, limit: int, loc=None):
    shape = ", ".join(str(concrete(d, bindings)) for d in t.shape)
    raise PnetError(f"{what} of shape [{shape}] {t.dtype} needs {format_bytes(nbytes)}; the limit is "
                    f"{format_bytes(limit)} (set {ENV} to change it)", loc)


def check_params(graph: Graph, float64: bool = False, limit: int | None = None) -> None:
    """Refuse before drawing or loading parameters that cannot fit (each, and all together)."""
    limit = max_bytes() if limit is None else limit
    _check_leaves(graph, [], {}, float64, limit)


def check_inputs(graph: Graph, bindings: dict, float64: bool = False, limit: int | None = None) -> None:
    """Refuse before drawing inputs that cannot fit (each, and all together)."""
    limit = max_bytes() if limit is None else limit
    _check_leaves(graph, graph.inputs, bindings, float64, limit, params=False)


def check_run(graph: Graph, bindings: dict, float64: bool = False, limit: int | None = None,
              holds_every_value: bool = True) -> None:
    """Refuse a run whose inputs and parameters together or any one value it computes exceed the limit; and,
    when the backend holds every value to the end (the reference does; torch and Triton free them), a run
    whose values together exceed it."""
    limit = max_bytes() if limit is None else limit
    total = _check_leaves(graph, graph.inputs, bindings, float64, limit)
    for node in graph.walk():
        for v in node.outputs:
            nbytes = tensor_bytes(v.type, bindings, float64) or 0
            if nbytes > limit:
                _refuse(f"the result of {node.op}", v.type, bindings, nbytes, limit, node.loc)
            total += nbytes
    if holds_every_value and total > limit:
        raise PnetError(f"the run needs {format_bytes(total)} for its inputs, parameters and intermediate values; "
                        f"the limit is {format_bytes(limit)} (set {ENV} to change it)")


def _check_leaves(graph, inputs, bindings, float64, limit, params=True) -> int:
    leaves = [(f"input {name}", v.type, None) for name, v in inputs]
    if params:
        leaves += [(f"parameter {p.name}", p.value.type, p.loc) for p in graph.params]
    total = 0
    for what, t, loc in leaves:
        nbytes = tensor_bytes(t, bindings, float64) or 0
        if nbytes > limit:
            _refuse(what, t, bindings, nbytes, limit, loc)
        total += nbytes
    if total > limit:
        kinds = "inputs and parameters" if params and inputs else "parameters" if params else "inputs"
        raise PnetError(f"the {kinds} together need {format_bytes(total)}; the limit is {format_bytes(limit)} "
                        f"(set {ENV} to change it)")
    return total


def run_bytes(graph: Graph, bindings: dict, float64: bool = False, holds_every_value: bool = True) -> int:
    """The least limit check_run accepts: every input, parameter and intermediate value together when the
    backend holds them all; else the larger of the inputs and parameters together and the largest value."""
    leaves = [v for _, v in graph.inputs] + [p.value for p in graph.params]
    computed = [v for n in graph.walk() for v in n.outputs]
    size = lambda v: tensor_bytes(v.type, bindings, float64) or 0  # noqa: E731
    if holds_every_value:
        return sum(map(size, leaves + computed))
    return max([sum(map(size, leaves))] + [size(v) for v in computed])
