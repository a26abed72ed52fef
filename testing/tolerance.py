"""The one tolerance rule for comparing a backend or pass against the reference.

It is the rule PyTorch uses to judge torch.compile: run the reference in float64 too; a result
passes when its RMSE against the float64 result is at most k times the float32 reference's RMSE
against it, plus a small absolute floor. It scales with reduction length by itself (the f32
reference's own error grows with it), so no test needs a magic atol.
  k = 2 for f32; k = 3 for f16/bf16 and for tiny tensors (fewer than TINY elements).
The floor is PyTorch's too (torch._dynamo.utils.same: `tol / 10` with tol = 1e-4), scaled by the
result's magnitude when that exceeds 1: it covers results the f32 reference happens to get exactly
(so its RMSE is 0) while another correct f32 evaluation order is off by an ulp or two.
Integer and bool results (quantized paths, argmax, indices) must be equal. Complex results (c64) are compared
part by part: the real parts by this rule, then the imaginary parts.
Non-finite values are compared by pattern, never by value (`nonfinite_mismatch`): NaN exactly where the float64
reference has NaN, +inf / -inf exactly where it has the same infinity; the RMSE rule covers the finite rest. What
each op gives for NaN / inf / +-0 (the numeric semantics every backend follows: NaN through max-like ops and
reductions, argmax of a NaN row, softmax / logsumexp of infinite rows, pow's IEEE cases, floor-mod, integer
division by zero, f16 / bf16 rounding, var of huge values) is written down once, in docs/language.md
("Numeric semantics"); tests/test_numeric_semantics.py pins each rule on every backend.
`dtype=None` (the default) takes each output's precision from its own dtype (f16 outputs get the f16
rule, f64 outputs the f64 floor); pass a dtype to force one rule for every output.
A run in float64 (the reference's float64=True, a backend's f64 mode) is compared with
`assert_outputs_close(got, ref64, ref64, "f64")`: the float64 reference is its own baseline, so only
the f64 floor (1e-10 relative) is allowed.
"""
from __future__ import annotations

import numpy as np

K_F32 = 2.0
K_LOW_PRECISION = 3.0
TINY = 16
# Absolute floor on the RMSE bound, per dtype: covers results the f32 reference happens to get exact.
FLOOR = {"f64": 1e-10, "f32": 1e-5, "f16": 1e-3, "bf16": 1e-2}


def rmse(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((a - b) ** 2)))


def allowed_error(ref32, ref64, dtype: str = "f32") -> float:
    """The largest RMSE against `ref64` that a `dtype` result may have."""
    ref32 = np.asarray(ref32)
    k = K_LOW_PRECISION if dtype in ("f16", "bf16") or ref32.size < TINY else K_F32
    base = rmse(ref32, ref64)
    if dtype in ("f16", "bf16"):
        # a half-precision result cannot beat its own rounding: scale the f32 reference's error
        eps = {"f16": 2.0 ** -10, "bf16": 2.0 ** -7}[dtype]
        base = max(base, eps * float(np.sqrt(np.mean(np.asarray(ref64, np.float64) ** 2))))
    return k * base + FLOOR.get(dtype, 1e-6) * max(1.0, float(np.max(np.abs(ref64))) if np.size(ref64) else 1.0)


def dtype_of(arr) -> str:
    """The pnet precision name of an array's dtype (the rule its comparison uses)."""
    kind = np.asarray(arr).dtype
    return {np.dtype("float16"): "f16", np.dtype("float64"): "f64", np.dtype("complex128"): "f64"}.get(kind, "f32")


def nonfinite_mismatch(got, ref) -> str | None:
    """Why `got`'s non-finite values differ from `ref`'s, or None: NaN exactly where the reference has NaN,
    +inf / -inf exactly where it has the same infinity (compared by pattern, never by value: NaN != NaN)."""
    got, ref = np.asarray(got), np.asarray(ref)
    for what, g, r in (("NaN", np.isnan(got), np.isnan(ref)), ("+inf", np.isposinf(got), np.isposinf(ref)),
                       ("-inf", np.isneginf(got), np.isneginf(ref))):
        if not np.array_equal(g, r):
            where = np.argwhere(g != r)[0].tolist()
            return (f"{what} pattern differs from the reference: {int(np.sum(g != r))} elements, first at "
                    f"{where} (got {got[tuple(where)]!r}, reference {ref[tuple(where)]!r})")
    return None


def check_close(name: str, got, ref32, ref64, dtype: str | None = None) -> None:
    """Raise AssertionError (naming the output, both errors and the bound) when `got` is not close enough.
    `dtype` None: the precision of `ref32` (the reference run in the program's own dtypes)."""
    got = np.asarray(got)
    ref64 = np.asarray(ref64)
    if dtype is None:
        dtype = dtype_of(ref32)
    if got.shape != ref64.shape:
        raise AssertionError(f"{name}: shape {got.shape} != reference {ref64.shape}")
    if np.iscomplexobj(ref64) or np.iscomplexobj(got):   # complex: the real and imaginary parts, each by this rule
        ref32 = np.asarray(ref32)
        for part in ("real", "imag"):
            check_close(f"{name}.{part}", getattr(got, part), getattr(ref32, part), getattr(ref64, part), dtype)
        return
    if ref64.dtype.kind in "iub":
        if not np.array_equal(got, ref64):
            bad = int(np.sum(got != ref64))
            raise AssertionError(f"{name}: {bad} of {got.size} integer elements differ from the reference")
        return
    why = nonfinite_mismatch(got, ref64)
    if why:
        raise AssertionError(f"{name}: {why}")
    finite = np.isfinite(ref64)
    err = rmse(got[finite], ref64[finite])
    bound = allowed_error(np.asarray(ref32)[finite], ref64[finite], dtype)
    if err > bound:
        raise AssertionError(f"{name}: RMSE {err:.3g} vs float64 reference exceeds {bound:.3g} "
                             f"(f32 reference RMSE {rmse(np.asarray(ref32)[finite], ref64[finite]):.3g})")


def assert_outputs_close(got: dict, ref32: dict, ref64: dict, dtype: str | None = None) -> None:
    if set(got) != set(ref64):
        raise AssertionError(f"outputs differ: got {sorted(got)}, reference has {sorted(ref64)}")
    for k in ref64:
        check_close(k, got[k], ref32[k], ref64[k], dtype)
