"""Row kernels (a mixin of codegen.ModuleGen): a program reduces ROWS rows (the kept coordinates) at once, each
row's reduced axes in one block of a [ROWS, BLOCK] tile (ROWS > 1 only for short rows: pooling windows, small
heads; a GPU then keeps its lanes busy and the interpreter runs fewer programs): reductions (sum, mean, max/min with NaN propagation, argmax/argmin, logsumexp, var/std) with pointwise
prologues and epilogues, and softmax / log_softmax / layernorm / rmsnorm."""
from __future__ import annotations

from ...ir.graph import Value
from ...passes.fuse import Kernel
from .source_text import dim_code


ROW = "axis=1, keep_dims=True"   # a reduction over a row of the tile: each row's value stays a [ROWS, 1] column


class ReduceKernels:
    def _rows(self, x: Value, red_axes, body, prefix="x"):
        """Row decomposition of a [ROWS, BLOCK] tile: rows (a column) -> kept coords [ROWS, 1], cols (a row of the
        tile) -> reduced coords [1, BLOCK]; `rmask` the rows that exist, `cmask` the lanes that exist."""
        rank = len(x.type.shape)
        kept = [d for d in range(rank) if d not in red_axes]
        body += ["    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]", "    rmask = rows < NROW",
                 "    rem = rows"]
        for d in reversed(kept):
            body += [f"    c{d} = rem % size{d}", f"    rem = rem // size{d}"]
        body += ["    cols = tl.arange(0, BLOCK)[None, :]", "    cmask = (cols < NCOL) & rmask", "    rem = cols"]
        for d in reversed(red_axes):
            body += [f"    c{d} = rem % size{d}", f"    rem = rem // size{d}"]
        return kept

    def _row_launch(self, k, x: Value, red_axes, names, lines, extra_args, extra_values=(), xs=None):
        rank = len(x.type.shape)
        kept = [d for d in range(rank) if d not in red_axes]
        xs = xs or names[x]
        rows = " * ".join([f"{xs}.shape[{d}]" for d in kept]) or "1"
        ncol = " * ".join([f"{xs}.shape[{d}]" for d in red_axes]) or "1"
        nc = f"nc{self._next()}"
        lines.append(f"    {nc} = {ncol}")
        args = [xs] + [f"{xs}.stride({d})" for d in range(rank)] + list(extra_args)
        args += [f"{xs}.shape[{d}]" for d in range(rank)] + [nc]
        self._launch_rows(k, rows, nc, args, lines)

    def _launch_rows(self, k, rows: str, nc: str, args: list, lines):
        """A launch over cdiv(rows, ROWS) programs, ROWS rows each (rows_per_program: short rows share one)."""
        nr, blk, rp = (f"{p}{self._next()}" for p in ("nr", "blk", "rp"))
        lines += [f"    {nr} = {rows}", f"    {blk} = _rt.next_pow2({nc})", f"    {rp} = _rt.rows_per_program({nr}, {blk})"]
        lines.append(f"    {k.name}[(_rt.cdiv({nr}, {rp}),)]({', '.join(args)}, {nr}, BLOCK={blk}, ROWS={rp})")

    def _k_reduction(self, k: Kernel, names, lines, plan):
        """One program a row (the kept coordinates), the reduced axes in one block. The reduced value may be
        computed in the row from its own operands (a pointwise prologue: max(abs(x)), sum(a * b)), and pointwise
        ops on the result run before the store (an epilogue: the / 127 of a dynamic quantization scale)."""
        n = k.nodes[0]
        x = n.inputs[0]
        rank = len(x.type.shape)
        red = list(n.attrs["axis"]) if isinstance(n.attrs["axis"], list) else [n.attrs["axis"]]
        pro = k.prologue.get(x, [])
        epi = [m for m in k.nodes[1:] if m not in pro]
        pro_ops, epi_ops = self._operands(k, plan, nodes=pro), self._operands(k, plan, nodes=epi)
        out_t = n.outputs[0].type
        keep = n.attrs.get("keepdims", False)
        out_coords = [("0" if d in red else f"c{d}") for d in range(rank)] if keep else \
            [f"c{d}" for d in range(rank) if d not in red]   # a row's coordinates in the output's dims
        params = ["x"] + [f"x_s{d}" for d in range(rank)]
        for i, v in enumerate(pro_ops):
            params += [f"p{i}"] + [f"p{i}_s{d}" for d in range(rank)] + self.table_param(f"p{i}", v)
        for i, v in enumerate(epi_ops):
            params += [f"in{i}"] + [f"in{i}_s{d}" for d in range(out_t.rank)] + self.table_param(f"in{i}", v)
        params += [f"out{j}" for j in range(len(k.outputs))] + [f"size{d}" for d in range(rank)]
        params += ["NCOL", "NROW", "BLOCK: tl.constexpr", "ROWS: tl.constexpr"]
        body = []
        self._rows(x, red, body)
        offs = " + ".join(f"c{d} * x_s{d}" for d in range(rank)) or "0"
        op = n.op
        ident = {"max": 'float("-inf")', "min": 'float("inf")', "argmax": 'float("-inf")', "argmin": 'float("inf")',
                 "logsumexp": 'float("-inf")'}.get(op, "0.0")
        if pro:
            reg = {}
            for i, v in enumerate(pro_ops):
                reg[v] = f"pv{i}"
                p_offs = " + ".join(f"c{d} * p{i}_s{d}" for d in range(rank)) or "0"
                body.append(f"    pv{i} = {self._load(f'p{i}', p_offs, 'cmask', v)}")
            self._expr_chain(pro, reg, plan, body)
            body.append(f"    v = tl.where(cmask, ({reg[x]}).to(tl.float32), {ident})")
        else:
            body.append(f"    v = tl.load(x + {offs}, mask=cmask, other={ident}).to(tl.float32)")
        if op == "sum":
            body.append(f"    r = tl.sum(v, {ROW})")
        elif op == "mean":
            body.append(f"    r = tl.sum(v, {ROW}) / NCOL")
        elif op in ("max", "min"):  # NaN propagates, as in NumPy (tl.max/tl.min skip it)
            body += [f"    r = tl.{op}(v, {ROW})", f"    nan = tl.max(tl.where(v != v, 1, 0), {ROW})",
                     '    r = tl.where(nan > 0, float("nan"), r)']
        elif op in ("argmax", "argmin"):
            body += _arg_reduce_nan_first(op, ident)
        elif op == "logsumexp":   # shifted by a finite max only: a row holding +inf gives +inf, not inf - inf
            body += [f"    m = tl.max(v, {ROW})", '    ms = tl.where(tl.abs(m) == float("inf"), 0.0, m)',
                     f"    r = tl.log(tl.sum(tl.exp(v - ms), {ROW})) + ms"]
        elif op in ("var", "std"):
            corr = n.attrs["correction"]
            # on v / sc, sc = max |v| (as the reference): the squares of values near 3e38 do not overflow
            body += [f"    sc = tl.max(tl.where(cmask, tl.abs(v), 0.0), {ROW})",
                     '    sc = tl.where((sc > 0.0) & (sc < float("inf")), sc, 1.0)', "    w = v / sc",
                     f"    mu = tl.sum(w, {ROW}) / NCOL", "    dv = tl.where(cmask, w - mu, 0.0)",
                     f"    r = tl.sum(dv * dv, {ROW}) / (NCOL - {corr})"]
            body.append("    r = tl.sqrt(r) * sc" if op == "std" else "    r = r * sc * sc")
        reg = {n.outputs[0]: "r"}
        for i, v in enumerate(epi_ops):
            reg[v] = f"e{i}"
            e_offs = " + ".join(f"{c} * in{i}_s{d}" for d, c in enumerate(out_coords)) or "0"
            # a scalar operand (or a full reduction's: no kept coordinate) is one pointer, not a column of them
            body.append(f"    e{i} = {self._load(f'in{i}', e_offs, 'rmask' if any(c != '0' for c in out_coords) else 'True', v)}")
        self._expr_chain(epi, reg, plan, body)
        # the outputs are contiguous over the kept dims: a row's flat index is the row id
        for j, v in enumerate(k.outputs):
            body.append(f"    tl.store(out{j} + rows, _store_cast({reg[v]}, out{j}), mask=rmask)")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        for v in k.outputs:
            self._alloc(v, names, lines)
        xs = None
        args = []
        x_shape = ", ".join(dim_code(d) for d in x.type.shape)
        if pro:   # x is computed in the row: a one-element view of its shape stands in for it (never read)
            xs = f"e{self._next()}"
            lines.append(f"    {xs} = {names[pro_ops[0]]}.new_zeros(()).expand({x_shape})")
        for v in pro_ops:
            e = f"e{self._next()}"
            lines.append(f"    {e} = {names[v]}.expand({x_shape})")
            args += [e] + [f"{e}.stride({d})" for d in range(rank)] + self.table_arg(names, v)
        o_shape = ", ".join(dim_code(d) for d in out_t.shape)
        for v in epi_ops:
            e = f"e{self._next()}"
            lines.append(f"    {e} = {names[v]}.expand(({o_shape}{',' if out_t.rank == 1 else ''}))")
            args += [e] + [f"{e}.stride({d})" for d in range(out_t.rank)] + self.table_arg(names, v)
        self._row_launch(k, x, red, names, lines, args + [names[v] for v in k.outputs], xs=xs)

    def _k_rownorm(self, k: Kernel, names, lines, plan):
        n = k.nodes[0]
        x = n.inputs[0]
        rank = len(x.type.shape)
        ax = n.attrs["axis"]
        red = list(ax) if isinstance(ax, list) else [ax]
        op = n.op
        w = n.inputs[1] if len(n.inputs) > 1 else None
        b = n.inputs[2] if len(n.inputs) > 2 else None
        params = ["x"] + [f"x_s{d}" for d in range(rank)] + ["w", "b", "out"] + [f"o_s{d}" for d in range(rank)]
        params += [f"size{d}" for d in range(rank)] + ["NCOL", "eps", "HAS_W: tl.constexpr", "HAS_B: tl.constexpr", "NROW",
                                                       "BLOCK: tl.constexpr", "ROWS: tl.constexpr"]
        body = []
        self._rows(x, red, body)
        offs = " + ".join(f"c{d} * x_s{d}" for d in range(rank)) or "0"
        oofs = " + ".join(f"c{d} * o_s{d}" for d in range(rank)) or "0"
        if op in ("softmax", "log_softmax"):
            body += [f'    v = tl.load(x + {offs}, mask=cmask, other=float("-inf")).to(tl.float32)',
                     f"    m = tl.max(v, {ROW})", '    ms = tl.where(m == float("-inf"), 0.0, m)',
                     "    e = tl.exp(v - ms)", f"    s = tl.sum(e, {ROW})"]
            body.append("    y = e / s" if op == "softmax" else "    y = v - ms - tl.log(s)")
        else:
            body.append(f"    v = tl.load(x + {offs}, mask=cmask, other=0.0).to(tl.float32)")
            if op == "layernorm":
                body += [f"    mu = tl.sum(v, {ROW}) / NCOL", "    dv = tl.where(cmask, v - mu, 0.0)",
                         f"    y = dv / tl.sqrt(tl.sum(dv * dv, {ROW}) / NCOL + eps)"]
            else:  # rmsnorm
                body += [f"    y = v / tl.sqrt(tl.sum(v * v, {ROW}) / NCOL + eps)"]
            body += ["    if HAS_W:", "        y = y * tl.load(w + cols, mask=cols < NCOL, other=0.0).to(tl.float32)",
                     "    if HAS_B:", "        y = y + tl.load(b + cols, mask=cols < NCOL, other=0.0).to(tl.float32)"]
        body.append(f"    tl.store(out + {oofs}, _store_cast(y, out), mask=cmask)")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        self._alloc(n.outputs[0], names, lines)
        o = names[n.outputs[0]]
        wn = names[w] if w is not None else names[x]
        bn = names[b] if b is not None else names[x]
        extra = [wn, bn, o] + [f"{o}.stride({d})" for d in range(rank)]
        eps = repr(float(n.attrs.get("eps", 0.0)))
        rows_args = (extra, eps, w is not None, b is not None)
        xs = names[x]
        kept = [d for d in range(rank) if d not in red]
        rows = " * ".join([f"{xs}.shape[{d}]" for d in kept]) or "1"
        nc = f"nc{self._next()}"
        lines.append(f"    {nc} = " + (" * ".join([f"{xs}.shape[{d}]" for d in red]) or "1"))
        args = [xs] + [f"{xs}.stride({d})" for d in range(rank)] + extra + [f"{xs}.shape[{d}]" for d in range(rank)]
        args += [nc, eps, str(w is not None), str(b is not None)]
        del rows_args
        self._launch_rows(k, rows, nc, args, lines)


def _arg_reduce_nan_first(op: str, ident: str) -> list[str]:
    """argmax / argmin of a row in `v` (masked lanes hold the identity): the first NaN's index when the row
    holds one, as NumPy and torch (tl.argmax / tl.argmin skip NaN; the interpreter's fail on an all-NaN row, so
    they see NaN as the identity)."""
    return [f"    r = tl.{op}(tl.where(v != v, {ident}, v), {ROW})",
            f"    first_nan = tl.min(tl.where(v != v, cols, NCOL), {ROW})",
            "    r = tl.where(first_nan < NCOL, first_nan, r)"]
