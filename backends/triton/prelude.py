"""Device helpers the generated kernels call. Written with `tl.*` primitives only: libdevice
functions fail under Triton's interpreter, which is how CI runs every kernel.
Import this module only after `runtime.ensure_mode()` has set TRITON_INTERPRET where needed."""
import os

import triton
import triton.language as tl

# Compiled for a GPU the helpers are @triton.jit functions. Under the interpreter they are plain Python over the
# (patched) `tl`: the interpreter re-patches triton.language on every call of a jitted helper (~3 ms, once per
# kernel program and helper), which was a third of the time of a CPU run of a model's kernels.
helper = (lambda fn: fn) if os.environ.get("TRITON_INTERPRET") == "1" else triton.jit


@helper
def _tanh(x):
    # odd, and exp of a non-positive argument never overflows
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


@helper
def _erf(x):
    # erfc Chebyshev fit (Numerical Recipes), fractional error < 1.2e-7
    z = tl.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = 1.0 - t * tl.exp(p)
    return tl.where(x < 0, -r, r)


@helper
def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x * 0.7071067811865476))


@helper
def _gelu_tanh(x):
    return 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@helper
def _softplus(x, beta, threshold):
    z = beta * x
    soft = (tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))) / beta
    return tl.where(z > threshold, x, soft)


@helper
def _sign(x):
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, tl.where(x != x, x, 0.0)))   # sign(NaN) = NaN


@helper
def _round_even(x):
    # round half to even, exactly: x - floor(x) is exact in float (Sterbenz), unlike floor(x + 0.5),
    # which rounds 0.49999997 + 0.5 up to 1.0
    r = tl.floor(x)
    d = x - r
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    return tl.where((d > 0.5) | ((d == 0.5) & odd), r + 1.0, r)


@helper
def _quantize(x, s, z, lo, hi):
    # ir/ops/quant.py's rule: one correctly rounded division (div_rn: a plain `/` may be approximate on a
    # GPU), round half to even, + zero point, saturate; NaN -> 0. The integer value is held as a float.
    v = _round_even(tl.div_rn(x, s)) + z
    return tl.where(v != v, 0.0, tl.minimum(tl.maximum(v, lo), hi))


@helper
def _floor_divmod(a, b):
    # NumPy's integer floor_divide and mod (x // 0 and x % 0 are 0). Whether `//` truncates (C, a GPU) or
    # floors (the interpreter), the remainder's sign tells: unlike the divisor's, step the quotient down.
    nz = b != 0
    d = tl.where(nz, b, 1)
    q = a // d
    r = a - q * d
    fix = (r != 0) & ((r < 0) != (d < 0))
    q = tl.where(fix, q - 1, q)
    r = tl.where(fix, r + d, r)
    return tl.where(nz, q, 0), tl.where(nz, r, 0)


@helper
def _floordiv_int(a, b):
    q, r = _floor_divmod(a, b)
    return q


@helper
def _mod_int(a, b):
    q, r = _floor_divmod(a, b)
    return r


@helper
def _operands(a, b):
    # both operands as f32 tensors of one shape: under the interpreter a literal operand (`x ** 3.0`) makes
    # Python bools of its comparisons, and a scalar mask `&` a block mask fails
    a = tl.where(True, a, a).to(tl.float32)     # a literal becomes a scalar tensor
    b = tl.where(a == a, b, b).to(tl.float32)   # then each takes the other's shape (the where's, NaN or not)
    a = tl.where(b == b, a, a)
    return a, b


@helper
def _pow(a, b):
    # a ** b with C99 / NumPy's special cases (docs/language.md, Numeric semantics): x ** 0 = 1 and 1 ** y = 1
    # even for NaN, (-1) ** +-inf = 1, a negative finite base needs an integer exponent (else NaN), and an odd
    # integer exponent keeps the base's sign, -0.0 and -inf included. exp(b * log|a|) gives the magnitude,
    # infinities and zeros included.
    a, b = _operands(a, b)
    mag = tl.exp(b * tl.log(tl.abs(a)))
    b_int = tl.floor(b) == b                                     # +-inf count as (even) integers
    odd = b_int & (tl.abs(b) < float("inf")) & ((b - 2.0 * tl.floor(b * 0.5)) != 0.0)
    sign_bit = (a < 0) | (1.0 / a < 0)                           # 1 / -0.0 = -inf: -0.0 has its sign bit set
    r = tl.where(sign_bit & odd, -mag, mag)
    r = tl.where((a < 0) & (a > float("-inf")) & ~b_int & (b == b), float("nan"), r)
    one = (b == 0.0) | (a == 1.0) | ((a == -1.0) & (tl.abs(b) == float("inf")))
    return tl.where(one, 1.0, r)


@helper
def _round_bf16(x):
    # x (f32) rounded to the nearest bf16, ties to even, kept in f32: add half an ulp of bf16 (less one, plus the
    # kept lowest bit) and cut the low 16 bits; overflow carries into the exponent (-> +-inf), NaN stays NaN.
    # Not x.to(tl.bfloat16): Triton's interpreter truncates there.
    u = x.to(tl.uint32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, x, u.to(tl.float32, bitcast=True))


@helper
def _round_f16(x):
    # x (f32) rounded to the nearest f16 (ties to even, overflow to +-inf, subnormals kept), kept in f32
    return x.to(tl.float16).to(tl.float32)


@helper
def _any(mask):
    # whether any lane of a block (of any rank, or a scalar: broadcast to [1] first) is set
    m = mask.to(tl.int32) + tl.zeros([1], tl.int32)
    return tl.max(tl.ravel(m), axis=0) > 0


@helper
def _fmod_abs(r, d):
    # |a| fmod |b| exactly, for finite r = |a| >= 0 and d = |b| > 0: binary long division. t runs over d * 2^k
    # (doubling is exact) down from the largest t <= r; each r - t is exact (Sterbenz: t <= r < 2t). The
    # loops run as often as the exponents of r and d differ, so a quotient of 2^100 costs 100 steps, not 2^100.
    t = d
    grow = (t * 2.0 <= r)
    while _any(grow):
        t = tl.where(grow, t * 2.0, t)
        grow = grow & (t * 2.0 <= r)
    live = t >= d
    while _any(live):
        r = tl.where(live & (r >= t), r - t, r)
        t = tl.where(live, t * 0.5, t)
        live = live & (t >= d)
    return r


@helper
def _mod_float(a, b):
    # NumPy's float `%` (floor-mod): r = fmod(a, b) computed exactly; a non-zero r whose sign is not b's gets b
    # added; a zero r takes b's sign. a % 0, inf % b and NaN give NaN; finite a % inf is a, or +-inf once the
    # signs differ (NumPy's rule; `a - b * floor(a / b)` is wrong once a / b is not exact, e.g. 1e10 % 1.5).
    a, b = _operands(a, b)
    ok = (tl.abs(a) < float("inf")) & (b != 0.0) & (b == b)
    d = tl.where(ok, tl.abs(b), 1.0)
    ra = tl.where(ok, tl.abs(a), 0.0)
    finite_b = d < float("inf")
    r = tl.where(finite_b, _fmod_abs(tl.where(finite_b, ra, 0.0), tl.where(finite_b, d, 1.0)), ra)
    r = tl.where(a < 0, -r, r)
    r = tl.where((r != 0.0) & ((r < 0) != (b < 0)), r + b, r)
    r = tl.where(r == 0.0, tl.where(b < 0, -0.0, 0.0), r)
    return tl.where(ok, r, float("nan"))


@helper
def _store_cast(v, ptr):
    # v as the element type of `ptr`, for a store: rounded to nearest even (Triton's interpreter truncates f32 ->
    # bf16, a GPU rounds), so every backend stores the bf16 value the reference holds
    if ptr.dtype.element_ty == tl.bfloat16:   # the rounded value's top 16 bits are the bf16 (subnormals too)
        u = _round_bf16(v.to(tl.float32)).to(tl.uint32, bitcast=True) >> 16
        return u.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return v.to(ptr.dtype.element_ty)


# ---- special functions (ir/ops/special.py): accurate to a few f32 ulps away from cancellation ----------------
@helper
def _atan(x):
    # Cephes atanf: reduced to |t| <= tan(pi/8) by atan(x) = pi/2 + atan(-1/x) or pi/4 + atan((x-1)/(x+1)), then an
    # odd polynomial (relative error ~1e-7); odd in x; +-inf give +-pi/2, NaN stays NaN
    a = tl.abs(x)
    big = a > 2.414213562373095
    mid = a > 0.4142135623730950
    t = tl.where(big, -1.0 / tl.where(big, a, 1.0), tl.where(mid, (a - 1.0) / (a + 1.0), a))
    base = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
    z = t * t
    r = base + ((((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * t + t)
    return tl.where(x < 0, -r, r)


@helper
def _atan2(y, x):
    # C99 atan2: atan of min/max of |y|, |x| in [0, 1] (both infinite: 1; both zero: 0), unfolded to the octant,
    # then the quadrant; a negative zero counts as negative (atan2(0, -0) = pi, atan2(-0, -0) = -pi)
    y, x = _operands(y, x)
    ay = tl.abs(y)
    ax = tl.abs(x)
    hi = tl.maximum(ay, ax)
    lo = tl.minimum(ay, ax)
    both_inf = (ay == float("inf")) & (ax == float("inf"))
    t = tl.where(both_inf, 1.0, tl.where(hi == 0.0, 0.0, lo / tl.where(hi == 0.0, 1.0, hi)))
    r = _atan(t)
    r = tl.where(ay > ax, 1.5707963267948966 - r, r)
    r = tl.where((x < 0) | (1.0 / x < 0), 3.141592653589793 - r, r)
    r = tl.where((y < 0) | (1.0 / y < 0), -r, r)
    return tl.where((x != x) | (y != y), float("nan"), r)


@helper
def _asin(x):
    # atan2(x, sqrt(1 - x^2)), with 1 - x^2 as (1 - x)(1 + x) (exact 1 - x near 1); NaN outside [-1, 1]
    return _atan2(x, tl.sqrt((1.0 - x) * (1.0 + x)))


@helper
def _acos(x):
    return _atan2(tl.sqrt((1.0 - x) * (1.0 + x)), x)


@helper
def _log1p(x):
    # log(u) * x / (u - 1) with u = 1 + x rounded: the quotient corrects the rounding of u (Goldberg's trick)
    u = 1.0 + x
    d = u - 1.0
    r = tl.where(d == 0.0, x, tl.log(u) * (x / tl.where(d == 0.0, 1.0, d)))
    return tl.where(x == float("inf"), x, r)


@helper
def _expm1(x):
    # (u - 1) * x / log(u) with u = exp(x) (Kahan's trick); exp(x) == 1: x itself; u - 1 == -1: -1 (-inf included)
    u = tl.exp(x)
    d = u - 1.0
    lu = tl.log(u)
    r = tl.where(u == 1.0, x, tl.where(d == -1.0, -1.0, d * (x / tl.where(lu == 0.0, 1.0, lu))))
    return tl.where(u == float("inf"), u, r)


@helper
def _logaddexp(a, b):
    # max + log1p(exp(-|a - b|)); equal infinities give themselves (inf - inf would be NaN); NaN propagates
    a, b = _operands(a, b)
    m = tl.maximum(a, b)
    r = m + _log1p(tl.exp(-tl.abs(a - b)))
    r = tl.where((a == b) & (tl.abs(a) == float("inf")), a, r)
    return tl.where((a != a) | (b != b), float("nan"), r)


@helper
def _xlogy(x, y):
    # x * log(y); 0 where x == 0 whatever y, but NaN where y is NaN (torch.xlogy)
    x, y = _operands(x, y)
    r = tl.where(x == 0.0, 0.0, x * tl.log(y))
    return tl.where(y != y, y, r)


@helper
def _lgamma_pos(x):
    # log Gamma(x) for x >= 1/2 (or +inf): Gamma(x) = Gamma(x + 8) / (x (x+1) ... (x+7)) below 8, then Stirling's
    # series with terms to z^-5 (truncation < 3e-10 at z >= 8); z (log z - 1) first, so it overflows only as lgamma does
    small = x < 8.0
    s = tl.where(small, x, 1.0)
    p = s * (s + 1.0) * (s + 2.0) * (s + 3.0) * (s + 4.0) * (s + 5.0) * (s + 6.0) * (s + 7.0)
    z = tl.where(small, x + 8.0, x)
    lz = tl.log(z)
    iz = 1.0 / z
    iz2 = iz * iz
    r = z * (lz - 1.0) - 0.5 * lz + 0.9189385332046727 + iz * (0.08333333333333333 - iz2 * (
        0.002777777777777778 - iz2 * 0.0007936507936507937))
    r = tl.where(small, r - tl.log(p), r)
    return tl.where(x == float("inf"), x, r)


@helper
def _lgamma(x):
    # below 1/2 the reflection log Gamma(x) = log(pi / |sin(pi x)|) - log Gamma(1 - x), |sin(pi x)| taken at the
    # exact fraction f = |x| - floor(|x|) folded to [0, 1/2] (x - floor(x) would round -1e-40 to 1); +inf at 0, the
    # negative integers and -inf
    neg = x < 0.5
    y = _lgamma_pos(tl.where(neg, 1.0 - x, x))
    a = tl.abs(x)
    f = a - tl.floor(a)
    s = tl.sin(3.141592653589793 * tl.minimum(f, 1.0 - f))
    r = tl.where(neg, 1.1447298858494002 - tl.log(s) - y, y)
    pole = (x <= 0.0) & (tl.floor(x) == x)
    return tl.where(pole, float("inf"), r)


@helper
def _digamma_pos(x):
    # psi(x) for x > 0: psi(x) = psi(x + 8) - sum 1 / (x + k) below 8, then the asymptotic series to z^-6
    small = x < 8.0
    s = tl.where(small, x, 1.0)
    acc = 1.0 / s + 1.0 / (s + 1.0) + 1.0 / (s + 2.0) + 1.0 / (s + 3.0) + 1.0 / (s + 4.0) + 1.0 / (s + 5.0) + \
        1.0 / (s + 6.0) + 1.0 / (s + 7.0)
    z = tl.where(small, x + 8.0, x)
    w = 1.0 / (z * z)
    r = tl.log(z) - 0.5 / z - w * (0.08333333333333333 - w * (0.008333333333333333 - w * 0.003968253968253968))
    return tl.where(small, r - acc, r)


@helper
def _digamma(x):
    # reflection below 0: psi(x) = psi(1 - x) - pi cot(pi x) = psi(1 - x) + pi cot(pi |x|), with cot(pi |x|) taken at
    # r = |x| - floor(|x|) folded to [-1/2, 1/2] (exact); as torch: -inf at +0, +inf at -0, NaN at the negative
    # integers and -inf
    neg = x < 0
    y = _digamma_pos(tl.where(neg, 1.0 - x, x))
    a = tl.abs(x)
    f = a - tl.floor(a)
    t = 3.141592653589793 * tl.where(f > 0.5, f - 1.0, f)
    r = tl.where(neg, y + 3.141592653589793 * tl.cos(t) / tl.sin(t), y)
    r = tl.where(neg & (tl.floor(x) == x), float("nan"), r)
    return tl.where(x == 0.0, tl.where(1.0 / x < 0, float("inf"), float("-inf")), r)


@helper
def _erfinv(x):
    # Giles (2010), "Approximating the erfinv function", single precision: w = -log(1 - x^2), a polynomial in w
    # (w < 5) or in sqrt(w); +-inf at +-1, NaN outside [-1, 1]
    w = -tl.log((1.0 - x) * (1.0 + x))
    central = w < 5.0
    wc = w - 2.5
    p = 2.81022636e-08
    p = 3.43273939e-07 + p * wc
    p = -3.5233877e-06 + p * wc
    p = -4.39150654e-06 + p * wc
    p = 0.00021858087 + p * wc
    p = -0.00125372503 + p * wc
    p = -0.00417768164 + p * wc
    p = 0.246640727 + p * wc
    p = 1.50140941 + p * wc
    wt = tl.sqrt(tl.where(central, 5.0, w)) - 3.0
    q = -0.000200214257
    q = 0.000100950558 + q * wt
    q = 0.00134934322 + q * wt
    q = -0.00367342844 + q * wt
    q = 0.00573950773 + q * wt
    q = -0.0076224613 + q * wt
    q = 0.00943887047 + q * wt
    q = 1.00167406 + q * wt
    q = 2.83297682 + q * wt
    r = tl.where(central, p, q) * x
    return tl.where(tl.abs(x) == 1.0, x * float("inf"), r)
