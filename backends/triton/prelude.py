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
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))


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
def _pow(a, b):
    # a ** b for real a: negative bases need an integer exponent (else nan), like numpy
    mag = tl.exp(b * tl.log(tl.abs(a)))
    b_int = tl.floor(b) == b
    odd = b_int & ((b - 2.0 * tl.floor(b * 0.5)) != 0.0)
    neg = tl.where(b_int, tl.where(odd, -mag, mag), float("nan"))
    zero = tl.where(b == 0.0, 1.0, tl.where(b > 0.0, 0.0, float("inf")))
    return tl.where(a > 0, mag, tl.where(a == 0, zero, neg))
