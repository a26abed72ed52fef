"""Front-end robustness: mutated `.pnet` sources, IR texts and weight/input files.

The only acceptable outcomes are success or a located PnetError (UsageError for weight/input files) --
never another exception, a hang (each input is time-bounded), or a crash. CI runs a bounded number of
mutations; set PNET_FRONTEND_FUZZ=10000 (a count) for a long run, e.g.

    PNET_FRONTEND_FUZZ=10000 python -m pytest tests/test_fuzz_frontend.py -k long -s
"""
from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

from pnet.errors import PnetError, UsageError

ROOT = Path(__file__).resolve().parent.parent
LONG = int(os.environ.get("PNET_FRONTEND_FUZZ", "0"))
TIME_LIMIT = 30.0   # CPU seconds one input may take (a 5000-deep expression takes seconds to parse)

UNICODE = ["\u00e9", "\u2028", "\u2029", "\x85", "\x0b", "\x1c", "\x00", "\ufeff", "\u200b", "\U0001F600", "\r", "\t", "\x0c", "\u03bb", "\u2211",
           "\\", "\"", "#", "@", "..", "...", "\u0301", "\ud800", "\x1b[0m", "\u00a0"]
HUGE = ["99999999999999999999999", str(2 ** 63), str(2 ** 64 + 1), "1e308", "1e400", "-0", "0", "1" * 400,
        "0.0000000000000000000001", "123456789012", "-9223372036854775809", "1e-400", "00000017", "9" * 5000]
TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\"(?:[^\"\\\n]|\\.)*\"|\.\.\.|\.\.|\*\*|//|->|[<>=!]=|\S|\n")
WORDS = ["model", "def", "input", "output", "param", "for", "in", "if", "else", "scan", "along", "yield", "return",
         "import", "as", "tie", "true", "false", "none", "sum", "max", "f32", "i64", "bool", "int", "fn", "x", "B",
         "..", "@quantize", "inf"]


# ---- seeds ----------------------------------------------------------------------------------------------------
def pnet_seeds() -> list[tuple[str, str, dict]]:
    """(file name, text, overrides): every .pnet of the repo (with its small `# test: --set` configuration,
    so a stdlib model elaborates in well under a second) and some generated programs."""
    from conftest import small_config
    from pnet.testing.generate import random_program
    out = []
    # stdlib/nn only: a mutation can rename a hyperparameter so the `# test:` override no longer applies,
    # and a paper at its published size (a 7B LLaMA) then takes minutes to elaborate, which is not a hang
    for d in ("stdlib/nn", "examples", "tests/errors", "tests/regressions"):
        for p in sorted((ROOT / d).rglob("*.pnet")):
            out.append((str(p), p.read_text(encoding="utf-8"), small_config(p)))
    for s in range(40):
        prog = random_program(10_000 + s)
        out.append((str(ROOT / "tests" / f"generated{s}.pnet"), prog.source, prog.load_overrides()))
    return out


def ir_seeds() -> list[str]:
    from pnet.dsl.compile import load_source
    from pnet.ir.text import print_graph
    from pnet.passes.manager import run_passes
    from pnet.testing.generate import random_program
    out = []
    for s in range(25):
        prog = random_program(20_000 + s)
        try:
            g = load_source(prog.source, "<seed>", overrides=prog.load_overrides()).graph
        except PnetError:
            continue
        out.append(print_graph(g))
        out.append(print_graph(run_passes(g, "cleanup")))
    return out


# ---- mutations ----------------------------------------------------------------------------------------------
MAX_MUTATED_CHARS = 200_000


def mutate(rng: random.Random, text: str, others: list[str]) -> str:
    """One to three random mutations of `text` (byte flips, token edits, truncation, unicode, deep nesting,
    huge numbers, splices)."""
    for _ in range(rng.randint(1, 3)):
        text = MUTATIONS[rng.randrange(len(MUTATIONS))](rng, text, others)
        # nesting and splicing mutations compound (a 5 KB file grew to 7 MB): parsing that is slow but linear,
        # and the time bound is for hangs, so oversized results are truncated (a mutation of its own)
        text = text[:MAX_MUTATED_CHARS]
    return text


def _flip(rng, text, others):
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    if not data:
        return text
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data.decode("utf-8", "replace")


def _tokens(text):
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


def _delete_tokens(rng, text, others):
    toks = _tokens(text)
    if not toks:
        return text
    for _ in range(rng.randint(1, 3)):
        toks = _tokens(text)
        if not toks:
            break
        a, b = toks[rng.randrange(len(toks))]
        text = text[:a] + text[b:]
    return text


def _duplicate_or_swap(rng, text, others):
    toks = _tokens(text)
    if len(toks) < 2:
        return text
    (a, b), (c, d) = sorted(rng.sample(toks, 2))
    if rng.random() < 0.5:
        return text[:c] + text[a:b] + text[c:]
    return text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]


def _replace_token(rng, text, others):
    toks = _tokens(text)
    if not toks:
        return text
    a, b = toks[rng.randrange(len(toks))]
    return text[:a] + rng.choice(WORDS + HUGE + UNICODE) + text[b:]


def _truncate(rng, text, others):
    return text[:rng.randrange(len(text) + 1)]


def _unicode(rng, text, others):
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(text) + 1)
        text = text[:k] + rng.choice(UNICODE) + text[k:]
    return text


def _huge_number(rng, text, others):
    nums = list(re.finditer(r"\b\d+(\.\d+)?\b", text))
    if not nums:
        return text + rng.choice(HUGE)
    m = rng.choice(nums)
    return text[:m.start()] + rng.choice(HUGE) + text[m.end():]


def _deep_nesting(rng, text, others):
    depth = rng.choice([50, 300, 1000, 3000, 5000])
    kind = rng.randrange(6)
    m = list(re.finditer(r"= ([^\n=]+)\n", text))
    if kind == 0 and m:        # an expression wrapped in parentheses
        x = rng.choice(m)
        return text[:x.start(1)] + "(" * depth + x.group(1) + ")" * depth + text[x.end(1):]
    if kind == 1 and m:        # a long left-associated chain a + a + ... (a deep BinOp tree)
        x = rng.choice(m)
        return text[:x.start(1)] + " + ".join([f"({x.group(1)})"] * depth) + text[x.end(1):]
    if kind == 2 and m:        # unary minus tower
        x = rng.choice(m)
        return text[:x.start(1)] + "-" * depth + f"({x.group(1)})" + text[x.end(1):]
    if kind == 3:              # nested lists
        return text.replace("[", "[" * depth, 1).replace("]", "]" * depth, 1)
    if kind == 4:              # nested blocks
        i = text.find("{\n")
        if i < 0:
            return text
        return text[:i + 2] + "if true {\n" * depth + "}\n" * depth + text[i + 2:]
    i = text.find("\n  output")   # deep def call chain
    if i < 0:
        return text
    return "def g0(x: [...]) -> [...] { return x }\n" + text[:i] + "\n  z = " + "g0(" * depth + "1.0" + ")" * depth + text[i:]


def _splice(rng, text, others):
    other = rng.choice(others) if others else text
    a, b = sorted(rng.randrange(len(text) + 1) for _ in range(2))
    c, d = sorted(rng.randrange(len(other) + 1) for _ in range(2))
    return text[:a] + other[c:d] + text[b:]


def _big_loop(rng, text, others):
    n = rng.choice(["100000", "99999999999", "10 ** 12", "2 ** 40"])
    i = text.find("\n  output")
    if i < 0:
        return text
    return text[:i] + f"\n  for i in 0..{n} {{ z = 1 }}" + text[i:]


MUTATIONS = [_flip, _delete_tokens, _duplicate_or_swap, _replace_token, _truncate, _unicode, _huge_number,
             _deep_nesting, _splice, _big_loop]


# ---- running one input --------------------------------------------------------------------------------------
class _Hang(Exception):
    pass


def bounded(fn, limit=TIME_LIMIT):
    """fn() with a limit on the CPU time this process spends in it (SIGPROF in the main thread; elsewhere only
    measured): a loaded machine slows the wall clock, not the CPU time an input costs, so a busy CI box cannot
    turn a slow-but-finite parse into a "hang". A wait that burns no CPU is caught by a wall-clock limit ten
    times as long."""
    use_alarm = hasattr(signal, "SIGPROF") and threading.current_thread() is threading.main_thread()
    if use_alarm:
        def on_alarm(signum, frame):
            raise _Hang()
        old = {sig: signal.signal(sig, on_alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
        signal.setitimer(signal.ITIMER_PROF, limit)
        signal.setitimer(signal.ITIMER_REAL, 10 * limit)
    start = time.process_time()
    try:
        return fn()
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if time.process_time() - start > limit * 1.5:
            raise _Hang()


def outcome(fn, allowed=(PnetError,), need_loc=True) -> str | None:
    """None when fn() succeeds or raises an allowed, located error; else what went wrong."""
    try:
        bounded(fn)
        return None
    except _Hang:
        return f"hang: over {TIME_LIMIT:g} CPU s"
    except allowed as e:
        if need_loc and isinstance(e, PnetError) and e.loc is None and not isinstance(e, UsageError):
            return f"PnetError without a location: {e}"
        return None
    except RecursionError:
        return "RecursionError"
    except Exception as e:  # noqa: BLE001
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return f"{type(e).__name__} at {Path(tb.filename).name}:{tb.lineno}: {str(e)[:120]}"


def _check_error_line(err: PnetError, name: str, text: str) -> None:
    """The line an error shows is the line its location names, counted as the lexer counts (at \\n only)."""
    from pnet.errors import source_line
    if err.loc is not None and err.loc.file == name and err.source_line is not None:
        want = source_line(text, err.loc.line)
        assert err.source_line.rstrip("\r\n") == want, f"error at line {err.loc.line} shows {err.source_line!r}"


def check_source_text(name: str, text: str, overrides: dict | None = None) -> str | None:
    from pnet.dsl.compile import load_source
    from pnet.dsl.fmt import format_source

    def run():
        try:
            load_source(text, name, overrides=overrides)
        except PnetError as err:
            _check_error_line(err, name, text)
            # a source that parses must also format (fmt must not crash on anything the parser accepts)
            from pnet.dsl.parser import parse
            try:
                parse(text, name)
            except PnetError:
                raise
            format_source(text, name)
            raise
        format_source(text, name)
    return outcome(run)


def check_ir_text(text: str) -> str | None:
    from pnet.ir.text import parse_graph, print_graph
    from pnet.passes.verify import verify

    def run():
        g = parse_graph(text, "<ir>")
        verify(g)
        print_graph(g)
    return outcome(run)


# Failures of bugs the fuzzer already found, each pinned by an open file of tests/regressions/: tolerated while
# that file says `# open:` (so CI stays green until the fix lands), failures again once it is fixed.
# (pattern of the failure, the regression file, which fuzz: "src", "ir" or "" for any)
KNOWN = [
    (r"VisitError .*maximum recursion depth", "deep_nesting_parser_visit_error.pnet", "src"),
    (r"^RecursionError", "long_operator_chain_recursion.pnet", "src"),
    (r"^(MemoryError|OverflowError) at elaborate\.py", "for_loop_huge_range.pnet", "src"),
    (r"without a location: .*no `model` in this file", "no_model_error_location.pnet", "src"),
    (r"^IndexError at movement\.py:\d+: tuple index out of range", "rank0_axis_type_rule_crash.pnet", "src"),
    (r"without a location: error: (IR: |unknown op)", "ir_undefined_value.ir", "ir"),
    (r"^(KeyError|TypeError|ValueError|IndexError) at \w+\.py", "ir_verify_missing_attr.ir", "ir"),
]


def known_bug(why: str, kind: str = "") -> str | None:
    """The open regression file that pins this failure, if any."""
    for pattern, name, scope in KNOWN:
        path = ROOT / "tests" / "regressions" / name
        if scope and kind and scope != kind:
            continue
        if re.search(pattern, why, re.S) and path.is_file() and re.search(r"^(#|//)\s*open:", path.read_text(), re.M):
            return name
    return None


def _failures(kind, items, check, known=None):
    """Failures by kind; those of known open bugs go to `known` (counted) instead."""
    bad = {}
    scope = "ir" if kind.startswith("IR") else "src" if kind == "sources" else ""
    for i, item in enumerate(items):
        why = check(item)
        if why is None:
            continue
        pinned = known_bug(why, scope)
        if pinned and known is not None:
            known[pinned] = known.get(pinned, 0) + 1
            continue
        key = re.sub(r"\d+", "N", re.sub(r"(/[\w.-]+)+\.pnet", "FILE", why))[:70]
        bad.setdefault(key, (i, why, item))
    return bad


def _report(kind, n, bad) -> str:
    lines = [f"{len(bad)} kinds of failure in {n} mutated {kind}:"]
    for key, (i, why, item) in bad.items():
        shown = item if isinstance(item, str) else repr(item)
        lines.append(f"- {why}\n  input #{i}: {shown[:600]!r}")
    return "\n".join(lines)


def run_source_fuzz(n: int, seed: int = 0, known=None):
    rng = random.Random(seed)
    seeds = pnet_seeds()
    texts = [t for _, t, _ in seeds]
    items = []
    for i in range(n):
        name, text, overrides = seeds[rng.randrange(len(seeds))]
        items.append((name, mutate(rng, text, texts), overrides))
    return _failures("sources", items, lambda it: check_source_text(*it), known)


def run_ir_fuzz(n: int, seed: int = 0, known=None):
    rng = random.Random(seed)
    seeds = ir_seeds()
    items = [mutate(rng, seeds[rng.randrange(len(seeds))], seeds) for _ in range(n)]
    return _failures("IR texts", items, check_ir_text, known)


# ---- weight / input files -------------------------------------------------------------------------------------
WEIGHTS_SRC = """model m() {
  input x: f32[B, 4]
  input ids: i64[B]
  param w: [4, 3] = normal(0, 1)
  param b: [3] = zeros()
  output y = x @ w + b
}
"""


def _weight_files(tmp: Path, rng: random.Random, n: int) -> list[Path]:
    from pnet.weights import save_params
    out = []
    good = {"w": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)}
    inputs = {"x": np.ones((2, 4), np.float32), "ids": np.zeros(2, np.int64)}
    templates = []
    for ext in (".npz", ".safetensors"):
        for name, arrays in (("params", good), ("inputs", inputs)):
            p = tmp / f"{name}{ext}"
            try:
                save_params(p, arrays)
            except ImportError:
                continue
            templates.append(p)
    # semantic variants: wrong dtype/shape/keys, object arrays, empty archive
    variants = {
        "dtype.npz": {"w": np.ones((4, 3), np.float64), "b": np.zeros(3, np.float32)},
        "shape.npz": {"w": np.ones((3, 4), np.float32), "b": np.zeros(3, np.float32)},
        "extra.npz": {**good, "zz": np.zeros(1)},
        "missing.npz": {"w": good["w"]},
        "empty.npz": {},
        "scalar.npz": {"w": np.float32(1), "b": np.zeros(3, np.float32)},
    }
    for name, arrays in variants.items():
        p = tmp / name
        np.savez(p, **arrays)
        out.append(p)
    obj = tmp / "object.npz"
    np.savez(obj, w=np.array([{"a": 1}], dtype=object), b=np.zeros(3, np.float32))
    out.append(obj)
    (tmp / "text.npz").write_text("not a zip")
    out.append(tmp / "text.npz")
    out.append(tmp / "missing_file.npz")
    (tmp / "dir.npz").mkdir()
    out.append(tmp / "dir.npz")
    for i in range(n):
        src = rng.choice(templates)
        data = bytearray(src.read_bytes())
        how = rng.randrange(5)
        if how == 0:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == 1:
            data = data[:rng.randrange(len(data))]
        elif how == 2:
            k = rng.randrange(len(data))
            data = data[:k] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[k:]
        elif how == 3 and src.suffix == ".safetensors":   # a lying header length
            data[:8] = rng.choice([2 ** 63, 2 ** 40, 0, len(data), len(data) + 5]).to_bytes(8, "little")
        else:
            data[rng.randrange(len(data)):] = b"\x00" * 16
        p = tmp / f"mut{i}{src.suffix}"
        p.write_bytes(bytes(data))
        out.append(p)
    return out


def run_weights_fuzz(tmp: Path, n: int, seed: int = 0, known=None):
    from pnet.dsl.compile import load_source
    from pnet.weights import load_inputs, load_params
    graph = load_source(WEIGHTS_SRC, "<weights>").graph
    files = _weight_files(tmp, random.Random(seed), n)

    def check(p):
        for fn in (load_params, load_inputs):
            why = outcome(lambda: fn(p, graph), allowed=(UsageError, PnetError), need_loc=False)
            if why:
                return f"{fn.__name__}: {why}"
        return None
    return _failures("weight/input files", files, check, known), len(files)


# ---- tests ------------------------------------------------------------------------------------------------------
def test_mutated_sources_give_success_or_a_located_error():
    known = {}
    bad = run_source_fuzz(300, seed=1, known=known)
    assert not bad, _report("sources", 300, bad)


def test_mutated_ir_texts_give_success_or_a_located_error():
    known = {}
    bad = run_ir_fuzz(150, seed=2, known=known)
    assert not bad, _report("IR texts", 150, bad)


def test_mutated_weight_and_input_files_give_usage_errors(tmp_path):
    bad, n = run_weights_fuzz(tmp_path, 60, seed=3, known={})
    assert not bad, _report("weight/input files", n, bad)


def test_known_patterns_name_regression_files():
    for pattern, name, scope in KNOWN:
        assert (ROOT / "tests" / "regressions" / name).is_file(), f"KNOWN names a missing file {name}"


@pytest.mark.skipif(not LONG, reason="set PNET_FRONTEND_FUZZ=<count> for the long front-end fuzz run")
def test_long_frontend_fuzz(tmp_path):
    t0 = time.monotonic()
    known: dict = {}
    n_ir, n_w = max(LONG // 5, 1), max(LONG // 20, 1)
    bad_src = run_source_fuzz(LONG, seed=101, known=known)
    bad_ir = run_ir_fuzz(n_ir, seed=102, known=known)
    bad_w, nw = run_weights_fuzz(tmp_path, n_w, seed=103, known=known)
    print(f"\nfront-end fuzz: {LONG} sources, {n_ir} IR texts, {nw} weight/input files "
          f"in {time.monotonic() - t0:.0f} s")
    print("failures of known open bugs:", known or "none")
    report = "\n".join(_report(k, n, b) for k, n, b in (("sources", LONG, bad_src), ("IR texts", n_ir, bad_ir),
                                                       ("weight/input files", nw, bad_w)) if b)
    print(report or "no other failures")
    assert not (bad_src or bad_ir or bad_w), report
