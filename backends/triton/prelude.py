"""Device helpers the generated kernels call. Written with `tl.*` primitives only: libdevice
functions fail under Triton's interpreter, which is how CI runs every kernel.
Import this module only after `runtime.ensure_mode()` has set TRITON_INTERPRET where needed."""
import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # odd, and exp of a non-positive argument never overflows
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x < 0, -y, y)


@triton.jit
def _erf(x):
    # erfc Chebyshev fit (Numerical Recipes), fractional error < 1.2e-7
    z = tl.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = 1.0 - t * tl.exp(p)
    return tl.where(x < 0, -r, r)


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x * 0.7071067811865476))


@triton.jit
def _gelu_tanh(x):
    return 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@triton.jit
def _softplus(x, beta, threshold):
    z = beta * x
    soft = (tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))) / beta
    return tl.where(z > threshold, x, soft)


@triton.jit
def _sign(x):
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, tl.where(x != x, x, 0.0)))   # sign(NaN) = NaN


@triton.jit
def _round_even(x):
    # round half to even, exactly: x - floor(x) is exact in float (Sterbenz), unlike floor(x + 0.5),
    # which rounds 0.49999997 + 0.5 up to 1.0
    r = tl.floor(x)
    d = x - r
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    return tl.where((d > 0.5) | ((d == 0.5) & odd), r + 1.0, r)


@triton.jit
def _quantize(x, s, z, lo, hi):
    # ir/ops/quant.py's rule: one correctly rounded division (div_rn: a plain `/` may be approximate on a
    # GPU), round half to even, + zero point, saturate; NaN -> 0. The integer value is held as a float.
    v = _round_even(tl.div_rn(x, s)) + z
    return tl.where(v != v, 0.0, tl.minimum(tl.maximum(v, lo), hi))


@triton.jit
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


@triton.jit
def _floordiv_int(a, b):
    q, r = _floor_divmod(a, b)
    return q


@triton.jit
def _mod_int(a, b):
    q, r = _floor_divmod(a, b)
    return r


@triton.jit
def _operands(a, b):
    # both operands as f32 tensors of one shape: under the interpreter a literal operand (`x ** 3.0`) makes
    # Python bools of its comparisons, and a scalar mask `&` a block mask fails
    a = tl.where(True, a, a).to(tl.float32)     # a literal becomes a scalar tensor
    b = tl.where(a == a, b, b).to(tl.float32)   # then each takes the other's shape (the where's, NaN or not)
    a = tl.where(b == b, a, a)
    return a, b


@triton.jit
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


@triton.jit
def _round_bf16(x):
    # x (f32) rounded to the nearest bf16, ties to even, kept in f32: add half an ulp of bf16 (less one, plus the
    # kept lowest bit) and cut the low 16 bits; overflow carries into the exponent (-> +-inf), NaN stays NaN.
    # Not x.to(tl.bfloat16): Triton's interpreter truncates there.
    u = x.to(tl.uint32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, x, u.to(tl.float32, bitcast=True))


@triton.jit
def _round_f16(x):
    # x (f32) rounded to the nearest f16 (ties to even, overflow to +-inf, subnormals kept), kept in f32
    return x.to(tl.float16).to(tl.float32)


@triton.jit
def _any(mask):
    # whether any lane of a block (of any rank, or a scalar: broadcast to [1] first) is set
    m = mask.to(tl.int32) + tl.zeros([1], tl.int32)
    return tl.max(tl.ravel(m), axis=0) > 0


@triton.jit
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


@triton.jit
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


@triton.jit
def _store_cast(v, ptr):
    # v as the element type of `ptr`, for a store: rounded to nearest even (Triton's interpreter truncates f32 ->
    # bf16, a GPU rounds), so every backend stores the bf16 value the reference holds
    if ptr.dtype.element_ty == tl.bfloat16:   # the rounded value's top 16 bits are the bf16 (subnormals too)
        u = _round_bf16(v.to(tl.float32)).to(tl.uint32, bitcast=True) >> 16
        return u.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return v.to(ptr.dtype.element_ty)
