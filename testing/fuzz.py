"""The differential tester: properties every generated program must satisfy, and `pnet fuzz`, the
long-run mode (`pnet fuzz --minutes 60 --out failures/`).

Properties (each a function raising `PropertyFailed`; tests/test_properties.py runs each as a test):
- compile:    a generated program is well typed, so the front end accepts it;
- source:     format -> parse gives the same tree, formatting is a fixed point, and the formatted program
              elaborates to the same IR;
- ir:         print -> parse -> print of the IR is a fixed point and the verifier accepts the parsed graph;
- passes:     every pass and every pipeline the CLI offers keeps the reference result within tolerance
              (testing/tolerance.py), the verifier accepts its output, and its IR round-trips;
- idempotent: running a pass (or pipeline) twice gives the IR of running it once;
- torch:      the torch backend agrees with the reference (float32 and float64 modules);
- triton:     the fused and the unfused Triton plans agree with the reference;
- lossy:      weight-only quantization and sparsification rewrite what they can, and every backend agrees
              with the rewritten graph's reference (check_lossy).
- memory:     sizes that cannot fit are refused from the shapes, with the same PnetError on every backend
              (check_memory: a dim of 10**13, and a limit one byte under the run's need);
- grad:       the program differentiated (grad_graph) agrees on the reference (f64), with torch.autograd (f64) and
              on the Triton backend (testing/fuzz_grad.py; programs it cannot differentiate are counted, not failed).
A program whose float64 reference is not finite (or huge) is *discarded*, not failed.

`pnet fuzz` generates with hypothesis when it is installed (failures shrink to a minimal program) and with
`random.Random` otherwise; each new kind of failure is saved, minimal, as a .pnet file whose header says how
to run it (`pnet run FILE --set ...`) and which property failed -- copy it into tests/regressions/, where
tests/test_properties.py runs it through every property on every CI run (add a line `# open: WHY` while the
bug is not fixed: the test is then a strict xfail; generate.OPEN_BUGS lets the generator steer around it).
"""
from __future__ import annotations

import os
import re
import signal
import sys
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fuzz_core import HUGE, Discard, PropertyFailed, Reference, check_ir, usable_float_output  # noqa: F401
from .generate import Program
from .tolerance import assert_outputs_close

PROPERTIES = ("compile", "source", "ir", "passes", "idempotent", "torch", "triton", "lossy", "memory",
              "grad")   # + one per backend


def _reference_error(run):
    """run() -> None, or the located PnetError the reference raises at run time (an id out of range, a reduction
    with no identity over a dim bound to 0): then the property is that every backend raises the same error."""
    from ..errors import PnetError
    try:
        run()
    except PnetError as e:
        return e
    return None


def _live(graph):
    """The graph without its dead code (what the Triton planner launches)."""
    from ..passes.manager import run_passes
    return run_passes(graph, ["dce"])


def expect_same_error(prop: str, what: str, ref: Reference, run, may_pass: bool = False) -> None:
    """`run` (a backend on the reference's inputs) must raise the reference's error, word for word and located
    (`may_pass`, for a pass's output: or none, or another located one -- a pass may delete or fold failing ops)."""
    from ..errors import PnetError
    try:
        run()
    except PnetError as e:
        if may_pass and e.loc is not None:
            return
        if str(e) != str(ref.error):
            raise PropertyFailed(prop, f"{what}: raised '{e}', the reference '{ref.error}'") from None
        return
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed(prop, f"{what}: {type(e).__name__}: {str(e)[:300]}; the reference raised '{ref.error}'") from None
    if not may_pass:
        raise PropertyFailed(prop, f"{what}: no error; the reference raised '{ref.error}'")


def _overrides(prog: Program) -> dict:
    return prog.load_overrides()


def compile_program(prog: Program):
    from ..dsl.compile import load_source
    from ..errors import PnetError
    try:
        return load_source(prog.source, prog.path, overrides=_overrides(prog)).graph
    except PnetError as e:
        raise PropertyFailed("compile", f"the front end rejected a generated (well-typed) program: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other exception is a front-end crash
        raise PropertyFailed("compile", f"front-end crash {type(e).__name__}: {e}") from None


def reference(graph, prog: Program) -> Reference:
    from ..backends import numpy_ref
    try:
        inputs = numpy_ref.random_inputs(graph, seed=prog.seed)
        if prog.specials:
            inputs = with_special_values(inputs, prog.seed)
        params = numpy_ref.init_params(graph, seed=prog.seed)
        error = _reference_error(lambda: numpy_ref.run(graph, inputs, params))
        # the failing op is dead code when the live graph fails otherwise (or not at all): a backend may skip it
        live_error = error and _reference_error(lambda: numpy_ref.run(_live(graph), inputs, params))
        dead = error is not None and str(live_error) != str(error)
        if error is None:
            ref32 = numpy_ref.run(graph, inputs, params)
            ref64 = numpy_ref.run(graph, inputs, params, float64=True)
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed("compile", f"the reference interpreter failed: {type(e).__name__}: {e}") from None
    if dead:
        raise Discard(f"dead code fails ({error}): a backend may skip it")
    if error is not None:
        return Reference(inputs, params, {}, {}, error)
    for name, r64 in ref64.items():
        r32 = ref32[name]
        if r64.dtype.kind == "f":
            usable_float_output(name, r32, r64, prog.specials)
        elif not np.array_equal(r32, r64):
            if prog.specials:   # a value that overflows in float32 only flipped a comparison: ill-conditioned
                raise Discard(f"integer output {name} differs between the float32 and float64 references")
            # the generator promises exact inputs to every discontinuous op: this is its bug (or the reference's)
            raise PropertyFailed("reference", f"integer output {name} differs between the float32 and float64 "
                                 "references (a discontinuous op saw an inexact value)")
    return Reference(inputs, params, ref32, ref64)


# No huge finite values: next to ordinary ones they make sums ill-conditioned (-1e15 + 2.1 + 1e15 is 2 or 2.125
# by summation order), which tests the tolerance rule, not the semantics; overflow has its own tests
SPECIAL_VALUES = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e-40, -1e-40, 1.0, -1.0)


def with_special_values(inputs: dict, seed: int) -> dict:
    """Float inputs with about a quarter of their elements (at least one) replaced by NaN, +-inf, +-0, huge, tiny
    and subnormal values (Program.specials): backends must then agree on the numeric semantics of
    docs/language.md, their non-finite results compared by pattern (testing/tolerance.nonfinite_mismatch)."""
    rng = np.random.default_rng([seed, 17])
    out = {}
    for name, arr in inputs.items():
        arr = np.array(arr, copy=True)
        if arr.dtype.kind == "f" and arr.size:
            flat = arr.reshape(-1)
            picks = rng.random(flat.size) < 0.25
            picks[rng.integers(flat.size)] = True
            with np.errstate(over="ignore"):
                flat[picks] = rng.choice(np.array(SPECIAL_VALUES), int(picks.sum())).astype(arr.dtype)
        out[name] = arr
    return out


def _strip_locs(text: str) -> str:
    return re.sub(r' loc\("(?:[^"\\]|\\.)*":\d+:\d+\)', "", text)


def check_source(prog: Program, graph) -> None:
    from ..dsl.compile import load_source
    from ..dsl.fmt import format_module
    from ..dsl.parser import parse
    from ..ir.text import print_graph
    try:
        tree = parse(prog.source, "<fuzz>")
        once = format_module(tree)
        tree_once = parse(once, "<fuzz>")
        if tree_once != tree:
            raise PropertyFailed("source", "formatting changed the syntax tree")
        twice = format_module(tree_once)
        if twice != once:
            raise PropertyFailed("source", "formatting is not a fixed point")
        again = load_source(once, "<fuzz>", overrides=_overrides(prog)).graph
    except PropertyFailed:
        raise
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed("source", f"{type(e).__name__}: {e}") from None
    if _strip_locs(print_graph(again)) != _strip_locs(print_graph(graph)):
        raise PropertyFailed("source", "the formatted program elaborates to different IR")


def run_then_compare(prop: str, ref: Reference, label: str, run, disagree: str | None = None, compare=None,
                     limit: int | None = 300) -> None:
    """The check every backend and pass pipeline shares: an exception from `run()` fails `prop` as 'label: Type:
    message' (cut to `limit` characters; a PropertyFailed passes through), an AssertionError from `compare(outputs)`
    (default: close to the reference's) as 'disagree: message' (default: 'label disagrees with the reference')."""
    try:
        got = run()
    except PropertyFailed:
        raise
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed(prop, f"{label}: {type(e).__name__}: {str(e)[:limit]}") from None
    try:
        if compare is None:
            assert_outputs_close(got, ref.ref32, ref.ref64)
        else:
            compare(got)
    except AssertionError as e:
        raise PropertyFailed(prop, f"{disagree or label + ' disagrees with the reference'}: {e}") from None


def pipelines() -> list[list[str]]:
    """Every single pass and every pipeline of the pass manager (the ones `--passes` offers)."""
    from ..passes.manager import PASSES, PIPELINES
    out = [[n] for n in PASSES]
    for names in PIPELINES.values():
        if names and list(names) not in out:
            out.append(list(names))
    return out


def check_passes(graph, ref: Reference) -> None:
    from ..backends import numpy_ref
    from ..passes.manager import run_passes
    for names in pipelines():
        label = ",".join(names)
        try:
            out = run_passes(graph, names)   # the verifier runs after every pass
        except Exception as e:  # noqa: BLE001
            raise PropertyFailed("passes", f"{label}: {type(e).__name__}: {e}") from None
        if len(names) > 1:
            check_ir(out, f"IR after {label}")   # (the IR of single passes round-trips like their pipeline's)
        if ref.error is not None:   # a pass may delete or fold the failing op (dead code): no error, or another
            expect_same_error("passes", label, ref, lambda: numpy_ref.run(out, ref.inputs, ref.params), may_pass=True)
            continue
        run_then_compare("passes", ref, f"{label}: running the result",
                         lambda: numpy_ref.run(out, ref.inputs, ref.params), f"{label} changed the result", limit=None)


def check_idempotent(graph) -> None:
    from ..ir.text import print_graph
    from ..passes.manager import run_passes
    for names in pipelines():
        label = ",".join(names)
        try:
            once = run_passes(graph, names)
            twice = run_passes(once, names)
        except Exception as e:  # noqa: BLE001
            raise PropertyFailed("idempotent", f"{label}: {type(e).__name__}: {e}") from None
        if print_graph(twice) != print_graph(once):
            raise PropertyFailed("idempotent", f"{label} is not idempotent")


def torch_available() -> str | None:
    """None when the torch backend can be used, else why not."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    try:
        from ..backends import torch_backend
    except Exception as e:  # noqa: BLE001 - the backend is being written; any import failure means "absent"
        return f"pnet.backends.torch_backend does not import ({type(e).__name__}: {e})"
    if not hasattr(torch_backend, "to_module"):
        return "pnet.backends.torch_backend has no to_module"
    return None


def check_torch(graph, ref: Reference) -> None:
    import torch
    from ..backends import torch_backend
    if ref.error is not None:
        feed = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in ref.inputs.items()}
        return expect_same_error("torch", "f32 module", ref,
                                 lambda: torch_backend.to_module(graph, params=ref.params).run_named(feed))

    def outputs(mode: str) -> dict:   # the module (f32 or f64) on the reference's inputs and parameters
        module = torch_backend.to_module(graph, dtype=mode, params=ref.params)
        feed = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in ref.inputs.items()}
        with torch.no_grad():
            out = module.run_named(feed)
        _no_grad_outputs(out)
        return {k: _to_numpy(v) for k, v in out.items()}
    for mode in ("f32", "f64"):
        run_then_compare("torch", ref, f"{mode} module", lambda: outputs(mode),
                         compare=lambda got: _compare_torch_outputs(got, ref, mode))
    check_torch_source(graph, ref)


def _compare_torch_outputs(got: dict, ref: Reference, mode: str) -> None:
    """f32: the reference's dtypes and values; f64: every float widened to f64, as the reference's float64=True."""
    if mode == "f32":
        for k, v in got.items():
            want_dt = ref.ref32[k].dtype
            if v.dtype != want_dt:
                raise AssertionError(f"{k}: dtype {v.dtype}, the reference gives {want_dt}")
        assert_outputs_close(got, ref.ref32, ref.ref64)
    else:
        assert_outputs_close({k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in got.items()},
                             ref.ref64, ref.ref64, "f64")


def source_shape(src: str) -> str:
    """The AST of generated Python with every string constant blanked: two sources of the same shape differ only
    in comments and string constants, the only places user text (file names, scopes) may go."""
    import ast
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


@contextmanager
def plain_locations(graph):
    """The graph with every node's file name and scope temporarily plain text: the baseline that generated source
    must match in shape (source_shape) whatever the real names hold."""
    from ..errors import Loc
    saved = [(n, n.loc, n.scope) for n in graph.walk()]
    try:
        for n, loc, _ in saved:
            n.loc = Loc("m.pnet", loc.line, loc.col) if loc is not None else None
            n.scope = "s" if n.scope else n.scope
        yield graph
    finally:
        for n, loc, scope in saved:
            n.loc, n.scope = loc, scope


def check_source_shape(prop: str, what: str, graph, make) -> str:
    """make() (generated source for `graph`), checked to parse to the shape it has under plain names."""
    try:
        src = make()
        with plain_locations(graph):
            plain = make()
        same = source_shape(src) == source_shape(plain)
    except SyntaxError as e:
        raise PropertyFailed(prop, f"{what} does not parse: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed(prop, f"{what}: {type(e).__name__}: {str(e)[:300]}") from None
    if not same:
        raise PropertyFailed(prop, f"{what}: a file name or scope changed the code, not only comments/strings")
    return src


def check_torch_source(graph, ref: Reference) -> None:
    """`pnet compile -b torch`: the generated module has the shape it has under plain file names and scopes (user
    text stays in comments and strings), and, loaded with the reference's parameters, matches the reference."""
    import torch
    from ..backends.torch_source import to_source

    def run() -> dict:
        src = check_source_shape("torch", "torch source", graph, lambda: to_source(graph))
        scope: dict = {}
        exec(compile(src, "<pnet torch source>", "exec"), scope)   # noqa: S102 - the code under test
        module = scope["Model"]()
        module.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in ref.params.items()})
        with torch.no_grad():
            # positionally: an input may be named `self` or `torch` (the forward's parameters are sanitized names)
            out = module(*[torch.from_numpy(np.array(ref.inputs[k], copy=True)) for k in module.input_names])
        return {k: _to_numpy(v) for k, v in out.items()}
    run_then_compare("torch", ref, "torch source", run)


HUGE_DIM = 10 ** 13  # a dim no machine holds a tensor along


def check_memory(prog: Program, graph, ref: Reference, backends=("numpy", "torch", "triton")) -> None:
    """Sizes that cannot fit are refused from the shapes with a PnetError, never a MemoryError after trying:
    the inputs of a dim set to HUGE_DIM (as `--set B=10000000000000`), and, with the limit one byte under what
    the run needs, the same error from every backend."""
    from ..backends import memory, numpy_ref
    from ..backends import run as run_backend
    huge = next((d for d in prog.dims if any(d in map(str, v.type.shape) for _, v in graph.inputs)), None)
    if huge is not None and all(prog.dims.values()):   # (a dim of size 0 elsewhere keeps the inputs empty)
        _expect_refusal("the inputs", lambda: numpy_ref.random_inputs(graph, prog.seed, {huge: HUGE_DIM}))
    # one byte under what the backends that free values need: every backend (the reference too) refuses alike
    need = memory.run_bytes(graph, numpy_ref.bind_dims(graph, ref.inputs), holds_every_value=False)
    if need == 0:   # every tensor empty: nothing to refuse
        return
    errors = {}
    with _memory_limit(need - 1):
        for b in backends:
            errors[b] = _expect_refusal(f"a {b} run", lambda b=b: run_backend(b, graph, ref.inputs, ref.params))
    if len(set(errors.values())) > 1:
        raise PropertyFailed("memory", f"the backends refuse with different errors: {errors}")


def _expect_refusal(what: str, fn) -> str:
    from ..errors import PnetError
    try:
        fn()
    except PnetError as e:
        return e.message
    except MemoryError as e:
        raise PropertyFailed("memory", f"{what}: MemoryError instead of a PnetError from the shapes: {e}") from None
    raise PropertyFailed("memory", f"{what}: too big for the memory limit, but not refused")


@contextmanager
def _memory_limit(nbytes: int):
    from ..backends.memory import ENV
    old = os.environ.get(ENV)
    os.environ[ENV] = str(max(nbytes, 1))
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = old


def _no_grad_outputs(out: dict) -> None:
    """Outputs computed under torch.no_grad() must not require grad (a parameter returned as an output did)."""
    stuck = [k for k, v in out.items() if v.requires_grad]
    if stuck:
        raise RuntimeError(f"outputs {stuck} require grad under torch.no_grad()")


def triton_available() -> str | None:
    """None when the Triton backend can run here (on a GPU, or under TRITON_INTERPRET=1 on the CPU)."""
    try:
        import torch  # noqa: F401
        from ..backends.triton import runtime
        runtime.ensure_mode(quiet=True)   # before triton's own @jit helpers (tl.zeros, ...) are decorated
        import triton  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed"
    return None


def check_triton(graph, ref: Reference) -> None:
    """The fused kernel plan and the unfused one (an op per kernel) both agree with the reference, so a
    fusion bug shows as a disagreement between the two as well as against NumPy."""
    from ..backends import triton as triton_backend
    from ..backends.triton import runtime
    runtime.ensure_mode()   # TRITON_INTERPRET=1 on a machine without a GPU, before any kernel is exec'd
    check_source_shape("triton", "Triton module", graph, lambda: triton_backend.compile(graph).source)
    for fuse in (True, False):
        label = "fused" if fuse else "unfused"
        if ref.error is not None:
            expect_same_error("triton", f"{label} plan", ref,
                              lambda: triton_backend.compile(graph, fuse=fuse).run(ref.inputs, ref.params))
            continue
        run_then_compare("triton", ref, f"{label} plan",
                         lambda: triton_backend.compile(graph, fuse=fuse).run(ref.inputs, ref.params))


LOSSY = (("quantize", "w8"), ("quantize", "w4"), ("sparsify", "2:4"), ("quantize", "w4 group_size=2"),
         ("sparsify", "density=0.5"), ("quantize", "w8 group_size=2"))   # groups of 2: group-wise on any even axis


def check_lossy(graph, ref: Reference, seed: int = 0, backends=("torch", "triton")) -> int:
    """The lossy passes (weight-only quantization, sparsification) on a random program: whatever layers
    they rewrite, the result is verified, its IR round-trips, and every backend agrees with the reference
    run *of the rewritten graph* (their error against the float model is measured by tests/test_quantize.py
    and test_sparsify.py on real models: random programs can be arbitrarily ill-conditioned). Weight-only
    schemes only: activation rounding (w8a8) can flip a step between backends on an ulp of difference, so
    its integer ops are checked bit for bit op by op instead. Returns how many rewrites were checked."""
    from ..backends import numpy_ref
    from ..errors import PnetError
    from ..passes.quantize import quantize_model
    from ..passes.sparsify import sparsify
    from ..passes.verify import verify
    checked = 0
    if ref.error is not None:   # a program that fails at run time has no result to keep
        return checked
    for i in (seed % len(LOSSY), (seed + 1) % len(LOSSY)):
        kind, spec = LOSSY[i]
        try:
            if kind == "quantize":
                scheme, *opts = spec.split()
                r = quantize_model(graph, ref.params, scheme, **{k: int(v) for k, v in (o.split("=") for o in opts)})
                g2, p2, touched = r.graph, r.params, bool(r.sites)
            else:
                g2, p2 = sparsify(graph, ref.params, spec)
                touched = any(n.op in ("nm_matmul", "bsr_matmul") for n in g2.walk())
        except PnetError:
            continue   # nothing the pass can rewrite here (a clear refusal, not a crash)
        except Exception as e:  # noqa: BLE001
            raise PropertyFailed("lossy", f"{kind} {spec}: {type(e).__name__}: {str(e)[:300]}") from None
        if not touched:
            continue
        try:
            verify(g2)
        except Exception as e:  # noqa: BLE001
            raise PropertyFailed("lossy", f"{kind} {spec}: the verifier rejects the result: {e}") from None
        check_ir(g2, f"graph after {kind} {spec}")
        ref2 = Reference(ref.inputs, p2, numpy_ref.run(g2, ref.inputs, p2), numpy_ref.run(g2, ref.inputs, p2, float64=True))
        checks = backend_checks()
        for b in backends:
            if checks[b][0]() is None:
                try:
                    checks[b][1](g2, ref2)
                except PropertyFailed as e:
                    raise PropertyFailed("lossy", f"after {kind} {spec}: {e.message}") from None
        checked += 1
    return checked


# Backends checked against the reference: name -> (why it is unavailable or None, the check);
# `pnet fuzz --backends` and the tests pick them up.
def backend_checks() -> dict:
    return {"torch": (torch_available, check_torch), "triton": (triton_available, check_triton)}


def _to_numpy(t):
    import torch
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


@dataclass
class Outcome:
    discarded: str | None = None
    ran: list = field(default_factory=list)
    not_differentiated: str | None = None   # why the grad property did not differentiate the program


def check_program(prog: Program, properties=PROPERTIES, backends=("numpy", "torch")) -> Outcome:
    """Run the properties on one program. Raises PropertyFailed; returns how far it got."""
    out = Outcome()
    graph = compile_program(prog)
    out.ran.append("compile")
    if "source" in properties:
        check_source(prog, graph)
        out.ran.append("source")
    if "ir" in properties:
        check_ir(graph)
        out.ran.append("ir")
    if "idempotent" in properties:
        check_idempotent(graph)
        out.ran.append("idempotent")
    extra = [b for b in backends if b != "numpy" and b in properties]
    if "passes" not in properties and not extra and "memory" not in properties and "grad" not in properties:
        return out
    try:
        ref = reference(graph, prog)
    except Discard as d:
        out.discarded = str(d)
        return out
    if "passes" in properties:
        check_passes(graph, ref)
        out.ran.append("passes")
    checks = backend_checks()
    for b in extra:
        checks[b][1](graph, ref)
        out.ran.append(b)
    if "lossy" in properties and check_lossy(graph, ref, prog.seed, tuple(extra)):
        out.ran.append("lossy")
    if "memory" in properties:
        check_memory(prog, graph, ref, backends)
        out.ran.append("memory")
    if "grad" in properties:
        from .fuzz_grad import check_grad
        out.not_differentiated = check_grad(prog, graph, ref, backends)
        out.ran.append("grad")
    return out


# ---- the long-run mode, `pnet fuzz` (cli/fuzz.py parses and checks its options) ------------------------------
class _Timeout(Exception):
    pass


class _Stop(Exception):
    pass


class _State:
    def __init__(self, args, backends, out_dir: Path):
        self.args = args
        self.backends = backends
        self.out = out_dir
        self.start = time.monotonic()
        self.deadline = self.start + args.minutes * 60
        self.programs = 0
        self.discarded = 0
        self.failures: dict[str, Path] = {}     # signature -> saved file
        self.repeats = 0
        self.ops: set[str] = set()
        self.grad: Counter = Counter()        # the grad property: differentiated, or why not
        self.last_print = 0.0
        self.tty = sys.stderr.isatty()

    def done(self) -> bool:
        n = self.args.max_programs
        return time.monotonic() >= self.deadline or (n and self.programs >= n)

    def progress(self, force=False):
        now = time.monotonic()
        if not force and now - self.last_print < (0.5 if self.tty else 30):
            return
        self.last_print = now
        el = now - self.start
        total = self.args.minutes * 60
        frac = min(1.0, el / total) if total else 1.0
        bar = "#" * int(frac * 20) + "-" * (20 - int(frac * 20))
        rate = self.programs / el if el > 0 else 0.0
        line = (f"pnet fuzz [{bar}] {_mmss(el)}/{_mmss(total)}  programs {self.programs} ({rate:.1f}/s)  "
                f"failures {len(self.failures)}" + (f" (+{self.repeats} repeats)" if self.repeats else "")
                + f"  discarded {self.discarded}")
        if self.tty:
            sys.stderr.write("\r" + line + "\033[K")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _mmss(s: float) -> str:
    s = int(s)
    return f"{s // 60:02d}:{s % 60:02d}"


def _one(state: _State, prog: Program, only: str | None = None):
    """Check one program; returns the new failure (or None). `only`: while shrinking a failure of that
    property, check just it (and what it needs), which is faster."""
    state.programs += 1
    state.ops.update(prog.ops)
    use_alarm = hasattr(signal, "SIGALRM") and state.args.timeout > 0
    if use_alarm:
        def on_alarm(signum, frame):
            raise _Timeout()
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, state.args.timeout)
    try:
        props = PROPERTIES + tuple(b for b in state.backends if b not in PROPERTIES)
        if only is not None and only in props:
            props = (only,)
        outcome = check_program(prog, properties=props, backends=state.backends)
        if outcome.discarded:
            state.discarded += 1
        elif "grad" in outcome.ran:
            state.grad[outcome.not_differentiated or "differentiated"] += 1
        return None
    except _Timeout:
        fail = PropertyFailed("timeout", f"a program took over {state.args.timeout:g} s")
    except PropertyFailed as e:
        fail = e
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        state.progress()
    if fail.signature in state.failures:
        state.repeats += 1
        return None
    return fail


def _save(state: _State, fail: PropertyFailed, prog: Program) -> Path:
    state.out.mkdir(parents=True, exist_ok=True)
    n = len(state.failures) + 1
    path = state.out / f"fail{n:03d}-{fail.prop}.pnet"
    sets = " ".join(f"--set {k}={v}" for k, v in {**prog.overrides, **prog.dims}.items())
    note = (f"pnet fuzz found this: property '{fail.prop}' fails\n{fail.message.strip()}\n"
            f"run: pnet run {path.name} {sets} --seed {prog.seed}")
    path.write_text(prog.to_text(note), encoding="utf-8")
    state.failures[fail.signature] = path
    return path


def long_run(args, names: list[str]) -> int:
    """`pnet fuzz`: check programs until `args.minutes` (or `args.max_programs`) are spent, on the backends `names`
    (checked by cli/fuzz.py: numpy or a key of backend_checks()) less those that cannot run here; save each new
    kind of failure, then print the totals. Exit status 1 when anything failed."""
    checks = backend_checks()
    backends = list(names)
    for b in names:
        why = checks[b][0]() if b in checks else None
        if why:
            print(f"pnet fuzz: {b} backend skipped: {why}", file=sys.stderr)
            backends.remove(b)
    state = _State(args, tuple(backends), Path(args.out))
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    print(f"pnet fuzz: {args.minutes:g} min, seed {seed}, backends {', '.join(backends) or 'none'}, "
          f"failures go to {state.out}/", file=sys.stderr)
    try:
        import hypothesis  # noqa: F401
        have_hyp = not args.no_shrink
    except ImportError:
        have_hyp = False
    batch = 0
    try:
        while not state.done():
            if have_hyp:
                _hypothesis_batch(state, seed + batch)
            else:
                from .generate import random_program
                prog = random_program(seed * 1000003 + batch, max_stmts=args.max_stmts)
                fail = _one(state, prog)
                if fail is not None:
                    print(f"\npnet fuzz: new failure, saved to {_save(state, fail, prog)}: {fail}", file=sys.stderr)
            batch += 1
    except KeyboardInterrupt:
        print("\npnet fuzz: interrupted", file=sys.stderr)
    state.progress(force=True)
    if state.tty:
        sys.stderr.write("\n")
    from .generate import generatable_ops
    ops = generatable_ops()
    missing = [o for o in ops if o not in state.ops]
    extras = sorted(o for o in state.ops if o not in ops)
    print(f"programs: {state.programs}  failures: {len(state.failures)}  repeats: {state.repeats}  "
          f"discarded: {state.discarded}  ops exercised: {len(ops) - len(missing)}/{len(ops)}"
          + (f" (not: {', '.join(missing)})" if missing else "")
          + (f"  constructs: {', '.join(extras)}" if extras else ""))
    from .fuzz_grad import summary
    print(summary(state.grad))
    for sig, path in state.failures.items():
        print(f"  {path}: {sig}")
    return 1 if state.failures else 0


def _hypothesis_batch(state: _State, seed: int) -> None:
    """Up to 100 programs from hypothesis; the first new kind of failure is shrunk (at most ~3 minutes) and
    saved. Failures of other kinds met while shrinking are left for later batches."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hseed
    from hypothesis.errors import HypothesisDeprecationWarning
    from .generate import programs

    target = {"sig": None, "best": None, "until": 0.0}

    @hseed(seed)
    @settings(max_examples=100, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              report_multiple_bugs=False, verbosity=Verbosity.quiet, print_blob=False)
    @given(programs(max_stmts=state.args.max_stmts))
    def prop(prog):
        if target["sig"] is None and state.done():
            return                              # out of time: hypothesis finishes the batch quickly
        if target["sig"] is not None and time.monotonic() > target["until"]:
            best_fail, best = target["best"]    # shrinking is over budget: only the best so far fails
            if prog.source == best.source and prog.dims == best.dims and prog.overrides == best.overrides:
                raise best_fail
            return
        fail = _one(state, prog, only=target["best"][0].prop if target["best"] else None)
        if fail is None:
            return
        if target["sig"] is None:
            target.update(sig=fail.signature, until=time.monotonic() + 180)
        elif fail.signature != target["sig"]:
            return
        target["best"] = (fail, prog)
        raise fail

    try:
        with warnings.catch_warnings():   # hypothesis' notes to test authors (a replay that drew nothing) are
            warnings.simplefilter("ignore", HypothesisDeprecationWarning)   # not the user's concern
            prop()
    except BaseException as e:  # noqa: BLE001 - a failure, or hypothesis giving up (Flaky, Unsatisfiable)
        if isinstance(e, KeyboardInterrupt):
            raise
        if target["best"] is None:
            print(f"\npnet fuzz: batch {seed} stopped: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
            return
        fail, prog = target["best"]
        path = _save(state, fail, prog)
        print(f"\npnet fuzz: new failure ({fail.signature}); minimal program saved to {path}", file=sys.stderr)
