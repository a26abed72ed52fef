"""Dense linear algebra (ir/ops/dense_linalg.py): inputs made well conditioned in the source itself, so the float32
and float64 references agree and nothing is singular by accident. A matrix [..., n, n] (n = 2..4, concrete) is
squashed with tanh (entries in [-1, 1]; NaN stays NaN, which the ops define) and then:
- diagonally dominant, `m + (n + 1) * I` (solve, inv, triangular_solve, slogdet, sometimes negated);
- symmetric positive definite, `m @ m.T + n * I` (cholesky);
- symmetric with well separated eigenvalues, `m + m.T + c * diag(1..n)` with c = 4n + 2 > 2 ||m + m.T||
  (eigh: distinct eigenvalues, eigenvectors near the axes, so their signs are well defined);
- tall with a scaled rectangular identity added (qr: full column rank, pivots away from 0);
- as it is (matrix_exp: 1-norm at most 4).
I is `one_hot(arange(n), depth=n)` in the matrix's dtype."""
from __future__ import annotations

import math

import sympy

from ..values import Arg, Call, Spec

_DT = ("f32", "f64")


def _concrete(d, lo=2, hi=4) -> bool:
    d = sympy.sympify(d)
    return d.is_Integer and lo <= int(d) <= hi


def _matrix(g, ctx, rows=None, cols=None, tall=False):
    """A float [..., r, c] value (r == c unless `tall`: r >= c) with concrete r, c in 2..4: from the pool or new."""
    def ok(v):
        if v.type.dtype not in _DT or v.type.rank < 2 or v.type.rank > 4:
            return False
        r, c = v.type.shape[-2:]
        if not (_concrete(r) and _concrete(c)):
            return False
        return (int(r) >= int(c)) if tall else (r == c)
    v = g.pick(ctx, ok)
    if v is not None and g.ch.flag(0.6):
        return v
    c = g.ch.int(2, 4)
    r = g.ch.int(c, 4) if tall else c
    batch = ()
    if g.ch.flag(0.5):
        batch = (g.rand_dim(ctx, declare=True, hi=3),)
    v = g.new_tensor(ctx, "f32", batch + (sympy.Integer(r), sympy.Integer(c)))
    if v is not None:
        ctx.pool.append(v)
    return v


def _bind(g, ctx, expr) -> str:
    """A helper statement `name = expr` before the call; returns the name."""
    name = g.fresh()
    ctx.lines.append(f"{ctx.indent}{name} = {expr}")
    return name


def _eye(n, dtype, rows=None) -> str:
    return f'one_hot(arange(n={rows or n}), depth={n}, dtype="{dtype}")'


def _dominant(g, ctx, x):
    n = int(x.type.shape[-1])
    m = _bind(g, ctx, f"tanh({x.name})")
    a = _bind(g, ctx, f"{m} + {float(n + 1)} * {_eye(n, x.type.dtype)}")
    return a


def _rhs(g, ctx, x, n, left=True):
    """A right-hand side [.., n, k] (left=False: [.., k, n]) in x's dtype, squashed."""
    k = g.ch.int(1, 3)
    shape = (sympy.Integer(n), sympy.Integer(k)) if left else (sympy.Integer(k), sympy.Integer(n))
    if g.ch.flag(0.4):
        shape = tuple(x.type.shape[:-2]) + shape
    v = g.pick(ctx, lambda v: v.type.dtype == x.type.dtype and v.type.rank >= 2
               and tuple(v.type.shape[-2:]) == shape[-2:] and v is not x)
    if v is None:
        v = g.new_tensor(ctx, x.type.dtype, shape)
        if v is None:
            return None
        ctx.pool.append(v)
    return v


def s_solve(g, ctx, op):
    x = _matrix(g, ctx)
    if x is None:
        return None
    n = int(x.type.shape[-1])
    a = _dominant(g, ctx, x)
    if g.ch.flag(0.3):           # a batch of vectors [..., n]
        b = g.pick(ctx, lambda v: v.type == x.type.with_shape(x.type.shape[:-1]))
        if b is None:
            b = g.new_tensor(ctx, x.type.dtype, x.type.shape[:-1])
            if b is None:
                return None
            ctx.pool.append(b)
    else:
        b = _rhs(g, ctx, x, n)
        if b is None:
            return None
    bt = _bind(g, ctx, f"tanh({b.name})")
    return Call([Arg.of(x), Arg.of(b)], {}, text=f"solve({a}, {bt})", bound=float(n))


def s_triangular_solve(g, ctx, op):
    x = _matrix(g, ctx)
    if x is None:
        return None
    n = int(x.type.shape[-1])
    attrs = {k: True for k in ("upper", "unitriangular") if g.ch.flag(0.4)}
    left = g.ch.flag(0.6)
    if not left:
        attrs["left"] = False
    a = _dominant(g, ctx, x)
    b = _rhs(g, ctx, x, n, left)
    if b is None:
        return None
    bt = _bind(g, ctx, f"tanh({b.name})")
    shown = "".join(f", {k}={'true' if v else 'false'}" for k, v in attrs.items())
    # unitriangular: the off-diagonal part grows the solution (|x| <= 2^n |b| for entries in [-1, 1])
    return Call([Arg.of(x), Arg.of(b)], attrs, text=f"triangular_solve({a}, {bt}{shown})", bound=float(2 ** n))


def s_square(kind):
    def sample(g, ctx, op):
        x = _matrix(g, ctx)
        if x is None:
            return None
        n, dt = int(x.type.shape[-1]), x.type.dtype
        if kind == "dominant":
            a = _dominant(g, ctx, x)
            if op == "slogdet" and g.ch.flag(0.5):
                a = _bind(g, ctx, f"-{a}")
            bound = float(n * 2) if op == "slogdet" else 1.0
        elif kind == "spd":
            m = _bind(g, ctx, f"tanh({x.name})")
            a = _bind(g, ctx, f"{m} @ {m}.T + {float(n)} * {_eye(n, dt)}")
            bound = math.sqrt(2.0 * n)
        elif kind == "separated":
            m = _bind(g, ctx, f"tanh({x.name})")
            c = float(4 * n + 2)
            a = _bind(g, ctx, f'{m} + {m}.T + {c} * ({_eye(n, dt)} * (arange(n={n}, dtype="{dt}") + 1.0))')
            bound = c * n + 2 * n
        else:   # matrix_exp
            a = _bind(g, ctx, f"tanh({x.name})")
            bound = math.exp(n)
        attrs = {"upper": True} if op == "cholesky" and g.ch.flag(0.4) else {}
        shown = ", upper=true" if attrs else ""
        return Call([Arg.of(x)], attrs, text=f"{op}({a}{shown})", bound=bound)
    return sample


def s_qr(g, ctx, op):
    x = _matrix(g, ctx, tall=True)
    if x is None:
        return None
    r, c = (int(d) for d in x.type.shape[-2:])
    m = _bind(g, ctx, f"tanh({x.name})")
    a = _bind(g, ctx, f"{m} + 3.0 * {_eye(c, x.type.dtype, rows=r)}")
    return Call([Arg.of(x)], {}, text=f"qr({a})", bound=float(2 * r + 3))


SPECS: dict[str, Spec] = {
    "solve": Spec(s_solve), "inv": Spec(s_square("dominant")), "cholesky": Spec(s_square("spd")),
    "triangular_solve": Spec(s_triangular_solve), "eigh": Spec(s_square("separated")), "qr": Spec(s_qr),
    "slogdet": Spec(s_square("dominant")), "matrix_exp": Spec(s_square("exp")),
}
