"""What generated Triton modules need at run time: the interpreter switch, the on-disk cache,
launch configs, and the torch fallback for ops that have no kernel yet (always reported)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from ...errors import PnetError

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
    d = Path(os.environ.get("PNET_CACHE", Path.home() / ".cache" / "pnet")) / "triton"
    d.mkdir(parents=True, exist_ok=True)
    return d


_HEADER = "# pnet-checksum: "


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def store(key: str, body: str) -> Path:
    """Write a module under its key: complete and checksummed, or not at all (atomic rename),
    so two processes compiling the same model never see a half-written file."""
    path = cache_dir() / f"pnet_{key}.py"
    if path.is_file() and _valid(path):
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(_HEADER + _checksum(body) + "\n" + body)
    os.replace(tmp, path)
    return path


def _valid(path: Path) -> bool:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    first, _, body = text.partition("\n")
    return first.startswith(_HEADER) and first[len(_HEADER):] == _checksum(body)


def load(key: str, body: str):
    """Import the generated module (from the cache; a corrupt entry is rebuilt)."""
    ensure_mode(quiet=True)
    path = cache_dir() / f"pnet_{key}.py"
    if path.exists() and not _valid(path):
        path.unlink(missing_ok=True)
    path = store(key, body)
    name = f"pnet_generated_{key}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
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


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def dot_block(n: int, cap: int = 64) -> int:
    """A tl.dot tile side (>= 16). The interpreter pays per program, so it gets larger tiles."""
    if interpreting():
        cap = max(cap, 128)
    return max(16, min(next_pow2(max(n, 1)), cap))


from .autotune import attention_configs, gemm_configs, tuned  # noqa: E402,F401 - launch configs chosen by timing on a GPU

# ---- fallbacks --------------------------------------------------------------------------------------
def fallback(op: str, args, attrs):
    """Run one op through its torch lowering (the plan lists every op that takes this path)."""
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
