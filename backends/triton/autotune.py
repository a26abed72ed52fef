"""Autotuning of the kernel templates' launch configs (tile sizes, warps, pipeline stages).

On a GPU, the first launch of a kernel for a problem size times each candidate config (Triton's
`do_bench`: warm-up, then the median of repeated runs) and keeps the fastest; the choice is cached in
memory and on disk (`tune.json` beside the compiled modules, keyed by kernel, problem size and device), so
later runs and later processes launch the winner directly. Under the interpreter there is nothing to
time: the first candidate, a fixed small config, is used.

    cfg = tuned("k3_matmul", (M, N, K), gemm_configs(M, N, K), lambda c: kernel[grid(c)](*args, **c))
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import Callable

from .. import progress
from .device import cache_dir, dot_block, interpreting, next_pow2

_memory: dict[str, dict] = {}
_lock = threading.Lock()


def gemm_configs(m: int, n: int, k: int, min_bk: int = 16, computed: bool = False, decompressed: bool = False) -> list[dict]:
    """Candidate tiles for a tl.dot template over an [m, k] x [k, n] problem: the first is the fixed config
    the interpreter uses (one large tile: it pays per program instance); the others are the usual GPU
    space (TorchInductor's and the Triton tutorial's shapes), clipped to the problem so tiny GEMMs do not
    waste a 128-wide tile on 8 rows. `min_bk`: 32 for int8 operands (the smallest int8 MMA K step).
    `computed`: an operand tile is computed in the loop (dequantized, masked): each tile shape is offered
    single-staged too, since the software pipeliner keeps such a tile's loads in registers across stages
    (`pnet compile --target sm_90`: the cnn w8 conv needs 255 registers and spills at 2 stages, 118 at 1).
    `decompressed`: B is an N:M weight rebuilt in registers (and a second K loop handles inf/NaN activations):
    its fixed config is single-staged too (the mlp 2:4 kernels spill at 2 stages on sm_90)."""
    fixed = {"BM": dot_block(m), "BN": dot_block(n), "BK": max(min_bk, dot_block(k, 32)), "num_warps": 4,
             "num_stages": 1 if decompressed else 2}
    space = [(128, 128, 32, 8, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (64, 64, 32, 4, 4),
             (128, 256, 64, 8, 3), (64, 32, 32, 2, 5), (32, 64, 32, 2, 5), (32, 32, 64, 2, 4)]
    tiles = [{"BM": max(16, min(bm, next_pow2(m))), "BN": max(16, min(bn, next_pow2(n))),
              "BK": max(min_bk, min(bk, next_pow2(k))), "num_warps": warps, "num_stages": stages}
             for bm, bn, bk, warps, stages in space]
    out = _distinct([fixed] + tiles)
    return _distinct(out + [dict(cfg, num_stages=1) for cfg in out]) if computed or decompressed else out


def _distinct(configs: list[dict]) -> list[dict]:
    """The configs in order, each once (clipping to a small problem makes several alike)."""
    seen, out = set(), []
    for cfg in configs:
        if tuple(cfg.items()) not in seen:
            seen.add(tuple(cfg.items()))
            out.append(cfg)
    return out


def attention_configs(tq: int, tk: int, d: int) -> list[dict]:
    """Candidate (query block, key block, warps, stages) for the flash-attention template: the first is the
    interpreter's fixed 16 x 16; then the usual GPU tiles (the Triton fused-attention tutorial's), smaller key
    blocks for wide heads so the q, k, v tiles and the f32 accumulator fit the register file."""
    fixed = {"BM": 16, "BN": 16, "num_warps": 4, "num_stages": 2}
    space = [(128, 64, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3), (64, 32, 4, 4), (128, 128, 8, 2), (32, 32, 2, 4)]
    return _distinct([fixed] + [{"BM": max(16, min(bm, next_pow2(tq))), "BN": max(16, min(bn, next_pow2(tk))),
                                 "num_warps": warps, "num_stages": stages}
                                for bm, bn, warps, stages in space if d <= 128 or bn <= 32])


def _device() -> str:
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _path():
    return cache_dir() / "tune.json"


def _read_disk() -> dict:
    """The on-disk choices; an unreadable or corrupt file counts as empty (it is rewritten whole)."""
    try:
        data = json.loads(_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_disk(key: str, cfg: dict) -> None:
    data = _read_disk()
    data[key] = cfg
    path = _path()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one


def _bench(launch: Callable[[dict], None], cfg: dict) -> float:
    from triton.testing import do_bench
    return do_bench(lambda: launch(cfg), warmup=5, rep=20)


def tuned(kernel: str, size: tuple, candidates: list[dict], launch: Callable[[dict], None],
          bench: Callable | None = None) -> dict:
    """The config to launch `kernel` with for this problem size (see the module doc). `launch(cfg)` runs the
    kernel once with a config; it must be safe to repeat (kernels overwrite their outputs)."""
    if interpreting() or len(candidates) == 1:
        return candidates[0]
    key = f"{kernel}|{'x'.join(str(int(s)) for s in size)}|{_device()}"
    with _lock:
        if key in _memory:
            return _memory[key]
        disk = _read_disk().get(key)
        if isinstance(disk, dict) and disk in candidates:
            _memory[key] = disk
            return disk
        timed = []
        progress.note(f"autotuning {kernel.rsplit('-', 1)[0]} at {'x'.join(str(int(s)) for s in size)}: "
                      f"timing {len(candidates)} configs (once; the choice is cached)")
        for cfg in candidates:
            try:
                timed.append(((bench or _bench)(launch, cfg), cfg))
            except Exception:  # noqa: BLE001 - a config the device cannot run (shared memory, registers)
                continue
        if not timed:
            return candidates[0]
        best = min(timed, key=lambda t: t[0])[1]
        _memory[key] = best
        _write_disk(key, best)
        return best
