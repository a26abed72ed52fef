"""The straight-line statements of a block: which kind comes next (`statement`), an op from the registry
(`st_op`), a standard-library call, constants, a repeated right-hand side (CSE bait), a long pointwise chain, a
Gram product, index notation. (`for`, `if`, `scan` and `def` are in control.py.)"""
from __future__ import annotations

import sympy

from ...ir.types import TensorType, dims_equal
from .config import BOUND_LIMIT, MAX_NUMEL
from .stdlib_calls import STDLIB_CALLS, stdlib_result_types
from .values import Var, free_names, lit, shape_src


class Statements:
    """Gen's statements (a mixin of gen.Gen: `self` is the program's generator)."""

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
            op = self.ch.weighted(names, [self.spec(n).weight for n in names])
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
        if ctx.symbols is not None and free_names(list(shape)) - ctx.symbols:
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
