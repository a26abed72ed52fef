"""What generated Triton modules need at run time: the interpreter switch, the on-disk cache,
launch configs, and the torch fallback for ops that have no kernel yet (always reported)."""
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

_notice_shown = False


def has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def ensure_mode(quiet: bool = False) -> str:
    """'gpu', or 'interpreter' (TRITON_INTERPRET=1 set before any kernel is decorated)."""
    global _notice_shown
    if os.environ.get("TRITON_INTERPRET") == "1" or not has_gpu():
        if os.environ.get("TRITON_INTERPRET") != "1":
            os.environ["TRITON_INTERPRET"] = "1"
            if not quiet and not _notice_shown:
                print("pnet: no GPU found; running Triton kernels under the interpreter (TRITON_INTERPRET=1)", file=sys.stderr)
                _notice_shown = True
        return "interpreter"
    return "gpu"


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def cache_dir() -> Path:
    """$PNET_CACHE/triton (default ~/.cache/pnet/triton), made if missing; a UsageError naming the variable
    when it cannot be a directory (PNET_CACHE pointing at a file)."""
    root = os.environ.get("PNET_CACHE")
    d = Path(root or Path.home() / ".cache" / "pnet") / "triton"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = f"PNET_CACHE={root}" if root else "the default cache directory"
        raise UsageError(f"{what}: cannot make the Triton cache directory {d} ({e.strerror or e}); "
                         "set PNET_CACHE to a writable directory") from None
    return d


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


# ---- launch configuration ---------------------------------------------------------------------------
def next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def pointwise_block(n: int) -> int:
    # the interpreter pays per program instance: few, large blocks
    return min(next_pow2(max(n, 1)), 16384 if interpreting() else 1024)


def inv_sqrt(d: int) -> float:
    """Attention's default scale 1/sqrt(d); inf for a head dim bound to 0, as NumPy's 1 / np.sqrt(0)."""
    return 1.0 / math.sqrt(d) if d else math.inf


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def dot_block(n: int, cap: int = 64) -> int:
    """A tl.dot tile side (>= 16). The interpreter pays per program, so it gets larger tiles."""
    if interpreting():
        cap = max(cap, 128)
    return max(16, min(next_pow2(max(n, 1)), cap))


from .autotune import attention_configs, gemm_configs, tuned  # noqa: E402,F401 - launch configs chosen by timing on a GPU

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
            "i64": torch.int64, "i32": torch.int32, "i8": torch.int8, "u8": torch.uint8, "bool": torch.bool}[name]
