"""The diagnostics corpus: each tests/errors/*.pnet names, in its first line, the error it must
produce and where (MLIR's expected-error style): `# expect: LINE:COL: message prefix`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pnet.dsl.compile import load_file
from pnet.errors import PnetError

ERRORS = Path(__file__).parent / "errors"
CASES = sorted(p for p in ERRORS.glob("*.pnet") if "skip" not in p.read_text().splitlines()[0])
_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.*)$")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_error_corpus(path):
    m = _EXPECT.match(path.read_text().splitlines()[0])
    assert m, f"{path.name}: first line must be '# expect: LINE:COL: message'"
    line, col, message = int(m.group(1)), int(m.group(2)), m.group(3)
    with pytest.raises(PnetError) as info:
        load_file(path)
    err = info.value
    assert err.message.startswith(message), f"message: {err.message!r}"
    assert err.loc is not None, "error has no location"
    assert (err.loc.line, err.loc.col) == (line, col), f"at {err.loc}, expected {line}:{col}"
    rendered = err.render()
    assert rendered.splitlines()[0] == f"{err.loc}: error: {err.message}"
    assert "^" in rendered, "the source line with a caret is shown"
