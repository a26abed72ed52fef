"""`pnet fuzz --minutes N [--out DIR] [--backends numpy,torch,triton]`: the differential tester's long-run mode.
This module defines and checks the options; the loop (generate, check every property, shrink and save failures)
is testing/fuzz.py's long_run()."""
from __future__ import annotations

from ..errors import UsageError


def add_parser(sub) -> None:
    sp = sub.add_parser("fuzz", help="generate random well-typed programs and check every pass and backend "
                                     "against the reference")
    sp.add_argument("--minutes", type=float, default=1.0, help="how long to run (default 1)")
    sp.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    sp.add_argument("--out", default="pnet-fuzz", metavar="DIR",
                    help="where failing programs are saved (default ./pnet-fuzz)")
    sp.add_argument("--backends", default="numpy,torch,triton",
                    help="comma list: numpy (passes against the reference), torch, triton (fused and unfused "
                         "plans; under TRITON_INTERPRET=1 without a GPU). Default: all three; a backend that "
                         "cannot run here is skipped with a note")
    sp.add_argument("--max-programs", type=int, default=0, help="stop after this many programs (0: no limit)")
    sp.add_argument("--max-stmts", type=int, default=10, help="statements per generated model (default 10)")
    sp.add_argument("--no-shrink", action="store_true", help="save failures as found, without shrinking")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds one program may take (default 60)")
    sp.set_defaults(fn=run)


def run(args) -> int:
    from ..testing.fuzz import backend_checks, long_run
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    checks = backend_checks()
    for b in names:
        if b != "numpy" and b not in checks:
            raise UsageError(f"--backends {args.backends}: unknown backend '{b}' (available: numpy, "
                             f"{', '.join(checks)})")
    if args.minutes <= 0 and not args.max_programs:
        raise UsageError("--minutes must be positive")
    return long_run(args, names)
