"""Where the randomness comes from: every decision of the generator is a `Chooser.int` call, answered by
`random.Random` (`RandomChooser`, for scripts) or by hypothesis (`DrawChooser`, which shrinks each toward its
simplest option)."""
import random


class Chooser:
    """Every random decision goes through `int`; shrinking (hypothesis) moves each toward `lo`, so the
    simplest option of a choice comes first and `flag` is False when shrunk."""

    def int(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def flag(self, p: float = 0.5) -> bool:
        return self.int(0, 99) >= 100 - round(p * 100)

    def choice(self, seq):
        seq = list(seq)
        return seq[self.int(0, len(seq) - 1)]

    def weighted(self, items, weights):
        total = sum(weights)
        scaled = [max(1, round(w * 100 / total)) for w in weights]
        r = self.int(0, sum(scaled) - 1)
        for it, w in zip(items, scaled):
            if r < w:
                return it
            r -= w
        return items[-1]

    def seeds(self, max_n: int) -> list[int]:
        """One seed per top-level statement (each statement is generated from its own seed, so shrinking can
        delete statements one by one)."""
        n = self.weighted(list(range(1, max_n + 1)), [1 + i for i in range(max_n)])
        return [self.int(0, 2 ** 31 - 1) for _ in range(n)]

    def shuffled(self, seq):
        seq = list(seq)
        out = []
        while seq:
            out.append(seq.pop(self.int(0, len(seq) - 1)))
        return out


class RandomChooser(Chooser):
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)


class DrawChooser(Chooser):
    """Decisions drawn from a hypothesis `draw` (inside `st.composite`)."""

    def __init__(self, draw):
        from hypothesis import strategies as st
        self.draw = draw
        self.st = st

    def int(self, lo, hi):
        if lo >= hi:
            return lo
        return self.draw(self.st.integers(lo, hi))

    def seeds(self, max_n: int) -> list[int]:
        # a hypothesis list: its shrinker deletes elements, i.e. whole statements
        return self.draw(self.st.lists(self.st.integers(0, 2 ** 31 - 1), min_size=1, max_size=max_n))
