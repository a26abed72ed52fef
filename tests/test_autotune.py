"""Autotuning (backends/triton/autotune.py): the choice logic with a fake timer (no GPU needed)."""
from __future__ import annotations

import json

import pytest

from pnet.backends.triton import autotune


@pytest.fixture
def gpu_mode(tmp_path, monkeypatch):
    """Pretend to be on a GPU: not interpreting, a private cache, an empty in-memory table."""
    monkeypatch.setenv("PNET_CACHE", str(tmp_path))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(autotune, "_memory", {})
    monkeypatch.setattr(autotune, "_device", lambda: "fake-gpu")
    return tmp_path / "triton" / "tune.json"


def test_the_interpreter_uses_the_fixed_first_config(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    cands = autotune.gemm_configs(40, 70, 300)
    assert autotune.tuned("k", (40, 70, 300), cands, launch=None, bench=None) is cands[0]


def test_configs_are_clipped_and_distinct():
    cands = autotune.gemm_configs(8, 8, 8)
    assert all(c["BM"] == 16 and c["BN"] == 16 and c["BK"] == 16 for c in cands)
    assert len({tuple(c.values()) for c in cands}) == len(cands)


def test_fastest_config_is_chosen_cached_and_persisted(gpu_mode):
    cands = autotune.gemm_configs(512, 512, 512)
    times = {i: 5.0 - i * 0.1 for i in range(len(cands))}   # the last candidate is fastest
    calls = []

    def bench(launch, cfg):
        calls.append(cfg)
        return times[cands.index(cfg)]
    best = autotune.tuned("k0_matmul", (512, 512, 512), cands, launch=lambda c: None, bench=bench)
    assert best == cands[-1] and len(calls) == len(cands)
    assert autotune.tuned("k0_matmul", (512, 512, 512), cands, lambda c: None, bench=bench) == best
    assert len(calls) == len(cands)                           # cached in memory: no second timing
    disk = json.loads(gpu_mode.read_text())
    assert disk == {"k0_matmul|512x512x512|fake-gpu": best}
    autotune._memory.clear()                                  # a new process reads the disk
    assert autotune.tuned("k0_matmul", (512, 512, 512), cands, lambda c: None, bench=bench) == best
    assert len(calls) == len(cands)


def test_failing_configs_are_skipped_and_a_corrupt_table_is_rewritten(gpu_mode):
    gpu_mode.parent.mkdir(parents=True, exist_ok=True)
    gpu_mode.write_text("{not json")
    cands = autotune.gemm_configs(256, 256, 64)

    def bench(launch, cfg):
        if cfg is cands[1]:
            raise RuntimeError("out of shared memory")
        return 1.0 if cfg is cands[2] else 2.0
    assert autotune.tuned("k1", (256, 256, 64), cands, lambda c: None, bench=bench) == cands[2]
    assert json.loads(gpu_mode.read_text()) == {"k1|256x256x64|fake-gpu": cands[2]}
