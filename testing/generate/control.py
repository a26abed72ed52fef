"""The statements with a body: compile-time `for` loops and `if` chains over hyperparameters, conditional
expressions, `scan` (over a sequence, or a step counter, possibly empty), and `def`s called once or twice. A body's
last value is coerced back into the carried type (`coerce`)."""
from __future__ import annotations

import sympy

from ...errors import PnetError
from ...ir.types import TensorType, broadcast_shapes
from .values import Ctx, Var, all_renderable, free_names, lit, renderable, shape_src


class ControlFlow:
    """Gen's statements with a body (a mixin of gen.Gen: `self` is the program's generator)."""

    # -- coercion: any value into a given f32 type (for loop/if/scan results) --
    def coerce(self, v: Var, base: Var) -> str:
        """Source for a value of base's type built from `v` and `base` (bounded: |result| <= |base|/2 + 1)."""
        t = base.type
        src = v.name
        if v.type.dtype != "f32":
            src = f'cast({src}, "f32")'
        try:
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
            if n is None or (ctx.symbols is not None and free_names(n) - ctx.symbols):
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
            if free_names(list(carry_t.shape)) <= (ctx.symbols if ctx.symbols is not None else set(self.dims)) \
                    and all_renderable(carry_t.shape) and self.ch.flag(0.6):   # (no floor(B/2) in the source)
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
        if (not free_names(list(last.type.shape)) - scope and not ellipsis
                and all(renderable(d) for d in last.type.shape) and self.ch.flag(0.6)):
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
