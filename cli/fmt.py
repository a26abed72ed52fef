"""`pnet fmt FILE [--check | -w]`: print a .pnet file in canonical form (comments kept), check that it is, or
rewrite it in place."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError, read_source
from .common import EXIT_FAILED, EXIT_OK


def add_parser(sub) -> None:
    sp = sub.add_parser("fmt", help="print the file in canonical form")
    sp.add_argument("file")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if the file is not formatted")
    g.add_argument("-w", "--write", action="store_true", help="rewrite the file in place")
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..dsl.fmt import format_source
    path = Path(args.file)
    try:
        src = read_source(path, keep_bom=True)   # fmt drops a byte-order mark: --check reports it, -w removes it
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    out = format_source(src, str(path))
    if args.check:
        if out != src:
            print(f"{path}: would reformat", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    if args.write:
        if out != src:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(out, encoding="utf-8")
            tmp.replace(path)
        return EXIT_OK
    sys.stdout.write(out)
    return EXIT_OK
