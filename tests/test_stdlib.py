"""The standard library sweep: every stdlib file is found by itself, carries its paper header, and
on its small test configuration parses, shape-checks and runs in the reference with finite outputs.
(The torch and Triton sweeps compare the same models against the reference.)"""
from __future__ import annotations

import re

import numpy as np
import pytest

from pnet.backends import numpy_ref
from pnet.dsl import stdlib
from pnet.dsl.compile import load_file

from conftest import ROOT, model_files, small_config

PAPERS = sorted((ROOT / "stdlib" / "papers").glob("*.pnet"))
SHARED = ROOT.parent / "shared"


@pytest.mark.parametrize("path", model_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_model_runs_finite_at_test_config(path):
    graph = load_file(path, overrides=small_config(path)).graph
    out = numpy_ref.run(graph, seed=0)
    for name, v in out.items():
        if v.dtype.kind == "f":
            assert np.all(np.isfinite(v)), f"{path.name}: output {name} is not finite"


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_paper_header(path):
    lines = path.read_text().splitlines()
    m = re.match(r'^# paper: "(.+)"$', lines[0])
    assert m, f"{path.name}: line 1 must be # paper: \"<exact title>\""
    s = re.match(r"^# seed: (\d{3})#(\d+)", lines[1])
    assert s, f"{path.name}: line 2 must be # seed: NNN#K"
    assert re.match(r"^# test: ", lines[2]), f"{path.name}: line 3 must give the test config (# test: --set ...)"
    seed_file = SHARED / "seeds" / f"{s.group(1)}.txt"
    if seed_file.is_file():  # the corpus is beside the checkout in development and CI
        title = m.group(1)
        assert title in seed_file.read_text(), f"{path.name}: title not found verbatim in {seed_file.name}"
    assert re.search(rf"^model {path.stem}\(", path.read_text(), re.M), f"{path.name}: the model is named after the file"


def test_stdlib_list_has_titles_and_seeds():
    rows = [e for e in stdlib.entries() if e.kind == "papers"]
    assert {e.path for e in rows} == set(PAPERS)
    assert all(e.paper and e.seed for e in rows)


def test_catalogue_index_names_every_seed_reference():
    """The project's seed index (stdlib/catalogue.tsv) holds every `# seed: NNN#K` a stdlib file names, and
    coverage counts from it with no catalogue folder around."""
    from pnet.dsl import catalogue
    index = {p.ref: p for p in catalogue.read()}
    refs = [(e.path.name, r) for e in stdlib.entries() for r in stdlib.seed_refs(e)]
    assert refs and all(e.seed for e in stdlib.entries() if e.kind == "papers")
    assert [(f, r) for f, r in refs if r not in index] == []
    assert sum(r["modelled_total"] for r in stdlib.coverage()) == len({r for _, r in refs})


@pytest.mark.skipif(not (SHARED / "papers").is_dir(), reason="the paper catalogues are not beside this checkout")
def test_catalogue_index_is_current():
    """stdlib/catalogue.tsv is what `python -m pnet.dsl.catalogue ../shared/papers` makes of the tables now."""
    from pnet.dsl import catalogue
    assert catalogue.read() == catalogue.from_markdown_dir(SHARED / "papers")


@pytest.mark.skipif(not (SHARED / "papers").is_dir(), reason="the paper catalogues are not beside this checkout")
def test_coverage_counts_modelled_papers():
    rows = stdlib.coverage(SHARED / "papers")
    assert [r["catalogue"] for r in rows] == ["000", "001", "002", "003", "004"]
    modelled = sum(r["modelled_total"] for r in rows)
    assert modelled >= len({(p.read_text().splitlines()[1]) for p in PAPERS}) - 5  # a few files share a seed ref
    assert all(0 <= r["modelled_yes"] <= r["stdlib_yes"] for r in rows)


def test_header_references_are_valid():
    """Every `# seed:` reference names a `stdlib: yes` paper of the index, every reference after a file's first
    is explained in a comment, and no paper listed as blocked on a feature is modelled."""
    assert stdlib.invalid_refs() == []


def test_coverage_reports_missing_and_rejects_lying_headers(tmp_path, monkeypatch, capsys):
    from pnet.cli import main
    fake = tmp_path / "fake.pnet"
    fake.write_text('# paper: "x"\n# seed: 000#2,000#999\n# test: \nmodel fake() {}\n')   # 000#2 is stdlib: no
    real = stdlib.entries()
    monkeypatch.setattr(stdlib, "entries", lambda: real + [stdlib.Entry("fake", fake, "papers", "x", "000#2,000#999")])
    assert main(["stdlib", "coverage", "--missing"]) == 1
    out, err = capsys.readouterr()
    assert "stdlib files" in out and "stdlib-yes papers modelled by" in out
    assert f"{fake}:2: seed reference 000#2: the catalogue marks" in err and "stdlib: no" in err
    assert f"{fake}:2: seed reference 000#999: no such paper in catalogue 000" in err
    monkeypatch.setattr(stdlib, "entries", lambda: real)
    assert main(["stdlib", "coverage", "--json", "--missing"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)["catalogues"]
    assert all({"ref", "title", "blocked_on"} <= set(m) for r in rows for m in r["missing"])
    assert all(r["files"] >= 1 for r in rows)
