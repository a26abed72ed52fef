"""The op registry: one entry per op holds its signature, type rule, NumPy reference, FLOP count
and torch lowering. Adding an op means adding one `register(...)` call in `ir/ops/`. The registry knows
no op module: `ir/ops/__init__.py` imports them (and `ir/__init__.py` imports `ir.ops`), so importing
anything under `pnet.ir` fills it.

Signature strings list the tensor inputs: `"x, w, b?"` (b optional) or `"*xs"` (variadic).
Attributes are compile-time values (ints, floats, bools, strings, lists) with defaults;
`REQUIRED` marks one the caller must give.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import sympy

from ..errors import PnetError, ShapeError
from .types import TensorType

REQUIRED = object()

# Op kinds drive fusion and FLOP defaults: elementwise ops fuse into chains, reductions
# carry pro/epilogues, contractions (matmul/conv) take epilogues, movement ops are index arithmetic.
KINDS = ("elementwise", "reduce", "contraction", "movement", "index", "norm", "attention", "source", "control")


@dataclass
class OpDef:
    name: str
    inputs: list[tuple[str, str]]           # (name, "" | "?" | "*")
    attrs: dict[str, Any]
    infer: Callable                          # (types, attrs) -> TensorType | list[TensorType]
    ref: Callable                            # NumPy reference: (*arrays, **attrs) -> array | tuple
    kind: str = "elementwise"
    flops: Callable | None = None            # (in_types, out_types, attrs) -> sympy expr
    torch: Callable | None = None            # (torch_module, *tensors, **attrs) -> tensor | tuple
    doc: str = ""
    # Triton lowering of a pointwise op: (*operand_exprs, **attrs) -> a Triton expression string
    # computed in f32 (helpers like `_erf` live in backends/triton/prelude.py). Other kinds lower
    # through the kernel templates of backends/triton, keyed by kind.
    triton: Callable | None = None
    # the lowering when the output is an integer, where it differs (floor division); None: `triton` serves
    # integers too if the op is exact integer arithmetic in a kernel (passes/fuse.INT_POINTWISE), else no kernel
    triton_int: Callable | None = None
    # the vector-Jacobian product, written as IR (passes/autodiff.py): (emitter, node, output cotangents) ->
    # one cotangent per input (None: no gradient flows there). None: the op has no gradient, and `no_grad`
    # says why (a gradient zero almost everywhere, ...); ops whose outputs are not floats never need one.
    vjp: Callable | None = None
    no_grad: str = ""
    # whether the op takes complex (c64 / c128) operands (`allow_complex`); any other op given one is refused
    # before its type rule runs, with a one-line error (real-only: relu, exp, softmax, comparisons, max, ...)
    complex_ok: bool = False

    @property
    def variadic(self) -> bool:
        return any(k == "*" for _, k in self.inputs)

    def check_arity(self, n: int):
        if self.variadic:
            fixed = len(self.inputs) - 1
            if n < fixed + 1:
                raise ShapeError(f"op '{self.name}' takes at least {fixed + 1} tensor inputs, got {n}")
            return
        required = sum(1 for _, k in self.inputs if k == "")
        if not required <= n <= len(self.inputs):
            want = str(required) if required == len(self.inputs) else f"{required} to {len(self.inputs)}"
            raise ShapeError(f"op '{self.name}' takes {want} tensor inputs, got {n}")

    def bind_attrs(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in; unknown or missing attributes are errors."""
        for k in given:
            if k not in self.attrs:
                known = ", ".join(self.attrs) or "none"
                raise PnetError(f"op '{self.name}' has no attribute '{k}' (attributes: {known})")
        out = {}
        for k, default in self.attrs.items():
            if k in given:
                out[k] = given[k]
            elif default is REQUIRED:
                raise PnetError(f"op '{self.name}' needs attribute '{k}'")
            else:
                out[k] = default
        return out

    def infer_types(self, types: list[TensorType | None], attrs: dict) -> list[TensorType]:
        if not self.complex_ok:
            for t in types:
                if t is not None and t.dtype in ("c64", "c128"):
                    raise ShapeError(f"{self.name} is not defined on complex tensors, got {t} (take real(z), "
                                     "imag(z), abs(z) or angle(z) first)")
        try:
            out = self.infer(types, attrs)
        except PnetError:
            raise
        except (TypeError, ValueError, OverflowError, IndexError, KeyError, ZeroDivisionError) as e:
            # a type rule handed attributes of the wrong kind (`split(x, 1e308)`, `repeats=1e400`): the
            # caller's error to fix, so a located ShapeError rather than a crash
            shown = ", ".join(f"{k}={v!r}" for k, v in attrs.items())
            raise ShapeError(f"{self.name}: invalid attributes ({shown}): {e}") from None
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def count_flops(self, in_types, out_types, attrs) -> sympy.Expr:
        if self.flops is not None:
            return sympy.sympify(self.flops(in_types, out_types, attrs))
        if self.kind == "elementwise":
            return out_types[0].numel
        if self.kind in ("reduce", "norm"):
            return sum((t.numel for t in in_types if t is not None), sympy.Integer(0))
        return sympy.Integer(0)


OPS: dict[str, OpDef] = {}


def parse_signature(sig: str) -> list[tuple[str, str]]:
    out = []
    for part in (p.strip() for p in sig.split(",")):
        if not part:
            continue
        if part.startswith("*"):
            out.append((part[1:], "*"))
        elif part.endswith("?"):
            out.append((part[:-1], "?"))
        else:
            out.append((part, ""))
    return out


def register(name: str, sig: str, *, infer, ref, kind="elementwise", attrs=None, flops=None,
             torch=None, doc="", triton=None, triton_int=None, vjp=None, no_grad="") -> OpDef:
    if name in OPS:
        raise ValueError(f"op {name} registered twice")
    if kind not in KINDS:
        raise ValueError(f"op {name}: unknown kind {kind}")
    opdef = OpDef(name, parse_signature(sig), dict(attrs or {}), infer, ref, kind, flops, torch, doc, triton=triton,
                  triton_int=triton_int, vjp=vjp, no_grad=no_grad)
    OPS[name] = opdef
    return opdef


def vjp(*names: str):
    """Decorator: the gradient rule of ops `names` (see OpDef.vjp), written next to their registration."""
    def attach(fn):
        for name in names:
            OPS[name].vjp = fn
        return fn
    return attach


def no_grad(reason: str, *names: str) -> None:
    """Declare ops `names` non-differentiable: a gradient through one is an error that gives `reason`."""
    for name in names:
        OPS[name].no_grad = reason


def allow_complex(*names: str) -> None:
    """Ops `names` take complex operands (their type rules, references and lowerings handle c64 / c128)."""
    for name in names:
        OPS[name].complex_ok = True


def document(docs: dict[str, str]) -> None:
    """One-line docs of ops registered without one (a family's table at the end of its module)."""
    for name, doc in docs.items():
        OPS[name].doc = doc


def get(name: str) -> OpDef:
    if name not in OPS:
        raise PnetError(f"unknown op '{name}'")
    return OPS[name]


def all_ops() -> dict[str, OpDef]:
    return OPS
