"""docs/stdlib.md is generated (`pnet stdlib doc --write docs/stdlib.md`). Here the cheap half of "current":
every backbone and paper model has exactly one row naming its paper and seed references, and a sample of rows
(the small models) equals what the generator makes now; CI (.ci/run) regenerates the whole page and diffs it."""
from __future__ import annotations

import re

from pnet.cli import stdlib_doc
from pnet.dsl import stdlib

from conftest import ROOT

DOC = ROOT / "docs" / "stdlib.md"


def _rows() -> dict[str, str]:
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| \[(\w+)\]\(", line)
        if m:
            assert m.group(1) not in out, f"{m.group(1)}: two rows"
            out[m.group(1)] = line
    return out


def test_every_model_has_one_row_with_its_paper_and_seeds():
    rows = _rows()
    models = [e for e in stdlib.entries() if e.kind in ("backbones", "papers")]
    assert sorted(rows) == sorted(e.name for e in models), "run `pnet stdlib doc --write docs/stdlib.md`"
    for e in models:
        cells = [c.strip() for c in rows[e.name].split(" | ")]
        assert cells[1] == (e.paper.replace("|", "\\|") or stdlib_doc.UNKNOWN)
        assert cells[2] == (e.seed.replace(",", ", ") or stdlib_doc.UNKNOWN)


def test_sampled_rows_are_current():
    rows = _rows()
    for name in ("mlp_mixer_tiny", "gcn_cora", "random_features", "nalu"):
        e = stdlib.find_or_none(name)
        if e is None or e.kind not in ("backbones", "papers"):
            continue
        _, row = stdlib_doc._row(e)
        assert rows[e.name] == row, f"{name}: docs/stdlib.md is stale: run `pnet stdlib doc --write docs/stdlib.md`"


def test_families_are_read_from_imports_and_ops():
    assert stdlib_doc.family({"nn.core", "nn.attention"}, {"matmul"}) == "Transformers"
    assert stdlib_doc.family({"nn.core"}, {"scan", "matmul"}) == "Recurrent networks"
    assert stdlib_doc.family({"nn.core"}, {"matmul"}) == "Multilayer perceptrons and others"
