"""Where NaN and Inf come from: counts per output (`pnet run` warns about each output that holds any), and the
first op that made a non-finite value out of finite ones (`pnet run --debug-nan`), found by running the
reference interpreter with a hook that looks at every op's inputs and results as it goes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def nonfinite_counts(arr) -> tuple[int, int]:
    """(NaN count, Inf count) of a float array; (0, 0) for any other dtype."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fc":
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(a)))
    return nan, int(np.count_nonzero(np.isinf(a)))


def nonfinite_warning(name: str, arr) -> str | None:
    """`output 'y' has 3 NaN and 1 Inf values (of 12)`, or None when every value is finite."""
    nan, inf = nonfinite_counts(arr)
    if not nan and not inf:
        return None
    parts = [f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "Inf")) if n]
    return f"output '{name}' has {' and '.join(parts)} values (of {np.size(arr):,})"


def _has_nonfinite(a) -> bool:
    return a is not None and sum(nonfinite_counts(a)) > 0


@dataclass
class Origin:
    """The first op whose result holds NaN/Inf while its operands are finite (or a non-finite input/param)."""
    text: str


class _Found(Exception):
    def __init__(self, origin: Origin):
        self.origin = origin


def first_nonfinite(graph, inputs: dict, params: dict, float64: bool = False) -> Origin | None:
    """Run the reference until an op turns finite operands into a NaN or Inf; None when the reference's
    results are all finite (a backend that differs from it, then)."""
    from .numpy_ref import run
    for kind, values in (("input", inputs), ("parameter", params)):
        for name, a in values.items():
            if _has_nonfinite(a):   # the user's data, not an op, brought it in
                nan, inf = nonfinite_counts(a)
                return Origin(f"{kind} '{name}' already holds {nan:,} NaN and {inf:,} Inf values")

    def watch(node, args, results):
        if any(_has_nonfinite(r) for r in results) and not any(_has_nonfinite(a) for a in args):
            where = f"{node.loc}: " if node.loc is not None else ""
            nan = sum(nonfinite_counts(r)[0] for r in results)
            inf = sum(nonfinite_counts(r)[1] for r in results)
            raise _Found(Origin(f"{where}{node.op} produced the first non-finite values "
                                f"({nan:,} NaN, {inf:,} Inf) from finite operands"))
    try:
        run(graph, inputs, params, float64=float64, on_node=watch)
    except _Found as f:
        return f.origin
    return None
