"""Complex values and FFTs (ir/ops/fft.py). The generator's programs have real inputs and outputs, so each op is
drawn inside a chain that starts and ends real and keeps its input's shape (a `TypedCall`): a spectral filter
`irfft(rfft(t, axis) * complex(c, s), n, axis)` (rfft, irfft; rfft2 / irfft2 over two axes), `real` / `imag` of
`ifft(fft(t) * complex(c, s))` (fft, ifft, fft2, ifft2, complex multiply), `abs(fft(t, norm="forward"))`,
`imag(conj(complex(t, u)) * complex(c, s))` and `angle(complex(t, |t| + 0.5))` (the imaginary part kept positive:
no branch cut). t is tanh(x) (an infinity would make NaN or inf by the summation order; a NaN spreads over its
whole transform on every backend alike); norms drawn from the three."""
from __future__ import annotations

from ..values import Spec, TypedCall, lit

_NORMS = ("backward", "ortho", "forward")


def _source(g, ctx, rank=1):
    """A real f32 / f64 value of rank >= `rank` from the pool, or None."""
    return g.pick(ctx, lambda v: v.type.dtype in ("f32", "f64") and v.type.rank >= rank)


def _factor(g) -> str:
    c, s = g.ch.choice([(0.5, -0.25), (1.0, 0.0), (-0.75, 0.5), (0.0, 1.0)])
    return f"complex({c!r}, {s!r})"


def _norm(g) -> str:
    norm = g.ch.choice(_NORMS)
    return "" if norm == "backward" else f', norm="{norm}"'


def _axes(g, x, two):
    r = x.type.rank
    a = g.ch.int(0, r - 1)
    if not two:
        return [a - r if g.ch.flag(0.5) else a]
    b = g.ch.choice([i for i in range(r) if i != a])
    return [a, b]


def _typed(text, x, bound):
    call = TypedCall(text, x.type, x)
    call.exact, call.bound = False, bound
    return call


def _dim(x, axis) -> str:
    return lit(x.type.shape[axis])


def _transform_pair(g, ctx, two: bool, real: bool):
    """A source of rank >= 1 (2 for the 2-D transforms), its transformed axes as an attribute (`axis=1`,
    `axes=[0, 2]`), and the forward / inverse op names; None when no source fits."""
    x = _source(g, ctx, 2 if two else 1)
    if x is None:
        return None
    axes = _axes(g, x, two)
    where = f"axes={axes}" if two else f"axis={axes[0]}"
    fwd = ("r" if real else "") + "fft" + ("2" if two else "")
    return x, axes, where, fwd, "i" + fwd if not real else "ir" + fwd[1:]


def s_real_fft(op):
    """rfft / irfft (rfft2 / irfft2): the spectral filter of a real signal, back to its own length."""
    def sample(g, ctx, _op):
        pair = _transform_pair(g, ctx, op.endswith("2"), real=True)
        if pair is None:
            return None
        x, axes, where, fwd, inv = pair
        norm = _norm(g)
        text = f"{inv}({fwd}(tanh({x.name}), {where}{norm}) * {_factor(g)}, n={_dim(x, axes[-1])}, {where}{norm})"
        return _typed(text, x, 2.0)
    return sample


def s_complex_fft(op):
    """fft / ifft (fft2 / ifft2): real or imag of the round trip through a complex factor, or |fft| (forward)."""
    def sample(g, ctx, _op):
        pair = _transform_pair(g, ctx, op.endswith("2"), real=False)
        if pair is None:
            return None
        x, axes, where, fwd, inv = pair
        if g.ch.flag(0.3):
            return _typed(f'abs({fwd}(tanh({x.name}), {where}, norm="forward"))', x, 1.0)
        norm = _norm(g)
        a, b = (fwd, inv) if g.ch.flag(0.5) else (inv, fwd)
        part = g.ch.choice(["real", "imag"])
        text = f"{part}({b}({a}(tanh({x.name}), {where}{norm}) * {_factor(g)}, {where}{norm}))"
        return _typed(text, x, 1.5)
    return sample


def s_parts(g, ctx, op):
    """complex / real / imag / conj / abs of complex values, elementwise."""
    x = _source(g, ctx)
    if x is None:
        return None
    t = f"tanh({x.name})"
    if op == "angle":
        return _typed(f"angle(complex({t}, abs({t}) + 0.5))", x, 3.2)
    part = g.ch.choice(["real", "imag"]) if op not in ("real", "imag") else op
    z = f"complex({t}, {t} * 0.5 - 0.25)"
    if op == "conj" or g.ch.flag(0.5):
        z = f"conj({z})"
    if g.ch.flag(0.3):
        return _typed(f"abs({z} * {_factor(g)})", x, 2.0)
    return _typed(f"{part}({z} * {_factor(g)})", x, 2.0)


SPECS: dict[str, Spec] = {
    **{op: Spec(s_real_fft(op)) for op in ("rfft", "irfft", "rfft2", "irfft2")},
    **{op: Spec(s_complex_fft(op)) for op in ("fft", "ifft", "fft2", "ifft2")},
    **{op: Spec(s_parts) for op in ("complex", "real", "imag", "conj", "angle")},
}
