"""Ahead-of-time GPU compilation on a machine with no GPU: every kernel a model launches, built by Triton's
real compiler (TTIR -> TTGIR -> LLVM -> PTX -> cubin, ptxas included in the triton wheel) for a named GPU,
with the resources each one needs.

The interpreter that runs kernels on the CPU runs each kernel as Python over numpy and never lowers it, so
it can accept programs the GPU compiler rejects, and it says nothing of registers or shared memory: this is
the check that the generated source is a GPU program that fits the GPU. It works in two steps:

1. `capture`: run the model's launcher with every kernel replaced by a recorder (nothing is computed; the
   launchers depend on shapes only), as a GPU run would see it: GPU block sizes, and every autotuning
   candidate of a tuned kernel, not just the first. Each launch becomes a `Launch`: the kernel's name and
   its specialization as Triton's JIT makes it on a GPU (pointer dtypes, i32/i64 scalars, an integer equal
   to 1 a constant, 16-divisible pointers and integers marked so).
2. `build`: compile the launches in worker processes (Triton's interpreter patches the language module in
   any process that ran a kernel, so compiling happens in fresh ones with TRITON_INTERPRET=0) and read each
   cubin's registers and spilled bytes (from the ptxas -v log) and shared memory (Triton's metadata).

    launches = capture(compiled, inputs, params)
    builds = build(compiled, launches, 90, out_dir)     # sm_90 -> [Build(launch, error, regs, spill_bytes, ...)]
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import UsageError
from .. import progress

# Max shared memory one block may use (opt-in), by compute capability: the CUDA C++ Programming Guide's
# table of technical specifications. 65,536 32-bit registers per SM on all of them, 255 per thread at most.
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024, 89: 99 * 1024, 90: 227 * 1024,
                100: 227 * 1024, 120: 99 * 1024}
REGISTERS_PER_SM = 65536
GPU_NAMES = {80: "A100", 86: "RTX 30xx / A10", 87: "Jetson Orin", 89: "L4 / RTX 40xx", 90: "H100 / H200",
             100: "B200", 120: "RTX 50xx"}

_TORCH_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "int8": "i8",
                 "uint8": "u8", "int16": "i16", "int32": "i32", "int64": "i64", "bool": "i1"}
_LAUNCH_OPTIONS = ("num_warps", "num_stages")


def parse_arch(text: str) -> int:
    """'sm_90', 'sm90', '90' or 'cuda:90' -> 90."""
    m = re.fullmatch(r"(?:sm_?|cuda:)?(\d{2,3})a?", text.strip())
    if not m or int(m.group(1)) not in SHARED_LIMIT:
        known = ", ".join(f"sm_{a} ({n})" for a, n in GPU_NAMES.items())
        raise UsageError(f"--target {text}: unknown GPU architecture (known: {known})")
    return int(m.group(1))


@dataclass
class Launch:
    """One kernel specialization as a GPU run would compile it."""
    kernel: str
    signature: dict            # parameter -> '*fp32', 'i32', ..., 'constexpr'
    constexprs: dict           # parameter -> value (block sizes, flags, integers equal to 1)
    divisible: list            # parameter indices known to be multiples of 16 (pointers: addresses)
    options: dict              # num_warps, num_stages
    candidate: bool = False    # an autotuning alternative, not the config launched first
    body: str = ""             # hash of the kernel's source under a neutral name: layers that repeat share it

    def key(self) -> str:
        return json.dumps([self.kernel, self.signature, self.constexprs, self.divisible, self.options], sort_keys=True)

    def program(self) -> str:
        """What the compiler sees: equal for two launches that compile to the same binary."""
        return json.dumps([self.body, self.signature, self.constexprs, self.divisible, self.options], sort_keys=True)

    def config(self) -> str:
        blocks = {k: v for k, v in self.constexprs.items() if k.startswith("B") and isinstance(v, int) and not isinstance(v, bool)}
        return " ".join([f"{k}={v}" for k, v in blocks.items()] + [f"{k[4:]}={v}" for k, v in self.options.items()])


@dataclass
class Build:
    launch: Launch
    error: str = ""            # one line; empty when it compiled
    regs: int = 0              # per thread
    spill_bytes: int = 0       # per thread: registers spilled (ptxas "bytes spill stores")
    shared: int = 0            # bytes per block
    problems: list = field(default_factory=list)   # why it cannot launch on the target (shared memory, registers)

    @property
    def ok(self) -> bool:
        return not self.error and not self.problems


# ---- 1. capture --------------------------------------------------------------------------------------
class _Recorder:
    """Stands in for a kernel: `kernel[grid](*args, **kwargs)` records the launch instead of running it."""

    def __init__(self, name, fn, sink):
        self.name, self.fn, self.sink = name, fn, sink
        self.candidate = False

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.sink.append(_specialize(self, args, kwargs))

    @functools.cached_property
    def body(self) -> str:
        text = inspect.getsource(self.fn.fn).replace(f"def {self.name}(", "def kernel(", 1)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @functools.cached_property
    def params(self) -> list:
        return list(inspect.signature(self.fn.fn).parameters.values())


def _specialize(recorder, args, kwargs) -> Launch:
    import torch
    name, params = recorder.name, recorder.params
    options = {k: kwargs.pop(k) for k in _LAUNCH_OPTIONS if k in kwargs}
    values = dict(zip([p.name for p in params], args), **kwargs)
    signature, constexprs, divisible = {}, {}, []
    for i, p in enumerate(params):
        v = values.get(p.name, p.default)
        if "constexpr" in str(p.annotation) or v is None:
            signature[p.name], constexprs[p.name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            signature[p.name] = "*" + _TORCH_DTYPES[str(v.dtype).removeprefix("torch.")]
            if v.data_ptr() % 16 == 0:
                divisible.append(i)
        elif isinstance(v, bool):
            signature[p.name] = "i1"
        elif isinstance(v, int):
            if v == 1:   # Triton's JIT specializes an integer argument equal to 1 into a constant
                signature[p.name], constexprs[p.name] = "constexpr", 1
                continue
            signature[p.name] = "i32" if -2**31 <= v < 2**31 else "i64"
            if v % 16 == 0:
                divisible.append(i)
        elif isinstance(v, float):
            signature[p.name] = "fp32"
        else:
            raise TypeError(f"kernel {name}: argument {p.name} of type {type(v).__name__}")
    return Launch(name, signature, constexprs, divisible, options, recorder.candidate, recorder.body)


class _CaptureRuntime:
    """The generated module's `_rt` during capture: itself, except that `tuned` records every candidate
    config (a GPU run compiles them all to time them) and returns the first."""

    def __init__(self, runtime, recorders, candidates):
        self._runtime, self._recorders, self._candidates = runtime, recorders, candidates

    def __getattr__(self, name):
        return getattr(self._runtime, name)

    def step(self, *args):   # nothing runs during capture: no progress to show
        pass

    def tuned(self, kernel, size, candidates, launch, bench=None):
        for r in self._recorders:
            r.candidate = True
        for cfg in candidates[1:] if self._candidates else []:
            launch(cfg)
        for r in self._recorders:
            r.candidate = False
        return candidates[0]


def capture(compiled, inputs: dict, params: dict, candidates: bool = True) -> list[Launch]:
    """The distinct kernel launches of one forward pass at these inputs' shapes, with GPU launch configs
    (and each tuned kernel's autotuning alternatives, unless `candidates` is False)."""
    import numpy as np
    import torch
    module = compiled.module()
    from triton.runtime.jit import KernelInterface
    kernels = {k: v for k, v in vars(module).items() if isinstance(v, KernelInterface) and k.startswith("k")}
    sink: list[Launch] = []
    recorders = [_Recorder(k, fn, sink) for k, fn in kernels.items()]
    saved_rt, saved_env = module._rt, os.environ.get("TRITON_INTERPRET")
    try:
        for r in recorders:
            setattr(module, r.name, r)
        module._rt = _CaptureRuntime(saved_rt, recorders, candidates)
        os.environ["TRITON_INTERPRET"] = "0"   # block sizes as a GPU run picks them (device.interpreting())
        as_tensor = lambda v: torch.as_tensor(np.asarray(v, order="C"))
        module.forward({k: as_tensor(v) for k, v in inputs.items()}, {k: as_tensor(v) for k, v in params.items()})
    finally:
        for name, fn in kernels.items():
            setattr(module, name, fn)
        module._rt = saved_rt
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved_env
    unique = {}
    for launch in sink:
        if launch.key() not in unique or not launch.candidate:
            unique[launch.key()] = launch
    return list(unique.values())


# ---- 2. build ----------------------------------------------------------------------------------------
def build(compiled, launches: list[Launch], arch: int, out_dir: Path | None = None, jobs: int | None = None) -> list[Build]:
    """Compile each launch for sm_`arch` in `jobs` worker processes; write the launched configs' PTX and
    cubin under `out_dir` when given."""
    from .runtime import store
    module_path = store(compiled.key, compiled.source)
    distinct = {}   # a repeated layer's kernels compile once (their PTX is written under each name)
    for x in launches:
        distinct.setdefault(x.program(), []).append(x)
    todo = [group[0] for group in distinct.values()]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    shares = [todo[i::jobs] for i in range(jobs)]
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    workers = []
    for share in shares:
        names = {x.key(): [y.kernel for y in distinct[x.program()] if not y.candidate] for x in share}
        request = {"module": str(module_path), "arch": arch, "out_dir": str(out_dir) if out_dir else None,
                   "launches": [dict(asdict(x), names=names[x.key()]) for x in share]}
        p = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        p.stdin.write(json.dumps(request))
        p.stdin.close()
        workers.append((p, share))
    builds, done = [], 0
    for p, share in workers:
        results = []
        for line in p.stdout:   # one line per build as the worker finishes it: progress as it goes
            if line.startswith(_RESULT):
                results.append(json.loads(line[len(_RESULT):]))
                done += 1
                x = share[len(results) - 1]
                tag = " (autotune candidate)" if x.candidate else ""
                progress.step(f"compiled {x.kernel} ({x.config()}){tag}", done, len(todo))
        err = p.stderr.read()
        p.wait()
        if len(results) != len(share):
            tail = (err.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the GPU compile worker failed: {tail}") from None
        for first, r in zip(share, results):
            for launch in distinct[first.program()]:
                b = Build(launch, **r)
                b.problems = _launch_problems(b, arch)
                builds.append(b)
    first = {}   # each kernel's launched config, then its autotuning alternatives
    for x in launches:
        first.setdefault(x.kernel, len(first))
    return sorted(builds, key=lambda b: (first[b.launch.kernel], b.launch.candidate))


def _launch_problems(b: Build, arch: int) -> list[str]:
    if b.error:
        return []
    problems = []
    if b.shared > SHARED_LIMIT[arch]:
        problems.append(f"needs {b.shared:,} B of shared memory, sm_{arch} has {SHARED_LIMIT[arch]:,}")
    threads = 32 * b.launch.options.get("num_warps", 4)
    if b.regs * threads > REGISTERS_PER_SM:
        problems.append(f"{b.regs} registers x {threads} threads exceed the {REGISTERS_PER_SM:,} of an SM")
    return problems


def _one_line(e: Exception) -> str:
    """Triton's compile errors quote the kernel source; keep where (first line) and why (last line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    where = lines[0].rstrip(":") if lines else ""
    why = lines[-1] if len(lines) > 1 else ""
    return f"{type(e).__name__}: {where}{': ' + why if why else ''}"[:400]


def _resources(ptxas_log: str) -> dict:
    """Registers per thread and spilled bytes from ptxas -v (which Triton runs for every cubin): 'Used 56
    registers, 32 bytes stack frame, 0 bytes spill stores' (a stack frame alone is not a spill: sin's slow
    path keeps an array there)."""
    regs = re.findall(r"Used (\d+) registers", ptxas_log)
    spills = re.findall(r"(\d+) bytes spill stores", ptxas_log)
    return {"regs": int(regs[-1]) if regs else 0, "spill_bytes": int(spills[-1]) if spills else 0}


_RESULT = "pnet-aot-result: "   # marks the worker's result lines (Triton may print lines of its own)


def _worker() -> None:
    """Compile the launches given on stdin (JSON); print each one's result as a JSON line (after _RESULT)."""
    os.environ["TRITON_INTERPRET"] = "0"
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"   # triton prints the log of its ptxas -v run
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"   # ... which a cached kernel skips
    import contextlib
    import importlib.util
    import io

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    request = json.loads(sys.stdin.read())
    spec = importlib.util.spec_from_file_location("pnet_aot_module", request["module"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = GPUTarget("cuda", request["arch"], 32)
    out_dir = Path(request["out_dir"]) if request["out_dir"] else None
    for x in request["launches"]:
        fn = getattr(module, x["kernel"])
        x["constexprs"] = {k: tuple(v) if isinstance(v, list) else v for k, v in x["constexprs"].items()}
        attrs = {(i,): [["tt.divisibility", 16]] for i in x["divisible"]}
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                k = triton.compile(ASTSource(fn, x["signature"], x["constexprs"], attrs), target=target, options=x["options"])
        except Exception as e:  # noqa: BLE001 - every failure is reported, per kernel
            print(_RESULT + json.dumps({"error": _one_line(e)}), flush=True)
            continue
        r = {"shared": int(k.metadata.shared), **_resources(log.getvalue())}
        for name in x["names"] if out_dir is not None else []:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"{name}.ptx").write_text(k.asm["ptx"])
            (out_dir / f"{name}.cubin").write_bytes(k.asm["cubin"])
        print(_RESULT + json.dumps(r), flush=True)


def compile_for_gpu(compiled, graph, params: dict | None, arch: int, out_dir: Path | None = None,
                    candidates: bool = True) -> tuple[list[Build], str]:
    """`pnet compile --target`: capture at seeded inputs of the graph's bound sizes, build, report."""
    from ..numpy_ref import init_params, random_inputs
    params = params if params is not None else init_params(graph, 0)
    builds = build(compiled, capture(compiled, random_inputs(graph, 0), params, candidates), arch, out_dir)
    return builds, format_report(builds, arch)


# ---- the report --------------------------------------------------------------------------------------
def format_report(builds: list[Build], arch: int) -> str:
    launched = [b for b in builds if not b.launch.candidate]
    lines = [f"{'kernel':<40} {'config':<30} {'regs':>5} {'spill B':>8} {'shared B':>9}  status"]
    for b in builds:
        status = "ok" if b.ok else (b.error or "; ".join(b.problems))
        tag = " (autotune candidate)" if b.launch.candidate else ""
        lines.append(f"{b.launch.kernel:<40} {b.launch.config():<30} {b.regs:>5} {b.spill_bytes:>8} {b.shared:>9}  {status}{tag}")
    failed = Counter("error" if b.error else "cannot launch" for b in builds if not b.ok)
    lines.append(f"sm_{arch} ({GPU_NAMES[arch]}): {len(launched)} kernels launched, {len(builds) - len(launched)} autotuning "
                 f"alternatives; {failed['error']} failed to compile, {failed['cannot launch']} cannot launch, "
                 f"{len(spilling(builds))} spill registers in every config built; max shared memory "
                 f"{max((b.shared for b in builds), default=0):,} of {SHARED_LIMIT[arch]:,} B")
    return "\n".join(lines)


def spilling(builds: list[Build]) -> list[str]:
    """Kernels with no config that keeps its registers (the autotuner, timing them all, has none to pick)."""
    clean = {b.launch.kernel for b in builds if b.ok and not b.spill_bytes}
    return sorted({b.launch.kernel for b in builds} - clean)


if __name__ == "__main__":
    _worker()
