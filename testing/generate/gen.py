"""`Gen`, one program's generator: the symbolic dims and their run-time sizes, the pools of typed values per
block, new inputs and params, applying an op (a sampler proposes a call, the op's type rule types it, values are
kept finite), and the whole program's assembly (inputs, statements, outputs, ties, noise). The statements
themselves are in statements.py and control.py; what it knows per op is table.TABLE."""
from __future__ import annotations

import math
import re

import sympy

from ...errors import PnetError
from ...ir import registry
from ...ir.types import TensorType, is_float, is_int, sym
from .chooser import Chooser, RandomChooser
from .config import (BAD_INDEX_FRACTION, BOUND_LIMIT, FILE_PATHS, HOSTILE_INPUTS, HOSTILE_SYMBOLS, MAX_NUMEL,
                     MODEL_NAMES, PASS_ONLY_OPS, SKIP_KINDS, SPECIALS_FRACTION, SYMBOLS, ZERO_DIM_FRACTION)
from .control import ControlFlow
from .program import Program
from .samplers.generic import generic_unknown
from .statements import Statements
from .table import GENERIC, TABLE
from .values import (Arg, Call, Ctx, Skip, Spec, TypedCall, Var, all_renderable, free_names, lit, renderable,
                     shape_src, type_src)


class Gen(Statements, ControlFlow):
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
    def spec(self, op) -> Spec:
        """What the generator knows about `op`: its TABLE entry, or the defaults when it has none."""
        return TABLE.get(op, Spec())

    def apply(self, ctx, op: str, tries: int = 4) -> bool:
        opdef = registry.get(op)
        spec = self.spec(op)
        sampler = spec.sample or GENERIC.get(opdef.kind, generic_unknown)
        for _ in range(tries):
            mark = (len(ctx.lines), len(ctx.pool), len(self.inputs), len(self.model_params), dict(self.dims))
            try:
                call = sampler(self, ctx, op)
            except Skip:
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
        if isinstance(call, TypedCall):     # a subscript: several IR ops, typed by its sampler
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
        if not all_renderable(list(call.attrs.values())):
            return None
        if ctx.symbols is not None:
            names = free_names(list(call.attrs.values()))
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
