"""The house rules of docs/architecture.md, read from the source: layers import downward only, no import
circles between files, and no room (Python file outside tests) longer than a person reads in one sitting.

Every import counts, at module level or inside a function: an import moved into a function to dodge a circle
is still a circle."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

# The floors, bottom up: a module may import its own floor and the floors below it, never one above.
LAYERS = {
    "errors": 0,
    "ir": 1,
    "passes": 2,
    "dsl": 3,
    "backends": 4, "weights": 4,            # weights.py reads and writes what backends run (same floor)
    "testing": 5, "api": 5,
    "cli": 6, "benchmarks": 6,
    "__init__": 7, "__main__": 7,           # the package itself: pnet.load, python -m pnet
}
# The documented exceptions (docs/architecture.md): (importer, imported).
EXCEPTIONS = {
    # quantization calibration runs the graph; a caller may pass its own runner (run_graph), and
    # calibration.graph_runner() is the one place that falls back to the reference interpreter
    ("pnet.passes.quantize.calibration", "pnet.backends.numpy_ref"),
}
MAX_LINES = 800
SKIP_DIRS = {"tests", "stdlib", "examples", "docs"}


def source_files() -> dict[str, Path]:
    """Module name ('pnet.ir.graph') -> file, for every Python file of the package outside tests."""
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP_DIRS or rel.parts[0].startswith("."):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["pnet"] + parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict) -> set[str]:
    """The project modules `name` imports (a `from pkg import sub` of a submodule counts as the submodule)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & set(modules)
            found |= subs
            if len(subs) < len(node.names) and target in modules:
                found.add(target)               # names defined in the module (or package __init__) itself
    found.discard(name)
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1] if len(parts) > 1 else "__init__")


def import_graph() -> dict[str, set[str]]:
    modules = source_files()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_every_module_has_a_floor():
    missing = sorted(m for m in source_files() if layer(m) is None)
    assert not missing, f"modules in no floor of LAYERS (add the folder to docs/architecture.md and LAYERS): {missing}"


def test_no_import_circles():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_layers_import_downward_only():
    upward = [f"{m} -> {t}" for m, targets in import_graph().items() for t in sorted(targets)
              if (m, t) not in EXCEPTIONS and layer(t) is not None and layer(m) is not None and layer(t) > layer(m)]
    assert not upward, "imports from a lower floor to a higher one: " + ", ".join(sorted(upward))


def test_no_room_longer_than_a_sitting():
    long = {str(p.relative_to(ROOT)): n for p in source_files().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by what they are about): {long}"


def test_pyproject_lists_every_package():
    """setuptools maps `pnet` to the root and lists packages by name: a new package folder missing from
    pyproject.toml would be missing from a (non-editable) install."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in source_files().items() if p.name == "__init__.py"}
    packages -= {m for m in packages if m.split(".")[1:2] == ["benchmarks"]}
    assert packages <= listed, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(packages - listed)}"


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path):
    """The rules can fail: a made-up circle and a made-up upward import are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("pnet.ir.graph") < layer("pnet.backends.numpy_ref")
    modules = {"pnet.ir.x": tmp_path / "x.py", "pnet.backends.y": tmp_path / "y.py"}
    modules["pnet.ir.x"].write_text("def f():\n    from ..backends import y\n")
    assert imports_of("pnet.ir.x", modules["pnet.ir.x"], modules) == {"pnet.backends.y"}
