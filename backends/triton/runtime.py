"""What generated Triton modules need at run time, as one namespace (the launcher imports this module as `_rt`):
the checksummed on-disk cache entries, launch configs (block sizes from device.py, tuned tiles from
autotune.py), index-range checks, and the torch fallback for ops that have no kernel yet (always reported)."""
from __future__ import annotations

import hashlib
import linecache
import math
import os
import sys
import tempfile
import types
from pathlib import Path

from ...errors import PnetError, UsageError
from .autotune import attention_configs, gemm_configs, tuned  # noqa: F401 - _rt.*: tiles timed on a GPU
from .device import cache_dir, ensure_mode
from .device import dot_block, next_pow2, pointwise_block, rows_per_program  # noqa: F401 - _rt.*: the launcher's block sizes
from ..progress import kernel_step as step  # noqa: F401 - _rt.step: before each kernel, for `-v` and the counter

_HEADER = "# pnet-checksum: "


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _entry_text(body: str) -> str:
    return _HEADER + _checksum(body) + "\n" + body


def _entry(key: str) -> Path:
    """The cache entry's path; a UsageError when something other than a file sits there."""
    path = cache_dir() / f"pnet_{key}.py"
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: the Triton cache entry is not a regular file (remove it, or set PNET_CACHE "
                         "to another directory)")
    return path


def store(key: str, body: str) -> Path:
    """Write a module under its key: complete and checksummed, or not at all (atomic rename),
    so two processes compiling the same model never see a half-written file."""
    path = _entry(key)
    if _valid(path):
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(_entry_text(body))
    os.replace(tmp, path)
    return path


def _verified(path: Path) -> str | None:
    """The entry's text, read once, when its checksum holds (None: missing, unreadable or corrupt)."""
    try:
        text = path.read_bytes().decode()
    except (OSError, UnicodeDecodeError):
        return None
    first, _, body = text.partition("\n")
    return text if first.startswith(_HEADER) and first[len(_HEADER):] == _checksum(body) else None


def _valid(path: Path) -> bool:
    return _verified(path) is not None


def load(key: str, body: str):
    """Import the generated module (from the cache; a corrupt entry is rebuilt). The text run is the text
    whose checksum was verified -- the file is not read a second time, so a concurrent in-place change
    cannot slip between the check and the import."""
    ensure_mode(quiet=True)
    name = f"pnet_generated_{key}"
    if name in sys.modules:
        return sys.modules[name]
    path = _entry(key)
    text = _verified(path)
    if text is None:
        path = store(key, body)
        text = _entry_text(body)
    return _import_text(name, path, text)


def _import_text(name: str, path: Path, text: str):
    module = types.ModuleType(name)
    module.__file__ = str(path)
    # inspect.getsource (Triton's @jit reads each kernel's source) reads these lines, not the file again;
    # an entry without an mtime is never re-checked against the disk
    linecache.cache[str(path)] = (len(text), None, text.splitlines(True), str(path))
    sys.modules[name] = module
    try:
        exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - our own generated, verified module
    except Exception as e:
        del sys.modules[name]
        raise PnetError(f"generated Triton module {path} failed to load: {type(e).__name__}: {e}") from None
    return module


# ---- launch configuration (the generated launcher calls these as _rt.*) -------------------------------
def inv_sqrt(d: int) -> float:
    """Attention's default scale 1/sqrt(d); inf for a head dim bound to 0, as NumPy's 1 / np.sqrt(0)."""
    return 1.0 / math.sqrt(d) if d else math.inf


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


# ---- index checks -----------------------------------------------------------------------------------
_NO_BAD_INDEX = 1 << 62


def index_flag(dev):
    """The word an index kernel reports a bad id in: the smallest position of one in the index tensor, else
    _NO_BAD_INDEX (see index_codegen.index_check)."""
    import torch
    return torch.full((1,), _NO_BAD_INDEX, dtype=torch.int64, device=dev)


def flag_bad_ids(flag, ids, n: int):
    """The kernel's flag, set on the host: for an index op with no element to move (its kernel is not launched)."""
    bad = ((ids < 0) | (ids >= n)).reshape(-1).nonzero()
    if bad.numel():
        flag.fill_(int(bad[0, 0]))


def raise_bad_index(flag, ids, op: str, where, n: int):
    """After an index kernel: raise the reference's located error for the first id of `ids` outside [0, n)."""
    from ...errors import Loc
    from ...ir.ops.index import index_range_error
    pos = int(flag.item())  # one read back (a sync on a GPU) per index kernel
    if pos != _NO_BAD_INDEX:
        bad = ids.reshape(-1)[pos].item()
        raise index_range_error(op, bad, n).with_loc(Loc(*where) if where else None)


# ---- fallbacks --------------------------------------------------------------------------------------
def fallback(op: str, args, attrs, where=None):
    """Run one op through its torch lowering (the plan lists every op that takes this path). `where`: the node's
    (file, line, col), for an index op's range error (ir/ops/index.check_index_range raises IndexError)."""
    try:
        return _fallback(op, args, attrs)
    except IndexError as e:
        from ...errors import Loc
        raise PnetError(str(e), Loc(*where) if where else None) from None


def _fallback(op: str, args, attrs):
    import torch

    from ...ir import registry
    floats = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
    if len(set(floats)) > 1:  # pnet promotes mixed float operands (f64 with f32); torch's conv/norms do not
        wide = floats[0]
        for dt in floats[1:]:
            wide = torch.promote_types(wide, dt)
        args = [a.to(wide) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
    return registry.get(op).torch(torch, *args, **attrs)


def torch_dtype(name: str):
    import torch
    return {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
            "i64": torch.int64, "i32": torch.int32, "i8": torch.int8, "u8": torch.uint8, "bool": torch.bool,
            "c64": torch.complex64, "c128": torch.complex128}[name]
