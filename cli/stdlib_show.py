"""`pnet stdlib show NAME [--json]`: one standard-library def or model (dsl/stdlib_defs.py finds it): where it is
defined (file:line), its signature (parameters with types and defaults; a model's are its hyperparameters), its
doc comment, and for a model its paper, inputs and outputs; or a module (`nn.core`): each def's signature."""
from __future__ import annotations

import json

from ..errors import UsageError
from .common import EXIT_OK


def run(args) -> int:
    from ..dsl.stdlib_defs import describe, describe_module
    if not args.name:
        raise UsageError("pnet stdlib show NAME: give a def, model or module name (e.g. `pnet stdlib show linear`)")
    args.name = args.name.removeprefix("stdlib:")   # the spelling `pnet check stdlib:gpt2` takes
    module = describe_module(args.name)
    if module is not None:
        return _module(args, *module)
    d = describe(args.name)
    if args.json:
        print(json.dumps({"name": d.name, "kind": d.kind, "module": d.module, "file": str(d.path), "line": d.line,
                          "signature": d.signature, "params": d.params, "doc": d.doc, "inputs": d.inputs,
                          "outputs": d.outputs, **d.header, "also_defined_in": d.others}, indent=2))
        return EXIT_OK
    print(d.signature)
    print(f"  defined at  {d.path}:{d.line}  (import {d.module})")
    if d.others:
        print(f"  also in     {', '.join(d.others)}")
    label = "hyperparameters" if d.kind == "model" else "parameters"
    print(f"  {label}" if d.params else f"  {label}: none")
    for p in d.params:
        print(f"    {p['name']}: {p['type']}" + (f" = {p['default']}" if p["default"] is not None else ""))
    for key in ("paper", "seed", "test"):
        if key in d.header:
            print(f"  {key:<10}  {d.header[key]}")
    if d.kind == "model":
        for what, rows in (("inputs", d.inputs), ("outputs", d.outputs)):
            print(f"  {what}")
            for r in rows:
                print(f"    {r['name']}" + (f": {r['type']}" if r["type"] else ""))
    if d.doc:
        print("  doc")
        for line in d.doc.splitlines():
            print(f"    {line}".rstrip())
    return EXIT_OK


def _module(args, path, header: str, defs) -> int:
    """`pnet stdlib show nn.core`: the module's file and header, then each def's signature with its line."""
    if args.json:
        print(json.dumps({"module": args.name, "file": str(path), "doc": header,
                          "defs": [{"line": line, "signature": sig} for line, sig in defs]}, indent=2))
        return EXIT_OK
    print(f"module {args.name}  ({path})")
    for line in header.splitlines():
        print(f"  {line}".rstrip())
    for line, sig in defs:
        print(f"  {line:>4}  {sig}")
    return EXIT_OK
