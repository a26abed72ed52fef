"""The `pnet` command line: one module per subcommand (check, show, run, train, compile, fmt, ops, stdlib, fuzz,
quantize), each with `add_parser(sub)` and `run(args) -> int`; what they share (model loading, the --quantize /
--sparse options) is in common.py. Exit codes: 0 ok, 1 a check failed, 2 usage or input error."""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import PnetError
from . import check, compile, fmt, fuzz, ops, quantize, run, show, stdlib, train
from .common import EXIT_OK, EXIT_USAGE, Parser

SUBCOMMANDS = (check, show, run, train, compile, fmt, ops, stdlib, fuzz, quantize)   # in the order `pnet --help` lists them

# NumPy's floating-point RuntimeWarnings ("overflow encountered in exp", "Mean of empty slice", ...)
NUMPY_FLOAT_WARNINGS = (r"(invalid value|overflow|underflow|divide by zero) encountered|Mean of empty slice|"
                        r"Degrees of freedom <= 0")


def version() -> str:
    """The installed package's version (pyproject.toml's, through the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed("pnet")
    except PackageNotFoundError:   # run from a checkout that was never installed
        import re
        from pathlib import Path
        m = re.search(r'^version = "([^"]+)"', (Path(__file__).parent.parent / "pyproject.toml").read_text(), re.M)
        return m.group(1) if m else "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="pnet", description="A compiler for neural networks written as text.")
    p.add_argument("--version", action="version", version=f"pnet {version()}", help="print pnet's version and exit")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "fn", None):
            parser.print_help()
            return EXIT_USAGE
        with warnings.catch_warnings():   # pnet reports NaN/Inf itself (run's warnings), never as NumPy's noise
            warnings.filterwarnings("ignore", NUMPY_FLOAT_WARNINGS, RuntimeWarning)
            return args.fn(args)
    except PnetError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `pnet show ... | head`
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("pnet: interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        print("pnet: error: program nests too deeply", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # an internal bug: still one line, never a traceback
        print(f"pnet: internal error: {type(e).__name__}: {e} (please report; set PNET_TRACEBACK=1 for details)", file=sys.stderr)
        import os
        if os.environ.get("PNET_TRACEBACK"):
            raise
        return 3
