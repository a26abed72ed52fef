"""Process replay for the Triton backend (as tinygrad's): record the generated kernel source of every example
and backbone, and compare a later tree's sources with the record byte for byte. A refactor that must not change
behaviour runs `--save` before and `--compare` after.

    python -m pnet.testing.kernel_replay --save /tmp/kernels.json
    python -m pnet.testing.kernel_replay --compare /tmp/kernels.json     # exit 1 and a diff on any change
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def replay_files() -> list[Path]:
    """The examples and the backbones: the models whose kernels must stay byte-identical."""
    return sorted((ROOT / "examples").glob("*.pnet")) + sorted((ROOT / "stdlib" / "backbones").glob("*.pnet"))


def test_config(path: Path) -> dict:
    """A file's `# test: --set k=v ...` header line (its small configuration), as overrides."""
    for line in path.read_text(encoding="utf-8").splitlines()[:30]:
        m = re.match(r"^#\s*test:\s*(.*)$", line)
        if m:
            return dict(part.split("=", 1) for part in m.group(1).replace("--set", " ").split())
    return {}


def kernel_sources() -> dict[str, str]:
    """Model file (relative to the package root) -> generated Triton module source (fused plan)."""
    from ..backends import triton as triton_backend
    from ..dsl.compile import load_file
    from ..passes.manager import run_passes
    out = {}
    for path in replay_files():
        graph = run_passes(load_file(path, overrides=test_config(path)).graph, "cleanup")
        out[str(path.relative_to(ROOT))] = triton_backend.compile(graph).source
    return out


def compare(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """One line per model whose source changed (plus the first lines of its diff), or that appeared/vanished."""
    problems = []
    for name in sorted(set(saved) | set(now)):
        if name not in now or name not in saved:
            problems.append(f"{name}: {'missing now' if name not in now else 'new'}")
        elif saved[name] != now[name]:
            diff = difflib.unified_diff(saved[name].splitlines(), now[name].splitlines(), "before", "after",
                                        lineterm="", n=1)
            problems.append(f"{name}: generated source differs\n" + "\n".join(list(diff)[:40]))
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pnet.testing.kernel_replay", description=__doc__.split("\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="FILE", help="record the current sources")
    group.add_argument("--compare", metavar="FILE", help="compare the current sources with a record")
    args = ap.parse_args(argv)
    now = kernel_sources()
    if args.save:
        Path(args.save).write_text(json.dumps(now, indent=0, sort_keys=True), encoding="utf-8")
        print(f"saved the kernel sources of {len(now)} models ({sum(map(len, now.values())):,} characters)")
        return 0
    problems = compare(json.loads(Path(args.compare).read_text(encoding="utf-8")), now)
    for p in problems:
        print(p)
    print(f"{len(now)} models, {len(problems)} changed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
