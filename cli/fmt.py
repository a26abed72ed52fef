"""`pnet fmt PATH... [--check | --diff | -w]`: canonical formatting of .pnet files (comments kept).

PATHs are files or directories (every *.pnet under them). One file and no flag prints it formatted; --check
lists the files that would change and exits 1 if any would; --diff prints their unified diffs (and exits 1
likewise); -w rewrites them in place. A file that cannot be read or parsed is reported, the others are still
done, and the exit code is 2."""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

from ..errors import PnetError, UsageError, read_source
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def add_parser(sub) -> None:
    sp = sub.add_parser("fmt", help="print .pnet files in canonical form, check or rewrite them")
    sp.add_argument("paths", nargs="+", metavar="PATH", help=".pnet files, or directories to search for *.pnet files")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="list the files that are not formatted; exit 1 if any")
    g.add_argument("--diff", action="store_true", help="print the changes formatting would make; exit 1 if any")
    g.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")
    sp.set_defaults(fn=run)


def pnet_files(paths: list[str]) -> list[Path]:
    """The files named, and every *.pnet under the directories named (sorted, hidden folders skipped)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*.pnet") if not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.exists():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return list(dict.fromkeys(out))   # a file named twice is formatted once


def run(args) -> int:
    files = pnet_files(args.paths)
    single = len(args.paths) == 1 and len(files) == 1 and not Path(args.paths[0]).is_dir()
    if not (args.check or args.diff or args.write or single):
        raise UsageError("pnet fmt: several files: give --check, --diff or -w (one file alone is printed)")
    changed, failed = [], 0
    for path in files:
        try:
            src, out = _format(path)
        except PnetError as e:   # report it and go on with the other files
            print(e.render(), file=sys.stderr)
            failed += 1
            continue
        if not (args.check or args.diff or args.write):
            sys.stdout.write(out)
        elif out != src:
            changed.append(path)
            if args.diff:
                sys.stdout.writelines(difflib.unified_diff(_lines(src), _lines(out), f"{path}", f"{path} (formatted)"))
            if args.write:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(out, encoding="utf-8")
                tmp.replace(path)
    if args.check or args.diff:
        for path in changed:
            print(f"{path}: would reformat", file=sys.stderr)
    if len(files) > 1 and (args.check or args.diff or args.write):
        verb = "reformatted" if args.write else "would be reformatted"
        print(f"{len(changed)} file{'s' * (len(changed) != 1)} {verb}, {len(files) - len(changed) - failed} "
              f"already formatted" + (f", {failed} not formatted (errors above)" if failed else ""), file=sys.stderr)
    if failed:
        return EXIT_USAGE
    return EXIT_FAILED if changed and (args.check or args.diff) else EXIT_OK


def _lines(text: str) -> list[str]:
    return [ln if ln.endswith("\n") else ln + "\n" for ln in text.splitlines(keepends=True)]   # a last line too


def _format(path: Path) -> tuple[str, str]:
    from ..dsl.fmt import format_source
    try:
        src = read_source(path, keep_bom=True)   # fmt drops a byte-order mark: --check reports it, -w removes it
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    return src, format_source(src, str(path))
