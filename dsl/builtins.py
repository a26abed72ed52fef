"""DSL builtins that are not single registry ops: initializers, tensor constructors, shape helpers,
and scalar versions of min/max. Each takes (elaborator, args, kwargs, frame, loc)."""
from __future__ import annotations

import sympy

from ..errors import PnetError
from ..ir.types import DTYPES, dim, is_float, normalize_axis
from .values import InitSpec, Tensor


def _init(fn, positional=(), named=()):
    """An initializer call: `normal(0, 0.02)`, `kaiming(fan_in=256)`; numbers only."""
    def build(el, args, kwargs, frame, loc):
        for v in list(args) + list(kwargs.values()):
            if isinstance(v, (Tensor, list)) or isinstance(v, bool):
                raise PnetError(f"{fn}() takes numbers, got {el._show(v)}", loc)
        allowed = set(positional) | set(named)
        for k in kwargs:
            if k not in allowed:
                raise PnetError(f"{fn}() has no argument '{k}' (arguments: {', '.join(positional + named) or 'none'})", loc)
        if len(args) > len(positional):
            raise PnetError(f"{fn}() takes at most {len(positional)} positional arguments", loc)
        vals = tuple(float(a) if isinstance(a, sympy.Basic) else a for a in args)
        kw = tuple(sorted((k, float(v) if isinstance(v, sympy.Basic) else v) for k, v in kwargs.items()))
        return InitSpec(fn, vals, kw)
    return build


def _filled(value):
    """zeros() is an initializer; zeros([B, H]) (a shape) is a constant tensor."""
    init = _init("zeros" if value == 0 else "ones")

    def build(el, args, kwargs, frame, loc):
        if not args and not kwargs:
            return init(el, args, kwargs, frame, loc)
        return _full(el, [args[0], value] + list(args[1:]), kwargs, frame, loc)
    return build


def _full(el, args, kwargs, frame, loc):
    if len(args) < 2:
        raise PnetError("full(shape, value, dtype=\"f32\") needs a shape and a value", loc)
    shape, value = args[0], args[1]
    dtype = kwargs.get("dtype", args[2] if len(args) > 2 else ("f32" if not isinstance(value, bool) else "bool"))
    if dtype not in DTYPES:
        raise PnetError(f"unknown dtype '{dtype}'", loc)
    if not isinstance(shape, (list, tuple)):
        raise PnetError(f"full(): shape must be a list like [B, 4], got {el._show(shape)}", loc)
    return el.const(value, dtype, frame, loc, [dim(d) for d in shape])


def _like(value):
    def build(el, args, kwargs, frame, loc):
        x = el.to_tensor(args[0] if args else None, loc)
        return el.const(value, x.type.dtype, frame, loc, x.type.shape)
    return build


def _extreme(name, elementwise):
    """max(a, b) of numbers is computed now; of two tensors (or a tensor and a float) it is
    elementwise; max(x, axis) / max(x, axis=1) is a reduction."""
    def build(el, args, kwargs, frame, loc):
        if not any(isinstance(a, Tensor) for a in args):
            vals = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            if not vals or kwargs:
                raise PnetError(f"{name}() of numbers takes two or more numbers", loc)
            return (max if name == "max" else min)(vals)
        pairwise = len(args) == 2 and not kwargs and any(isinstance(a, (Tensor, float)) for a in args[1:] + args[:1]) \
            and not (isinstance(args[0], Tensor) and isinstance(args[1], int))
        return el.call_op(elementwise if pairwise else name, args, kwargs, frame, loc)
    return build


def _swapaxes(el, args, kwargs, frame, loc):
    x, a, b = args
    x = el.to_tensor(x, loc)
    perm = list(range(x.type.rank))
    a, b = normalize_axis(a, x.type.rank), normalize_axis(b, x.type.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return el.emit("transpose", [x], {"perm": perm}, frame, loc)


def _flatten(el, args, kwargs, frame, loc):
    x = el.to_tensor(args[0], loc)
    start = kwargs.get("start", args[1] if len(args) > 1 else 0)
    end = kwargs.get("end", args[2] if len(args) > 2 else -1)
    r = x.type.rank
    start, end = normalize_axis(start, r), normalize_axis(end, r)
    merged = sympy.Integer(1)
    for d in x.type.shape[start:end + 1]:
        merged *= d
    shape = list(x.type.shape[:start]) + [merged] + list(x.type.shape[end + 1:])
    return el.emit("reshape", [x], {"shape": shape}, frame, loc)


def _stack(el, args, kwargs, frame, loc):
    """stack([a, b, ...], axis=0): the tensors (one shape) along a new axis, as torch.stack / np.stack."""
    xs = args[0] if args else kwargs.get("xs")
    if not isinstance(xs, (list, tuple)) or not xs:
        raise PnetError(f"stack(xs, axis=0): xs must be a non-empty list of tensors, got {el._show(xs)}", loc)
    axis = kwargs.get("axis", args[1] if len(args) > 1 else 0)
    parts = [el.call_op("expand_dims", [el.to_tensor(x, loc)], {"axis": axis}, frame, loc) for x in xs]
    return el.call_op("concat", [parts], {"axis": axis}, frame, loc)


def _eye(el, args, kwargs, frame, loc):
    """eye(n, dtype="f32"): the n x n identity matrix."""
    if not args:
        raise PnetError("eye(n, dtype=\"f32\") needs a size", loc)
    ids = el.call_op("arange", [], {"n": args[0]}, frame, loc)
    return el.call_op("one_hot", [ids], {"depth": args[0], "dtype": kwargs.get("dtype", "f32")}, frame, loc)


def _dim(el, args, kwargs, frame, loc):
    x = el.to_tensor(args[0], loc)
    axis = normalize_axis(args[1], x.type.rank)
    return el._dimval(x.type.shape[axis])


def _len(el, args, kwargs, frame, loc):
    v = args[0]
    if isinstance(v, Tensor):
        return el._dimval(v.type.shape[0])
    if isinstance(v, (list, tuple, str)):
        return len(v)
    raise PnetError(f"len() of {el._show(v)}", loc)


def _number(kind):
    def build(el, args, kwargs, frame, loc):
        v = args[0]
        if isinstance(v, Tensor):
            raise PnetError(f"{kind}() converts compile-time numbers; for tensors use cast(x, \"f32\")", loc)
        if isinstance(v, sympy.Basic) and not v.is_number:
            raise PnetError(f"{kind}() of the symbolic dim {v}", loc)
        return int(v) if kind == "int" else float(v)
    return build


def _assert(el, args, kwargs, frame, loc):
    cond = args[0]
    msg = args[1] if len(args) > 1 else "assertion failed"
    if not el._truth(cond, loc):
        raise PnetError(str(msg), loc)
    return True


def _transpose(el, args, kwargs, frame, loc):
    """transpose(x) reverses axes; transpose(x, [perm]) permutes; transpose(x, a, b) swaps two."""
    if len(args) == 3:
        return _swapaxes(el, args, kwargs, frame, loc)
    return el.call_op("transpose", args, kwargs, frame, loc)


def _grad(el, args, kwargs, frame, loc):
    """grad(y, x) / grad(y, [a, b]): the gradient of the float scalar y with respect to each tensor, built into
    the graph here by passes/autodiff.py (so it can be used in the forward pass, and differentiated again)."""
    from ..passes.autodiff import backprop
    if len(args) != 2 or kwargs:
        raise PnetError("grad(y, x) takes the value to differentiate and a tensor or a list of tensors", loc)
    y, wrt = el.to_tensor(args[0], loc), args[1]
    many = isinstance(wrt, (list, tuple))
    xs = [el.to_tensor(x, loc) for x in (wrt if many else [wrt])]
    if y.type.rank != 0 or not is_float(y.type.dtype):
        raise PnetError(f"grad: the value to differentiate must be a float scalar, got {y.type} "
                        f"(differentiate sum(...) or mean(...) of it)", loc)
    for x in xs:
        if not is_float(x.type.dtype):
            raise PnetError(f"grad: only float tensors have gradients, got {x.type}", loc)
    region = frame.region
    seed = el.const(1.0, y.type.dtype, frame, loc)
    nodes, grads = backprop(list(region.graph.nodes), {region.lift(y.value): region.lift(seed.value)},
                            [region.lift(x.value) for x in xs])
    region.graph.nodes += nodes
    for n in nodes:
        region.own.update(n.outputs)
    out = [Tensor(g) for g in grads]
    return out if many else out[0]


BUILTINS = {
    "normal": _init("normal", ("mean", "std")),
    "trunc_normal": _init("trunc_normal", ("mean", "std")),
    "uniform": _init("uniform", ("low", "high")),
    "constant": _init("constant", ("value",)),
    "kaiming": _init("kaiming", ("gain",), ("fan_in", "mode")),
    "xavier": _init("xavier", ("gain",), ("fan_in", "fan_out")),
    "orthogonal": _init("orthogonal", ("gain",)),
    "zeros": _filled(0),
    "ones": _filled(1),
    "full": _full,
    "zeros_like": _like(0),
    "ones_like": _like(1),
    "max": _extreme("max", "maximum"),
    "min": _extreme("min", "minimum"),
    "swapaxes": _swapaxes,
    "transpose": _transpose,
    "permute": lambda el, a, k, f, loc: el.call_op("transpose", [a[0], list(a[1:]) if len(a) > 2 else a[1]], k, f, loc),
    "flatten": _flatten,
    "unsqueeze": lambda el, a, k, f, loc: el.call_op("expand_dims", a, k, f, loc),
    "dim": _dim,
    "len": _len,
    "int": _number("int"),
    "float": _number("float"),
    "assert": _assert,
    "grad": _grad,
    "stack": _stack,
    "eye": _eye,
}
