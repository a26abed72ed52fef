"""`pnet stdlib [list | path NAME | show NAME | coverage]`: the standard library's models with their paper and seed
reference, one model's file, one def's or model's signature and doc (stdlib_show.py), or per paper catalogue how
many `stdlib: yes` papers have a model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UsageError
from .common import EXIT_FAILED, EXIT_OK


def add_parser(sub) -> None:
    sp = sub.add_parser("stdlib", help="list the standard library's models, print one's path, show a def or model "
                                       "(signature, doc, inputs/outputs), or the catalogue coverage")
    sp.add_argument("action", nargs="?", default="list", choices=["list", "path", "show", "coverage", "doc"],
                    help="list (default): the models; path NAME: a model's file; show NAME: a def or model; "
                         "coverage: modelled seed papers; doc: the browsable reference (docs/stdlib.md)")
    sp.add_argument("name", nargs="?", help="for `path`: a model; for `show`: a def or model (`linear`, `nn.core.linear`)")
    sp.add_argument("--papers", metavar="DIR", help="for `coverage`: count against the catalogue tables in DIR "
                                                    "(NNN.md) instead of the project's index, stdlib/catalogue.tsv")
    sp.add_argument("--missing", action="store_true",
                    help="for `coverage`: list each missing stdlib-yes paper (and the feature a blocked one needs)")
    sp.add_argument("--write", metavar="FILE", help="for `doc`: write the page to FILE (docs/stdlib.md)")
    sp.add_argument("--check", metavar="FILE", help="for `doc`: exit 1 unless FILE is the page as generated now")
    sp.add_argument("--json", action="store_true", help="print JSON instead of text")
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..dsl import stdlib
    if args.action == "coverage":
        return _coverage(args, stdlib)
    if args.action == "doc":
        from . import stdlib_doc
        return stdlib_doc.run(args)
    if args.action == "show":
        from . import stdlib_show
        return stdlib_show.run(args)
    if args.action == "path":
        if not args.name:
            raise UsageError("pnet stdlib path NAME: give a model name")
        print(stdlib.find(args.name).path)
        return EXIT_OK
    rows = stdlib.entries()
    if args.json:
        print(json.dumps([{"name": e.name, "path": str(e.path), "kind": e.kind, "paper": e.paper, "seed": e.seed} for e in rows], indent=2))
        return EXIT_OK
    width = max((len(e.name) for e in rows), default=4)
    for e in rows:
        extra = f"  {e.seed:<8}  {e.paper}" if e.paper else ""
        print(f"{e.name:<{width}}  {e.kind:<9}{extra}")
    return EXIT_OK


def _coverage(args, stdlib) -> int:
    d = Path(args.papers) if args.papers else None   # default: the index inside the project
    if d is not None and not d.is_dir():
        raise UsageError(f"--papers {args.papers}: not a folder")
    rows = stdlib.coverage(d)
    if not rows:
        raise UsageError("pnet stdlib coverage: no papers in the index (stdlib/catalogue.tsv, or --papers DIR)")
    bad = stdlib.invalid_refs(d)
    if args.json:
        print(json.dumps({"catalogues": rows, "invalid": bad} if args.missing or bad else rows, indent=2))
    else:
        for r in rows:
            print(f"{r['catalogue']}: {r['modelled_yes']}/{r['stdlib_yes']} stdlib-yes papers modelled by "
                  f"{r['files']} files ({r['modelled_total']} papers modelled, {r['papers']} in the catalogue)")
            if args.missing:
                for m in r["missing"]:
                    why = f"  [blocked: {m['blocked_on']}]" if m["blocked_on"] else ""
                    print(f"  missing {m['ref']}  {m['title']}{why}")
        total_yes = sum(r["stdlib_yes"] for r in rows)
        total = sum(r["modelled_yes"] for r in rows)
        print(f"total: {total}/{total_yes} papers, {len(stdlib.entries())} stdlib files")
    for line in bad:   # a header that lies: an error each, and a failing exit
        print(f"pnet: error: {line}", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK
