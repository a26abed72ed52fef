"""'Did you mean' for misspelled names: the closest known spelling, worded to end an error's first line."""
from __future__ import annotations

import difflib


def closest(word: str, candidates) -> str | None:
    """The known name nearest to `word` (difflib's ratio, case folded), or None when none is near enough."""
    by_folded = {}
    for c in candidates:
        if isinstance(c, str) and c != word:
            by_folded.setdefault(c.lower(), c)
    found = difflib.get_close_matches(word.lower(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[found[0]] if found else None


def did_you_mean(word: str, candidates) -> str:
    """`; did you mean 'softmax'?` to append to a message, or "" when nothing is close."""
    best = closest(word, candidates)
    return f"; did you mean '{best}'?" if best else ""
