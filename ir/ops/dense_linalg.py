"""Dense linear algebra on float matrices (f32, f64), batched over leading dims: solve, inv, cholesky,
triangular_solve (torch.linalg.solve_triangular semantics), eigh, qr (reduced), slogdet and matrix_exp.

Numeric semantics, the same on every backend (docs/language.md): a matrix holding a non-finite value in the part
the op reads (the lower triangle for cholesky and eigh, the named triangle for triangular_solve, all of it
otherwise), or one that is singular (an exactly zero pivot: solve, inv, triangular_solve's diagonal) or not
positive definite (cholesky), gives NaN throughout that matrix's results; a column of solve's right-hand side
holding a non-finite value (a row for triangular_solve with left=False) gives NaN in that column. slogdet of a
singular matrix is (0, -inf), as NumPy and torch. eigh's eigenvalues ascend and each eigenvector's component
of largest magnitude (the first such) is made positive, so its sign is defined; qr's signs are LAPACK's
(Householder, as numpy and torch). matrix_exp's reference is scaling and squaring with the [13/13] Pade
approximant (Higham 2005).

The Triton backend has no kernel for these: they run through their torch lowering, counted as fallbacks."""
from __future__ import annotations

import numpy as np
import sympy

from ...errors import ShapeError
from ..registry import register
from ..types import TensorType, broadcast_shapes, dims_equal, fmt_dim, numel

_DTYPES = ("f32", "f64")


# ---- type rules ---------------------------------------------------------------------------------------------
def _float(op, t, what):
    if t.dtype not in _DTYPES:
        raise ShapeError(f"{op}: {what} must be f32 or f64, got {t}")


def _square(op, t, what="a"):
    _float(op, t, what)
    if t.rank < 2 or not dims_equal(t.shape[-1], t.shape[-2]):
        raise ShapeError(f"{op}: {what} must be a square matrix [..., n, n], got {t}")
    return t.shape[-1]


def _same_dtype(op, a, b):
    if a.dtype != b.dtype:
        raise ShapeError(f"{op}: a and b must have one dtype, got {a} and {b}")


def _batch(op, a, b):
    try:
        return broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"{op}: batch dims of {a} and {b} do not broadcast") from None


def _solve_infer(types, attrs):
    a, b = types
    n = _square("solve", a)
    _float("solve", b, "b")
    _same_dtype("solve", a, b)
    if b.rank == a.rank - 1:         # a batch of vectors (torch's rule): b [..., n]
        if not all(dims_equal(x, y) for x, y in zip(b.shape, a.shape[:-1])):
            raise ShapeError(f"solve: b {b} as a vector must have shape {list(map(fmt_dim, a.shape[:-1]))} of a {a}")
        return b
    if b.rank < 2 or not dims_equal(b.shape[-2], n):
        raise ShapeError(f"solve: b must be [..., {fmt_dim(n)}, k] (or [..., {fmt_dim(n)}] with a's batch dims) "
                         f"for a {a}, got {b}")
    return TensorType(a.dtype, _batch("solve", a, b) + b.shape[-2:])


def _unary_square(op):
    def infer(types, attrs):
        _square(op, types[0])
        return types[0]
    return infer


def _tri_infer(types, attrs):
    a, b = types
    n = _square("triangular_solve", a)
    _float("triangular_solve", b, "b")
    _same_dtype("triangular_solve", a, b)
    axis = -2 if attrs["left"] else -1
    if b.rank < 2 or not dims_equal(b.shape[axis], n):
        want = f"[..., {fmt_dim(n)}, k]" if attrs["left"] else f"[..., k, {fmt_dim(n)}]"
        raise ShapeError(f"triangular_solve: b must be {want} for a {a} with left={attrs['left']}, got {b}")
    for k in ("upper", "left", "unitriangular"):
        if not isinstance(attrs[k], bool):
            raise ShapeError(f"triangular_solve: {k} must be true or false, got {attrs[k]!r}")
    return TensorType(a.dtype, _batch("triangular_solve", a, b) + b.shape[-2:])


def _chol_infer(types, attrs):
    _square("cholesky", types[0])
    if not isinstance(attrs["upper"], bool):
        raise ShapeError(f"cholesky: upper must be true or false, got {attrs['upper']!r}")
    return types[0]


def _eigh_infer(types, attrs):
    a = types[0]
    _square("eigh", a)
    return [a.with_shape(a.shape[:-1]), a]


def _qr_infer(types, attrs):
    a = types[0]
    _float("qr", a, "a")
    if a.rank < 2:
        raise ShapeError(f"qr: a must be a matrix [..., m, n], got {a}")
    m, n = a.shape[-2:]
    if dims_equal(m, n):
        k = m
    elif m.is_number and n.is_number:
        k = min(m, n)
    else:
        raise ShapeError(f"qr: min(m, n) of {a} is not known at compile time; give m or n a size")
    return [a.with_shape(a.shape[:-1] + (k,)), a.with_shape(a.shape[:-2] + (k, n))]


def _slogdet_infer(types, attrs):
    a = types[0]
    _square("slogdet", a)
    return [a.with_shape(a.shape[:-2]), a.with_shape(a.shape[:-2])]


# ---- FLOPs (the usual LAPACK counts, per matrix) ----------------------------------------------------------------
def _per_matrix(t):
    return numel(t.shape[:-2])


def _solve_flops(i, o, attrs):
    n = i[0].shape[-1]
    vec = i[1].rank == i[0].rank - 1
    k = 1 if vec else o[0].shape[-1]
    return numel(o[0].shape[:-1] if vec else o[0].shape[:-2]) * (sympy.Rational(2, 3) * n ** 3 + 2 * n ** 2 * k)


def _cube(c):
    return lambda i, o, attrs: _per_matrix(i[0]) * c * i[0].shape[-1] ** 3


def _tri_flops(i, o, attrs):
    n = i[0].shape[-1]
    return numel(o[0].shape) * n


def _qr_flops(i, o, attrs):
    m, n = i[0].shape[-2:]
    k = o[0].shape[-1]
    return _per_matrix(i[0]) * (4 * m * n * k - sympy.Rational(4, 3) * k ** 3)


# ---- NumPy references ---------------------------------------------------------------------------------------------
def _bad(a):
    """Per matrix: whether it holds a non-finite value."""
    return ~np.isfinite(a).all(axis=(-2, -1))


def _per(fn, a, outs, bad):
    """fn(matrix) -> tuple of arrays per batch element, NaN where `bad` or where LAPACK finds it singular."""
    for idx in np.ndindex(a.shape[:-2]):
        if bad[idx]:
            for o in outs:
                o[idx] = np.nan
            continue
        try:
            got = fn(a[idx])
        except np.linalg.LinAlgError:
            for o in outs:
                o[idx] = np.nan
            continue
        for o, g in zip(outs, got):
            o[idx] = g
    return outs


def _solve_ref(a, b):
    vec = b.ndim == a.ndim - 1
    bm = b[..., None] if vec else b
    batch = np.broadcast_shapes(a.shape[:-2], bm.shape[:-2])
    A = np.broadcast_to(a, batch + a.shape[-2:])
    B = np.broadcast_to(bm, batch + bm.shape[-2:])
    out = np.zeros(B.shape, a.dtype)
    if a.shape[-1]:
        Bs = np.where(np.isfinite(B), B, 0).astype(a.dtype)
        bad = _bad(A)
        for idx in np.ndindex(batch):
            if bad[idx]:
                out[idx] = np.nan
                continue
            try:
                out[idx] = np.linalg.solve(A[idx], Bs[idx])
            except np.linalg.LinAlgError:
                out[idx] = np.nan
    out = np.where(~np.isfinite(B).all(axis=-2, keepdims=True), np.nan, out).astype(a.dtype)
    return out[..., 0] if vec else out


def _inv_ref(a):
    out = np.zeros_like(a)
    if a.shape[-1]:
        _per(lambda m: (np.linalg.inv(m),), a, [out], _bad(a))
    return out


def _chol_ref(a, upper):
    low = np.tril(a)
    out = np.zeros_like(a)
    if a.shape[-1]:
        _per(lambda m: (np.linalg.cholesky(m),), low + np.swapaxes(np.tril(a, -1), -1, -2), [out], _bad(low))
    return np.swapaxes(out, -1, -2).copy() if upper else out


def _tri_solve(a, b, upper, unit):
    """Substitution, row by row, of a [..., n, n] triangular a (its named triangle) against b [..., n, k]."""
    n = a.shape[-1]
    x = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:], a.dtype)
    order = range(n - 1, -1, -1) if upper else range(n)
    with np.errstate(all="ignore"):
        for i in order:
            acc = b[..., i, :].astype(a.dtype)
            others = range(i + 1, n) if upper else range(i)
            for j in others:
                acc = acc - a[..., i, j, None] * x[..., j, :]
            x[..., i, :] = acc if unit else acc / a[..., i, i, None]
    return x


def _tri_ref(a, b, upper, left, unitriangular):
    if not left:   # X A = B  <=>  A^T X^T = B^T
        x = _tri_ref(np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2), not upper, True, unitriangular)
        return np.swapaxes(x, -1, -2).copy()
    n = a.shape[-1]
    keep = np.triu(np.ones((n, n), bool), 1 if unitriangular else 0) if upper else \
        np.tril(np.ones((n, n), bool), -1 if unitriangular else 0)
    used = np.where(keep, a, 0)
    diag = np.diagonal(a, axis1=-2, axis2=-1)
    bad = _bad(used) | (False if unitriangular else (diag == 0).any(axis=-1))
    x = _tri_solve(np.where(bad[..., None, None], np.eye(n, dtype=a.dtype), used),
                   np.where(np.isfinite(b), b, 0), upper, unitriangular)
    x = np.where(bad[..., None, None] | ~np.isfinite(b).all(axis=-2, keepdims=True), np.nan, x)
    return x.astype(a.dtype, copy=False)


def _fix_signs(v):
    """Each column's component of largest magnitude (the first such) made positive."""
    idx = np.argmax(np.abs(v), axis=-2)[..., None, :]
    s = np.sign(np.take_along_axis(v, idx, axis=-2))
    return v * np.where(s == 0, 1, s)


def _eigh_ref(a):
    n = a.shape[-1]
    w = np.zeros(a.shape[:-1], a.dtype)
    v = np.zeros_like(a)
    if n:
        bad = _bad(np.tril(a))
        _per(lambda m: np.linalg.eigh(m, UPLO="L"), a, [w, v], bad)
        v = np.where(bad[..., None, None], np.nan, _fix_signs(np.nan_to_num(v)))
    return w, v.astype(a.dtype, copy=False)


def _qr_ref(a):
    m, n = a.shape[-2:]
    k = min(m, n)
    q = np.zeros(a.shape[:-1] + (k,), a.dtype)
    r = np.zeros(a.shape[:-2] + (k, n), a.dtype)
    if k:
        _per(lambda x: np.linalg.qr(x, mode="reduced"), a, [q, r], _bad(a))
    return q, r


def _slogdet_ref(a):
    sign, logdet = np.linalg.slogdet(np.where(_bad(a)[..., None, None], 1, a).astype(a.dtype))
    bad = _bad(a)
    return (np.where(bad, np.nan, sign).astype(a.dtype), np.where(bad, np.nan, logdet).astype(a.dtype))


# Higham 2005 (Algorithm 2.3), degree 13 throughout: b_0..b_13 of the [13/13] Pade approximant, theta_13
_PADE13 = (64764752532480000., 32382376266240000., 7771770303897600., 1187353796428800., 129060195264000.,
           10559470521600., 670442572800., 33522128640., 1323241920., 40840800., 960960., 16380., 182., 1.)
_THETA13 = 5.371920351148152


def _matrix_exp_ref(a):
    n = a.shape[-1]
    if n == 0 or a.size == 0:
        return a.copy()
    bad = _bad(a)
    A = np.where(bad[..., None, None], 0, a).astype(a.dtype)
    norm = np.abs(A).sum(axis=-2).max(axis=-1)                      # the 1-norm, per matrix
    with np.errstate(divide="ignore"):
        s = np.maximum(0, np.ceil(np.log2(np.maximum(norm, 1e-300) / _THETA13))).astype(np.int64)
    A = A / np.power(2.0, s)[..., None, None].astype(a.dtype)
    b = [a.dtype.type(c) for c in _PADE13]
    eye = np.eye(n, dtype=a.dtype)
    A2 = A @ A
    A4 = A2 @ A2
    A6 = A4 @ A2
    U = A @ (A6 @ (b[13] * A6 + b[11] * A4 + b[9] * A2) + b[7] * A6 + b[5] * A4 + b[3] * A2 + b[1] * eye)
    V = A6 @ (b[12] * A6 + b[10] * A4 + b[8] * A2) + b[6] * A6 + b[4] * A4 + b[2] * A2 + b[0] * eye
    R = np.linalg.solve(V - U, V + U)
    for step in range(int(s.max(initial=0))):
        R = np.where((s > step)[..., None, None], R @ R, R)
    return np.where(bad[..., None, None], np.nan, R).astype(a.dtype, copy=False)


# ---- torch lowerings (copied into generated torch source: only T and these helpers) ----------------------------
def _t_up(T, *xs):
    """f16/bf16 operands in float32 (torch.linalg has no half kernels on the CPU); the caller casts back."""
    return [x.float() if x.dtype in (T.float16, T.bfloat16) else x for x in xs]


def _t_bad(T, a):
    return ~T.isfinite(a).all(-1).all(-1)


def _t_clean(T, a, bad):
    return T.where(bad[..., None, None], T.eye(a.shape[-1], dtype=a.dtype, device=a.device), a)


def _t_nan(T, cond, x):
    return T.where(cond, T.full((), float("nan"), dtype=x.dtype, device=x.device), x)


def _solve_torch(T, a, b):
    dt = a.dtype
    a, b = _t_up(T, a, b)
    vec = b.ndim == a.ndim - 1
    bm = b.unsqueeze(-1) if vec else b
    bad = _t_bad(T, a)
    fin = T.isfinite(bm)
    x, info = T.linalg.solve_ex(_t_clean(T, a, bad), T.where(fin, bm, T.zeros((), dtype=bm.dtype, device=bm.device)))
    x = _t_nan(T, (bad | (info != 0))[..., None, None] | ~fin.all(-2, keepdim=True), x)
    return (x.squeeze(-1) if vec else x).to(dt)


def _inv_torch(T, a):
    dt = a.dtype
    a, = _t_up(T, a)
    bad = _t_bad(T, a)
    x, info = T.linalg.inv_ex(_t_clean(T, a, bad))
    return _t_nan(T, (bad | (info != 0))[..., None, None], x).to(dt)


def _chol_torch(T, a, upper):
    dt = a.dtype
    a, = _t_up(T, a)
    low = T.tril(a)
    bad = _t_bad(T, low)
    sym = low + T.tril(a, -1).transpose(-1, -2)
    x, info = T.linalg.cholesky_ex(_t_clean(T, sym, bad))
    x = _t_nan(T, (bad | (info != 0))[..., None, None], x)
    return (x.transpose(-1, -2) if upper else x).to(dt)


def _tri_torch(T, a, b, upper, left, unitriangular):
    dt = a.dtype
    a, b = _t_up(T, a, b)
    n = a.shape[-1]
    ones = T.ones((n, n), dtype=T.bool, device=a.device)
    keep = T.triu(ones, 1 if unitriangular else 0) if upper else T.tril(ones, -1 if unitriangular else 0)
    used = T.where(keep, a, T.zeros((), dtype=a.dtype, device=a.device))
    bad = _t_bad(T, used)
    if not unitriangular:
        bad = bad | (T.diagonal(a, 0, -2, -1) == 0).any(-1)
    fin = T.isfinite(b)
    x = T.linalg.solve_triangular(_t_clean(T, used, bad), T.where(fin, b, T.zeros((), dtype=b.dtype, device=b.device)),
                                  upper=upper, left=left, unitriangular=unitriangular)
    bad_b = ~fin.all(-2, keepdim=True) if left else ~fin.all(-1, keepdim=True)
    return _t_nan(T, bad[..., None, None] | bad_b, x).to(dt)


def _eigh_torch(T, a):
    dt = a.dtype
    a, = _t_up(T, a)
    low = T.tril(a)
    bad = _t_bad(T, low)
    sym = low + T.tril(a, -1).transpose(-1, -2)   # the lower triangle alone (so is its gradient)
    w, v = T.linalg.eigh(_t_clean(T, sym, bad), UPLO="L")
    idx = v.abs().argmax(dim=-2, keepdim=True)
    s = T.sign(T.gather(v, -2, idx))
    v = v * T.where(s == 0, T.ones_like(s), s)
    return _t_nan(T, bad[..., None], w).to(dt), _t_nan(T, bad[..., None, None], v).to(dt)


def _qr_torch(T, a):
    dt = a.dtype
    a, = _t_up(T, a)
    bad = _t_bad(T, a)
    q, r = T.linalg.qr(T.where(bad[..., None, None], T.zeros((), dtype=a.dtype, device=a.device), a), mode="reduced")
    return _t_nan(T, bad[..., None, None], q).to(dt), _t_nan(T, bad[..., None, None], r).to(dt)


def _slogdet_torch(T, a):
    dt = a.dtype
    a, = _t_up(T, a)
    bad = _t_bad(T, a)
    sign, logdet = T.linalg.slogdet(_t_clean(T, a, bad))
    return _t_nan(T, bad, sign).to(dt), _t_nan(T, bad, logdet).to(dt)


def _matrix_exp_torch(T, a):
    bad = _t_bad(T, a)
    # in float64 (torch's float32 matrix_exp is ~1e-5 off where the [13/13] Pade reference is ~1e-8)
    x = T.linalg.matrix_exp(_t_clean(T, a, bad).to(T.float64)).to(a.dtype)
    return _t_nan(T, bad[..., None, None], x)


# ---- registrations --------------------------------------------------------------------------------------------------
register("solve", "a, b", kind="contraction", infer=_solve_infer, ref=_solve_ref, torch=_solve_torch, flops=_solve_flops,
         doc="x with a @ x = b (LU with partial pivoting); b is [..., n, k], or [..., n] with a's batch dims; "
             "NaN for a singular a")
register("inv", "a", kind="contraction", infer=_unary_square("inv"), ref=_inv_ref, torch=_inv_torch,
         flops=_cube(2), doc="the inverse of each square matrix [..., n, n]; NaN for a singular one")
register("cholesky", "a", kind="contraction", attrs={"upper": False}, infer=_chol_infer, ref=_chol_ref,
         torch=_chol_torch, flops=_cube(sympy.Rational(1, 3)),
         doc="L (lower) with a = L L^T from a's lower triangle (upper=true: L^T); NaN if not positive definite")
register("triangular_solve", "a, b", kind="contraction",
         attrs={"upper": False, "left": True, "unitriangular": False}, infer=_tri_infer, ref=_tri_ref,
         torch=_tri_torch, flops=_tri_flops,
         doc="x with a @ x = b (left=false: x @ a = b) reading only a's lower (upper=true: upper) triangle, as "
             "torch.linalg.solve_triangular")
register("eigh", "a", kind="contraction", infer=_eigh_infer, ref=_eigh_ref, torch=_eigh_torch, flops=_cube(9),
         doc="(eigenvalues ascending, eigenvectors as columns) of a symmetric matrix's lower triangle; each "
             "eigenvector's largest-magnitude component is positive")
register("qr", "a", kind="contraction", infer=_qr_infer, ref=_qr_ref, torch=_qr_torch, flops=_qr_flops,
         doc="reduced QR (Q [..., m, k], R [..., k, n], k = min(m, n)) with numpy's and torch's (LAPACK) signs")
register("slogdet", "a", kind="contraction", infer=_slogdet_infer, ref=_slogdet_ref, torch=_slogdet_torch,
         flops=_cube(sympy.Rational(2, 3)),
         doc="(sign, log|det|) of each square matrix; (0, -inf) for a singular one")
register("matrix_exp", "a", kind="contraction", infer=_unary_square("matrix_exp"), ref=_matrix_exp_ref,
         torch=_matrix_exp_torch, flops=_cube(20),
         doc="the matrix exponential of each square matrix (scaling and squaring, Pade [13/13])")
