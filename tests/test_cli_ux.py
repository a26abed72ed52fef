"""Issue 19's acceptance: each item of "a CLI that a ruff or cargo user would call polished", run as a user
runs it (a subprocess: exit code and the exact first line of output). The sections follow the issue's list."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pnet_cli(*args, cwd=None, input=None, env=None):
    """Run `python -m pnet ARGS` as a user would; the result's stdout/stderr are text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pnet", *map(str, args)], cwd=cwd, input=input,
                          capture_output=True, text=True, env=full_env)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# ---- item 1: errors say where the user's code went wrong ----
def _write(tmp_path, text, name="m.pnet"):
    (tmp_path / name).write_text(text)
    return name


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def test_item1_call_site_notes_chain_back_to_user_file(tmp_path):
    f = _write(tmp_path, "import nn.attention\nmodel m() {\n  input x: f32[2, 5, 18]\n  y = mha(x, 4)\n  output y\n}\n")
    r = pnet_cli("check", f, cwd=tmp_path)
    att = ROOT / "stdlib" / "nn" / "attention.pnet"
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == (f"{att}:{_line_of(att, 'split_heads: the width')}:3: error: split_heads: "
                        "the width must be a multiple of heads")
    notes = [ln for ln in lines if ": note: " in ln]
    assert notes[-1].startswith(f"{att}:") and notes[-1].endswith(": note: in the call of split_heads(...)") \
        and notes[-1] == lines[-1]
    assert notes[0] == "m.pnet:4:7: note: in the call of mha(...)"   # the user's call first, innermost last
    assert "Traceback" not in r.stderr


def test_item1_call_site_notes_for_user_defs_one_per_call(tmp_path):
    f = _write(tmp_path, "def inner(x: [N, 4]) -> [N, 4] {\n  return x @ x\n}\n"
                         "def outer(x: [N, 4]) -> [N, 4] {\n  return inner(x)\n}\n"
                         "model m() {\n  input x: f32[2, 4]\n  output y = outer(x)\n}\n")
    r = pnet_cli("check", f, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "m.pnet:2:10: error: matmul: contraction dims differ: f32[2, 4] @ f32[2, 4] (4 vs 2)"
    assert [ln for ln in lines if ": note: " in ln] == ["m.pnet:9:14: note: in the call of outer(...)",
                                                         "m.pnet:5:10: note: in the call of inner(...)"]


def test_item1_shape_errors_at_a_call_name_the_argument(tmp_path):
    f = _write(tmp_path, "model m() {\n  input table: f32[10, 4]\n  input ids: f32[3]\n"
                         "  output y = embedding(table, ids)\n}\n")
    r = pnet_cli("check", f, cwd=tmp_path)
    assert r.returncode == 2
    assert first_line(r.stderr) == "m.pnet:4:14: error: embedding: argument 'ids': index must be an integer tensor, got f32[3]"
    g = _write(tmp_path, "def f(x: [N, 8]) -> [N, 8] {\n  return x\n}\nmodel m() {\n  input x: f32[2, 4]\n"
                         "  output y = f(x)\n}\n", "d.pnet")
    r = pnet_cli("check", g, cwd=tmp_path)
    assert first_line(r.stderr) == ("d.pnet:1:10: error: argument 'x' of f() should have shape [2, 8], got f32[2, 4]: "
                                    "dim '8' is 8, not 4")
    assert r.stderr.strip().splitlines()[-1] == "d.pnet:6:14: note: in the call of f(...)"


def test_item1_syntax_errors_speak_the_language_not_grammar_tokens(tmp_path):
    f = _write(tmp_path, "model m() {\n  input x: f32[2]\n  y = x x\n  output y\n}\n")
    r = pnet_cli("check", f, cwd=tmp_path)
    assert r.returncode == 2
    assert first_line(r.stderr) == ("m.pnet:3:9: error: syntax error: unexpected 'x' (expected end of line, ';', "
                                    "an operator like + or *, a comparison like == or <, 'and', 'or', ...)")
    g = _write(tmp_path, "model m() {\n  input x: f32[2]\n  y = x +\n}\n", "g.pnet")
    line = first_line(pnet_cli("check", g, cwd=tmp_path).stderr)
    assert line.startswith("g.pnet:4:1: error: syntax error: unexpected '}' (expected a name, a number, a string")
    for token in ("add_op", "mul_op", "_NL", "NAME", "__ANON", "cmp_op", "lpar"):
        assert token not in line


@pytest.mark.parametrize("source, args, expected", [
    ("model m() {\n  input x: f32[2, 4]\n  output y = sofmax(x)\n}\n", [],
     "m.pnet:3:14: error: unknown name 'sofmax'; did you mean 'softmax'?"),
    ("import nn.core\nmodel m() {\n  input x: f32[2, 4]\n  output y = linaer(x, 3)\n}\n", [],
     "m.pnet:4:14: error: unknown name 'linaer'; did you mean 'linear'?"),
    ("import nn.cor\nmodel m() {\n  input x: f32[2, 4]\n  output y = x\n}\n", [],
     "m.pnet:1:1: error: cannot find module 'nn.cor'; did you mean 'nn.core'? (looked in "),
    ("model m() {\n  input x: f32[2, 4]\n  output y = softmax(x, axs=1)\n}\n", [],
     "m.pnet:3:14: error: op 'softmax' has no attribute 'axs'; did you mean 'axis'? (attributes: axis)"),
    ("model m() {\n  input x: f32[2, 4]\n  output y = x.shap\n}\n", [],
     "m.pnet:3:14: error: a tensor f32[2, 4] has no attribute 'shap'; did you mean 'shape'?"),
    ("import nn.core as core\nmodel m() {\n  input x: f32[2, 4]\n  output y = core.linaer(x, 3)\n}\n", [],
     "m.pnet:4:14: error: module 'core' has no def 'linaer'; did you mean 'linear'?"),
    ("def f(x: [N, 4], width: int = 3) -> [N, 4] {\n  return x\n}\n"
     "model m() {\n  input x: f32[B, 4]\n  output y = f(x, widht=3)\n}\n", [],
     "m.pnet:6:14: error: f() has no parameter 'widht'; did you mean 'width'?"),
    ("model m(hidden: int = 4) {\n  input x: f32[B, 4]\n  output y = x\n}\n", ["--set", "hiden=8"],
     "error: --set hiden=8: model 'm' has no hyperparameter or dim named 'hiden'; did you mean 'hidden'? "
     "(hyperparameters: hidden; dims: B)"),
], ids=["name", "stdlib_def", "import", "op_keyword", "tensor_attribute", "module_attribute", "def_keyword", "set"])
def test_item1_misspellings_get_did_you_mean_on_the_first_line(tmp_path, source, args, expected):
    r = pnet_cli("check", _write(tmp_path, source), *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert first_line(r.stderr).startswith(expected), first_line(r.stderr)


def test_item1_no_suggestion_when_nothing_is_close(tmp_path):
    f = _write(tmp_path, "model m() {\n  input x: f32[2, 4]\n  output y = qqqqzz(x)\n}\n")
    assert first_line(pnet_cli("check", f, cwd=tmp_path).stderr) == "m.pnet:3:14: error: unknown name 'qqqqzz'"



# ---- item 2: ops can be discovered ----
def test_item2_swapped_positional_arguments_warn(tmp_path):
    src = ("model m() {\n  input x: f32[2, 4]\n  input mean: f32[4]\n  input var: f32[4]\n"
           "  output y = batchnorm(x, ARGS)\n}\n")
    (tmp_path / "m.pnet").write_text(src.replace("ARGS", "var, mean"))
    r = pnet_cli("check", "m.pnet", cwd=tmp_path)
    assert r.returncode == 0 and first_line(r.stdout) == "model m: ok"   # a warning: the run goes on
    assert r.stderr.strip().splitlines() == [
        "m.pnet:5:27: warning: argument 'var' is passed as parameter 'mean' of batchnorm; did you mean to swap them? "
        "(pass by name to silence)"]
    for args in ("mean, var", "mean=var, var=mean", "var, var"):   # in order, by name, or one value twice: silent
        (tmp_path / "m.pnet").write_text(src.replace("ARGS", args))
        r = pnet_cli("check", "m.pnet", cwd=tmp_path)
        assert r.returncode == 0 and "warning" not in r.stderr, (args, r.stderr)

def test_item2_ops_lists_every_registered_op_with_signature_and_kind():
    from pnet.ir.registry import all_ops
    r = pnet_cli("ops")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(all_ops())
    assert first_line(r.stdout).split() == ["add", "elementwise", "add(a,", "b)"]
    conv = next(line for line in lines if line.startswith("conv2d "))
    assert conv.split(None, 2)[1:] == ["contraction", "conv2d(x, w, b?, stride=1, padding=0, dilation=1, groups=1)"]


def test_item2_ops_name_prints_the_full_entry_and_its_backends():
    r = pnet_cli("ops", "layernorm")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "layernorm(x, w?, b?, axis=-1, eps=1e-05)"
    assert "  kind        norm" in r.stdout and "  attributes  axis=-1, eps=1e-05" in r.stdout
    assert "  doc         (x - mean) / sqrt(var + eps)" in r.stdout
    assert "    numpy   reference" in r.stdout and "    torch   torch lowering" in r.stdout
    assert "    triton  row kernel" in r.stdout


def test_item2_ops_json_gives_numbers_as_numbers_and_the_lowering_backends():
    r = pnet_cli("ops", "--json")
    assert r.returncode == 0, r.stderr
    ops = {o["name"]: o for o in json.loads(r.stdout)}
    attrs = {a["name"]: a for a in ops["layernorm"]["attributes"]}
    assert attrs["eps"]["default"] == 1e-05 and attrs["axis"]["default"] == -1
    assert {a["name"]: a["required"] for a in ops["reshape"]["attributes"]} == {"shape": True}
    assert ops["conv2d"]["inputs"][2] == {"name": "b", "optional": True, "variadic": False}
    assert ops["softmax"]["lowered_by"] == ["numpy", "torch", "triton"]
    assert ops["max_pool1d"]["lowered_by"] == ["numpy", "torch"]   # a torch fallback under Triton


def test_item2_ops_unknown_name_is_one_line_with_did_you_mean(tmp_path):
    r = pnet_cli("ops", "sofmax")
    assert r.returncode == 2 and r.stdout == ""
    assert first_line(r.stderr) == ("error: pnet ops: no op named 'sofmax'; did you mean 'softmax' or 'log_softmax' "
                                    "or 'max'? (`pnet ops` lists them)")
    assert "Traceback" not in r.stderr


def test_item2_ops_triton_column_agrees_with_the_kernel_plan(tmp_path):
    """What `pnet ops` says of Triton is what the planner does: a fallback op is listed in the plan's fallbacks,
    a kernel op (or one decomposed into kernels) is not."""
    src = tmp_path / "m.pnet"
    src.write_text("model m() {\n  input x: f32[2, 4, 8]\n  output a = max_pool1d(x, 2)\n  output b = softmax(x, -1)\n"
                   "  output c = prod(x, axis=2)\n  output d = avg_pool1d(x, 4)\n  output e = cumsum(x, axis=1)\n}\n")
    plan = json.loads(pnet_cli("show", src, "--kernels", "--json").stdout)
    ops = {o["name"]: o for o in json.loads(pnet_cli("ops", "--json").stdout)}
    for name in ("max_pool1d", "softmax", "prod", "avg_pool1d", "cumsum"):
        assert ("triton" in ops[name]["lowered_by"]) == (name not in plan["totals"]["fallback_ops"]), name


def test_item2_ops_triton_column_agrees_with_the_planner_for_every_generated_op():
    """The same for every op the differential tester generates (f32 programs; an op whose decomposition depends on
    its attributes is left out): what `pnet ops` derives from passes/fuse.py and passes/decompose.py must not
    drift from what the planner does when a kernel family is added or removed."""
    from pnet.cli import ops as ops_cli
    from pnet.ir.registry import all_ops
    from pnet.passes.fuse import plan
    from pnet.testing import fuzz as F
    from pnet.testing.generate import generatable_ops, try_generate_op

    def fallback_ops(p, out):
        for k in p.kernels:
            out |= {n.op for n in k.nodes} if k.kind == "fallback" else set()
            if k.body is not None:
                fallback_ops(k.body, out)
        return out

    checked, wrong = 0, []
    for name in generatable_ops():
        if name in ops_cli._CONDITIONS:
            continue
        found = {}

        def holds_op(prog, name=name):
            try:
                g = F.compile_program(prog)
            except F.PropertyFailed:
                return False
            ok = any(n.op == name for n in g.walk()) and all(v.type.dtype != "f64" for n in g.walk() for v in n.outputs)
            found["graph"] = g
            return ok
        if try_generate_op(name, seeds=range(30), accept=holds_op) is None:
            continue
        checked += 1
        says_kernel = "triton" in ops_cli.backends_json(all_ops()[name])["lowered_by"]
        if says_kernel == (name in fallback_ops(plan(found["graph"]), set())):
            wrong.append(name)
    assert checked >= 90 and wrong == [], f"`pnet ops` misreports Triton for {wrong} (cli/ops.py:triton_lowering)"


def test_item2_stdlib_show_def_gives_file_line_signature_and_doc():
    r = pnet_cli("stdlib", "show", "split_heads")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "def split_heads(x: [B, T, hd], heads: int) -> [B, heads, T, hd // heads]"
    where = r.stdout.splitlines()[1].split()[2]   # "  defined at  FILE:LINE  (import nn.attention)"
    path, line = where.rsplit(":", 1)
    assert path.endswith("stdlib/nn/attention.pnet")
    assert Path(path).read_text().splitlines()[int(line) - 1].startswith("def split_heads(")
    assert "(import nn.attention)" in r.stdout and "    heads: int" in r.stdout
    assert "    Split the feature axis into heads" in r.stdout


def test_item2_stdlib_show_model_gives_hyperparameters_inputs_and_outputs():
    r = pnet_cli("stdlib", "show", "gpt2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "model" and d["module"] == "backbones.gpt2"
    assert {p["name"]: p["value"] for p in d["params"]}["heads"] == 12   # numbers as numbers
    assert d["inputs"] == [{"name": "ids", "type": "i64[B, T]"}]
    assert d["outputs"] == [{"name": "logits", "type": "f32[B, T, 50257]"}]
    assert d["paper"] == "Language Models are Unsupervised Multitask Learners"


def test_item2_stdlib_show_unknown_name_suggests_and_a_module_lists_its_defs():
    r = pnet_cli("stdlib", "show", "linaer")
    assert r.returncode == 2
    assert first_line(r.stderr).startswith("error: pnet stdlib show: no stdlib def, model or module named 'linaer'; "
                                           "did you mean 'linear'")
    r = pnet_cli("stdlib", "show", "nn.core")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout).startswith("module nn.core  (") and "def linear(x: [..., i]" in r.stdout


def test_item2_every_op_has_a_doc_and_the_docs_list_every_op():
    from pnet.ir.op_reference import markdown, signature
    from pnet.ir.registry import all_ops
    assert [n for n, op in all_ops().items() if not op.doc] == [], "give the op a doc= (or a line in its file's _DOCS)"
    section = markdown()
    assert all(f"| `{signature(op)}` |" in section for op in all_ops().values())


def test_item2_docs_op_reference_is_current_and_recommends_the_stdlib_wrappers():
    from pnet.ir import op_reference
    doc = ROOT / "docs" / "language.md"
    text = doc.read_text(encoding="utf-8")
    assert op_reference.spliced(text) == text, (
        f"docs/language.md's op reference is stale: run `{op_reference.REGENERATE}`")
    section = text[text.index(op_reference.BEGIN):text.index(op_reference.END)]
    assert "`nn.norm.batch_norm(x)`" in section and "`batchnorm(x, mean, var, w, b)`" in section
    assert "| `conv2d(x, w, b?, stride=1, padding=0, dilation=1, groups=1)` |" in section



# ---- item 3: non-finite results are reported ----
NONFINITE = "model m() {\n  input x: f32[B, 4]\n  h = x - 1.0\n  l = log(h)\n  output y = l * 2.0\n  output z = relu(x)\n}\n"


def _nonfinite_case(tmp_path):
    import numpy as np
    (tmp_path / "m.pnet").write_text(NONFINITE)
    np.savez(tmp_path / "in.npz", x=np.array([[0.0, 1.0, 2.0, 3.0]], np.float32))   # log(-1) NaN, log(0) -Inf
    return tmp_path / "m.pnet", tmp_path / "in.npz"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_item3_run_warns_once_per_output_holding_nan_or_inf(tmp_path, backend):
    path, inputs = _nonfinite_case(tmp_path)
    r = pnet_cli("run", path, "-b", backend, "-i", inputs, "-o", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "y: float32[1, 4] mean=nan std=nan (NOT FINITE)"   # stdout as before
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert warnings == ["pnet: warning: output 'y' has 1 NaN and 1 Inf values (of 4)"]   # z is finite: no line
    assert "RuntimeWarning" not in r.stderr


def test_item3_debug_nan_names_the_first_op_with_its_location(tmp_path):
    path, inputs = _nonfinite_case(tmp_path)
    r = pnet_cli("run", path, "-i", inputs, "-o", tmp_path / "o.npz", "--debug-nan")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "pnet: warning: output 'y' has 1 NaN and 1 Inf values (of 4)"
    # the log on line 4 made them (h = x - 1 is finite; y = l * 2 only carries them on)
    assert lines[1] == f"pnet: note: {path}:4:7: log produced the first non-finite values (1 NaN, 1 Inf) from finite operands"


def test_item3_debug_nan_says_when_an_input_brought_them_in(tmp_path):
    import numpy as np
    path, _ = _nonfinite_case(tmp_path)
    np.savez(tmp_path / "in.npz", x=np.array([[np.nan, 3.0, 4.0, 5.0]], np.float32))
    r = pnet_cli("run", path, "-i", tmp_path / "in.npz", "-o", tmp_path / "o.npz", "--debug-nan")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[:2] == ["pnet: warning: output 'y' has 1 NaN values (of 4)", "pnet: warning: output 'z' has 1 NaN values (of 4)"]
    assert lines[2] == "pnet: note: input 'x' already holds 1 NaN and 0 Inf values"


def test_item3_numpy_runtime_warnings_never_reach_the_user(tmp_path):
    """Overflow / invalid-value warnings turned into errors (PYTHONWARNINGS=error) would exit 3 if any escaped."""
    (tmp_path / "m.pnet").write_text("import nn.core\nmodel m() {\n  input x: f32[B, 8]\n  h = linear(x, 8)\n"
                                     "  output y = log(h) / (h - h)\n  output z = exp(h * 1000.0)\n}\n")
    env = {"PYTHONWARNINGS": "error::RuntimeWarning"}
    for args in (["run", "-b", "numpy", "--debug-nan"], ["run", "-b", "torch"], ["quantize", "--scheme", "w8a8"]):
        r = pnet_cli(args[0], tmp_path / "m.pnet", *args[1:], "-o", tmp_path / "o.npz", env=env) if args[0] == "run" \
            else pnet_cli(args[0], tmp_path / "m.pnet", *args[1:], env=env)
        assert r.returncode == 0, (args, r.stderr)
        assert "RuntimeWarning" not in r.stderr and "encountered" not in r.stderr, (args, r.stderr)


# ---- item 4: every backend gives the same answer to bad indices ----
BAD_INDEX_PROGRAMS = {
    "embedding": ("model m() {\n  input ids: i64[3]\n  param t: f32[5, 3] = normal()\n  output y = embedding(t, ids)\n}\n",
                  "4:14", "embedding: index 9 out of range [0, 5)"),
    "take": ("model m() {\n  input ids: i64[3]\n  input x: f32[2, 5, 3]\n  output y = take(x, ids, axis=1)\n}\n",
             "4:14", "take: index 9 out of range [0, 5)"),
    "gather": ("model m() {\n  input ids: i64[2, 3]\n  input x: f32[2, 5]\n  output y = gather(x, ids, axis=1)\n}\n",
               "4:14", "gather: index 9 out of range [0, 5)"),
}


@pytest.mark.parametrize("op", sorted(BAD_INDEX_PROGRAMS))
def test_item4_bad_indices_same_located_error_on_every_backend(op, tmp_path):
    """An out-of-range id is the same one-line error, with the op's source location, on numpy, torch and triton
    (Triton kernels bound-check their index loads and report through a device flag)."""
    import numpy as np
    src, where, message = BAD_INDEX_PROGRAMS[op]
    path = tmp_path / f"{op}.pnet"
    path.write_text(src)
    rng = np.random.default_rng(0)
    ids = np.array([[0, 9, 1], [2, 1, 0]]) if op == "gather" else np.array([0, 9, 1])
    inputs = {"ids": ids} | ({"x": rng.standard_normal((2, 5, 3) if op == "take" else (2, 5)).astype(np.float32)}
                             if op != "embedding" else {})
    np.savez(tmp_path / "in.npz", **inputs)
    lines = set()
    for backend in ("numpy", "torch", "triton"):
        r = pnet_cli("run", path, "-b", backend, "-i", tmp_path / "in.npz", "-o", tmp_path / f"{backend}.npz")
        assert r.returncode == 2, (backend, r.stderr)
        assert not (tmp_path / f"{backend}.npz").exists()
        lines.add(first_line(r.stderr))
    assert lines == {f"{path}:{where}: error: {message}"}



# ---- item 5: output paths are checked before work starts ----
BROKEN_MODEL = "model m() {\n  input x: f32[B, 4]\n  output y = undefined_op(x)\n}\n"   # fails as soon as it loads


@pytest.mark.parametrize("args, why", [
    (["-o", "{tmp}/missing/o.npz"], "-o {tmp}/missing/o.npz: directory does not exist ({tmp}/missing)"),
    (["-o", "{tmp}"], "-o {tmp}: is a directory"),
    (["-o", "{tmp}/o.txt"], "-o {tmp}/o.txt: unknown output-file extension ('.txt'); use .npz"),
    (["--save-params", "{tmp}/missing/w.npz"], "--save-params {tmp}/missing/w.npz: directory does not exist ({tmp}/missing)"),
    (["--save-params", "{tmp}/w.pt"], "--save-params {tmp}/w.pt: unknown weight-file extension ('.pt'); use .safetensors or .npz"),
    (["--params", "{tmp}/w.bin"], "--params {tmp}/w.bin: unknown weight-file extension ('.bin'); use .safetensors or .npz"),
])
def test_item5_run_output_paths_are_usage_errors_before_the_model_loads(tmp_path, args, why):
    """The model does not even load (it has an error of its own): the path is checked first, exit 2."""
    (tmp_path / "m.pnet").write_text(BROKEN_MODEL)
    args = [a.format(tmp=tmp_path) for a in args]
    r = pnet_cli("run", tmp_path / "m.pnet", *args, *(["-o", tmp_path / "o.npz"] if "-o" not in args else []))
    assert r.returncode == 2
    assert first_line(r.stderr) == "error: " + why.format(tmp=tmp_path)


def test_item5_compile_output_paths_are_usage_errors_before_the_model_loads(tmp_path):
    (tmp_path / "m.pnet").write_text(BROKEN_MODEL)
    r = pnet_cli("compile", tmp_path / "m.pnet", "-o", tmp_path / "m.pnet")     # a file where the directory goes
    assert (r.returncode, first_line(r.stderr)) == (2, f"error: -o {tmp_path / 'm.pnet'}: is a file, not a directory")
    r = pnet_cli("compile", tmp_path / "m.pnet", "-b", "torch", "-o", tmp_path / "no" / "m.py")
    assert (r.returncode, first_line(r.stderr)) == (2, f"error: -o {tmp_path / 'no' / 'm.py'}: directory does not exist "
                                                       f"({tmp_path / 'no'})")
    r = pnet_cli("quantize", tmp_path / "m.pnet", "--scheme", "w8", "-o", tmp_path / "q.pt")
    assert (r.returncode, first_line(r.stderr)) == (2, f"error: -o {tmp_path / 'q.pt'}: unknown weight-file extension "
                                                       "('.pt'); use .safetensors or .npz")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_item5_unwritable_directory_is_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = pnet_cli("run", ROOT / "examples" / "mlp.pnet", "-o", locked / "o.npz")
        assert (r.returncode, first_line(r.stderr)) == (2, f"error: -o {locked / 'o.npz'}: permission denied "
                                                           f"(cannot write in {locked})")
    finally:
        locked.chmod(0o700)


def test_item5_save_params_never_adds_a_silent_suffix(tmp_path):
    """The API as well: pnet.weights.save_params refuses a name it would have turned into NAME.npz."""
    import numpy as np

    from pnet.errors import UsageError
    from pnet.weights import save_params
    with pytest.raises(UsageError, match=r"unknown weight-file extension \('\.pt'\); use \.safetensors or \.npz"):
        save_params(tmp_path / "w.pt", {"w": np.zeros(2, np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_item5_internal_error_is_exit_3_documented_and_a_fuzzer_failure(tmp_path):
    """Exit 3 is pnet's own bug (one line, never a traceback); README lists it next to 0/1/2, and the fuzzer counts
    any exception other than a located PnetError as a failed property (the in-process form of exit 3)."""
    code = ("import sys, pnet.cli as c, pnet.cli.check as k\n"
            "def boom(args): raise KeyError('oops')\n"
            "k.run = boom\n"
            "sys.exit(c.main(['check', sys.argv[1]]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "mlp.pnet")], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "PNET_TRACEBACK"})
    assert r.returncode == 3, r.stderr
    assert first_line(r.stderr).startswith("pnet: internal error: KeyError: 'oops' (please report")
    assert "Traceback" not in r.stderr
    readme = (ROOT / "README.md").read_text()
    assert "3 internal error" in readme
    from pnet.testing.fuzz import PropertyFailed, Reference, run_then_compare
    ref = Reference({}, {}, {}, {})

    def crash():
        raise KeyError("oops")
    with pytest.raises(PropertyFailed, match="KeyError"):
        run_then_compare("torch", ref, "torch f32", crash)


# ---- item 6: long work shows progress ----
TWO_KERNELS = "model m() {\n  input x: f32[B, 8]\n  output y = softmax(relu(x) * 2.0, -1)\n  output s = sum(x)\n}\n"


def test_item6_triton_run_with_v_prints_each_kernel_as_it_starts(tmp_path):
    (tmp_path / "m.pnet").write_text(TWO_KERNELS)
    r = pnet_cli("run", tmp_path / "m.pnet", "-b", "triton", "-v", "-o", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout).startswith("y: float32[2, 8] mean=")   # results stay on stdout, unchanged
    steps = [ln for ln in r.stderr.splitlines() if ln.startswith("[")]
    assert len(steps) >= 2 and steps[0].startswith(f"[1/{len(steps)}] kernel k0_") and steps[0].endswith(" ...")
    assert steps[-1].startswith(f"[{len(steps)}/{len(steps)}] kernel ")
    assert any("softmax" in ln for ln in steps), steps
    assert "may take minutes" not in r.stderr                      # a tiny model: no cost notice
    quiet = pnet_cli("run", tmp_path / "m.pnet", "-b", "triton", "-o", tmp_path / "o.npz")   # no -v, no terminal
    assert not [ln for ln in quiet.stderr.splitlines() if ln.startswith("[")]


def test_item6_costly_interpreter_run_gets_a_notice_first(tmp_path):
    """101 MFLOP under the interpreter: the cost is said before the run (the test machine has no GPU, or the
    run is on a GPU and there is nothing to say)."""
    import torch
    (tmp_path / "m.pnet").write_text("model m() {\n  input a: f32[256, 256]\n  output y = a @ a @ a @ a\n}\n")
    r = pnet_cli("run", tmp_path / "m.pnet", "-b", "triton", "-o", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    note = ("pnet: note: the Triton interpreter runs on the CPU; this model's 101 MFLOP may take minutes "
            "(use -b torch or a GPU)")
    assert (note in r.stderr.splitlines()) == (not torch.cuda.is_available())


def test_item6_check_with_v_prints_its_steps(tmp_path):
    r = pnet_cli("check", ROOT / "examples" / "gpt.pnet", "-v")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "model gpt: ok"
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"[1/2] elaborate {ROOT / 'examples' / 'gpt.pnet'} ..."
    assert lines[1].startswith("[2/2] passes (cleanup) over ") and lines[1].endswith(" ops ...")


def test_item6_on_a_terminal_one_counter_line_is_updated_in_place():
    """Without -v the steps overwrite one line (\\r) when stderr is a terminal, which is wiped at the end."""
    import io

    from pnet.backends import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        with progress.Progress(0, stream=stream):
            for i in (1, 2, 3):
                progress.kernel_step(i, 3, f"k{i}", "matmul+relu")
    assert pipe.getvalue() == ""                                     # not a terminal: silent
    text = tty.getvalue()
    assert "\n" not in text and text.count("\r") == 5                # 3 steps, then the wipe: \r, spaces, \r
    assert "\r[2/3] kernel k2 (matmul+relu) ..." in text and text.endswith("\r")


def test_item6_compile_target_with_v_reports_each_kernel_built(tmp_path):
    pytest.importorskip("triton")
    (tmp_path / "m.pnet").write_text("model m() {\n  input x: f32[B, 8]\n  output y = relu(x) * 2.0\n}\n")
    r = pnet_cli("compile", tmp_path / "m.pnet", "-o", tmp_path / "out", "--target", "sm_90", "-v")
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == f"wrote {tmp_path / 'out' / 'model.py'} (1 kernels) and {tmp_path / 'out' / 'plan.txt'}"
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("[")] == ["[1/1] compiled k0_relu_mul (BLOCK=16)"]


# ---- item 7: stdlib by name ----
GPT2_T = ["--test-config"]   # vocab=64, ctx=16, d=16, heads=2, layers=2, ffn=64, T=8: a second or so


def test_item7_check_stdlib_name_resolves_to_the_stdlib_file(tmp_path):
    r = pnet_cli("check", "stdlib:gpt2", *GPT2_T, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "model gpt2: ok"


def test_item7_bare_name_works_when_no_file_of_that_name_exists(tmp_path):
    r = pnet_cli("check", "gpt2", *GPT2_T, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "model gpt2: ok"
    (tmp_path / "gpt2").write_text("model mine() {\n  input x: f32[B, 2]\n  output y = x * 2\n}\n")
    r = pnet_cli("check", "gpt2", cwd=tmp_path)   # a file of that name wins
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "model mine: ok"


def test_item7_show_run_and_compile_take_stdlib_names(tmp_path):
    r = pnet_cli("show", "stdlib:gpt2", *GPT2_T, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "graph gpt2(%ids: i64[B, T]) {"
    r = pnet_cli("run", "stdlib:gpt2", *GPT2_T, "-o", "out.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout).startswith("logits: float32[2, 8, 64] mean=")
    r = pnet_cli("compile", "gpt2", *GPT2_T, "-b", "torch", "-o", "m.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stdout) == "wrote m.py" and (tmp_path / "m.py").is_file()


def test_item7_unknown_stdlib_name_is_one_line_with_did_you_mean(tmp_path):
    r = pnet_cli("check", "stdlib:gtp2", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: stdlib:gtp2: no stdlib model named 'gtp2'; did you mean 'gpt2'? (see `pnet stdlib list`)"
    r = pnet_cli("run", "gtp2", cwd=tmp_path)   # a bare name: neither a file here nor a stdlib model
    assert r.returncode == 2
    assert first_line(r.stderr) == ("error: gtp2: no such file, and no stdlib model named 'gtp2'; "
                                    "did you mean 'gpt2'? (see `pnet stdlib list`)")


def test_item7_test_config_applies_the_models_test_line_and_set_overrides_it(tmp_path):
    from pnet.dsl.stdlib import find, small_config
    config = small_config(find("gpt2").path)
    r = pnet_cli("check", "stdlib:gpt2", "--test-config", "--set", "layers=1", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    want = {k: int(v) for k, v in config.items() if k != "T"}
    assert info["hyperparameters"] == {**want, "layers": 1}
    assert info["dims"]["T"] == int(config["T"])


def test_item7_test_config_on_a_file_without_a_test_line_is_an_error(tmp_path):
    (tmp_path / "m.pnet").write_text("model m() {\n  input x: f32[B, 2]\n  output y = x * 2\n}\n")
    r = pnet_cli("check", "m.pnet", "--test-config", cwd=tmp_path)
    assert r.returncode == 2
    assert first_line(r.stderr) == "error: --test-config: m.pnet has no '# test: --set KEY=VALUE ...' line in its header"


def test_item7_stdlib_coverage_works_in_any_clone_from_the_projects_index(tmp_path):
    from pnet.dsl import stdlib
    rows = stdlib.coverage()   # the index inside the project (stdlib/catalogue.tsv), no catalogue folder
    r = pnet_cli("stdlib", "coverage", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = rows[0]
    assert first_line(r.stdout) == (f"{first['catalogue']}: {first['modelled_yes']}/{first['stdlib_yes']} stdlib-yes "
                                    f"papers modelled by {first['files']} files ({first['modelled_total']} papers "
                                    f"modelled, {first['papers']} in the catalogue)")
    total = sum(x["modelled_yes"] for x in rows), sum(x["stdlib_yes"] for x in rows)
    assert r.stdout.strip().splitlines()[-1] == f"total: {total[0]}/{total[1]} papers, {len(stdlib.entries())} stdlib files"
    assert total[0] > 0


# ---- item 8: CLI conventions ----
UNFORMATTED = "model m( ) { input x: f32[B,4]; output y = x*2 }\n"
FORMATTED = "model m() {\n  input x: f32[B, 4]\n  output y = x * 2\n}\n"


def test_item8_version_prints_the_package_version():
    import re
    want = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    r = pnet_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"pnet {want}"


def test_item8_fmt_check_takes_files_and_directories_and_lists_what_it_would_change(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.pnet").write_text(UNFORMATTED)
    (tmp_path / "d" / "sub" / "b.pnet").write_text(UNFORMATTED)
    (tmp_path / "ok.pnet").write_text(FORMATTED)
    r = pnet_cli("fmt", "--check", "d", "ok.pnet", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines == [f"{Path('d/a.pnet')}: would reformat", f"{Path('d/sub/b.pnet')}: would reformat",
                     "2 files would be reformatted, 1 already formatted"]
    assert pnet_cli("fmt", "-w", "d", cwd=tmp_path).returncode == 0
    assert (tmp_path / "d" / "sub" / "b.pnet").read_text() == FORMATTED
    assert pnet_cli("fmt", "--check", "d", "ok.pnet", cwd=tmp_path).returncode == 0


def test_item8_fmt_diff_prints_a_unified_diff_and_exits_1(tmp_path):
    (tmp_path / "a.pnet").write_text(UNFORMATTED)
    r = pnet_cli("fmt", "--diff", "a.pnet", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout.splitlines()[:2] == ["--- a.pnet", "+++ a.pnet (formatted)"]
    assert "-model m( ) { input x: f32[B,4]; output y = x*2 }" in r.stdout.splitlines()
    assert "+  output y = x * 2" in r.stdout.splitlines()
    assert first_line(r.stderr) == "a.pnet: would reformat"
    assert (tmp_path / "a.pnet").read_text() == UNFORMATTED   # --diff never writes


def test_item8_fmt_one_file_prints_it_and_several_need_a_mode(tmp_path):
    (tmp_path / "a.pnet").write_text(UNFORMATTED)
    (tmp_path / "b.pnet").write_text(UNFORMATTED)
    r = pnet_cli("fmt", "a.pnet", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == FORMATTED
    r = pnet_cli("fmt", "a.pnet", "b.pnet", cwd=tmp_path)
    assert r.returncode == 2
    assert first_line(r.stderr) == "error: pnet fmt: several files: give --check, --diff or -w (one file alone is printed)"


def test_item8_backend_option_lists_its_choices_in_help():
    r = pnet_cli("run", "--help")
    assert r.returncode == 0 and "-b {numpy,torch,triton}, --backend {numpy,torch,triton}" in r.stdout
    r = pnet_cli("compile", "--help")
    assert r.returncode == 0 and "-b {triton,torch}, --backend {triton,torch}" in r.stdout
    r = pnet_cli("run", "m.pnet", "-b", "tpu")
    assert r.returncode == 2
    assert first_line(r.stderr) == ("error: pnet run: argument -b/--backend: invalid choice: 'tpu' "
                                    "(choose from 'numpy', 'torch', 'triton')")


def test_item8_every_option_of_every_subcommand_has_help_text():
    import argparse
    from pnet.cli import build_parser
    missing = []

    def walk(parser, prog):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{prog} {name} (the subcommand)")
                    walk(sub, f"{prog} {name}")
            elif not (action.help or "").strip():
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    walk(build_parser(), "pnet")
    assert missing == []


def test_item8_json_gives_numbers_as_numbers(tmp_path):
    (tmp_path / "m.pnet").write_text("model m() {\n  input x: f32[B, 3]\n  param w: [3, 5] = normal(0, 1)\n"
                                     "  output y = x @ w\n}\n")
    r = pnet_cli("check", "m.pnet", "--set", "B=4", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["inputs"][0]["shape"] == ["B", 3] and info["outputs"][0]["shape"] == ["B", 5]   # symbols stay text
    assert (info["params"], info["param_bytes"], info["flops"], info["dims"]) == (15, 60, 2 * 4 * 3 * 5, {"B": 4})
    r = pnet_cli("show", "m.pnet", "--params", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)[0]["shape"] == [3, 5]


TWO_INPUTS = "model m() {\n  input x: f32[B, 4]\n  input ids: i32[B]\n  output y = x * 2\n  output z = ids + 1\n}\n"


def test_item8_inputs_of_an_exactly_castable_dtype_are_cast_with_a_notice(tmp_path):
    import numpy as np
    (tmp_path / "m.pnet").write_text(TWO_INPUTS)
    np.savez(tmp_path / "in.npz", x=np.full((3, 4), 0.5), ids=np.arange(3))   # float64 and int64, exact in f32/i32
    r = pnet_cli("run", "m.pnet", "-i", "in.npz", "-o", "o.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[:2] == [
        "pnet: note: in.npz: input 'x' is float64, cast to f32 (every value is exact)",
        "pnet: note: in.npz: input 'ids' is int64, cast to i32 (every value is exact)"]
    out = np.load(tmp_path / "o.npz")
    assert out["y"].dtype == np.float32 and np.all(out["y"] == 1.0) and list(out["z"]) == [1, 2, 3]


def test_item8_inputs_a_cast_would_change_are_refused_with_the_cast_flag_to_add(tmp_path):
    import numpy as np
    (tmp_path / "m.pnet").write_text(TWO_INPUTS)
    np.savez(tmp_path / "in.npz", x=np.full((3, 4), 0.1), ids=np.arange(3, dtype=np.int32))
    r = pnet_cli("run", "m.pnet", "-i", "in.npz", "-o", "o.npz", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: in.npz: input 'x' is float64 and the model wants f32: casting changes its values "
                                "(0.1 becomes 0.10000000149011612); add --cast to cast it anyway")
    np.savez(tmp_path / "f.npz", x=np.ones((3, 4), np.float32), ids=np.arange(3.0))
    r = pnet_cli("run", "m.pnet", "-i", "f.npz", "-o", "o.npz", cwd=tmp_path)
    assert r.returncode == 2
    assert first_line(r.stderr) == ("error: f.npz: input 'ids' is float64 and the model wants i32: float64 to i32 is not "
                                    "a cast of the same kind; add --cast to cast it anyway")
    r = pnet_cli("run", "m.pnet", "-i", "in.npz", "-o", "o.npz", "--cast", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert first_line(r.stderr) == "pnet: note: in.npz: input 'x' is float64, cast to f32 (--cast: values may change)"


def test_item8_set_that_conflicts_with_an_input_file_is_an_error(tmp_path):
    import numpy as np
    (tmp_path / "m.pnet").write_text(TWO_INPUTS)
    np.savez(tmp_path / "in.npz", x=np.ones((3, 4), np.float32), ids=np.arange(3, dtype=np.int32))
    r = pnet_cli("run", "m.pnet", "-i", "in.npz", "--set", "B=8", "-o", "o.npz", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --set B=8: input 'x' in in.npz has shape [3, 4] (f32[B, 4]), where B is 3"
    assert pnet_cli("run", "m.pnet", "-i", "in.npz", "--set", "B=3", "-o", "o.npz", cwd=tmp_path).returncode == 0


def test_item8_check_set_fails_where_run_would(tmp_path):
    # gpt2's position table has ctx=16 rows and is indexed by arange(T): T=17 cannot run
    run = pnet_cli("run", "stdlib:gpt2", "--test-config", "--set", "T=17", "-o", "o.npz", cwd=tmp_path)
    check = pnet_cli("check", "stdlib:gpt2", "--test-config", "--set", "T=17", cwd=tmp_path)
    assert run.returncode == check.returncode == 2
    assert first_line(run.stderr).endswith("error: embedding: index 16 out of range [0, 16)")
    assert first_line(check.stderr) == first_line(run.stderr) + " (at B=2, T=17)"
    assert pnet_cli("check", "stdlib:gpt2", "--test-config", "--set", "T=16", cwd=tmp_path).returncode == 0
    # a slice that needs T >= 8
    (tmp_path / "s.pnet").write_text("model s() {\n  input x: f32[B, T]\n  output y = x[:, 0:8]\n}\n")
    r = pnet_cli("check", "s.pnet", "--set", "T=4", cwd=tmp_path)
    assert r.returncode == 2
    assert first_line(r.stderr) == "s.pnet:3:14: error: slice 0:8 out of range for axis 1 of size 4 (at B=2, T=4)"
    assert pnet_cli("check", "s.pnet", cwd=tmp_path).returncode == 0   # no dims bound: the check stays symbolic


# ---- item 9: the generated Triton module runs as it is ----
def test_item9_generated_module_runs_on_its_own_and_matches_the_reference(tmp_path):
    """`pnet compile -b triton -o DIR`, then DIR/model.py imported by plain Python with no TRITON_INTERPRET set:
    the module picks the interpreter itself when there is no GPU (with pnet run's notice), its docstring's example
    runs as written, and its outputs equal the reference's."""
    import numpy as np
    import torch
    pytest.importorskip("triton")
    (tmp_path / "m.pnet").write_text("import nn.core\nmodel m() {\n  input x: f32[B, 6]\n"
                                     "  output y = softmax(linear(x, 5), -1)\n}\n")
    out = tmp_path / "out"
    r = pnet_cli("compile", tmp_path / "m.pnet", "-o", out)
    assert r.returncode == 0, r.stderr
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32))
    r = pnet_cli("run", tmp_path / "m.pnet", "-i", tmp_path / "in.npz", "--save-params", out / "p.npz",
                 "-o", tmp_path / "ref.npz")
    assert r.returncode == 0, r.stderr
    doc = (out / "model.py").read_text().split('"""')[1]
    example = [ln[4:] for ln in doc.splitlines() if ln.startswith("    ")]
    assert len(example) == 3 and example[2].startswith('outs = model.forward({"x": torch.randn((2, 6))}, params)')
    if torch.cuda.is_available():   # as the docstring says: on a GPU, tensors on 'cuda'
        example = [ln.replace("torch.as_tensor(v)", "torch.as_tensor(v).cuda()").replace("(2, 6))", "(2, 6)).cuda()")
                   for ln in example]
    script = "\n".join(example + [
        "assert outs['y'].shape == (2, 5)",
        "x = torch.as_tensor(np.load(sys.argv[1])['x']).to(outs['y'].device)",
        "np.save(sys.argv[2], model.forward({'x': x}, params)['y'].cpu().numpy())"])
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", "import sys\n" + script, tmp_path / "in.npz", tmp_path / "y.npy"],
                       cwd=out, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    notice = "pnet: no GPU found; running Triton kernels under the interpreter (TRITON_INTERPRET=1)"
    assert (first_line(r.stderr) == notice) == (not torch.cuda.is_available()), r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.load(tmp_path / "ref.npz")["y"], rtol=1e-5, atol=1e-6)


def test_item9_an_explicit_triton_interpret_is_kept(tmp_path):
    """TRITON_INTERPRET already set (to anything) is the caller's choice: no notice, not overwritten."""
    code = ("import os; from pnet.backends.triton import device; print(device.standalone_mode(), "
            "os.environ['TRITON_INTERPRET'])")
    for value, mode in (("1", "interpreter"), ("0", "gpu")):   # 0: aot.py's GPU-compile workers, even with no GPU
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "TRITON_INTERPRET": value})
        assert (r.returncode, r.stdout.strip(), r.stderr) == (0, f"{mode} {value}", "")


# ---- item 10: the test suite stays fast as the stdlib doubles ----
WALL_CLOCK_FLOOR_S = 300   # a subprocess or rank deadline below this can break on a loaded 2-core machine


def test_item10_no_test_has_a_wall_clock_limit_a_loaded_machine_can_break():
    """Deadlines in tests guard against hangs only: each is at least WALL_CLOCK_FLOOR_S seconds of wall clock
    (the front-end fuzz limits CPU time, which load does not stretch), so a busy CI box cannot fail them."""
    import re
    tight = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in re.finditer(r"(?:timeout|deadline_s)\s*(?::\s*float)?\s*=\s*([0-9.]+)", line):
                if float(m.group(1)) < WALL_CLOCK_FLOOR_S and "join(timeout" not in line:
                    tight.append(f"{path.name}:{n}: {line.strip()}")
    assert not tight, "wall-clock limits a loaded machine can break:\n" + "\n".join(tight)


def test_item10_readme_states_the_test_command_and_its_expected_time():
    """The README's second command is what CI runs; the README says how long it takes on a 2-core machine."""
    import re
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m pytest -n 2 tests" in readme.splitlines()[4]
    m = re.search(r"about (\d+) minutes on a 2-core machine", readme)
    assert m and int(m.group(1)) < 15

