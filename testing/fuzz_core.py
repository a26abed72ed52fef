"""What the differential tester's properties share (testing/fuzz.py, testing/fuzz_grad.py): the failure and
discard exceptions, the reference run a program's checks compare against, which float outputs are usable as a
test, and the IR round trip."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

HUGE = 1e6


class PropertyFailed(AssertionError):
    def __init__(self, prop: str, message: str):
        super().__init__(f"[{prop}] {message}")
        self.prop = prop
        self.message = message

    @property
    def signature(self) -> str:
        """What kind of failure this is (failures of one kind are saved once)."""
        msg = re.sub(r"\b[vxphty]\w*\d+\b", "V", self.message)       # generated names
        msg = re.sub(r"\b\w+ RMSE .*", "RMSE", msg)
        msg = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", msg)
        msg = re.sub(r"<fuzz>:N:N: ", "", msg)
        return f"{self.prop}: {msg[:90]}"


class Discard(Exception):
    """The program is fine but useless as a test (its reference is not finite, or ill-conditioned)."""


@dataclass
class Reference:
    inputs: dict
    params: dict
    ref32: dict
    ref64: dict
    error: Exception | None = None   # the reference's located run-time error: every backend must raise it too


def usable_float_output(name, r32, r64, specials: bool) -> None:
    """Discard an output useless as a test: non-finite (unless the program's inputs hold special values on
    purpose: then the float32 and float64 references must agree on the non-finite pattern) or huge."""
    from .tolerance import nonfinite_mismatch
    if not specials and not (np.all(np.isfinite(r64)) and np.all(np.isfinite(r32))):
        raise Discard(f"output {name} is not finite")
    if specials and nonfinite_mismatch(r32, r64):
        raise Discard(f"output {name} overflows (or is NaN) in float32 only")
    if specials:   # huge values are among the injected ones; the tolerance floor scales with them
        return
    if r64.size and float(np.max(np.abs(r64))) > HUGE:
        raise Discard(f"output {name} is huge")


def check_ir(graph, what: str = "elaborated graph") -> None:
    from ..ir.text import parse_graph, print_graph
    from ..passes.verify import verify
    try:
        text = print_graph(graph)
        back = parse_graph(text)
        verify(back)
        again = print_graph(back)
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed("ir", f"{what}: {type(e).__name__}: {e}") from None
    if again != text:
        raise PropertyFailed("ir", f"{what}: print -> parse -> print is not a fixed point")
