"""Groups and their actions on tensor axes: the algebra the equivariance pass (passes/equivariant.py) and its
checker (testing/equivariance.py) share. A Group is C(n), D(n), S(n) or T(n) (parse_group); an action is a
string of terms on axes (`perm(a)`, `grid(a, b)`, `regular(a)`, `trivial`; parse_action), resolved against a
tensor's shape into an Action; every action permutes tensor entries (term_perm, tensor_perm, act), and orbits()
numbers the orbits of a group acting on a tensor's indices (the entries a tied weight keeps)."""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import PnetError

GRID_N = (1, 2, 4)           # rotations that map a square pixel grid onto itself
MAX_REGULAR_ORDER = 720       # largest group whose regular representation we lay out in channels


class EquivarianceError(PnetError):
    pass


# ---- groups --------------------------------------------------------------------------------------------
_GROUP_RE = re.compile(r"^\s*([A-Za-z]+)\s*(?:\(\s*(\d+)\s*\)|(\d+))?\s*$")
_KINDS = {"C": "C", "CYCLIC": "C", "D": "D", "DIHEDRAL": "D", "S": "S", "SYM": "S", "PERM": "S",
          "T": "T", "SHIFT": "T", "TRANSLATION": "T"}


@dataclass(frozen=True)
class Group:
    """C(n) rotations, D(n) rotations + flips (order 2n), S(n) permutations, T(n) periodic shifts."""
    kind: str
    n: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}{self.n}" if self.kind in "CD" and self.n is not None else \
            (f"{self.kind}({self.n})" if self.n is not None else self.kind)

    def with_n(self, n: int, what: str, loc=None) -> "Group":
        if self.n is not None and self.n != n:
            raise EquivarianceError(f"@equivariant {self}: {what}, but {self} acts on {self.n} points", loc)
        return Group(self.kind, n)

    # elements: C/T: int k; D: (k, f) = r^k s^f; S: a tuple permutation
    @property
    def order(self) -> int:
        n = self.n
        return {"C": n, "T": n, "D": 2 * n, "S": math.factorial(n)}[self.kind]

    def elements(self) -> list:
        n = self.n
        if self.kind in "CT":
            return list(range(n))
        if self.kind == "D":
            return [(k, f) for f in (0, 1) for k in range(n)]
        return list(itertools.permutations(range(n)))

    def identity(self):
        return (0, 0) if self.kind == "D" else (tuple(range(self.n)) if self.kind == "S" else 0)

    def mul(self, a, b):
        n = self.n
        if self.kind in "CT":
            return (a + b) % n
        if self.kind == "D":
            (k1, f1), (k2, f2) = a, b
            return ((k1 + (-k2 if f1 else k2)) % n, f1 ^ f2)
        return tuple(a[b[i]] for i in range(n))   # (a b)(i) = a(b(i))

    def generators(self) -> list:
        n = self.n
        if n <= 1:
            return [] if self.kind != "D" else [(0, 1)]
        if self.kind in "CT":
            return [1]
        if self.kind == "D":
            return [(1, 0), (0, 1)]
        cyc = tuple((i + 1) % n for i in range(n))
        swap = (1, 0) + tuple(range(2, n))
        return [cyc, swap]

    def random(self, rng):
        n = self.n
        if self.kind in "CT":
            return int(rng.integers(n))
        if self.kind == "D":
            return (int(rng.integers(n)), int(rng.integers(2)))
        return tuple(int(i) for i in rng.permutation(n))

    def point_perm(self, g, size: int) -> np.ndarray:
        """g as a permutation of `size` points (a set, a cycle, or an n-gon's vertices): i -> p[i]."""
        i = np.arange(size)
        if self.kind in "CT":
            return (i + g) % size
        if self.kind == "D":
            k, f = g
            return ((-i if f else i) + k) % size
        return np.asarray(g, dtype=np.int64)

    def grid_perm(self, g, size: int) -> np.ndarray:
        """g as a permutation of the size x size grid (flat, C order): quarter turns (i, j) -> (j, N-1-i), flip
        (i, j) -> (i, N-1-j); C(n)/D(n) with n | 4 use turns of 4/n quarters."""
        k, f = (g if self.kind == "D" else (g, 0))
        turns = (k * (4 // self.n)) % 4
        ii, jj = np.divmod(np.arange(size * size), size)
        if f:
            jj = size - 1 - jj
        for _ in range(turns):
            ii, jj = jj, size - 1 - ii
        return ii * size + jj

    def regular_perm(self, g) -> np.ndarray:
        els = self.elements()
        index = {e: i for i, e in enumerate(els)}
        return np.array([index[self.mul(g, h)] for h in els], dtype=np.int64)


def parse_group(text, loc=None) -> tuple[Group, str]:
    """`"C4"`, `"C(4)"`, `"D4"`, `"S"`, `"S(5)"`, `"T"`, `"T(8)"` -> (group, factor key)."""
    if not isinstance(text, str):
        raise EquivarianceError(f"@equivariant: the group must be a string like \"C4\", \"D4\", \"S\" or \"T(8)\", got {text!r}", loc)
    if re.search(r"\bx\b|\*|×", text):
        raise EquivarianceError(f"@equivariant(\"{text}\"): write a direct product as several annotations, one per "
                                "factor: @equivariant(\"S\", ...) @equivariant(\"C4\", ...)", loc)
    m = _GROUP_RE.match(text)
    kind = _KINDS.get(m.group(1).upper()) if m else None
    if kind is None:
        raise EquivarianceError(f"@equivariant: unknown group '{text}' (groups: C(n) and D(n) rotations/flips, "
                                "S(n) permutations, T(n) periodic shifts; direct products: stack annotations)", loc)
    n = m.group(2) or m.group(3)
    n = int(n) if n is not None else None
    if kind in "CD" and n is None:
        raise EquivarianceError(f"@equivariant(\"{text}\"): {kind} needs its order, e.g. {kind}4", loc)
    if n is not None and n < 1:
        raise EquivarianceError(f"@equivariant(\"{text}\"): the order must be at least 1", loc)
    key = f"{kind}{n}" if kind in "CD" else kind
    return Group(kind, n), key


# ---- actions: terms on tensor axes --------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    kind: str            # perm | grid | regular
    axes: tuple          # tensor axes (grid: two)
    inner: int = 1       # perm: block size of a flattened [n, inner] axis


_TERM_RE = re.compile(r"([A-Za-z_]+)\s*(?:\(([^)]*)\))?")


def parse_action(spec, loc=None) -> tuple[Term, ...]:
    if spec is None:
        return ()
    if isinstance(spec, (list, tuple)):
        spec = " ".join(str(s) for s in spec)
    if not isinstance(spec, str):
        raise EquivarianceError(f"@equivariant: an action is a string like \"perm(1)\" or \"grid(2, 3) regular(1)\", got {spec!r}", loc)
    terms, pos, text = [], 0, spec.strip()
    while pos < len(text):
        if text[pos] in " ,;":
            pos += 1
            continue
        m = _TERM_RE.match(text, pos)
        if not m:
            raise EquivarianceError(f"@equivariant: cannot read action \"{spec}\" at '{text[pos:]}'", loc)
        pos = m.end()
        name, args = m.group(1).lower(), m.group(2)
        try:
            nums = [int(a) for a in args.split(",")] if args and args.strip() else []
        except ValueError:
            raise EquivarianceError(f"@equivariant: action term '{m.group(0)}' takes integer axes", loc) from None
        if name == "trivial" and not nums:
            continue
        if name in ("perm", "shift", "set") and len(nums) in (1, 2):
            if len(nums) == 2 and nums[1] < 1:
                raise EquivarianceError(f"@equivariant: block size in '{m.group(0)}' must be >= 1", loc)
            terms.append(Term("perm", (nums[0],), nums[1] if len(nums) == 2 else 1))
        elif name == "grid" and len(nums) == 2:
            terms.append(Term("grid", tuple(nums)))
        elif name == "regular" and len(nums) == 1:
            terms.append(Term("regular", tuple(nums)))
        else:
            raise EquivarianceError(f"@equivariant: unknown action term '{m.group(0)}' (terms: perm(axis), perm(axis, block), "
                                    "grid(axis, axis), regular(axis), trivial)", loc)
    return tuple(terms)


@dataclass(frozen=True)
class Action:
    """One group factor acting on one tensor: resolved terms (axes normalized, sizes checked)."""
    group: Group
    terms: tuple

    def axes(self) -> set:
        return {a for t in self.terms for a in t.axes}


def _size(d):
    try:
        return int(d)
    except TypeError:
        return None


def resolve(group: Group, terms, shape, what: str, loc=None) -> Action:
    """Check the terms against a tensor shape (ints, or sympy dims: unknown sizes are checked later)."""
    rank = len(shape)
    out, used = [], set()
    for t in terms:
        axes = []
        for a in t.axes:
            if not -rank <= a < rank:
                raise EquivarianceError(f"@equivariant {group}: {what} has rank {rank}, no axis {a}", loc)
            axes.append(a % rank)
        if used & set(axes) or len(set(axes)) != len(axes):
            raise EquivarianceError(f"@equivariant {group}: {what}: axis {axes} acted on twice", loc)
        used |= set(axes)
        sizes = [_size(shape[a]) for a in axes]
        label = f"{what} axis {axes[0]} has size {shape[axes[0]]}" + (f" = {sizes[0] // t.inner} blocks of {t.inner}" if t.inner != 1 and sizes[0] else "")
        if t.kind == "perm":
            if sizes[0] is not None:
                if sizes[0] % t.inner:
                    raise EquivarianceError(f"@equivariant {group}: {label} is not a multiple of the block size {t.inner}", loc)
                group = group.with_n(sizes[0] // t.inner, label, loc)
        elif t.kind == "grid":
            if group.kind not in "CD":
                raise EquivarianceError(f"@equivariant {group}: grid({axes[0]}, {axes[1]}) needs a rotation group C(n) or D(n); "
                                        f"{group.kind} acts on one axis with perm(axis)", loc)
            if group.n not in GRID_N:
                raise EquivarianceError(f"@equivariant {group}: no exact action on a square pixel grid (only rotations by multiples "
                                        f"of 90 degrees map pixels to pixels: use C4/D4 or below on grid axes; {group} can still act "
                                        "on an orientation axis with perm(axis) or on channels with regular(axis))", loc)
            if sizes[0] is not None and sizes[1] is not None and sizes[0] != sizes[1]:
                raise EquivarianceError(f"@equivariant {group}: grid({axes[0]}, {axes[1]}) of {what} is not square "
                                        f"({shape[axes[0]]} x {shape[axes[1]]})", loc)
        else:  # regular
            if group.n is None:
                raise EquivarianceError(f"@equivariant {group}: regular({axes[0]}) needs the group's order, e.g. \"S(3)\"", loc)
            if group.order > MAX_REGULAR_ORDER:
                raise EquivarianceError(f"@equivariant {group}: order {group.order} is too large for a regular representation", loc)
            if sizes[0] is not None and sizes[0] % group.order:
                raise EquivarianceError(f"@equivariant {group}: regular({axes[0]}): {label} is not a multiple of the group order "
                                        f"{group.order} (layout [channels, |G|], group index fastest)", loc)
        out.append(Term(t.kind, tuple(axes), t.inner))
    return Action(group, tuple(out))


def term_perm(group: Group, term: Term, g, sizes) -> np.ndarray:
    """g acting on the flattened index space of a term's axes (C order): position i moves to p[i]."""
    if term.kind == "perm":
        n = sizes[0] // term.inner
        p = group.point_perm(g, n)
        i = np.arange(sizes[0])
        return p[i // term.inner] * term.inner + i % term.inner
    if term.kind == "grid":
        return group.grid_perm(g, sizes[0])
    r = group.regular_perm(g)
    i = np.arange(sizes[0])
    o = group.order
    return (i // o) * o + r[i % o]


def tensor_perm(shape, pieces) -> np.ndarray:
    """A permutation of a whole tensor's flat index: `pieces` = [(axes, flat perm over those axes)]."""
    shape = tuple(int(s) for s in shape)
    coords = list(np.indices(shape).reshape(len(shape), -1)) if shape else []
    for axes, p in pieces:
        sizes = [shape[a] for a in axes]
        sub = np.ravel_multi_index([coords[a] for a in axes], sizes)
        new = np.unravel_index(p[sub], sizes)
        for a, c in zip(axes, new):
            coords[a] = c
    if not shape:
        return np.zeros(1, dtype=np.int64)
    return np.ravel_multi_index(coords, shape)


def act(x: np.ndarray, actions: list, elements: list) -> np.ndarray:
    """g . x for one element per factor: the entry at index i moves to index P(i)."""
    pieces = []
    for a, g in zip(actions, elements):
        for t in a.terms:
            pieces.append((t.axes, term_perm(a.group, t, g, [x.shape[ax] for ax in t.axes])))
    if not pieces:
        return x
    p = tensor_perm(x.shape, pieces)
    out = np.empty(x.size, dtype=x.dtype)
    out[p] = x.reshape(-1)
    return out.reshape(x.shape)


def orbits(shape, perms) -> tuple[np.ndarray, int]:
    """Orbit index (first-seen order) of every flat index under the group generated by `perms`."""
    n = int(np.prod(shape)) if len(shape) else 1
    parent = np.arange(n)
    changed = True
    while changed:
        changed = False
        for p in perms:
            m = np.minimum(parent, parent[p])
            np.minimum.at(m, p, m)           # both ends of every edge i -- p[i] take the smaller label
            m2 = np.minimum(m, m[p])
            m2 = m2[m2]                      # pointer jumping
            if not np.array_equal(m2, parent):
                parent, changed = m2, True
    _, first, inv = np.unique(parent, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inv].reshape(shape), len(first)



def _fmt_terms(terms) -> str:
    parts = []
    for t in terms:
        if t.kind == "perm":
            parts.append(f"perm({t.axes[0]}" + (f", {t.inner})" if t.inner != 1 else ")"))
        else:
            parts.append(f"{t.kind}({', '.join(map(str, t.axes))})")
    return " ".join(parts) or "trivial"
