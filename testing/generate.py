"""Random well-typed pnet programs, for the differential tester (NNSmith / GenCoG style).

The op registry drives the generator: every op a program uses is proposed by a *sampler* (which tensors,
which attributes) and accepted only if the op's own type rule (`OpDef.infer`) accepts it, so output types
come from the registry, never from a second copy of the shape rules here. Ops whose constraints a generic
sampler cannot meet (convs, pools, sdpa, split, einsum, index and segment ops, topk, ...) have a per-op
sampler; all such knowledge lives in ONE table, `TABLE`, keyed by op name. An op missing from the table is
still fuzzed by the generic sampler of its kind (`GENERIC`): unary/binary elementwise with broadcasting,
reductions with axes/keepdims, movement ops with attributes sampled from their names and defaults
(`sample_attr`). `tests/test_properties.py::test_every_op_can_be_generated` fails when a registered op
(kind other than control/source) cannot be generated either way.

Programs are source text (so the parser, elaborator and formatter are exercised too) with defs, params,
compile-time `for`/`if`, `scan`, index notation, hyperparameters overridden like `--set`, and symbolic
dims bound at run time. Values stay finite (inputs of log/sqrt/rsqrt/reciprocal/pow/div are made safe in
the source, exp's input is bounded, large values are squashed with tanh). Discontinuous ops (floor, round,
sign, heaviside, comparisons, argmax, sort/topk indices, float->int casts) only see *exact* values -- ones
equal in the float32 and float64 references (inputs, params, constants and movement/selection of them) --
so both references agree and integer outputs must match exactly.

Two front ends share one generator: `programs()` is a hypothesis strategy (shrinks to small programs) and
`random_program(seed)` uses `random.Random` (for scripts that need no hypothesis).
"""
from __future__ import annotations

import ast
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import sympy

from ..errors import PnetError
from ..ir import registry
from ..ir.registry import REQUIRED
from ..ir.types import TensorType, dims_equal, is_float, is_int, source_literal, sym

SYMBOLS = ("B", "T", "N", "L")         # N is also sympy's N(): a good test of the IR text parser
# dim names that are Python keywords or names generated code uses itself (issue 17: a dim `F` or `torch` shadowed
# a module in the torch source, `lambda` broke the IR text parser); drawn only after the plain ones
HOSTILE_SYMBOLS = ("F", "torch", "lambda", "d_B")
# model names the generated torch class, docstrings and comments carry (none a HOSTILE_SYMBOLS dim: a model's name
# is visible in its body, so it would hide the dim)
MODEL_NAMES = ("fuzz", "self", "nn", "math")
# input names that are Python's or the generated module's own names (a call by keyword cannot pass `self`)
HOSTILE_INPUTS = ("self", "np", "math", "forward", "module")
# file names the program is compiled under (what loc() records and the generated sources put in comments):
# newlines, quotes, `#`, backslashes and Unicode line breaks must stay inside comments (issue 17)
FILE_PATHS = ("<fuzz>", 'm\nimport os; os.system("exit 7")\n#"""\'x.pnet', "a\\b\r\x0b\x0c\x85\u2028\u2029#é.pnet")
MAX_NUMEL = 2048          # runtime elements of any tensor the generator creates
# programs whose float inputs hold NaN, +-inf, +-0, huge and tiny values (testing/fuzz.py with_special_values),
# compared by their non-finite pattern instead of discarded (the numeric semantics of docs/language.md)
SPECIALS_FRACTION = 0.2
ZERO_DIM_FRACTION = 0.1   # programs run with one symbolic dim bound to 0 (empty tensors)
BAD_INDEX_FRACTION = 0.08  # index operands moved out of range in the program (every backend: the same error)
BOUND_LIMIT = 1e4         # a value whose |.| estimate exceeds this gets squashed with tanh first
SKIP_KINDS = ("control", "source")
# Ops only the quantization / sparsity passes introduce, whose operands (i8 conv windows, N:M metadata, BSR index
# lists) must come from the pass to be valid. tests/test_quantize.py and tests/test_sparsify.py fuzz each of them
# op by op (hypothesis, torch against NumPy). quantize/dequantize/fake_quant/qmatmul/sub-byte packing have samplers.
PASS_ONLY_OPS = ("qconv1d", "qconv2d", "qconv3d", "nm_matmul", "bsr_matmul")

# Constructs the generator steers around while a compiler bug it found is open: name -> the regression file
# (tests/regressions/) that pins the bug. Delete an entry when its bug is fixed.
OPEN_BUGS: dict[str, str] = {
}
# ops that take bool operands meaningfully (the rest is arithmetic)
BOOL_OPS = {"logical_and", "logical_or", "logical_not", "where", "eq", "ne", "cast"}


# ---- choosers: where the randomness comes from ---------------------------------------------------
class Chooser:
    """Every random decision goes through `int`; shrinking (hypothesis) moves each toward `lo`, so the
    simplest option of a choice comes first and `flag` is False when shrunk."""

    def int(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def flag(self, p: float = 0.5) -> bool:
        return self.int(0, 99) >= 100 - round(p * 100)

    def choice(self, seq):
        seq = list(seq)
        return seq[self.int(0, len(seq) - 1)]

    def weighted(self, items, weights):
        total = sum(weights)
        scaled = [max(1, round(w * 100 / total)) for w in weights]
        r = self.int(0, sum(scaled) - 1)
        for it, w in zip(items, scaled):
            if r < w:
                return it
            r -= w
        return items[-1]

    def seeds(self, max_n: int) -> list[int]:
        """One seed per top-level statement (each statement is generated from its own seed, so shrinking can
        delete statements one by one)."""
        n = self.weighted(list(range(1, max_n + 1)), [1 + i for i in range(max_n)])
        return [self.int(0, 2 ** 31 - 1) for _ in range(n)]

    def shuffled(self, seq):
        seq = list(seq)
        out = []
        while seq:
            out.append(seq.pop(self.int(0, len(seq) - 1)))
        return out


class RandomChooser(Chooser):
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)


class DrawChooser(Chooser):
    """Decisions drawn from a hypothesis `draw` (inside `st.composite`)."""

    def __init__(self, draw):
        from hypothesis import strategies as st
        self.draw = draw
        self.st = st

    def int(self, lo, hi):
        if lo >= hi:
            return lo
        return self.draw(self.st.integers(lo, hi))

    def seeds(self, max_n: int) -> list[int]:
        # a hypothesis list: its shrinker deletes elements, i.e. whole statements
        return self.draw(self.st.lists(self.st.integers(0, 2 ** 31 - 1), min_size=1, max_size=max_n))


# ---- programs ------------------------------------------------------------------------------------------
@dataclass
class Program:
    source: str
    dims: dict = field(default_factory=dict)        # runtime sizes of the symbolic dims
    overrides: dict = field(default_factory=dict)   # hyperparameter overrides, as `--set` strings
    seed: int = 0                                   # seed of the random inputs and params
    ops: tuple = ()                                 # registry ops the generator applied
    path: str = "<fuzz>"                            # the file name it is compiled under (FILE_PATHS)
    specials: bool = False                          # float inputs hold NaN/inf/+-0/huge/tiny values (fuzz.py)

    def load_overrides(self) -> dict:
        return {**self.overrides, **self.dims}

    def to_text(self, note: str = "") -> str:
        """The program as a standalone .pnet file whose header records how to run it."""
        head = []
        for line in note.strip().splitlines():
            head.append("# " + line if line else "#")
        head.append(("# dims: " + " ".join(f"{k}={v}" for k, v in self.dims.items())).rstrip())
        head.append(("# set: " + " ".join(f"{k}={v}" for k, v in self.overrides.items())).rstrip())
        head.append(f"# seed: {self.seed}")
        if self.path != "<fuzz>":
            head.append(f"# path: {ascii(self.path)}")   # a Python literal: the path may hold newlines
        if self.specials:
            head.append("# specials: yes")
        return "\n".join(head) + "\n" + self.source

    def __repr__(self) -> str:   # hypothesis prints failing examples with this: paste it into a .pnet file
        return "Program.from_text('''\n" + self.to_text().replace("\\", "\\\\") + "''')"

    @classmethod
    def from_text(cls, text: str) -> "Program":
        dims, over, seed = {}, {}, 0
        for line in text.splitlines():
            m = re.match(r"^#\s*(dims|set|seed):(.*)$", line)
            if not m:
                continue
            key, rest = m.group(1), m.group(2).split()
            if key == "seed":
                seed = int(rest[0]) if rest else 0
            for part in rest if key != "seed" else []:
                k, v = part.split("=", 1)
                (dims if key == "dims" else over)[k] = int(v) if key == "dims" else v
        m = re.search(r"^#\s*path:\s*(.*)$", text, re.M)
        path = ast.literal_eval(m.group(1)) if m else "<fuzz>"
        specials = re.search(r"^#\s*specials:\s*yes\s*$", text, re.M) is not None
        return cls(text, dims, over, seed, path=path, specials=specials)


# ---- values the generator tracks --------------------------------------------------------------------------
@dataclass
class Var:
    name: str
    type: TensorType
    exact: bool = False      # equal in the float32 and float64 references
    bound: float = 4.0       # rough bound on |value|

    @property
    def float(self) -> bool:
        return is_float(self.type.dtype)


@dataclass
class Arg:
    """A tensor argument of a call: its source text (a name, or a safe wrapper around one), type, ..."""
    expr: str
    type: TensorType
    exact: bool
    bound: float
    atomic: bool = True
    literal: bool = False

    @staticmethod
    def of(v: Var) -> "Arg":
        return Arg(v.name, v.type, v.exact or not v.float, v.bound)

    def paren(self) -> str:
        return self.expr if self.atomic else f"({self.expr})"


def number(value, dtype="f32") -> Arg:
    return Arg(lit(value), TensorType(dtype, ()), True, abs(float(value)), literal=True)


@dataclass
class Call:
    args: list                      # Arg | None (an absent optional input)
    attrs: dict
    text: str | None = None         # custom source for the call; default `op(args, k=v)`
    keep: list | None = None        # which outputs join the pool (default: all)
    exact: bool | None = None
    bound: float | None = None
    kw_inputs: dict | None = None   # optional inputs given by keyword: {index: name}


@dataclass(frozen=True)
class Spec:
    """What the generator knows about one op (all optional)."""
    sample: Callable | None = None   # per-op sampler (g, ctx, op) -> Call | None; None = generic by kind
    domain: str | None = None        # a wrapper making float inputs safe: 'abs({}) + 0.5'
    exact_inputs: bool = False       # discontinuous: only exact float inputs
    keeps_exact: bool = False        # exact inputs give an exact result
    grow: Callable | None = None     # (input bounds, call, out types) -> output bound
    weight: float = 1.0


# ---- source literals ---------------------------------------------------------------------------------------
lit = source_literal  # (ir/types.py: the formatter's literal printer)


def shape_src(shape) -> str:
    return "[" + ", ".join(lit(d) for d in shape) + "]"


def type_src(t: TensorType) -> str:
    return f"{t.dtype}{shape_src(t.shape)}"


def renderable(d) -> bool:
    """Whether a dim prints as .pnet source (ints, symbolic dims, sums and products of them; no floor/ceiling
    or fractions, which a shape in the source cannot spell)."""
    d = sympy.sympify(d)
    return not d.atoms(sympy.Function) and all(a.is_Integer or a.is_Symbol for a in d.atoms())


def _all_renderable(v) -> bool:
    if isinstance(v, sympy.Basic):
        return renderable(v)
    if isinstance(v, (list, tuple)):
        return all(_all_renderable(x) for x in v)
    return True


def _free(v) -> set:
    if isinstance(v, sympy.Basic):
        return {s.name for s in v.free_symbols}
    if isinstance(v, (list, tuple)):
        return set().union(*[_free(x) for x in v]) if v else set()
    return set()


# ---- contexts: the block being generated --------------------------------------------------------------------
@dataclass
class Ctx:
    kind: str                       # model | def | loop | branch | scan
    lines: list
    indent: str
    pool: list
    symbols: set | None = None      # symbolic dims nameable here (None: all of the model's)
    depth: int = 0
    rhs: list = field(default_factory=list)  # (text, [Var]) of emitted single-output ops (for CSE bait)

    def child(self, kind, extra=()) -> "Ctx":
        return Ctx(kind, [], self.indent + "  ", list(self.pool) + list(extra), self.symbols, self.depth + 1)

    @property
    def can_declare_inputs(self) -> bool:
        return self.kind != "def" and self.symbols is None


class Gen:
    """One program's generator: a pool of typed values per block, statements appended as source lines."""

    def __init__(self, ch: Chooser, *, max_stmts: int = 10, features: bool = True, only_ops=None,
                 exclude_ops=()):
        self.ch = ch
        self.max_stmts = max_stmts
        self.features = features
        self.counter = 0
        self.dims: dict[str, int] = {}        # symbol -> runtime size
        self.inputs: list[str] = []
        self.hyper: list[str] = []            # model hyperparameter declarations
        self.overrides: dict[str, str] = {}
        self.defs: list[str] = []
        self.ties: list[str] = []
        self.empty_outputs: list[str] = []    # zero-length scan stacks, output as they are (see _empty_range)
        self.used: list[str] = []
        self.specials = False                 # this program's float inputs hold special values (Program.specials)
        self.model_params: list[tuple[str, TensorType]] = []
        self.imports: list[str] = []
        ops = registry.all_ops()
        self.op_names = [n for n, o in ops.items() if o.kind not in SKIP_KINDS and n not in PASS_ONLY_OPS
                         and n not in exclude_ops and (only_ops is None or n in only_ops)]

    # -- names and sizes --
    def fresh(self, prefix="v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def rt(self, d) -> int:
        d = sympy.sympify(d)
        if d.free_symbols:
            d = d.subs({sym(k): v for k, v in self.dims.items()})
        return int(d) if d.is_number else 10 ** 9

    def numel(self, t: TensorType) -> int:
        n = 1
        for d in t.shape:
            n *= self.rt(d)
        return n

    def symbol(self, existing=False) -> sympy.Symbol | None:
        """A symbolic dim: an existing one, or a new one (at most 3) with a small runtime size. A new one must
        appear in an input's shape (that declares it): `existing=True` for any other use."""
        if existing:
            return sym(self.ch.choice(sorted(self.dims))) if self.dims else None
        if self.dims and (len(self.dims) >= 3 or self.ch.flag(0.6)):
            return sym(self.ch.choice(sorted(self.dims)))
        name = next(s for s in SYMBOLS if s not in self.dims) if len(self.dims) < len(SYMBOLS) else SYMBOLS[0]
        if name != "B" and self.ch.flag(0.3):   # a second or third dim: sometimes named like Python's own names
            name = self.ch.choice(HOSTILE_SYMBOLS)
        if name not in self.dims:
            self.dims[name] = self.ch.int(1, 4) if name == "B" else self.ch.int(2, 5)
        return sym(name)

    def rand_dim(self, ctx=None, allow_sym=True, lo=1, hi=5, declare=False):
        """A dim: a small int or a symbolic dim. Only an input's shape may `declare` a new symbolic dim."""
        if allow_sym and (ctx is None or ctx.can_declare_inputs or ctx.symbols) and self.ch.flag(0.3):
            if declare and ctx is not None and ctx.can_declare_inputs:
                return self.symbol()
            names = sorted(self.dims) if ctx is None or ctx.symbols is None else sorted(ctx.symbols & set(self.dims))
            if names:
                return sym(self.ch.choice(names))
        return sympy.Integer(self.ch.int(lo, hi))

    def rand_shape(self, ctx, rank, allow_sym=True, declare=False):
        for _ in range(4):
            saved = dict(self.dims)
            shape = tuple(self.rand_dim(ctx, allow_sym, declare=declare) for _ in range(rank))
            if self.numel(TensorType("f32", shape)) <= 256:
                return shape
            self.dims = saved          # forget symbolic dims only a rejected shape introduced
        return tuple(sympy.Integer(2) for _ in range(rank))

    # -- new tensors --
    def new_input(self, ctx, dtype, shape) -> Var | None:
        if not ctx.can_declare_inputs:
            return None
        t = TensorType(dtype, shape)
        if self.numel(t) > MAX_NUMEL or not all(renderable(d) for d in t.shape):
            return None
        name = self.fresh("x")
        hostile = [n for n in HOSTILE_INPUTS if not any(line.startswith(f"input {n}:") for line in self.inputs)]
        if hostile and self.ch.flag(0.1):
            name = self.ch.choice(hostile)
        v = Var(name, t, True, 4.0 if is_float(dtype) else 8.0)
        self.inputs.append(f"input {v.name}: {type_src(t)}")
        return v

    def new_param(self, ctx, shape, init=None, bound=None) -> Var | None:
        if not all(sympy.sympify(d).is_Integer for d in shape):
            return None
        t = TensorType("f32", tuple(shape))
        if self.numel(t) > MAX_NUMEL:
            return None
        if init is None:
            init, bound = self.ch.choice([("normal(0, 0.5)", 2.5), ("uniform(-1, 1)", 1.0), ("ones()", 1.0),
                                          ("xavier()", 2.0), ("normal(0.5, 0.25)", 2.0)])
        name = self.fresh("p")
        ctx.lines.append(f"{ctx.indent}param {name}: {shape_src(shape)} = {init}")
        v = Var(name, t, True, bound or 2.5)
        if ctx.kind == "model":
            self.model_params.append((name, t))
        return v

    def new_tensor(self, ctx, dtype, shape, prefer_param=True) -> Var | None:
        """A fresh tensor of this exact type: a param (concrete f32 shapes) or an input."""
        if dtype == "f32" and (prefer_param or not ctx.can_declare_inputs) and \
                all(sympy.sympify(d).is_Integer for d in shape):
            v = self.new_param(ctx, shape)
            if v is not None:
                return v
        return self.new_input(ctx, dtype, shape)

    def index_input(self, ctx, shape, bound) -> Var | None:
        """An i64 input of this shape used to index a dim of runtime size `bound` (random_inputs draws its
        values from the consumers' sizes -- not through a scan body, where it uses [0, 2))."""
        if ctx.kind == "scan" and bound < 2:
            return None
        v = self.new_input(ctx, "i64", tuple(shape))
        if v is not None and self.features and self.ch.flag(BAD_INDEX_FRACTION):
            return self.out_of_range(ctx, v, bound)
        return v

    def out_of_range(self, ctx, v: Var, bound: int) -> Var:
        """`v`'s ids moved out of [0, bound) by the program itself (so on the device): v is drawn from [0, 2) as
        it indexes nothing, so `v + bound` is past the end and `v - 2` negative. The reference raises a located
        error that every backend must raise word for word (fuzz.expect_same_error); one_hot gives zeros."""
        name = self.fresh("x")
        shift = f"+ {max(bound, 1)}" if self.ch.flag() else "- 2"
        ctx.lines.append(f"{ctx.indent}{name} = {v.name} {shift}")
        return Var(name, v.type, True, v.bound + bound)

    # -- picking values --
    def pick(self, ctx, pred=lambda v: True, exact=False, dtype_class="float") -> Var | None:
        cands = [v for v in ctx.pool if pred(v) and (not exact or v.exact or not v.float)
                 and (dtype_class is None or (dtype_class == "float" and v.float)
                      or (dtype_class == "int" and is_int(v.type.dtype))
                      or (dtype_class == "bool" and v.type.dtype == "bool")
                      or (dtype_class == "num" and v.type.dtype != "bool"))]
        if not cands:
            return None
        # recent values are likelier (deeper programs); shrinking goes to the oldest
        if self.ch.flag(0.5):
            return cands[-1 - self.ch.int(0, min(2, len(cands) - 1))]
        return self.ch.choice(cands)

    def float_var(self, ctx, pred=lambda v: True, exact=False, make_rank=None) -> Var | None:
        v = self.pick(ctx, lambda v: pred(v) and v.type.dtype in ("f32", "f64", "f16"), exact)
        if v is None and make_rank is not None:
            v = self.new_tensor(ctx, "f32", self.rand_shape(ctx, make_rank, declare=True), prefer_param=False)
            if v is not None and not pred(v):
                return None
            if v is not None:
                ctx.pool.append(v)
        return v

    # -- safe wrappers --
    def squash(self, a: Arg) -> Arg:
        if not is_float(a.type.dtype) or a.literal:
            return a
        return Arg(f"tanh({a.expr})", a.type, False, 1.0)

    def wrap(self, a: Arg, domain: str | None) -> Arg:
        if domain is None or not is_float(a.type.dtype) or a.literal:
            return a
        bound = {"abs({}) + 0.5": a.bound + 0.5, "abs({}) + 1": a.bound + 1, "tanh({})": 1.0,
                 "clamp({}, max=3.0)": max(a.bound, 3.0)}.get(domain, a.bound + 1)
        return Arg(domain.format(a.expr), a.type, False, bound, atomic=domain.endswith(")"))

    # -- applying an op --
    def apply(self, ctx, op: str, tries: int = 4) -> bool:
        opdef = registry.get(op)
        spec = TABLE.get(op, Spec())
        sampler = spec.sample or GENERIC.get(opdef.kind, generic_unknown)
        for _ in range(tries):
            mark = (len(ctx.lines), len(ctx.pool), len(self.inputs), len(self.model_params), dict(self.dims))
            try:
                call = sampler(self, ctx, op)
            except _Skip:
                call = None
            outs = self.check(ctx, op, call) if call is not None else None
            if outs is None:
                self._rollback(ctx, mark)
                continue
            bound = self.bound_of(op, spec, call, outs)
            if bound > BOUND_LIMIT and call.text is None and call.exact is None and not spec.exact_inputs:
                # squash the inputs with tanh (never those of a discontinuous op: tanh makes them inexact)
                call.args = [self.squash(a) if a is not None and not a.literal else a for a in call.args]
                outs = self.check(ctx, op, call)
                if outs is None:
                    self._rollback(ctx, mark)
                    continue
                bound = self.bound_of(op, spec, call, outs)
            if bound > BOUND_LIMIT * 10:
                self._rollback(ctx, mark)
                continue
            self.emit_call(ctx, op, spec, call, outs, bound)
            return True
        return False

    def _rollback(self, ctx, mark):
        """Forget what a failed attempt declared (params, inputs, new symbolic dims)."""
        nl, np_, ni, nm, dims = mark
        del ctx.lines[nl:]
        del ctx.pool[np_:]
        del self.inputs[ni:]
        del self.model_params[nm:]
        self.dims = dims

    def check(self, ctx, op, call: Call):
        """The output types, from the op's type rule (None: the call is ill-typed or too big at run time)."""
        if isinstance(call, _Typed):     # a subscript: several IR ops, typed by its sampler
            t = call.out_type
            if any(self.rt(d) < 1 for d in t.shape) or self.numel(t) > MAX_NUMEL:
                return None
            return [t]
        opdef = registry.get(op)
        try:
            opdef.check_arity(len(call.args))
            attrs = opdef.bind_attrs(dict(call.attrs))
            outs = opdef.infer_types([a.type if a is not None else None for a in call.args], attrs)
        except (PnetError, TypeError, ValueError, ZeroDivisionError, IndexError, KeyError):
            return None
        if not _all_renderable(list(call.attrs.values())):
            return None
        if ctx.symbols is not None:
            names = _free(list(call.attrs.values()))
            if not names <= ctx.symbols:
                return None
        for t in outs:
            if any(self.rt(d) < 1 for d in t.shape) or self.numel(t) > MAX_NUMEL:
                return None
            if ctx.symbols is not None and not {s.name for d in t.shape for s in sympy.sympify(d).free_symbols} <= ctx.symbols | set(self.dims):
                return None
        return outs

    def bound_of(self, op, spec, call, outs) -> float:
        bounds = [a.bound for a in call.args if a is not None] or [1.0]
        if call.bound is not None:
            return call.bound
        if spec.grow is not None:
            try:
                return float(spec.grow(bounds, call, outs))
            except OverflowError:
                return math.inf
        return max(bounds)

    def emit_call(self, ctx, op, spec, call: Call, outs, bound):
        text = call.text if call.text is not None else self.render(op, call)
        names = []
        keep = call.keep or [True] * len(outs)
        exact_in = all(a.exact for a in call.args if a is not None)
        for t, k in zip(outs, keep):
            names.append(self.fresh() if k else "_")
        annot = ""
        if self.features and self.ch.flag(0.04):
            notes = ['"a\\"b"', '"tab\\there"', '"λ"', '"∑ é"', '"λ\\"x"']
            annot = self.ch.choice(['@quantize("int8") ', '@sparse("2:4") ', '@equivariant("C4") ', "@note(k=1) ",
                                    f"@note({self.ch.choice(notes)}, n=[1, 2]) "])
        ctx.lines.append(f"{ctx.indent}{annot}{', '.join(names)} = {text}")
        made = []
        for name, t, k in zip(names, outs, keep):
            if not k:
                continue
            exact = call.exact if call.exact is not None else (spec.keeps_exact and exact_in)
            v = Var(name, t, exact or not is_float(t.dtype), bound if is_float(t.dtype) else max(bound, 8.0))
            ctx.pool.append(v)
            made.append(v)
        if len(outs) == 1:
            ctx.rhs.append((text, made))
        self.used.append(op)

    def render(self, op, call: Call) -> str:
        opdef = registry.get(op)
        parts = []
        if opdef.variadic:
            parts.append("[" + ", ".join(a.expr for a in call.args) + "]")
        else:
            kw = call.kw_inputs or {}
            for i, a in enumerate(call.args):
                if a is None:
                    continue
                parts.append(f"{kw[i]}={a.expr}" if i in kw else a.expr)
        parts += [f"{k}={lit(v)}" for k, v in call.attrs.items()]
        return f"{op}({', '.join(parts)})"

    # ---- statements ----------------------------------------------------------------------------------------
    def block(self, ctx, n):
        for _ in range(n):
            self.statement(ctx)

    def statement(self, ctx):
        feats = ["op", "index", "const", "dup", "stdlib", "gram"]
        weights = [14, 1.5, 0.6, 0.6, 1.0 if self.features else 0.0, 0.3 if self.features else 0.0]
        if self.features and ctx.depth == 0:
            feats += ["for", "if", "scan", "def", "cond"]
            weights += [1.0, 1.0, 1.2, 1.2, 0.4]
            feats.append("chain")   # rare: hundreds of statements
            weights.append(0.1)
        feat = self.ch.weighted(feats, weights)
        ok = getattr(self, "st_" + feat)(ctx)
        if not ok:
            self.st_op(ctx)

    def st_gram(self, ctx) -> bool:
        """`t @ transpose(t)` (or `transpose(t) @ t`) with t pointwise of a value: one operand computed for both
        sides of a product, a prologue the Triton planner must give both tiles or neither."""
        x = self.pick(ctx, lambda v: v.type.rank == 2)
        if x is None:
            return False
        t, y = self.fresh("v"), self.fresh("v")
        side = 0 if self.ch.flag() else 1     # which dim of t survives: [M, M] = t t^T, or [K, K] = t^T t
        expr = f"{t} @ transpose({t})" if side == 0 else f"transpose({t}) @ {t}"
        ctx.lines.append(f"{ctx.indent}{t} = {self.ch.choice(['tanh', 'sigmoid'])}({x.name})")
        ctx.lines.append(f"{ctx.indent}{y} = {expr}")
        m, k = x.type.shape[side], x.type.shape[1 - side]
        ctx.pool.append(Var(y, TensorType(x.type.dtype, (m, m)), False, float(max(self.rt(k), 1))))
        return True

    def st_op(self, ctx) -> bool:
        names = self.op_names
        for _ in range(6):
            op = self.ch.weighted(names, [TABLE.get(n, Spec()).weight for n in names])
            if self.apply(ctx, op):
                return True
        return False

    def st_stdlib(self, ctx) -> bool:
        """A call of a standard-library block (`import nn.core` ... `linear(x, 5)`): its result types come from
        elaborating the call once (the stdlib's own shape patterns decide what is valid)."""
        module, template, n_out, pred = self.ch.choice(STDLIB_CALLS)
        x = self.float_var(ctx, lambda v: v.type.dtype == "f32" and pred(v))
        if x is None:
            return False
        vals = {"n": self.ch.int(1, 6), "h": self.ch.int(2, 8), "k": self.ch.choice([1, 2])}
        arg = x.name if x.bound <= 4 else f"tanh({x.name})"
        qualified = module.startswith("nn.") and self.ch.flag(0.25)
        alias = module.split(".")[-1] + "_m"
        call = template.format(x=arg, **vals)
        if qualified:
            call = f"{alias}.{call}"
        outs = stdlib_result_types(module, template.format(x="x", **vals), n_out, x.type,
                                   tuple(sorted(self.dims.items())))
        if outs is None:
            return False
        imp = f"import {module}" + (f" as {alias}" if qualified else "")
        if imp not in self.imports:
            self.imports.append(imp)
        names = [self.fresh() for _ in range(n_out)]
        scope = f" as {self.fresh('blk')}" if self.ch.flag(0.3) else ""
        ctx.lines.append(f"{ctx.indent}{', '.join(names)} = {call}{scope}")
        for name, t in zip(names, outs):
            ctx.pool.append(Var(name, t, False, 50.0))
        self.used.append("stdlib:" + template.split("(")[0])
        return True

    def st_const(self, ctx) -> bool:
        shape = self.rand_shape(ctx, self.ch.int(0, 2), allow_sym=ctx.symbols is None)
        if ctx.symbols is not None and _free(list(shape)) - ctx.symbols:
            return False
        kind = self.ch.int(0, 3)
        n = self.fresh()
        if kind == 0:
            val = self.ch.choice([1.5, 0.25, -2.0, 0.0])
            text, bound = f"full({shape_src(shape)}, {lit(val)})", abs(val)
        elif kind == 1:
            text, bound = self.ch.choice([f"zeros({shape_src(shape)})", f"ones({shape_src(shape)})"]), 1.0
        elif kind == 2:
            k = self.ch.int(1, 5)
            text, bound, shape = f'arange(n={k}, dtype="f32")', float(k), (sympy.Integer(k),)
        else:
            v = self.pick(ctx, dtype_class=None)
            if v is None:
                return False
            text, bound, shape = self.ch.choice(["zeros_like", "ones_like"]) + f"({v.name})", 1.0, v.type.shape
            ctx.lines.append(f"{ctx.indent}{n} = {text}")
            ctx.pool.append(Var(n, v.type, True, bound))
            return True
        ctx.lines.append(f"{ctx.indent}{n} = {text}")
        ctx.pool.append(Var(n, TensorType("f32", shape), True, bound))
        return True

    def st_dup(self, ctx) -> bool:
        """Repeat an earlier right-hand side (CSE must merge the two)."""
        if not ctx.rhs:
            return False
        text, made = self.ch.choice(ctx.rhs)
        if len(made) != 1:
            return False
        v = made[0]
        n = self.fresh()
        ctx.lines.append(f"{ctx.indent}{n} = {text}")
        ctx.pool.append(Var(n, v.type, v.exact, v.bound))
        return True

    def st_chain(self, ctx) -> bool:
        """A long straight-line run (hundreds of statements) of cheap pointwise ops, each tanh computed twice:
        every pass must stay near-linear in program size (CSE once scanned the whole graph at each merge)."""
        x = self.float_var(ctx, lambda v: v.type.dtype == "f32" and self.numel(v.type) <= 64)
        if x is None:
            return False
        prev = x.name if x.bound <= 4 else f"tanh({x.name})"
        for _ in range(self.ch.int(30, 80)):   # 90-240 statements: a few seconds through every backend
            a, b, h = self.fresh(), self.fresh(), self.fresh()
            ctx.lines.append(f"{ctx.indent}{a} = tanh({prev}); {b} = tanh({prev}); {h} = {a} * 0.5 + {b} * 0.25")
            prev = h
        ctx.pool.append(Var(prev, x.type, False, 1.0))
        self.used.append("long_chain")
        return True

    # -- coercion: any value into a given f32 type (for loop/if/scan results) --
    def coerce(self, v: Var, base: Var) -> str:
        """Source for a value of base's type built from `v` and `base` (bounded: |result| <= |base|/2 + 1)."""
        t = base.type
        src = v.name
        if v.type.dtype != "f32":
            src = f'cast({src}, "f32")'
        try:
            from ..ir.types import broadcast_shapes
            fits = tuple(broadcast_shapes(v.type.shape, t.shape)) == tuple(t.shape)
        except PnetError:
            fits = False
        if not fits:
            src = f"mean({src})"
        if self.ch.flag(0.3):
            return f"{base.name} * 0.5 + tanh({src}) * 0.5"
        return f"tanh({src} + {base.name} * 0.5)"

    def st_for(self, ctx) -> bool:
        base = self.float_var(ctx, lambda v: v.type.dtype == "f32")
        if base is None:
            return False
        h = self.fresh("h")
        init = base.name if base.bound <= 4 else f"tanh({base.name})"
        ctx.lines.append(f"{ctx.indent}{h} = {init}")
        hv = Var(h, base.type, False, max(min(base.bound, 4.0), 2.0))
        use_list = self.ch.flag(0.25)
        var = self.ch.choice(["i", "l", "k"])
        if use_list:
            rng = "[" + ", ".join(lit(x) for x in self.ch.choice([[1, 2], [0.5, 0.25, 1.0], [3]])) + "]"
        else:
            count = self.ch.int(1, 3)
            if self.ch.flag(0.3):
                name = f"n{len(self.hyper)}"
                self.hyper.append(f"{name}: int = {count}")
                if self.ch.flag(0.3):
                    count = self.ch.int(1, 3)
                    self.overrides[name] = str(count)
                rng = f"0..{name}"
            else:
                rng = f"0..{count}"
        label = f" as {self.fresh('blk')}" if self.ch.flag(0.5) else ""
        ctx.lines.append(f"{ctx.indent}for {var} in {rng}{label} {{")
        inner = ctx.child("loop", [hv])
        last = hv
        last_dim = base.type.shape[-1] if base.type.rank else None
        if last_dim is not None and last_dim.is_Integer and self.ch.flag(0.5):
            w = self.new_param(inner, (last_dim, last_dim), "normal(0, 0.3)", 1.5)
            n = self.fresh("t")
            inner.lines.append(f"{inner.indent}{n} = {h} @ {w.name}")
            last = Var(n, base.type, False, hv.bound * 1.5 * int(last_dim))
            inner.pool.append(last)
        for _ in range(self.ch.int(1, 3)):
            self.statement(inner)
        if inner.pool[-1] is not hv:
            last = inner.pool[-1]
        scale = f" * {var}" if use_list else f" * (1.0 - 0.25 * {var})" if self.ch.flag(0.3) else ""
        inner.lines.append(f"{inner.indent}{h} = {self.coerce(last, hv)}" + (scale if scale and self.ch.flag(0.5) else ""))
        ctx.lines += inner.lines
        ctx.lines.append(f"{ctx.indent}}}")
        ctx.pool.append(Var(h, base.type, False, 4.0))
        return True

    def st_if(self, ctx) -> bool:
        base = self.float_var(ctx, lambda v: v.type.dtype == "f32")
        if base is None:
            return False
        y = self.fresh("y")
        chain = self.ch.flag(0.3)
        if chain:
            name = f"mode{len(self.hyper)}"
            val = self.ch.int(0, 2)
            self.hyper.append(f"{name}: int = {val}")
            if self.ch.flag(0.4):
                self.overrides[name] = str(self.ch.int(0, 2))
            conds = [f"{name} == 0", f"{name} == 1"]
        else:
            name = f"flag{len(self.hyper)}"
            val = self.ch.flag()
            self.hyper.append(f"{name}: bool = {lit(val)}")
            if self.ch.flag(0.4):
                self.overrides[name] = self.ch.choice(["true", "false", "1", "0"])
            conds = [name if self.ch.flag(0.7) else f"not {name}"]
        for i, cond in enumerate(conds):
            head = "if" if i == 0 else "} else if"
            ctx.lines.append(f"{ctx.indent}{head} {cond} {{")
            self._branch(ctx, base, y)
        ctx.lines.append(f"{ctx.indent}}} else {{")
        self._branch(ctx, base, y)
        ctx.lines.append(f"{ctx.indent}}}")
        ctx.pool.append(Var(y, base.type, False, max(base.bound, 1.0) / 2 + 1))
        return True

    def _branch(self, ctx, base, y):
        inner = ctx.child("branch")
        for _ in range(self.ch.int(0, 2)):
            self.statement(inner)
        last = inner.pool[-1] if len(inner.pool) > len(ctx.pool) else base
        inner.lines.append(f"{inner.indent}{y} = {self.coerce(last, base)}")
        ctx.lines += inner.lines

    def st_cond(self, ctx) -> bool:
        """`y = a if flag else b` (a compile-time conditional expression)."""
        a = self.pick(ctx, dtype_class=None)
        if a is None:
            return False
        others = [v for v in ctx.pool if v.type == a.type]
        b = self.ch.choice(others)
        name = f"flag{len(self.hyper)}"
        self.hyper.append(f"{name}: bool = {lit(self.ch.flag())}")
        n = self.fresh()
        ctx.lines.append(f"{ctx.indent}{n} = {a.name} if {name} else {b.name}")
        ctx.pool.append(Var(n, a.type, a.exact and b.exact, max(a.bound, b.bound)))
        return True

    def st_scan(self, ctx) -> bool:
        counter = self.ch.flag(0.25)
        h = self.fresh("h")
        if counter:
            base = self.float_var(ctx, lambda v: v.type.dtype == "f32" and v.bound <= 8)
            if base is None:
                return False
            n = self.symbol(existing=True) if self.ch.flag(0.3) else None
            if n is None or (ctx.symbols is not None and _free(n) - ctx.symbols):
                n = self.ch.int(1, 4)
            seqs = f"i in 0..{lit(n)}"
            length = sympy.sympify(n)
            if self.ch.flag(0.3):
                seqs, length = self._empty_range()
            carry_t = base.type
            init = base.name
            extra = [Var("i", TensorType("i64", ()), True, 8.0)]
        else:
            seq = self.float_var(ctx, lambda v: v.type.dtype == "f32" and v.type.rank >= 1 and v.bound <= 8)
            if seq is None:
                return False
            ax = self.ch.int(0, seq.type.rank - 1)
            carry_t = TensorType("f32", seq.type.shape[:ax] + seq.type.shape[ax + 1:])
            xt = self.fresh("xt")
            along = f" along {ax}" if ax or self.ch.flag(0.3) else ""
            seqs = f"{xt} in {seq.name}{along}"
            if _free(list(carry_t.shape)) <= (ctx.symbols if ctx.symbols is not None else set(self.dims)) \
                    and self.ch.flag(0.6):
                init = self.ch.choice([f"zeros({shape_src(carry_t.shape)})", f"full({shape_src(carry_t.shape)}, 0.5)"])
            else:
                idx = ", ".join([":"] * ax + ["0"])
                init = f"{seq.name}[{idx}] * 0.5"
            extra = [Var(xt, carry_t, seq.exact, seq.bound)]
            length = seq.type.shape[ax]
            base = None
        hv = Var(h, carry_t, False, 4.0)
        inner = ctx.child("scan", extra + [hv])
        inner.kind = "scan"
        last_dim = carry_t.shape[-1] if carry_t.rank else None
        if last_dim is not None and last_dim.is_Integer and self.ch.flag(0.4):
            w = self.new_param(inner, (last_dim, last_dim), "normal(0, 0.3)", 1.5)
            n2 = self.fresh("t")
            inner.lines.append(f"{inner.indent}{n2} = {h} @ {w.name}")
            inner.pool.append(Var(n2, carry_t, False, 4.0 * 1.5 * int(last_dim)))
        for _ in range(self.ch.int(0 if len(inner.pool) > len(ctx.pool) + 2 else 1, 2)):
            self.statement(inner)
        last = inner.pool[-1]
        if counter and last is hv:
            inner.lines.append(f'{inner.indent}{h} = tanh({h} * 0.9 + cast(i, "f32") * 0.1)')
        else:
            inner.lines.append(f"{inner.indent}{h} = {self.coerce(last, hv)}")
        ys = []
        if not counter or self.ch.flag(0.5):
            ys.append(h)
            if not counter and self.ch.flag(0.3):
                ys.append(f"tanh({extra[0].name})")
        if ys:
            inner.lines.append(f"{inner.indent}yield {', '.join(ys)}")
        targets = [self.fresh("hs") for _ in ys] + [self.fresh("hl")]
        ctx.lines.append(f"{ctx.indent}{', '.join(targets)} = scan({seqs}; {h} = {init}) {{")
        ctx.lines += inner.lines
        ctx.lines.append(f"{ctx.indent}}}")
        out_axis = 0 if counter else ax
        for name in targets[:-1]:
            shape = carry_t.shape[:out_axis] + (length,) + carry_t.shape[out_axis:]
            if length == 0:   # kept out of the pool: ops over zero-size tensors are not this check's subject
                self.empty_outputs += [name] if ctx.kind == "model" else []
                continue
            ctx.pool.append(Var(name, TensorType("f32", shape), False, 4.0))
        ctx.pool.append(Var(targets[-1], carry_t, False, 4.0))
        return True

    def _empty_range(self) -> tuple[str, sympy.Expr]:
        """A step counter over an empty range `k..k` (issue 17): no steps, the carry's initial value, and
        zero-length stacks, which every backend must agree on."""
        k = self.ch.int(0, 3)
        self.used.append("empty_scan")
        return f"i in {k}..{k}", sympy.Integer(0)

    def st_def(self, ctx) -> bool:
        a = self.float_var(ctx, lambda v: v.type.dtype == "f32" and v.type.rank >= 1 and v.bound <= 16)
        if a is None:
            return False
        same = [v for v in ctx.pool if v.type == a.type and v is not a]
        a2 = self.ch.choice(same) if same and self.ch.flag(0.4) else None
        fname = f"f{len(self.defs)}"
        # the argument's pattern: full (symbols by their names) or `[..., d]`
        pattern, scope = [], set()
        ellipsis = a.type.rank >= 2 and self.ch.flag(0.3)
        dims = a.type.shape[-1:] if ellipsis else a.type.shape
        for i, d in enumerate(dims):
            if d.is_Symbol:
                pattern.append(d.name)          # binds the name to the caller's dim
                scope.add(d.name)
            elif d.is_Integer and self.ch.flag(0.5):
                pattern.append(str(int(d)))     # checked
            elif not d.is_Integer and {x.name for x in d.free_symbols} <= scope and self.ch.flag(0.5):
                pattern.append(lit(d))          # an expression of names bound before: checked
            else:
                pattern.append(f"d{i}")         # binds a new name
        pat = "[" + ("..., " if ellipsis else "") + ", ".join(pattern) + "]"
        params = [f"x: {pat}"]
        body = Ctx("def", [], "  ", [], scope, 1)
        xv = Var("x", a.type, a.exact and (a2 is None or a2.exact), max(a.bound, a2.bound if a2 else 0))
        body.pool.append(xv)
        hyper_s = self.ch.flag(0.4)
        if hyper_s:
            params.append("s: float = 0.5")
        act = self.ch.flag(0.3)
        if act:
            params.append(f"act: fn = {self.ch.choice(['relu', 'tanh', 'gelu', 'sigmoid'])}")
        for _ in range(self.ch.int(1, 3)):
            self.statement(body)
        last = body.pool[-1]
        ret = last.name
        if hyper_s and last.float:
            ret = f"{last.name} * s"
        if act and last.float and last.type.dtype in ("f32", "f64"):
            ret = f"act({ret})"
        rt = ""
        if (not _free(list(last.type.shape)) - scope and not ellipsis and all(renderable(d) for d in last.type.shape)
                and self.ch.flag(0.6)):
            rt = f" -> {last.type.dtype + shape_src(last.type.shape) if self.ch.flag(0.3) else shape_src(last.type.shape)}"
        lines = [f"def {fname}({', '.join(params)}){rt} {{"] + body.lines + [f"  return {ret}", "}"]
        self.defs.append("\n".join(lines))
        bound = last.bound if last.float else 8.0
        for arg in [a] + ([a2] if a2 else []):
            n = self.fresh()
            kw = ", s=0.25" if hyper_s and self.ch.flag(0.3) else ""
            alias = f" as {self.fresh('blk')}" if self.ch.flag(0.3) else ""
            ctx.lines.append(f"{ctx.indent}{n} = {fname}({arg.name}{kw}){alias}")
            ctx.pool.append(Var(n, last.type, last.exact and not (hyper_s or act), bound))
        return True

    def st_index(self, ctx) -> bool:
        """Index notation: `y[i, k] = sum(j) a[i, j] * b[j, k]` and friends."""
        a = self.float_var(ctx, lambda v: v.type.dtype == "f32" and 1 <= v.type.rank <= 3)
        if a is None:
            return False
        letters = ["i", "j", "k", "m", "n", "q"]
        names = letters[:a.type.rank]
        sizes = dict(zip(names, a.type.shape))
        accesses = [(a, list(names))]
        if self.ch.flag(0.6):
            b = self.float_var(ctx, lambda v: v.type.dtype == "f32" and 1 <= v.type.rank <= 3)
            if b is not None:
                idx = []
                for d in b.type.shape:
                    share = [n for n in names if n not in idx and dims_equal(sizes[n], d)]
                    if share and self.ch.flag(0.7):
                        idx.append(self.ch.choice(share))
                    else:
                        n = next(x for x in letters if x not in sizes)
                        sizes[n] = d
                        idx.append(n)
                accesses.append((b, idx))
        all_idx = list(sizes)
        reducer = self.ch.choice([None, "sum", "sum", "max", "min", "mean"]) if len(all_idx) > 1 else None
        if reducer:
            n_out = self.ch.int(1, len(all_idx) - 1)
            out = self.ch.shuffled(all_idx)[:n_out]
        else:
            out = self.ch.shuffled(all_idx)
        red = [n for n in all_idx if n not in out]
        if not reducer and red:
            return False
        acc_src = [f"{v.name}[{', '.join(ix)}]" for v, ix in accesses]
        form = self.ch.int(0, 3)
        bound = 1.0
        for v, _ in accesses:
            bound *= v.bound
        if form == 0 or len(accesses) == 1 and form == 1:
            expr = " * ".join(acc_src)
        elif form == 1:
            expr = f"tanh({acc_src[0]}) + {acc_src[1]}"
            bound = 1 + accesses[1][0].bound
        elif form == 2:
            n = self.ch.choice(all_idx)
            expr = " * ".join(acc_src) + f' * cast({n} >= 1, "f32")'
        else:
            n = self.ch.choice(all_idx)
            expr = " + ".join(acc_src) + f' + cast({n}, "f32") * 0.5'
            bound = sum(v.bound for v, _ in accesses) + 3
        if reducer in ("sum", "mean") and red:
            for n in red:
                bound *= max(self.rt(sizes[n]), 1) if reducer == "sum" else 1
        if bound > BOUND_LIMIT:
            return False
        target = self.fresh()
        shape = tuple(sizes[n] for n in out)
        if self.numel(TensorType("f32", shape)) > MAX_NUMEL:
            return False
        rhs = (f"{reducer}({', '.join(red)}) " if reducer else "") + expr
        ctx.lines.append(f"{ctx.indent}{target}[{', '.join(out)}] = {rhs}")
        exact = len(accesses) == 1 and form == 0 and (reducer in (None, "max", "min"))
        ctx.pool.append(Var(target, TensorType("f32", shape), exact and a.exact, bound))
        self.used.append("index_notation")
        return True

    # ---- the whole program -----------------------------------------------------------------------------------
    def program(self) -> Program:
        model = Ctx("model", [], "  ", [])
        self.specials = self.ch.flag(SPECIALS_FRACTION)
        for _ in range(self.ch.int(1, 2)):
            dtype = self.ch.weighted(["f32", "f64"], [12, 1])
            v = self.new_input(model, dtype, self.rand_shape(model, self.ch.int(1, 4), declare=True))
            model.pool.append(v)
        if self.ch.flag(0.2):
            model.pool.append(self.new_input(model, self.ch.choice(["i64", "i32"]), self.rand_shape(model, self.ch.int(1, 2), declare=True)))
        if self.ch.flag(0.15):
            model.pool.append(self.new_input(model, "bool", self.rand_shape(model, self.ch.int(1, 2), declare=True)))
        main = self.ch
        for seed in main.seeds(self.max_stmts):
            self.ch = RandomChooser(seed)
            self.statement(model)
        self.ch = main
        if self.features and self.ch.flag(0.1):
            self._tie()
        outputs = self._outputs(model) + self._leaf_outputs(model) + [f"  output {n}" for n in self.empty_outputs]
        body = ["  " + i for i in self.inputs] + model.lines + outputs + self.ties
        model_src = f"model {self.ch.choice(MODEL_NAMES)}({', '.join(self.hyper)}) {{\n" + "\n".join(body) + "\n}"
        items = (["\n".join(self.imports)] if self.imports else []) + self.defs + [model_src]
        src = "\n\n".join(items) + "\n"
        if self.features:
            src = self._noise(src)
        return Program(src, self._run_dims(), dict(self.overrides), self.ch.int(0, 3), tuple(self.used),
                       FILE_PATHS[self.ch.int(0, len(FILE_PATHS) - 1)], specials=self.specials)

    def _run_dims(self) -> dict:
        """The dims' runtime sizes; in some programs one bound to 0 (empty tensors: each backend gives the
        reference's result, or its located error, as for max over an empty axis)."""
        dims = dict(self.dims)
        if self.features and dims and self.ch.flag(ZERO_DIM_FRACTION):
            dims[self.ch.choice(sorted(dims))] = 0
        return dims

    def _tie(self):
        groups = {}
        for name, t in self.model_params:
            groups.setdefault(t, []).append(name)
        pairs = [g for g in groups.values() if len(g) >= 2]
        if pairs:
            g = self.ch.choice(pairs)
            self.ties.append(f'  tie "{g[1]}" = "{g[0]}"')

    def _outputs(self, model) -> list:
        made = [v for v in model.pool if not v.name.startswith("x")]
        if not made:
            made = model.pool
        text = "\n".join(model.lines)
        unused = [v for v in made if len(re.findall(rf"\b{re.escape(v.name)}\b", text)) <= 1]
        cands = unused or made
        k = self.ch.int(1, min(3, len(cands)))
        chosen = []
        for _ in range(k):
            v = cands[-1] if not chosen and self.ch.flag(0.7) else self.ch.choice(cands)
            if v not in chosen:
                chosen.append(v)
        lines = []
        for i, v in enumerate(chosen):
            if self.ch.flag(0.3):
                lines.append(f"  output {v.name}")
            else:
                lines.append(f"  output y{i} = {v.name}")
        return lines

    def _leaf_outputs(self, model) -> list:
        """Now and then a parameter, a view of one, or an input as an output, listed twice (the torch
        backends returned such a parameter itself, which still requires grad under no_grad)."""
        leaves = [v for v in model.pool if v.name.startswith(("p", "x")) and v.type.rank >= 1]
        if not self.features or not leaves or not self.ch.flag(0.15):
            return []
        v = self.ch.choice(leaves)
        views = [v.name, f"{v.name}[0:1]"]
        if 2 * self.numel(v.type) <= MAX_NUMEL:
            views.append(f"broadcast_to({v.name}, {shape_src((2,) + tuple(v.type.shape))})")
        if v.type.rank == 2:
            views.append(f"{v.name}.T")
        view = self.ch.choice(views)
        self.used.append("leaf_output")
        return [f"  output y_leaf = {view}", f"  output y_leaf_again = {view}"]

    def _noise(self, src: str) -> str:
        """Comments, blank lines, `;` joins and wrapped argument lists (the formatter must keep meaning)."""
        lines = src.split("\n")
        out = []
        i = 0
        while i < len(lines):
            line = lines[i]
            r = self.ch.int(0, 39)
            stripped = line.strip()
            simple = stripped and not stripped.endswith("{") and not stripped.startswith(("}", "def", "model", "output", "tie"))
            if r == 1 and simple:
                out.append(line + "  # trailing note")
            elif r == 2:
                out.append(re.match(r"\s*", line).group(0) + "# a comment line")
                out.append(line)
            elif r == 3 and simple and "(" in line and ", " in line:
                k = line.index(", ")
                out.append(line[:k + 1])
                out.append("      " + line[k + 2:])
            elif r == 4 and simple and i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].strip().startswith(("}", "output", "#")) \
                    and not lines[i + 1].strip().endswith("{") and "#" not in line:
                out.append(line + "; " + lines[i + 1].strip())
                i += 1
            elif r == 5:
                out.append(line)
                out.append("")
            else:
                out.append(line)
            i += 1
        return "\n".join(out)


class _Skip(Exception):
    pass


# ---- samplers --------------------------------------------------------------------------------------------------
def sample_attr(g: Gen, name: str, default, x: TensorType | None):
    """An attribute value from its name and default (the generic samplers' domain knowledge)."""
    r = x.rank if x is not None else 0
    ch = g.ch
    if name == "axis":
        if r == 0:                # a scalar has no axes: only "all axes" (None) is valid
            if default is None:
                return None
            raise _Skip()
        if default is None or isinstance(default, list):
            mode = ch.int(0, 2)
            if mode == 0:
                return None
            if mode == 1:
                return ch.int(-r, r - 1)
            axes = ch.shuffled(range(r))[:ch.int(1, r)]
            return [a - r if ch.flag(0.3) else a for a in axes]
        return ch.int(-r, r - 1)
    if name == "keepdims" or name in ("descending", "largest", "causal"):
        return ch.flag()
    if name == "eps":
        return ch.choice([1e-5, 0.001, 0.1])
    if name == "alpha":
        return ch.choice([0.01, 0.2, 1.0, 1.5])
    if name == "beta":
        return ch.choice([1.0, 2.0, 0.5])
    if name == "threshold":
        return ch.choice([20.0, 2.0])
    if name == "approximate":
        return ch.choice(["none", "tanh"])
    if name == "correction":
        return 0
    if name == "repeats":
        return ch.int(1, 3)
    if name == "reps":
        return [ch.int(1, 2) for _ in range(r)]
    if name == "shift":
        return ch.int(-3, 3)
    if default is REQUIRED:
        raise _Skip()
    if isinstance(default, bool):
        return ch.flag()
    if isinstance(default, int):
        return default + ch.int(0, 2)
    if isinstance(default, float):
        return default * ch.choice([1.0, 0.5, 2.0])
    return default


def _attrs(g, op, x: TensorType | None, always=()):
    out = {}
    for name, default in registry.get(op).attrs.items():
        if default is REQUIRED or name in always or g.ch.flag(0.6):
            out[name] = sample_attr(g, name, default, x)
    return out


def _unary_arg(g, ctx, op, spec, pred=lambda v: True, dtype_class="float"):
    v = g.pick(ctx, pred, exact=spec.exact_inputs, dtype_class=dtype_class)
    if v is None:
        return None
    a = Arg.of(v)
    if spec.domain:
        a = g.wrap(a, spec.domain)
    return a


def generic_unary(g: Gen, ctx, op):
    """Any op with one tensor input: elementwise, reduce, norm, movement (attributes by name)."""
    spec = TABLE.get(op, Spec())
    opdef = registry.get(op)
    dtype_class = "float" if g.ch.flag(0.85) else None
    a = _unary_arg(g, ctx, op, spec, dtype_class=dtype_class)
    if a is None:
        return None
    if a.type.dtype == "bool" and opdef.kind not in ("movement", "index") and op not in BOOL_OPS:
        return None               # arithmetic on bools is a type error
    attrs = _attrs(g, op, a.type)
    rendered = None
    if op == "neg" and g.ch.flag(0.5):
        rendered = f"-{a.paren()}"
    elif opdef.kind == "elementwise" and not attrs and g.ch.flag(0.15) and ctx.kind in ("model", "loop", "branch"):
        name = f"act{len(g.hyper)}"
        g.hyper.append(f"{name}: fn = {op}")
        rendered = f"{name}({a.expr})"
    elif op in ("max", "min", "sum", "mean") and list(attrs) == ["axis"] and isinstance(attrs["axis"], int) and g.ch.flag(0.5):
        rendered = f"{op}({a.expr}, {attrs['axis']})"
    return Call([a], attrs, text=rendered)


def generic_binary(g: Gen, ctx, op):
    spec = TABLE.get(op, Spec())
    bools = op in BOOL_OPS
    a = g.pick(ctx, exact=spec.exact_inputs, dtype_class="float" if g.ch.flag(0.85) else "num" if not bools else None)
    if a is None:
        return None
    b = partner(g, ctx, a, exact=spec.exact_inputs)
    if b is None:
        return None
    args = [Arg.of(a), b]
    if g.ch.flag(0.5):
        args.reverse()
    args = [g.wrap(x, spec.domain) for x in args]
    text = None
    sym_op = {"add": "+", "sub": "-", "mul": "*", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==",
              "ne": "!=", "logical_and": "and", "logical_or": "or"}.get(op)
    if sym_op and g.ch.flag(0.6):
        text = f"{args[0].paren()} {sym_op} {args[1].paren()}"
    elif op in ("maximum", "minimum") and g.ch.flag(0.3) and all(x.type.rank for x in args):
        text = f"{'max' if op == 'maximum' else 'min'}({args[0].expr}, {args[1].expr})"
    return Call(args, {}, text=text)


def partner(g: Gen, ctx, a: Var, exact=False, dtype=None) -> Arg | None:
    """A second operand that broadcasts with `a`: a number, a value of the pool, or a new tensor."""
    from ..ir.types import broadcast_shapes
    mode = g.ch.int(0, 4)
    if mode == 0:
        if a.type.dtype == "bool":
            return None
        if is_float(a.type.dtype):
            return number(g.ch.choice([0.5, 2.0, -1.0, 0.25, 1.5]), a.type.dtype)
        return number(g.ch.choice([1, 2, 3]), a.type.dtype)
    if mode in (1, 2):
        def ok(v):
            if exact and not (v.exact or not v.float):
                return False
            if dtype is not None and v.type.dtype != dtype:
                return False
            if (v.type.dtype == "bool") != (a.type.dtype == "bool"):
                return False
            try:
                broadcast_shapes(a.type.shape, v.type.shape)
                return True
            except PnetError:
                return False
        cands = [v for v in ctx.pool if ok(v)]
        same = [v for v in cands if v.type.dtype == a.type.dtype]
        pool = same if same and g.ch.flag(0.8) else cands
        if pool:
            return Arg.of(g.ch.choice(pool))
    if a.type.dtype == "bool":
        return Arg.of(a)
    # a fresh tensor shaped like a suffix of a's shape, some dims 1
    k = g.ch.int(0, a.type.rank)
    shape = tuple(d if g.ch.flag(0.7) else sympy.Integer(1) for d in a.type.shape[a.type.rank - k:])
    v = g.new_tensor(ctx, a.type.dtype if is_float(a.type.dtype) else "f32", shape)
    if v is None:
        return Arg.of(a)
    ctx.pool.append(v)
    return Arg.of(v)


def generic_variadic(g, ctx, op):
    a = g.float_var(ctx)
    if a is None:
        return None
    args = [Arg.of(a)] + [Arg.of(g.float_var(ctx, lambda v: v.type == a.type) or a) for _ in range(g.ch.int(0, 2))]
    return Call(args, _attrs(g, op, a.type))


def generic_unknown(g, ctx, op):
    opdef = registry.get(op)
    n = len(opdef.inputs)
    if opdef.variadic:
        return generic_variadic(g, ctx, op)
    if n == 1 or (n > 1 and all(k == "?" for _, k in opdef.inputs[1:])):
        return generic_unary(g, ctx, op)
    if n == 2:
        return generic_binary(g, ctx, op)
    return None


GENERIC = {
    "elementwise": generic_unknown, "reduce": generic_unary, "norm": generic_unary,
    "movement": generic_unknown, "contraction": generic_unknown, "index": generic_unknown,
    "attention": generic_unknown,
}


# -- per-op samplers (the constraints a generic sampler cannot meet) --
def s_exact_binary(g, ctx, op):
    """Comparisons: only exact operands (a tie must compare the same in float32 and float64)."""
    return generic_binary(g, ctx, op)


def s_logical(g, ctx, op):
    def boolish():
        v = g.pick(ctx, dtype_class="bool")
        if v is not None and g.ch.flag(0.7):
            return Arg.of(v)
        x = g.pick(ctx, exact=True, dtype_class="num")
        if x is None:
            return None
        c = g.ch.choice(["0.0", "0.5", "-0.5"]) if x.float else "1"
        return Arg(f"{x.paren() if False else x.name} > {c}", x.type.with_dtype("bool"), True, 1.0, atomic=False)
    a = boolish()
    if a is None:
        return None
    if op == "logical_not":
        return Call([a], {}, text=f"not {a.paren()}" if g.ch.flag(0.5) else None)
    b = boolish()
    if b is None:
        return None
    if g.ch.flag(0.5):
        return Call([a, b], {}, text=f"{a.paren()} {'and' if op == 'logical_and' else 'or'} {b.paren()}")
    return Call([Arg(a.paren(), a.type, True, 1.0), Arg(b.paren(), b.type, True, 1.0)], {})


def s_where(g, ctx, op):
    c = g.pick(ctx, dtype_class="bool")
    if c is not None and g.ch.flag(0.6):
        cond = Arg.of(c)
    else:
        x = g.pick(ctx, exact=True, dtype_class="num")
        if x is None:
            return None
        cond = Arg(f"{x.name} > {'0.0' if x.float else '0'}", x.type.with_dtype("bool"), True, 1.0, atomic=False)
    a = g.float_var(ctx)
    if a is None:
        return None
    b = partner(g, ctx, a)
    if b is None:
        return None
    return Call([cond, Arg.of(a), b], {})


def s_div(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    if a.float:
        b = partner(g, ctx, a)
        if b is None:
            return None
        if b.expr in ("0.5", "2.0", "-1.0", "0.25", "1.5"):
            den = b
        else:
            den = Arg(f"abs({b.expr}) + 0.5", b.type, False, b.bound + 0.5, atomic=False)
        if a.exact and den.expr in ("0.5", "2.0", "0.25") and g.ch.flag(0.4):
            return Call([Arg.of(a), den], {}, text=f"{a.name} // {den.expr}", bound=a.bound * 4,
                        exact=True)  # floor of an exact quotient by a power of two
        sym_ = g.ch.flag(0.6)
        return Call([Arg.of(a), den], {}, text=f"{a.name} / {den.paren()}" if sym_ else None,
                    bound=a.bound / 0.25 if den.atomic else a.bound * 2)
    b = g.pick(ctx, dtype_class="int")
    den = Arg(f"abs({b.name}) + 1", b.type, True, b.bound + 1, atomic=False) if b is not None and g.ch.flag(0.6) \
        else number(g.ch.choice([2, 3]), a.type.dtype)
    return Call([Arg.of(a), den], {}, text=f"{a.name} {g.ch.choice(['/', '//'])} {den.paren()}" if g.ch.flag(0.5) else None)


def s_mod(g, ctx, op):
    a = g.pick(ctx, exact=True, dtype_class="num")
    if a is None:
        return None
    if a.float:
        den = number(g.ch.choice([2.0, 1.0, 0.5]), a.type.dtype)
    else:
        b = g.pick(ctx, dtype_class="int")
        den = Arg(f"abs({b.name}) + 1", b.type, True, b.bound + 1, atomic=False) if b is not None and g.ch.flag(0.5) \
            else number(g.ch.choice([2, 3]), a.type.dtype)
    return Call([Arg.of(a), den], {}, text=f"{a.name} % {den.paren()}" if g.ch.flag(0.6) else None, bound=2.0)


def s_pow(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    if not a.float:
        return Call([Arg.of(a), number(2, a.type.dtype)], {}, text=f"{a.name} ** 2", bound=a.bound ** 2)
    a = g.squash(Arg.of(a)) if a.bound > 4 else Arg.of(a)
    base = Arg(f"abs({a.expr}) + 0.5", a.type, False, a.bound + 0.5, atomic=False)
    if g.ch.flag(0.6):
        e = number(g.ch.choice([2.0, 0.5, 3.0, -1.0, 1.5]), a.type.dtype)
    else:
        b = partner(g, ctx, g.float_var(ctx) or Var("_", a.type))
        if b is None or not is_float(b.type.dtype):
            return None
        e = g.squash(b)
    bound = (base.bound ** 3) + 2
    return Call([base, e], {}, text=f"{base.paren()} ** {e.paren()}" if g.ch.flag(0.5) else None, bound=bound)


def s_clamp(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    lo, hi = sorted(g.ch.shuffled([-1.0, -0.5, 0.0, 0.5, 1.0])[:2])
    if not a.float:
        lo, hi = int(lo), int(hi) + 1
    which = g.ch.int(0, 2)
    attrs = {"min": lo, "max": hi} if which == 0 else {"min": lo} if which == 1 else {"max": hi}
    return Call([Arg.of(a)], attrs, bound=max(a.bound, 1.0))


def s_scale(g, ctx, op):
    a = g.pick(ctx, dtype_class="num")
    if a is None:
        return None
    f = g.ch.choice([0.5, 2.0, -1.5, 0.1]) if a.float else g.ch.choice([2, -1])
    return Call([Arg.of(a)], {"factor": f}, exact=a.exact and f in (0.5, 2.0, -1), bound=a.bound * 2)


def s_cast(g, ctx, op):
    mode = g.ch.int(0, 4)
    if mode == 0:   # an int/bool to float (exact)
        a = g.pick(ctx, dtype_class=None, pred=lambda v: not v.float)
        if a is None:
            return None
        return Call([Arg.of(a)], {"dtype": g.ch.choice(["f32", "f64"])}, exact=True, bound=a.bound)
    a = g.float_var(ctx)
    if a is None:
        return None
    if mode == 1 and a.exact and not g.specials:   # float -> int (truncation: exact values only; NaN/inf unspecified)
        return Call([Arg.of(a)], {"dtype": g.ch.choice(["i64", "i32"])}, exact=True)
    if mode == 2:   # a round trip through f16 or bf16 (round to nearest even in every backend)
        low = g.ch.choice(["f16", "bf16"])
        if a.bound > 1000 and low == "f16":
            return None
        return Call([Arg.of(a)], {"dtype": "f32"}, text=f'cast(cast({a.name}, "{low}"), "f32")' if a.type.dtype == "f32"
                    else None, exact=False)
    if mode == 3:   # identity cast (canonicalize drops it)
        return Call([Arg.of(a)], {"dtype": a.type.dtype}, exact=a.exact)
    return Call([Arg.of(a)], {"dtype": "f64" if a.type.dtype != "f64" else "f32"}, exact=a.exact and a.type.dtype != "f64")


def s_matmul(g, ctx, op):
    a = g.float_var(ctx, lambda v: v.type.rank >= 1, make_rank=2)
    if a is None:
        return None
    K = a.type.shape[-1]
    mode = g.ch.int(0, 3)
    if mode == 0 and a.type.rank >= 2:
        b = Arg(f"{a.name}.T", a.type.with_shape(a.type.shape[:-2] + (a.type.shape[-1], a.type.shape[-2])),
                a.exact, a.bound)
    elif mode == 1:
        v = g.float_var(ctx, lambda v: v.type.rank >= 1 and dims_equal(v.type.shape[-2 if v.type.rank >= 2 else -1], K)
                        and v is not a)
        if v is None:
            return None
        b = Arg.of(v)
    else:
        n = g.rand_dim(ctx, allow_sym=False)
        shape = (K,) if mode == 3 and g.ch.flag(0.5) else (K, n)
        if a.type.rank >= 3 and g.ch.flag(0.3):
            shape = a.type.shape[:-2] + shape
        v = g.new_tensor(ctx, a.type.dtype, shape)
        if v is None:
            return None
        ctx.pool.append(v)
        b = Arg.of(v)
    if a.type.dtype != b.type.dtype and g.ch.flag(0.5):
        return None
    k = g.rt(K)
    args = [Arg.of(a), b]
    if a.bound * b.bound * k > BOUND_LIMIT:
        args = [g.squash(x) for x in args]
    bound = args[0].bound * args[1].bound * k
    text = f"{args[0].paren()} @ {args[1].paren()}" if g.ch.flag(0.6) else None
    return Call(args, {}, text=text, bound=bound)


def s_einsum(g, ctx, op):
    a = g.float_var(ctx, lambda v: 1 <= v.type.rank <= 3 and v.type.dtype == "f32")
    if a is None:
        return None
    letters = "abcdefgh"
    la = letters[:a.type.rank]
    sizes = dict(zip(la, a.type.shape))
    operands = [(Arg.of(a), la)]
    if g.ch.flag(0.75):
        lb = [c for c in la if g.ch.flag(0.6)]
        for _ in range(g.ch.int(0 if lb else 1, 2)):
            c = letters[len(sizes)]
            sizes[c] = g.rand_dim(ctx, allow_sym=False, hi=4)
            lb.append(c)
        lb = g.ch.shuffled(lb)
        shape = tuple(sizes[c] for c in lb)
        v = g.new_tensor(ctx, "f32", shape)
        if v is None:
            return None
        ctx.pool.append(v)
        operands.append((Arg.of(v), "".join(lb)))
    used = sorted(set("".join(s for _, s in operands)))
    out = "".join(g.ch.shuffled(used)[:g.ch.int(0, len(used))])
    eq = ",".join(s for _, s in operands) + "->" + out
    args = [x for x, _ in operands]
    k = 1
    for c in used:
        if c not in out:
            k *= g.rt(sizes[c])
    bound = k
    for x in args:
        bound *= x.bound
    if bound > BOUND_LIMIT:
        args = [g.squash(x) for x in args]
        bound = k
    text = f"einsum({', '.join(x.expr for x in args)}, equation=\"{eq}\")" if g.ch.flag(0.5) else None
    return Call(args, {"equation": eq}, text=text, bound=bound)


def _spatial_input(g, ctx, nd, small=False):
    """A float [N, C, *spatial] value: from the pool, or a new input."""
    v = g.float_var(ctx, lambda v: v.type.rank == nd + 2 and v.type.shape[1].is_Integer
                    and all(g.rt(d) >= 2 for d in v.type.shape[2:]))
    if v is not None and g.ch.flag(0.7):
        return v
    n = g.symbol() if ctx.can_declare_inputs and g.ch.flag(0.5) else sympy.Integer(g.ch.int(1, 2))
    c = sympy.Integer(g.ch.int(1, 4))
    hi = 4 if nd == 3 else 7
    spatial = tuple(sympy.Integer(g.ch.int(2, hi)) for _ in range(nd))
    v = g.new_input(ctx, "f32", (n, c) + spatial)
    if v is None:
        return None
    ctx.pool.append(v)
    return v


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def s_conv(g, ctx, op):
    nd = int(op[4]) if op[4].isdigit() else 2
    transpose = op.startswith("conv_transpose")
    x = _spatial_input(g, ctx, nd)
    if x is None:
        return None
    cin = int(x.type.shape[1])
    groups = g.ch.choice(_divisors(cin)) if g.ch.flag(0.3) else 1
    m = g.ch.int(1, 3)
    k = [g.ch.int(1, 3) for _ in range(nd)]
    if transpose:
        wshape = (cin, m) + tuple(k)
        cout = m * groups
    else:
        cout = m * groups
        wshape = (cout, cin // groups) + tuple(k)
    w = g.new_param(ctx, [sympy.Integer(d) for d in wshape], "normal(0, 0.3)", 1.2)
    if w is None:
        return None
    args = [Arg.of(x), Arg.of(w)]
    if g.ch.flag(0.5):
        b = g.new_param(ctx, [sympy.Integer(cout)], "normal(0, 0.5)", 2.0)
        args.append(Arg.of(b))
    attrs = {}
    per_dim = lambda lo, hi: g.ch.int(lo, hi) if g.ch.flag(0.7) else [g.ch.int(lo, hi) for _ in range(nd)]
    if g.ch.flag(0.5):
        attrs["stride"] = per_dim(1, 2)
    if g.ch.flag(0.5):
        attrs["padding"] = per_dim(0, 2)
    if g.ch.flag(0.3):
        attrs["dilation"] = per_dim(1, 2)
    if groups > 1:
        attrs["groups"] = groups
    if transpose and g.ch.flag(0.3):
        attrs["output_padding"] = 1
    if x.bound > 4:
        args[0] = g.squash(args[0])
    taps = (cin // groups) * math.prod(k) if not transpose else cin * math.prod(k)
    return Call(args, attrs, bound=args[0].bound * 1.2 * taps + 2)


def s_pool(g, ctx, op):
    nd = int(op[-2])
    x = _spatial_input(g, ctx, nd)
    if x is None:
        return None
    k = g.ch.int(1, 3)
    attrs = {"kernel": k if g.ch.flag(0.7) else [g.ch.int(1, 3) for _ in range(nd)]}
    if g.ch.flag(0.5):
        attrs["stride"] = g.ch.int(1, 2)
    if g.ch.flag(0.4):
        attrs["padding"] = g.ch.int(0, 1)
    return Call([Arg.of(x)], attrs, exact=x.exact and op.startswith("max"))


def s_sort_topk(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class="num")
    if x is None:
        return None
    axis = g.ch.int(-x.type.rank, x.type.rank - 1)
    exact = x.exact or not x.float
    keep = [True, exact] if g.ch.flag(0.5) or not exact else [g.ch.flag(0.5), True]
    if op == "sort":
        attrs = {"axis": axis} if g.ch.flag(0.7) else {}
        if g.ch.flag(0.5):
            attrs["descending"] = g.ch.flag()
        return Call([Arg.of(x)], attrs, keep=keep, exact=exact)
    size = g.rt(x.type.shape[axis])
    attrs = {"k": g.ch.int(1, min(size, 4)), "axis": axis}
    if g.ch.flag(0.4):
        attrs["largest"] = g.ch.flag()
    return Call([Arg.of(x)], attrs, keep=keep, exact=exact)


def s_topk_mask(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, exact=True, dtype_class="num")
    if x is None:
        return None
    axis = g.ch.int(-x.type.rank, x.type.rank - 1)
    size = g.rt(x.type.shape[axis])
    return Call([Arg.of(x)], {"k": g.ch.int(1, min(size, 4)), "axis": axis}, exact=True)


def s_reshape(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    syms = [d for d in x.type.shape if not d.is_Integer]
    conc = math.prod(int(d) for d in x.type.shape if d.is_Integer)
    factors = []
    rest = conc
    while rest > 1 and len(factors) < 3:
        f = g.ch.choice([d for d in _divisors(rest) if d > 1]) if g.ch.flag(0.8) else rest
        factors.append(f)
        rest //= f
    if rest > 1:
        factors.append(rest)
    parts = [sympy.Integer(f) for f in factors] + list(syms)
    if len(syms) >= 2 and g.ch.flag(0.3):
        parts = [f for f in parts if f not in syms[:2]] + [syms[0] * syms[1]]
    if g.ch.flag(0.2):
        parts.append(sympy.Integer(1))
    parts = g.ch.shuffled(parts)
    if not parts:
        parts = [sympy.Integer(1)]
    if x.type.rank >= 2 and g.ch.flag(0.2):
        start = g.ch.int(0, x.type.rank - 2)
        return Call([Arg.of(x)], {"shape": list(x.type.shape[:start]) + [math.prod(x.type.shape[start:])]},
                    text=f"flatten({x.name}, {start})" if g.ch.flag(0.5) else None)
    shape = list(parts)
    ints = [i for i, d in enumerate(shape) if d.is_Integer]
    if ints and g.ch.flag(0.3):
        shape[g.ch.choice(ints)] = -1
    return Call([Arg.of(x)], {"shape": shape})


def s_transpose(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    r = x.type.rank
    perm = g.ch.shuffled(range(r))
    mode = g.ch.int(0, 4)
    if mode == 1 and r >= 2:
        return Call([Arg.of(x)], {"perm": list(range(r - 2)) + [r - 1, r - 2]}, text=f"{x.name}.T")
    if mode == 2:
        return Call([Arg.of(x)], {"perm": perm}, text=f"permute({x.name}, {', '.join(map(str, perm))})" if r >= 2 else None)
    if mode == 3 and r >= 2:
        a, b = g.ch.shuffled(range(r))[:2]
        p = list(range(r))
        p[a], p[b] = p[b], p[a]
        return Call([Arg.of(x)], {"perm": p}, text=f"swapaxes({x.name}, {a}, {b})")
    if mode == 4:
        return Call([Arg.of(x)], {}, text=f"transpose({x.name})")
    return Call([Arg.of(x)], {"perm": perm})


def s_squeeze(g, ctx, op):
    x = g.pick(ctx, lambda v: any(d == 1 for d in v.type.shape), dtype_class=None)
    if x is None:
        x = g.pick(ctx, dtype_class=None)
        if x is None:
            return None
        ax = g.ch.int(0, x.type.rank)
        return Call([Arg(f"unsqueeze({x.name}, {ax})", x.type.with_shape(x.type.shape[:ax] + (1,) + x.type.shape[ax:]),
                         x.exact or not x.float, x.bound)], {"axis": ax})
    ones = [i for i, d in enumerate(x.type.shape) if d == 1]
    attrs = {} if g.ch.flag(0.3) else {"axis": g.ch.choice(ones)}
    return Call([Arg.of(x)], attrs)


def s_concat(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    r = x.type.rank
    axis = g.ch.int(-r, r - 1)
    ax = axis % r
    parts = [Arg.of(x)]
    for _ in range(g.ch.int(1, 2)):
        def ok(v):
            return v.type.dtype == x.type.dtype and v.type.rank == r and all(
                i == ax or dims_equal(a, b) for i, (a, b) in enumerate(zip(v.type.shape, x.type.shape)))
        cands = [v for v in ctx.pool if ok(v)]
        if cands and g.ch.flag(0.6):
            parts.append(Arg.of(g.ch.choice(cands)))
        else:
            shape = list(x.type.shape)
            shape[ax] = sympy.Integer(g.ch.int(1, 3))
            v = g.new_tensor(ctx, x.type.dtype, tuple(shape))
            if v is None:
                parts.append(Arg.of(x))
            else:
                ctx.pool.append(v)
                parts.append(Arg.of(v))
    return Call(parts, {"axis": axis}, text=f"concat([{', '.join(p.expr for p in parts)}], {axis})" if g.ch.flag(0.3) else None)


def s_split(g, ctx, op):
    x = g.pick(ctx, lambda v: any(d.is_Integer and int(d) >= 2 for d in v.type.shape), dtype_class=None)
    if x is None:
        return None
    axes = [i for i, d in enumerate(x.type.shape) if d.is_Integer and int(d) >= 2]
    ax = g.ch.choice(axes)
    n = int(x.type.shape[ax])
    if g.ch.flag(0.5):
        k = g.ch.choice([d for d in _divisors(n) if d > 1])
        sizes = k
        count = k
    else:
        cut = sorted(set(g.ch.int(1, n - 1) for _ in range(g.ch.int(1, 2))))
        bounds = [0] + cut + [n]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        count = len(sizes)
    keep = [g.ch.flag(0.7) for _ in range(count)]
    keep[g.ch.int(0, count - 1)] = True
    axis = ax if g.ch.flag(0.6) else ax - x.type.rank
    text = f"split({x.name}, {lit(sizes)}, axis={axis})"
    return Call([Arg.of(x)], {"sizes": sizes, "axis": axis}, text=text, keep=keep)


def s_slice(g, ctx, op):
    """Subscripts `x[1:3, ..., 0, none]` (slice + squeeze + expand_dims) or the op itself."""
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    items, slices, out_shape = [], [], []
    for d in x.type.shape:
        n = g.rt(d)
        conc = d.is_Integer
        mode = g.ch.int(0, 4)
        if mode == 0:
            items.append(":")
            slices.append([None, None, None])
            out_shape.append(d)
        elif mode == 1:   # an integer drops the axis
            k = g.ch.int(0, n - 1) if conc else 0
            if g.ch.flag(0.3):
                k = k - n if conc else -1
            items.append(str(k))
            slices.append(None)
        elif mode == 2 and conc and n >= 2:
            a = g.ch.int(0, n - 1)
            b = g.ch.int(a + 1, n)
            s = g.ch.int(1, 2)
            sa = str(a) if a or g.ch.flag(0.5) else ""
            sb = str(b) if b != n or g.ch.flag(0.5) else ""
            if g.ch.flag(0.2) and b < n:
                sb = str(b - n)
            items.append(f"{sa}:{sb}" + (f":{s}" if s > 1 else ""))
            slices.append([a, b, s])
            out_shape.append(sympy.Integer(-(-(b - a) // s)))
        elif mode == 3 and not conc and g.ch.flag(0.5):
            items.append("::2")
            slices.append([None, None, 2])
            out_shape.append(sympy.ceiling(d / 2))
        else:
            items.append(":")
            slices.append([None, None, None])
            out_shape.append(d)
    pos = 0
    if g.ch.flag(0.2):
        k = g.ch.int(0, len(items))
        pos = sum(1 for s in slices[:k] if s is not None)
        items.insert(k, "none")
    if all(s is not None and s == [None, None, None] for s in slices) and "none" not in items:
        return None
    if g.ch.flag(0.25) and all(s is not None for s in slices) and "none" not in items:
        # the op called by name
        return Call([Arg.of(x)], {"slices": slices})
    # trailing full slices may become `...`
    if len(items) >= 2 and items[-1] == ":" and g.ch.flag(0.3):
        while len(items) >= 2 and items[-1] == ":":
            items.pop()
        items.append("...")
    text = f"{x.name}[{', '.join(items)}]"
    # the result type (the elaborator checks it again)
    shape = []
    it = iter(out_shape)
    for s in slices:
        if s is not None:
            shape.append(next(it))
    if "none" in items:
        shape.insert(pos, sympy.Integer(1))
    return _Typed(text, x.type.with_shape(tuple(shape)), x)


class _Typed(Call):
    """A call whose result type the sampler computed itself (subscripts: several IR ops)."""

    def __init__(self, text, t, x):
        super().__init__([Arg.of(x)], {}, text=text, exact=x.exact or not x.float, bound=x.bound)
        self.out_type = t


def s_pad(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class="float")
    if x is None:
        return None
    k = g.ch.int(1, min(2, x.type.rank))
    trailing = x.type.shape[-k:]
    mode = g.ch.choice(["constant", "constant", "reflect", "replicate", "circular"])
    pads = []
    for d in trailing:
        n = g.rt(d)
        hi = {"reflect": n - 1, "circular": n}.get(mode, 2)
        hi = min(hi, 2)
        if hi < 0:
            return None
        pads.append([g.ch.int(0, hi), g.ch.int(0, hi)])
    attrs = {"pads": pads}
    if mode != "constant" or g.ch.flag(0.3):
        attrs["mode"] = mode
    if mode == "constant" and g.ch.flag(0.4):
        attrs["value"] = g.ch.choice([1.5, -1.0])
    return Call([Arg.of(x)], attrs)


def s_broadcast_to(g, ctx, op):
    x = g.pick(ctx, dtype_class=None)
    if x is None:
        return None
    shape = [g.rand_dim(ctx, hi=4) if d == 1 and g.ch.flag(0.7) else d for d in x.type.shape]
    for _ in range(g.ch.int(0 if shape != list(x.type.shape) else 1, 2)):
        shape.insert(0, g.rand_dim(ctx, hi=3))
    if ctx.symbols is not None and _free(shape) - ctx.symbols:
        return None
    return Call([Arg.of(x)], {"shape": shape})


def s_tile(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    return Call([Arg.of(x)], {"reps": [g.ch.int(1, 2) for _ in x.type.shape]})


def _param_for(g, ctx, shape, init=None):
    v = g.new_param(ctx, shape, init, None)
    if v is not None:
        ctx.pool.append(v)
    return v


def s_layernorm(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.rank >= 1)
    if x is None:
        return None
    k = 2 if x.type.rank >= 2 and g.ch.flag(0.3) else 1
    axis = -1 if k == 1 else [-2, -1]
    trailing = x.type.shape[-k:]
    if op == "layernorm" and g.numel(TensorType("f32", trailing)) < 2:
        return None   # statistics of one element: 0 / sqrt(eps) amplifies rounding noise (nothing to test)
    args = [Arg.of(x)]
    attrs = {"axis": axis} if k == 2 or g.ch.flag(0.5) else {}
    if g.ch.flag(0.3):
        attrs["eps"] = g.ch.choice([1e-5, 0.01])
    kw = {}
    if all(d.is_Integer for d in trailing):
        nparams = g.ch.int(0, 2 if op == "layernorm" else 1)
        for i in range(nparams):
            p = _param_for(g, ctx, trailing)
            if p is None:
                break
            args.append(Arg.of(p))
        if op == "layernorm" and nparams == 1 and g.ch.flag(0.4):   # a bias without a weight
            args = [args[0], None, args[1]]
            kw = {2: "b"}
    bound = 1.0 + math.sqrt(max(g.numel(TensorType("f32", trailing)), 1))
    for a in args[1:]:
        if a is not None:
            bound *= a.bound + 1
    return Call(args, attrs, kw_inputs=kw, bound=bound)


def s_batchnorm(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.rank >= 2 and v.type.shape[1].is_Integer)
    if x is None:
        x = _spatial_input(g, ctx, g.ch.int(1, 2))
        if x is None:
            return None
    c = (x.type.shape[1],)
    mean = _param_for(g, ctx, c, "normal(0, 0.5)")
    var = _param_for(g, ctx, c, "uniform(0.5, 2)")
    if mean is None or var is None:
        return None
    args = [Arg.of(x), Arg.of(mean), Arg.of(var)]
    for _ in range(g.ch.int(0, 2)):
        p = _param_for(g, ctx, c)
        args.append(Arg.of(p))
    attrs = {"eps": g.ch.choice([1e-5, 0.1])} if g.ch.flag(0.3) else {}
    return Call(args, attrs, bound=(x.bound + 2) * 2 * 3 + 3)


def s_groupnorm(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.rank >= 2 and v.type.shape[1].is_Integer)
    if x is None:
        x = _spatial_input(g, ctx, g.ch.int(1, 2))
        if x is None:
            return None
    c = int(x.type.shape[1])
    per_sample = g.numel(x.type) // max(g.rt(x.type.shape[0]), 1)
    groups = g.ch.choice([d for d in _divisors(c) if per_sample // d >= 2] or [0])
    if groups == 0:
        return None   # groups of one element: see s_layernorm
    args = [Arg.of(x)]
    for _ in range(g.ch.int(0, 2)):
        p = _param_for(g, ctx, (sympy.Integer(c),))
        args.append(Arg.of(p))
    return Call(args, {"groups": groups}, bound=20.0)


def s_take(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    if x is None:
        return None
    r = x.type.rank
    axis = g.ch.int(0, r - 1)
    ishape = g.rand_shape(ctx, g.ch.int(0, 2), declare=True)
    idx = g.index_input(ctx, ishape, g.rt(x.type.shape[axis]))
    if idx is None:
        return None
    exact = x.exact or not x.float
    mode = g.ch.int(0, 2)
    if mode == 0:
        text = f"{x.name}[{', '.join([':'] * axis + [idx.name])}]"
    elif mode == 1 and axis == r - 1 and r >= 2:
        text = f"{x.name}[..., {idx.name}]"
    else:
        text = None
    if op == "embedding":     # (rows of a 2-D table: the ids index axis 0)
        if r != 2 or axis != 0:
            return None
        return Call([Arg.of(x), Arg.of(idx)], {}, exact=exact)
    return Call([Arg.of(x), Arg.of(idx)], {"axis": axis}, text=text, exact=exact)


def s_embedding(g, ctx, op):
    if g.ch.flag(0.5):
        return s_take(g, ctx, op)
    v = g.ch.int(2, 8)
    table = _param_for(g, ctx, (sympy.Integer(v), sympy.Integer(g.ch.int(1, 4))))
    if table is None:
        return None
    idx = g.index_input(ctx, g.rand_shape(ctx, g.ch.int(0, 2), declare=True), v)
    if idx is None:
        return None
    return Call([Arg.of(table), Arg.of(idx)], {}, exact=True)


def _index_along_axis(g, ctx, x):
    """(axis, an index input shaped like `x` but 1-4 long on that axis, valid for `x`'s size there) or None:
    the operands gather and scatter_add share."""
    axis = g.ch.int(0, x.type.rank - 1)
    shape = list(x.type.shape)
    shape[axis] = sympy.Integer(g.ch.int(1, 4))
    idx = g.index_input(ctx, shape, g.rt(x.type.shape[axis]))
    return None if idx is None else (axis, idx)


def s_gather(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1, dtype_class=None)
    found = _index_along_axis(g, ctx, x) if x is not None else None
    if found is None:
        return None
    axis, idx = found
    a = axis if g.ch.flag(0.7) else axis - x.type.rank
    return Call([Arg.of(x), Arg.of(idx)], {"axis": a}, exact=x.exact or not x.float)


def s_scatter_add(g, ctx, op):
    x = g.pick(ctx, lambda v: v.type.rank >= 1 and v.type.dtype in ("f32", "i64"), dtype_class=None)
    found = _index_along_axis(g, ctx, x) if x is not None else None
    if found is None:
        return None
    axis, idx = found
    shape = idx.type.shape
    src = g.pick(ctx, lambda v: v.type.dtype == x.type.dtype and len(v.type.shape) == len(shape)
                 and all(dims_equal(a, b) for a, b in zip(v.type.shape, shape)), dtype_class=None)
    if src is None:
        src = g.new_tensor(ctx, x.type.dtype, tuple(shape))
        if src is None:
            return None
        ctx.pool.append(src)
    return Call([Arg.of(x), Arg.of(idx), Arg.of(src)], {"axis": axis},
                bound=x.bound + src.bound * g.rt(shape[axis]))


def s_segment(g, ctx, op):
    data = g.pick(ctx, lambda v: v.type.rank >= 1 and (v.float or op != "segment_mean") and v.type.dtype != "bool",
                  dtype_class=None)
    if data is None:
        return None
    n = g.ch.int(1, 5) if g.ch.flag(0.8) or not ctx.can_declare_inputs else None
    s = g.symbol(existing=True) if n is None else None
    if s is not None and (ctx.symbols is None or s.name in ctx.symbols):
        num, nb = s, g.rt(s)
    else:
        n = n or 2
        num, nb = n, n
    ids = g.index_input(ctx, (data.type.shape[0],), nb)
    if ids is None:
        return None
    exact = op == "segment_max" and (data.exact or not data.float)
    return Call([Arg.of(data), Arg.of(ids)], {"num_segments": num}, exact=exact,
                bound=data.bound * (g.rt(data.type.shape[0]) if op == "segment_sum" else 1))


def s_one_hot(g, ctx, op):
    ids = g.pick(ctx, lambda v: v.type.rank <= 2, dtype_class="int")
    depth = g.ch.int(1, 5)
    if ids is None or g.ch.flag(0.5):
        ids = g.index_input(ctx, g.rand_shape(ctx, g.ch.int(0, 2), declare=True), depth)
        if ids is None:
            return None
    attrs = {"depth": depth}
    if g.ch.flag(0.3):
        attrs["dtype"] = g.ch.choice(["f32", "i64", "f64"])
    return Call([Arg.of(ids)], attrs, exact=True, bound=1.0)


# ---- quantized ops: integer results must agree bit for bit, so they start from exact float values and
# power-of-two scales (the division is exact: no backend's evaluation order can move a value across a rounding
# boundary) -------------------------------------------------------------------------------------------------
def _quantized(g, ctx, pred=lambda v: True) -> Arg | None:
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32" and pred(v), exact=True)
    if x is None:
        return None
    scale = g.ch.choice([0.125, 0.25, 0.5, 1.0])
    bits = g.ch.choice([8, 8, 4])
    return Arg(f"quantize({x.name}, {lit(scale)}, bits={bits})", x.type.with_dtype("i8"), True, 128.0)


def s_quantize(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32", exact=True)
    if x is None:
        return None
    attrs = {"bits": g.ch.choice([8, 4, 2])} if g.ch.flag(0.5) else {}
    if g.ch.flag(0.3):
        attrs["narrow"] = True
    return Call([Arg.of(x), number(g.ch.choice([0.125, 0.5, 2.0]))], attrs, exact=True, bound=128.0)


def s_dequantize(g, ctx, op):
    q = _quantized(g, ctx)
    if q is None:
        return None
    return Call([q, number(g.ch.choice([0.25, 0.5]))], {}, exact=True, bound=64.0)


def s_fake_quant(g, ctx, op):
    x = g.float_var(ctx, lambda v: v.type.dtype == "f32", exact=True)
    if x is None:
        return None
    return Call([Arg.of(x), number(g.ch.choice([0.125, 0.5]))], {"bits": g.ch.choice([8, 4])}, exact=True,
                bound=x.bound + 1)


def s_qmatmul(g, ctx, op):
    a = _quantized(g, ctx, lambda v: v.type.rank >= 1)
    if a is None:
        return None
    n = g.rand_dim(ctx, allow_sym=False)
    w = g.new_tensor(ctx, "f32", (a.type.shape[-1], n))
    if w is None:
        return None
    ctx.pool.append(w)
    scale = g.ch.choice([0.25, 0.5])
    b = Arg(f"quantize({w.name}, {lit(scale)})", w.type.with_dtype("i8"), True, 128.0)
    return Call([a, b], {}, exact=True, bound=float(128 * 128 * 5))  # K <= 5 (small dims)


def _packable(g, ctx, bits):
    per = 8 // bits
    return _quantized(g, ctx, lambda v: v.type.rank >= 1 and v.type.shape[-1].is_Integer and int(v.type.shape[-1]) % per == 0)


def s_pack_bits(g, ctx, op):
    bits = g.ch.choice([1, 2, 4])
    q = _packable(g, ctx, bits)
    if q is None:
        return None
    return Call([q], {"bits": bits}, exact=True, bound=255.0)


def s_unpack_bits(g, ctx, op):
    bits = g.ch.choice([1, 2, 4])
    q = _packable(g, ctx, bits)
    if q is None:
        return None
    packed = q.type.with_shape(q.type.shape[:-1] + (q.type.shape[-1] / (8 // bits),)).with_dtype("u8")
    return Call([Arg(f"pack_bits({q.expr}, bits={bits})", packed, True, 255.0)], {"bits": bits}, exact=True,
                bound=float(2 ** (bits - 1)))


def s_sdpa(g, ctx, op):
    q = g.float_var(ctx, lambda v: 2 <= v.type.rank <= 4 and v.type.dtype == "f32")
    if q is None:
        q = g.new_input(ctx, "f32", g.rand_shape(ctx, g.ch.int(2, 3), declare=True))
        if q is None:
            return None
        ctx.pool.append(q)
    batch, tq, d = q.type.shape[:-2], q.type.shape[-2], q.type.shape[-1]
    if g.ch.flag(0.4):
        k = v = q
        tk = tq
    else:
        tk = g.rand_dim(ctx, hi=4, declare=True) if g.ch.flag(0.6) else tq
        dv = g.rand_dim(ctx, allow_sym=False, hi=4)
        kb = batch if g.ch.flag(0.7) else batch[len(batch) - g.ch.int(0, len(batch)):]
        k = g.new_tensor(ctx, "f32", kb + (tk, d))
        v = g.new_tensor(ctx, "f32", kb + (tk, dv))
        if k is None or v is None:
            return None
        ctx.pool += [k, v]
    args = [g.squash(Arg.of(q)) if q.bound > 4 else Arg.of(q), Arg.of(k), Arg.of(v)]
    attrs = {}
    kw = {}
    mode = g.ch.int(0, 3)
    if mode == 1:
        m = g.new_input(ctx, "bool", (tq, tk))
        if m is not None:
            args.append(Arg.of(m))
    elif mode == 2:
        m = g.new_input(ctx, "bool", (tq, tk) if g.ch.flag(0.6) else (tk,))
        if m is not None:
            args.append(Arg(f"where({m.name}, 0.0, -inf)", m.type.with_dtype("f32"), True, 1.0))
            if g.ch.flag(0.5):
                kw = {3: "mask"}
    if g.ch.flag(0.4):
        attrs["causal"] = True
    if g.ch.flag(0.3):
        attrs["scale"] = g.ch.choice([0.5, 1.0])
    return Call(args, attrs, kw_inputs=kw, bound=max(a.bound for a in args))


def _grow_sum(bounds, call, outs):
    return sum(bounds)


def _grow_mul(bounds, call, outs):
    return math.prod(bounds)


def _grow_reduce(bounds, call, outs):
    a = call.args[0]
    g_in = max(1, _numel_hint(a.type))
    g_out = max(1, _numel_hint(outs[0]))
    return bounds[0] * max(1, g_in // g_out)


def _numel_hint(t):
    n = 1
    for d in t.shape:
        n *= int(d) if getattr(d, "is_Integer", False) else 5
    return n


def _grow_prod(bounds, call, outs):
    a = call.args[0]
    k = max(1, _numel_hint(a.type) // max(1, _numel_hint(outs[0])))
    if bounds[0] <= 1:
        return 1.0
    return math.inf if k * math.log(bounds[0]) > 700 else bounds[0] ** k


_ONE = lambda bounds, call, outs: 1.0  # noqa: E731

# ---- standard-library blocks --------------------------------------------------------------------------------
def _last_even(v):
    return v.type.rank >= 2 and v.type.shape[-1].is_Integer and int(v.type.shape[-1]) % 2 == 0


def _seq(v):
    return v.type.rank == 3


# (module, call with {x} the tensor and {n} {h} {k} small ints, number of results, which tensors it takes)
STDLIB_CALLS = [
    ("nn.core", "linear({x}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "linear({x}, {n}, bias=false)", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "mlp({x}, {h}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "mlp({x}, {h}, {n}, depth=3, act=gelu)", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "gelu_mlp({x}, {h})", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "swiglu_mlp({x}, {h}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.norm", "layer_norm({x})", 1, lambda v: v.type.rank >= 1 and v.type.shape[-1].is_Integer and int(v.type.shape[-1]) >= 2),
    ("nn.norm", "rms_norm({x})", 1, lambda v: v.type.rank >= 1),
    ("nn.rnn", "rnn({x}, {h})", 2, _seq),
    ("nn.rnn", "gru({x}, {h})", 2, _seq),
    ("nn.rnn", "lstm({x}, {h})", 3, _seq),
    ("nn.attention", "mha({x}, heads={k})", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.attention", "mha({x}, heads={k}, causal=true, rotary=true)", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.attention", "rope({x})", 1, _last_even),
    ("nn.transformer", "gpt_block({x}, heads={k}, ffn={h})", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.transformer", "encoder_block({x}, heads={k}, ffn={h})", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.kan", "kan_layer({x}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.ssm", "causal_conv1d({x})", 1, _seq),
    ("nn.vision", "mixer_block({x}, {h}, {h})", 1, _seq),
]
_STDLIB_TYPES: dict = {}


def stdlib_result_types(module, call, n_out, t: TensorType, dims) -> list | None:
    """The result types of `call` on an input of type t, by elaborating it once (cached); None when the stdlib
    block rejects it with a PnetError (its shape patterns or asserts say no). Any other exception is a front-end
    crash: the call is still generated (typed like its input) so that the program's 'compile' property reports it."""
    key = (module, call, str(t), dims)
    if key not in _STDLIB_TYPES:
        names = [f"r{i}" for i in range(n_out)]
        src = (f"import {module}\nmodel probe() {{\n  input x: {type_src(t)}\n  {', '.join(names)} = {call}\n"
               + "".join(f"  output {r}\n" for r in names) + "}\n")
        try:
            g = _probe(src, dict(dims))
            _STDLIB_TYPES[key] = [v.type for _, v in g.outputs]
        except PnetError:
            _STDLIB_TYPES[key] = None
        except Exception:  # noqa: BLE001
            _STDLIB_TYPES[key] = [t] * n_out
    return _STDLIB_TYPES[key]


_PROBE_LOADER = None


def _probe(src: str, overrides: dict):
    """Elaborate a probe program, keeping the parsed stdlib modules between probes (load_source re-parses)."""
    global _PROBE_LOADER
    from ..dsl.elaborate import Elaborator
    from ..dsl.loader import Loader
    from ..dsl.parser import parse
    if _PROBE_LOADER is None:
        _PROBE_LOADER = Loader()
    module = parse(src, "<probe>")
    for imp in module.imports:
        _PROBE_LOADER.imported(module, imp)
    el = Elaborator(_PROBE_LOADER)
    el._main_source = ("<probe>", src)
    return el.elaborate_model(module, None, overrides).graph


# ---- THE table: everything the generator knows per op -------------------------------------------------------
TABLE: dict[str, Spec] = {
    # elementwise arithmetic
    "add": Spec(generic_binary, grow=_grow_sum, weight=1.5),
    "sub": Spec(generic_binary, grow=_grow_sum),
    "mul": Spec(generic_binary, grow=_grow_mul, weight=1.5),
    "div": Spec(s_div),
    "pow": Spec(s_pow),
    "maximum": Spec(generic_binary, keeps_exact=True),
    "minimum": Spec(generic_binary, keeps_exact=True),
    "mod": Spec(s_mod),
    # comparisons and logic: discontinuous, exact operands only
    "lt": Spec(s_exact_binary, exact_inputs=True), "le": Spec(s_exact_binary, exact_inputs=True),
    "gt": Spec(s_exact_binary, exact_inputs=True), "ge": Spec(s_exact_binary, exact_inputs=True),
    "eq": Spec(s_exact_binary, exact_inputs=True, weight=0.5), "ne": Spec(s_exact_binary, exact_inputs=True, weight=0.5),
    "logical_and": Spec(s_logical, weight=0.5), "logical_or": Spec(s_logical, weight=0.5),
    "logical_not": Spec(s_logical, weight=0.5),
    "where": Spec(s_where, keeps_exact=True),
    # unary math (domains keep the results finite)
    "neg": Spec(keeps_exact=True), "abs": Spec(keeps_exact=True),
    "sign": Spec(exact_inputs=True, keeps_exact=True, grow=_ONE),
    "exp": Spec(domain="clamp({}, max=3.0)", grow=lambda b, c, o: math.exp(min(b[0], 3.0))),
    "log": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: abs(math.log(b[0] + 0.5)) + 1),
    "sqrt": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: math.sqrt(b[0] + 0.5)),
    "rsqrt": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: 1.5),
    "reciprocal": Spec(domain="abs({}) + 0.5", grow=lambda b, c, o: 2.0),
    "square": Spec(grow=lambda b, c, o: b[0] ** 2),
    "sin": Spec(grow=_ONE), "cos": Spec(grow=_ONE), "tanh": Spec(grow=_ONE, weight=1.5),
    "erf": Spec(grow=_ONE), "sigmoid": Spec(grow=_ONE),
    "floor": Spec(exact_inputs=True, keeps_exact=True), "round": Spec(exact_inputs=True, keeps_exact=True),
    "heaviside": Spec(exact_inputs=True, keeps_exact=True, grow=_ONE),
    "relu": Spec(keeps_exact=True, weight=1.5), "hardsigmoid": Spec(grow=_ONE),
    "clamp": Spec(s_clamp, keeps_exact=True), "scale": Spec(s_scale),
    "cast": Spec(s_cast, weight=1.2),
    # reductions
    "sum": Spec(grow=_grow_reduce, weight=1.5), "mean": Spec(weight=1.5), "max": Spec(keeps_exact=True),
    "min": Spec(keeps_exact=True), "prod": Spec(grow=_grow_prod),
    "logsumexp": Spec(grow=lambda b, c, o: b[0] + 10),
    "argmax": Spec(exact_inputs=True), "argmin": Spec(exact_inputs=True),
    "cumsum": Spec(grow=_grow_reduce),
    "max_pool1d": Spec(s_pool), "avg_pool1d": Spec(s_pool), "max_pool2d": Spec(s_pool), "avg_pool2d": Spec(s_pool),
    "sort": Spec(s_sort_topk, keeps_exact=True), "topk": Spec(s_sort_topk, keeps_exact=True),
    # which entries topk_mask keeps flips with rounding when magnitudes nearly tie: exact inputs only
    "topk_mask": Spec(s_topk_mask, exact_inputs=True, keeps_exact=True),
    # contractions
    "matmul": Spec(s_matmul, weight=2.0), "einsum": Spec(s_einsum, weight=1.2),
    "conv1d": Spec(s_conv), "conv2d": Spec(s_conv), "conv3d": Spec(s_conv, weight=0.5),
    "conv_transpose2d": Spec(s_conv),
    # movement: exact in, exact out
    "reshape": Spec(s_reshape, keeps_exact=True, weight=1.5), "transpose": Spec(s_transpose, keeps_exact=True),
    "expand_dims": Spec(keeps_exact=True), "squeeze": Spec(s_squeeze, keeps_exact=True),
    "concat": Spec(s_concat, keeps_exact=True), "split": Spec(s_split, keeps_exact=True),
    "slice": Spec(s_slice, keeps_exact=True, weight=1.5), "pad": Spec(s_pad, keeps_exact=True),
    "broadcast_to": Spec(s_broadcast_to, keeps_exact=True), "repeat": Spec(keeps_exact=True),
    "tile": Spec(s_tile, keeps_exact=True), "flip": Spec(keeps_exact=True), "roll": Spec(keeps_exact=True),
    # norms
    "softmax": Spec(grow=_ONE), "log_softmax": Spec(grow=lambda b, c, o: 2 * b[0] + 10),
    "layernorm": Spec(s_layernorm), "rmsnorm": Spec(s_layernorm),
    "batchnorm": Spec(s_batchnorm), "groupnorm": Spec(s_groupnorm),
    # indexing
    "take": Spec(s_take, keeps_exact=True), "embedding": Spec(s_embedding, keeps_exact=True),
    "gather": Spec(s_gather, keeps_exact=True), "scatter_add": Spec(s_scatter_add),
    "segment_sum": Spec(s_segment), "segment_mean": Spec(s_segment), "segment_max": Spec(s_segment),
    "one_hot": Spec(s_one_hot),
    "quantize": Spec(s_quantize), "dequantize": Spec(s_dequantize), "fake_quant": Spec(s_fake_quant),
    "qmatmul": Spec(s_qmatmul), "pack_bits": Spec(s_pack_bits), "unpack_bits": Spec(s_unpack_bits),
    # attention
    "sdpa": Spec(s_sdpa, weight=1.2),
}


# ---- front ends ------------------------------------------------------------------------------------------
def generate(ch: Chooser, **config) -> Program:
    return Gen(ch, **config).program()


def random_program(seed, **config) -> Program:
    return generate(RandomChooser(seed), **config)


def programs(**config):
    """A hypothesis strategy of `Program`s (shrinks toward few statements and simple ops)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        return generate(DrawChooser(draw), **config)
    return build()


def generatable_ops() -> list[str]:
    """The registry ops the differential tester must be able to generate."""
    return [n for n, o in registry.all_ops().items() if o.kind not in SKIP_KINDS and n not in PASS_ONLY_OPS]


def try_generate_op(op: str, seeds=range(40), accept=None) -> Program | None:
    """A program whose generation applied `op` and that `accept(program)` (when given) likes; None when no
    seed managed to."""
    for seed in seeds:
        g = Gen(RandomChooser(seed), max_stmts=3, features=False)
        model = Ctx("model", [], "  ", [])
        for rank in (2, 3, 4):
            model.pool.append(g.new_input(model, "f32", g.rand_shape(model, rank, declare=True)))
        if g.apply(model, op, tries=8):
            lines = list(g.inputs) + model.lines
            outs = [f"  output y = {model.pool[-1].name}"]
            body = "\n".join("  " + l if l.startswith("input ") else l for l in lines + outs)
            prog = Program(f"model fuzz() {{\n{body}\n}}\n", dict(g.dims), {}, 0, (op,))
            if accept is None or accept(prog):
                return prog
    return None
