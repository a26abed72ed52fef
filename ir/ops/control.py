"""Control ops. `scan` carries a body graph; its types come from the body, so the elaborator,
verifier and backends treat it specially. It is registered so tools can list and document it."""
from __future__ import annotations

from ...errors import PnetError
from ..registry import register


def _no_direct_use(*_a, **_k):
    raise PnetError("scan is written as `ys, h = scan(x_t in xs along 1; h = h0) { ... }`, not called")


register("scan", "*xs", kind="control", infer=_no_direct_use, ref=_no_direct_use,
         attrs={"axes": [], "out_axis": 0, "n_carries": 0, "n_seqs": 0, "length": 0},
         doc="recurrence over a sequence axis; inputs are carries, sequences, then captured values")
