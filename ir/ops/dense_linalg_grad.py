"""Gradients (vector-Jacobian products, as IR) of the dense linear algebra of dense_linalg.py; see
elementwise_grad.py for the conventions. The formulas are torch's (FunctionsManual.cpp):
- solve: gB = solve(A^T, gX), gA = -gB X^T (a broadcast batch dim summed back, a vector b as a column);
- inv: gA = -Y^T gY Y^T;
- cholesky: gA = L^{-T} Phi L^{-1}, Phi = sym(tril(L^T gL)) with a halved diagonal; triangular_solve (left):
  gB = solve_triangular(A^T, gX), gA = -gB X^T, (right) gB = gX A^{-T}, gA = -X^T gB, both kept to the triangle
  the op reads (its diagonal dropped when unitriangular);
- eigh: gA = V (diag(gw) + skew(V^T gV) / (w_j - w_i)) V^T;
- qr (m >= n): gA = (gQ + Q copyltu(M)) R^{-T}, M = triu(gR R^T - Q^T gQ);
- slogdet: gA = g_logabsdet A^{-T} (the sign has none);
- matrix_exp: the upper right block of exp([[A^T, G], [0, A^T]]) (torch's backward of an analytic matrix function).
cholesky and eigh read only a's lower triangle (their torch lowerings symmetrize it first), so their symmetric
gradient S is folded onto it (tril(S) + tril(S, -1)): the derivative of the op as defined, which torch.autograd of
the lowering and finite differences along any direction both give."""
from __future__ import annotations

from ...errors import PnetError
from ..registry import vjp


def _t(e, v):
    r = v.type.rank
    return e("transpose", [v], perm=list(range(r - 2)) + [r - 1, r - 2])


def _k(e, value, like):
    return e.const(float(value), like.type.dtype)


def _mask(e, n, dtype, lower: bool, strict: bool = False):
    """A [n, n] 0/1 matrix: the lower (or upper) triangle, its diagonal included unless strict."""
    i = e("expand_dims", [e("arange", [], n=n, dtype="i64")], axis=-1)     # row index [n, 1]
    j = e("arange", [], n=n, dtype="i64")                                  # column index [n]
    cmp = ("lt" if strict else "le") if lower else ("gt" if strict else "ge")
    return e("cast", [e(cmp, [j, i])], dtype=dtype)


def _eye(e, n, dtype):
    i = e("arange", [], n=n, dtype="i64")
    return e("cast", [e("eq", [e("expand_dims", [i], axis=-1), i])], dtype=dtype)


def _fold_lower(e, s):
    """A symmetric gradient of a function of a's lower triangle, folded onto that triangle."""
    n, dt = s.type.shape[-1], s.type.dtype
    return e("add", [e("mul", [s, _mask(e, n, dt, True)]), e("mul", [_t(e, s), _mask(e, n, dt, True, strict=True)])])


@vjp("solve")
def _solve(e, n, cts):
    (ct,), (a, b), x = cts, n.inputs, n.outputs[0]
    vec = b.type.rank == a.type.rank - 1
    g = e("expand_dims", [ct], axis=-1) if vec else ct
    xm = e("expand_dims", [x], axis=-1) if vec else x
    gb = e("solve", [_t(e, a), g])
    ga = e("neg", [e("matmul", [gb, _t(e, xm)])])
    if vec:
        gb = e("squeeze", [gb], axis=-1)
    return [e.sum_to(ga, a.type), e.sum_to(gb, b.type)]


@vjp("inv")
def _inv(e, n, cts):
    yt = _t(e, n.outputs[0])
    return [e("neg", [e("matmul", [e("matmul", [yt, cts[0]]), yt])])]


@vjp("cholesky")
def _cholesky(e, n, cts):
    ct, low = cts[0], n.outputs[0]
    if n.attrs["upper"]:
        ct, low = _t(e, ct), _t(e, low)
    size, dt = low.type.shape[-1], low.type.dtype
    p = e("mul", [e("matmul", [_t(e, low), ct]), _mask(e, size, dt, True)])              # tril(L^T gL)
    phi = e("mul", [e("add", [p, e("mul", [_t(e, p), _mask(e, size, dt, False, strict=True)])]), _k(e, 0.5, p)])
    g = e("triangular_solve", [_t(e, low), phi], upper=True, left=True)                   # L^{-T} Phi
    g = e("triangular_solve", [low, g], upper=False, left=False)                          # ... L^{-1}
    return [_fold_lower(e, g)]


@vjp("triangular_solve")
def _triangular_solve(e, n, cts):
    (ct,), (a, b), x = cts, n.inputs, n.outputs[0]
    upper, left, unit = n.attrs["upper"], n.attrs["left"], n.attrs["unitriangular"]
    gb = e("triangular_solve", [_t(e, a), ct], upper=not upper, left=left, unitriangular=unit)
    ga = e("neg", [e("matmul", [gb, _t(e, x)]) if left else e("matmul", [_t(e, x), gb])])
    ga = e("mul", [ga, _mask(e, a.type.shape[-1], a.type.dtype, not upper, strict=unit)])
    return [e.sum_to(ga, a.type), e.sum_to(gb, b.type)]


@vjp("eigh")
def _eigh(e, n, cts):
    (gw, gv), (w, v) = cts, n.outputs
    size, dt = v.type.shape[-1], v.type.dtype
    eye = _eye(e, size, dt)
    inner = None
    if gv is not None:
        vtg = e("matmul", [_t(e, v), gv])
        skew = e("mul", [e("sub", [vtg, _t(e, vtg)]), _k(e, 0.5, vtg)])
        gap = e("add", [e("sub", [e("expand_dims", [w], axis=-2), e("expand_dims", [w], axis=-1)]), eye])
        inner = e("div", [skew, gap])                       # w_j - w_i off the diagonal; skew's diagonal is 0
    if gw is not None:
        d = e("mul", [eye, e("expand_dims", [gw], axis=-2)])
        inner = d if inner is None else e("add", [inner, d])
    g = e("matmul", [e("matmul", [v, inner]), _t(e, v)])
    return [_fold_lower(e, g)]


@vjp("qr")
def _qr(e, n, cts):
    (gq, gr), (q, r), a = cts, n.outputs, n.inputs[0]
    rows, cols = a.type.shape[-2:]
    if rows.is_number and cols.is_number and rows < cols:
        raise PnetError(f"qr: the gradient is implemented for a with rows >= columns (tall or square), got {a.type}",
                        n.where)
    m = None
    if gr is not None:
        m = e("matmul", [gr, _t(e, r)])
    if gq is not None:
        qtg = e("matmul", [_t(e, q), gq])
        m = e("neg", [qtg]) if m is None else e("sub", [m, qtg])
    k = r.type.shape[-2]
    up = e("mul", [m, _mask(e, k, m.type.dtype, False)])                                    # triu(M)
    sym = e("add", [up, _t(e, e("mul", [m, _mask(e, k, m.type.dtype, False, strict=True)]))])
    g = e("matmul", [q, sym])
    if gq is not None:
        g = e("add", [g, gq])
    return [e("triangular_solve", [_t(e, r), g], upper=False, left=False)]                  # g R^{-T}


@vjp("slogdet")
def _slogdet(e, n, cts):
    g = cts[1]
    if g is None:
        return [None]
    inv_t = _t(e, e("inv", [n.inputs[0]]))
    return [e("mul", [inv_t, e("expand_dims", [e("expand_dims", [g], axis=-1)], axis=-1)])]


@vjp("matrix_exp")
def _matrix_exp(e, n, cts):
    ct, a = cts[0], n.inputs[0]
    at = _t(e, a)
    top = e("concat", [at, ct], axis=-1)
    bottom = e("concat", [e.full(0.0, a.type), at], axis=-1)
    big = e("matrix_exp", [e("concat", [top, bottom], axis=-2)])
    size = a.type.shape[-1]
    lead = [[None, None, 1]] * (a.type.rank - 2)
    return [e("slice", [big], slices=lead + [[0, size, 1], [size, 2 * size, 1]])]
