"""Progress of long work on stderr (a Triton-interpreter run, GPU builds, autotuning): with -v one line per
step (`[3/12] kernel k_matmul_2 (matmul+relu) ...`), otherwise, when stderr is a terminal, one counter line
updated in place, else nothing. Output on stdout is never touched, so piped results stay clean.

The CLI opens a `Progress` around the work (`with Progress(12, verbose=args.verbose): ...`); deep code (the
generated launcher, through runtime.step) reports to whichever one is open, and does nothing when none is."""
from __future__ import annotations

import sys

_active: "Progress | None" = None


class Progress:
    def __init__(self, total: int, verbose: bool = False, stream=None):
        self.total, self.verbose = total, verbose
        self.stream = stream or sys.stderr
        self.count = 0
        self.live = not verbose and _isatty(self.stream)   # the in-place counter
        self._width = 0

    def __enter__(self):
        global _active
        self._outer, _active = _active, self
        return self

    def __exit__(self, *exc):
        global _active
        _active = self._outer
        if self.live and self._width:   # wipe the counter so the next line starts clean
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

    def step(self, label: str, index: int | None = None) -> None:
        """One step starts (`index` 1-based; default: the next)."""
        self.count = index if index is not None else self.count + 1
        line = f"[{self.count}/{self.total}] {label}"
        if self.verbose:
            print(line, file=self.stream, flush=True)
        elif self.live:
            line = line[:100]
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = max(self._width, len(line))

    def note(self, text: str) -> None:
        """A line that is not a step (autotuning a kernel): shown with -v only."""
        if self.verbose:
            print(text, file=self.stream, flush=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def step(label: str, index: int, total: int) -> None:
    """Step `index` (1-based) of `total` starts, on the open Progress if any."""
    if _active is not None:
        _active.total = total
        _active.step(label, index)


def kernel_step(index: int, total: int, name: str, ops: str) -> None:
    """The generated launcher's hook, before kernel `index` of `total`."""
    step(f"kernel {name} ({ops}) ...", index, total)


def note(text: str) -> None:
    if _active is not None:
        _active.note(text)
