"""Every kernel of the bundled models builds for an H100 (sm_90) with Triton's real compiler and ptxas, on
this CPU-only machine: the interpreter that checks the kernels' numbers accepts programs a GPU compiler
rejects, so this is what shows the generated source is a GPU program. Resources are asserted too: every
config fits shared memory and the register file, and each kernel has a config that does not spill."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

triton = pytest.importorskip("triton")
pytest.importorskip("torch")

from pnet.backends import numpy_ref  # noqa: E402
from pnet.backends import triton as triton_backend  # noqa: E402
from pnet.backends.triton import aot  # noqa: E402
from pnet.cli import main  # noqa: E402
from pnet.dsl.compile import load_file  # noqa: E402
from pnet.errors import UsageError  # noqa: E402
from pnet.passes.manager import run_passes  # noqa: E402

from conftest import ROOT  # noqa: E402

H100 = 90


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PNET_CACHE", str(tmp_path_factory.mktemp("cache")))


def _model(name: str, quantize: str | None = None, sparse: str | None = None):
    g = run_passes(load_file(ROOT / "examples" / f"{name}.pnet").graph)
    params = numpy_ref.init_params(g, 0)
    if sparse:
        from pnet.passes.sparsify import sparsify_model
        r = sparsify_model(g, params, sparse)
        g, params = r.graph, r.params
    if quantize:
        from pnet.passes.quantize import quantize as quantize_pass
        g, params = quantize_pass(g, params, quantize, None)
    return g, params


# (model, quantize scheme, sparsity spec, autotuning alternatives too)
MODELS = [("gpt", None, None, True), ("cnn", None, None, False), ("lstm", None, None, False),
          ("gnn", None, None, False), ("mlp", "w8a8", None, True), ("gpt", "w4", None, False),
          ("cnn", "w8", None, True), ("mlp", None, "2:4", False), ("mlp", None, "block=16,density=0.5", False)]


@pytest.mark.parametrize("name,scheme,sparse,candidates", MODELS, ids=lambda v: str(v))
def test_every_kernel_builds_for_an_h100(name, scheme, sparse, candidates):
    g, params = _model(name, scheme, sparse)
    compiled = triton_backend.compile(g)
    builds, report = aot.compile_for_gpu(compiled, g, params, H100, candidates=candidates)
    launched = {b.launch.kernel for b in builds if not b.launch.candidate}
    assert launched == set(re.findall(r"^def (k\d+\w*)\(", compiled.source, re.M)), report   # every kernel ran
    bad = [line for line, b in zip(report.splitlines()[1:], builds) if not b.ok]
    assert not bad, "\n".join(bad)
    assert not aot.spilling(builds), report   # each kernel has a config that keeps its registers
    assert all(b.regs > 0 for b in builds)
    if candidates:
        assert any(b.launch.candidate for b in builds)
    if scheme == "w8a8":   # the int8 GEMMs are int8 in the PTX too: tensor-core integer MMA
        assert any(b.launch.signature.get("a") == "*i8" or "*i8" in b.launch.signature.values() for b in builds)


BROKEN = '''import triton
import triton.language as tl

@triton.jit
def k0_tiny_dot(x, out, BLOCK: tl.constexpr):
    r = tl.arange(0, BLOCK)
    t = tl.load(x + r[:, None] * BLOCK + r[None, :])
    tl.store(out + r[:, None] * BLOCK + r[None, :], tl.dot(t, t))

@triton.jit
def k1_odd_range(x, out, BLOCK: tl.constexpr):
    r = tl.arange(0, BLOCK)
    tl.store(out + r, tl.load(x + r))
'''


def _launch(block: int, warps: int = 4, stages: int = 2, kernel: str = "k0_tiny_dot") -> aot.Launch:
    return aot.Launch(kernel, {"x": "*fp32", "out": "*fp32", "BLOCK": "constexpr"}, {"BLOCK": block},
                      [0, 1], {"num_warps": warps, "num_stages": stages}, body=kernel)


def test_a_kernel_the_gpu_compiler_rejects_is_reported_in_one_line():
    """A block of 12 (not a power of two) is no Triton program."""
    module = SimpleNamespace(key="aot_test_broken", source=BROKEN)
    [good, bad] = aot.build(module, [_launch(16), _launch(12, kernel="k1_odd_range")], H100)
    assert good.ok and good.regs > 0
    assert not bad.ok and "\n" not in bad.error and "power of 2" in bad.error, bad.error
    assert bad.error.startswith("CompilationError: at 2:8")   # the kernel's line and column


def test_shared_memory_beyond_the_target_is_a_launch_problem():
    """A 256x256 f32 dot stages both operands in shared memory: 512 KiB, over an H100's 227 KiB."""
    module = SimpleNamespace(key="aot_test_big", source=BROKEN)
    [b] = aot.build(module, [_launch(256, warps=8)], H100)
    assert not b.error and b.shared > aot.SHARED_LIMIT[H100]
    assert not b.ok and "shared memory" in b.problems[0]


def test_repeated_layers_compile_once_and_are_written_under_each_name(tmp_path):
    g, params = _model("gpt")
    compiled = triton_backend.compile(g)
    launches = aot.capture(compiled, numpy_ref.random_inputs(g, 0), params, candidates=False)
    assert len({x.program() for x in launches}) < len(launches)   # layer 2's kernels are layer 1's
    builds = aot.build(compiled, launches, H100, tmp_path)
    assert {p.stem for p in tmp_path.glob("*.cubin")} == {x.kernel for x in launches}
    assert all(p.read_text().startswith("//") for p in tmp_path.glob("*.ptx"))
    assert len(builds) == len(launches)


def test_gpu_block_sizes_not_the_interpreters():
    """Capture picks launch configs as a GPU run does (the interpreter uses few, huge blocks)."""
    g, params = _model("mlp")
    compiled = triton_backend.compile(g)
    launches = aot.capture(compiled, numpy_ref.random_inputs(g, 0, {"B": 4096}), params)
    pointwise = [x for x in launches if "one_hot" in x.kernel]
    assert pointwise and all(x.constexprs["BLOCK"] <= 1024 for x in pointwise)


def test_arch_names():
    assert aot.parse_arch("sm_90") == aot.parse_arch("90") == aot.parse_arch("cuda:90") == aot.parse_arch("sm_90a") == 90
    with pytest.raises(UsageError, match="sm_75.*unknown GPU architecture"):
        aot.parse_arch("sm_75")


def test_cli_compile_target(tmp_path, capsys):
    out = tmp_path / "k"
    assert main(["compile", str(ROOT / "examples" / "mlp.pnet"), "-o", str(out), "--target", "sm_80"]) == 0
    text = capsys.readouterr().out
    assert "sm_80 (A100): 8 kernels launched" in text and "0 failed to compile, 0 cannot launch" in text
    assert len(list((out / "sm_80").glob("*.ptx"))) == 8
    assert "k0_matmul_add_relu" in (out / "sm_80" / "resources.txt").read_text()
    assert main(["compile", str(ROOT / "examples" / "mlp.pnet"), "-o", str(out), "--target", "volta"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --target volta: unknown GPU architecture") and "\n" not in err
    assert main(["compile", str(ROOT / "examples" / "mlp.pnet"), "-b", "torch", "-o", str(tmp_path / "m.py"),
                 "--target", "sm_90"]) == 2
