"""Where kernels run and how big their blocks are: GPU or Triton's interpreter (TRITON_INTERPRET=1), the
on-disk cache directory, and the block sizes that depend on the mode (the interpreter pays per program
instance, so it gets few, large blocks). Below both runtime.py and autotune.py; imports neither."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ...errors import UsageError

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


def standalone_mode() -> str:
    """ensure_mode for a generated module imported on its own (standalone.py): the same notice, but a
    TRITON_INTERPRET the caller set is kept (aot.py's GPU-compile workers set 0 on a machine without a GPU)."""
    if "TRITON_INTERPRET" in os.environ:
        return "interpreter" if interpreting() else "gpu"
    return ensure_mode()


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


# ---- block sizes ------------------------------------------------------------------------------------
def next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def rows_per_program(nrow: int, block: int) -> int:
    """Rows a row kernel reduces per program: short rows share one, so a tile holds about 4096 elements on a
    GPU (16384 under the interpreter, which pays per program); a row of >= 4096 elements has its own."""
    cap = 16384 if interpreting() else 4096
    return max(1, min(next_pow2(max(nrow, 1)), cap // max(block, 1)))


def pointwise_block(n: int) -> int:
    # the interpreter pays per program instance: few, large blocks
    return min(next_pow2(max(n, 1)), 16384 if interpreting() else 1024)


def dot_block(n: int, cap: int = 64) -> int:
    """A tl.dot tile side (>= 16). The interpreter pays per program, so it gets larger tiles."""
    if interpreting():
        cap = max(cap, 128)
    return max(16, min(next_pow2(max(n, 1)), cap))
