"""Shared test helpers: discovering every .pnet model of the repo, and running one."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")  # generated Triton kernels must run on the CPU in tests

ROOT = Path(__file__).resolve().parent.parent
MODEL_RE = re.compile(r"^\s*model\s+\w+\s*\(", re.M)


def pnet_files(*dirs: str) -> list[Path]:
    out = []
    for d in dirs:
        out += sorted((ROOT / d).rglob("*.pnet"))
    return out


def model_files() -> list[Path]:
    """Every example and stdlib file that defines a model."""
    return [p for p in pnet_files("examples", "stdlib") if MODEL_RE.search(p.read_text())]


def small_config(path: Path) -> dict:
    """A file's small test configuration: a `# test: --set k=v k2=v2` line in its header (read by the package,
    which `--test-config` uses too)."""
    from pnet.dsl.stdlib import small_config as header_config
    return header_config(path) or {}


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def op_ref(op, *args, **attrs):
    """One op's NumPy reference on arrays (attributes bound with their defaults)."""
    from pnet.ir import registry
    o = registry.get(op)
    return o.ref(*args, **o.bind_attrs(attrs))


def op_torch(op, *args, **attrs):
    """One op's torch lowering on arrays (None for an absent optional input), as a NumPy array."""
    import numpy as np
    import torch
    from pnet.ir import registry
    o = registry.get(op)
    ts = [torch.from_numpy(np.asarray(a, order="C")) if a is not None else None for a in args]
    return o.torch(torch, *ts, **o.bind_attrs(attrs)).numpy()


def op_triton(op, *args, **attrs):
    """One op compiled by the Triton backend (under the interpreter) on arrays: a one-op model whose inputs
    are the arrays (None for an absent optional input), returning its plan's kernel kinds and the result."""
    from pnet.backends import triton as triton_backend
    from pnet.dsl.compile import load_source
    from pnet.ir.types import NP_NAMES, source_literal
    decls, names = [], []
    for i, a in enumerate(args):
        if a is None:  # only trailing optional inputs may be absent
            continue
        decls.append(f"  input a{i}: {NP_NAMES[a.dtype]}[{', '.join(map(str, a.shape))}]")
        names.append(f"a{i}")
    call = ", ".join(names + [f"{k}={source_literal(v)}" for k, v in attrs.items()])
    src = "model m() {\n" + "\n".join(decls) + f"\n  output y = {op}({call})\n}}\n"
    compiled = triton_backend.compile(load_source(src, f"<{op}>").graph)
    out = compiled.run({f"a{i}": a for i, a in enumerate(args) if a is not None}, {})
    return [k.kind for k in compiled.plan.kernels], out["y"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: intra-op threads only add synchronisation, which spins badly on a loaded box.
    Modules that run torch use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
