"""Kernels for data-dependent indexing and per-row scans/sorts (a mixin of codegen.ModuleGen):

- gather  (take along any axis of any table, gather): an index map over the output elements: output
  coordinates -> source coordinates, the indexed axis's coordinate read from the index tensor; every
  operand is read through its strides.
- every kernel that reads or writes through an index tensor checks each index against [0, n) (`index_check`):
  a bad lane is masked (nothing is read or written through it) and the smallest position of a bad id is
  recorded (an atomic min) in a one-word buffer that the launcher reads after the launch and raises the
  reference's located error from (`runtime.raise_bad_index`); ids computed on the device are checked too.
- scatter (segment_sum / segment_mean / segment_max / scatter_add): one program per block of source
  elements, `tl.atomic_add` (`tl.atomic_max`) into a zero- (lowest-) initialized accumulator; f16/bf16
  accumulate in f32. segment_mean counts rows per segment the same way; a small second kernel divides
  (or, for segment_max, zeroes empty segments, or casts an f32 accumulator back) when needed.
  The result depends on the order of atomic float additions only by rounding.
- cumsum: one program per row (every axis but the scanned one), `tl.cumsum` over blocks of the row with
  a running carry, so any row length works.
- sort / topk: one program per row, the whole row in one block: each element becomes an int64 key
  (order-preserving 32-bit image of the value << 32 | its index), so `tl.sort` of the keys is a stable sort
  (ties keep index order, descending by inverting the value image) and the indices come out of the key's
  low half; the values are then gathered from the input (bit-exact). -0.0 sorts equal to 0.0 and every NaN
  sorts after +inf, as in NumPy.
"""
from __future__ import annotations

from ...ir.types import is_float
from .source_text import dim_code, lit


def _coords(body, rank, size="size", var="c", src="rem"):
    for d in reversed(range(rank)):
        body += [f"    {var}{d} = {src} % {size}{d}", f"    {src} = {src} // {size}{d}"]


def _offs(coords, strides):
    return " + ".join(f"({c}) * {s}" for c, s in zip(coords, strides)) or "offs * 0"


def index_check(body, pos, idx="j", mask="mask"):
    """Kernel lines (params `err`, `NIDX`) for an index outside [0, NIDX): its lane leaves `mask`, so a bad id is
    never followed, and err[0] becomes the smallest flat (C-order) position `pos` in the index tensor holding a
    bad id, so the launcher reports the same id as the reference (its first bad one), whatever the lane order."""
    body += [f"    bad = {mask} & (({idx} < 0) | ({idx} >= NIDX))",
             f"    tl.atomic_min(err + offs * 0, (offs * 0 + {pos}).to(tl.int64), mask=bad)",
             f"    {mask} = {mask} & (bad == 0)",
             f"    {idx} = tl.where(bad, 0, {idx})"]


def _c_order(coords, sizes) -> str:
    """The flat C-order position of `coords` in a tensor of `sizes` (kernel expressions)."""
    pos = "0"
    for c, s in zip(coords, sizes):
        pos = f"({pos}) * {s} + {c}"
    return pos


def _loc_code(node) -> str:
    return repr((node.loc.file, node.loc.line, node.loc.col)) if node.loc is not None else "None"


SORT_MAX_BLOCK = 16384  # a row longer than this is sorted by torch (reported once per process)


class IndexKernels:
    def _flagged_launch(self, node, ids: str, nidx: str, launch: list, lines):
        """Launcher lines: a fresh flag buffer, the launch (`launch`: `if <elements>:` and the launch, passing
        `err` and `NIDX`), then the check that raises if the kernel flagged an id of `ids` outside [0, nidx).
        With no element to move the kernel does not run, but the ids are still checked, as the reference does."""
        err = f"err{self._next()}"
        lines.append(f"    {err} = _rt.index_flag(dev)")
        lines += [ln.replace("{err}", err) for ln in launch]
        lines += ["    else:", f"        _rt.flag_bad_ids({err}, {ids}, {nidx})"]
        lines.append(f"    _rt.raise_bad_index({err}, {ids}, {node.op!r}, {_loc_code(node)}, {nidx})")

    # ---- take / gather -------------------------------------------------------------------------------
    def _k_gather(self, k, names, lines, plan):
        n = k.nodes[0]
        x, idx = n.inputs
        out_t = n.outputs[0].type
        rank, xr, ir = out_t.rank, x.type.rank, idx.type.rank
        ax = n.attrs["axis"]
        params = ["x"] + [f"x_s{d}" for d in range(xr)] + ["idx"] + [f"i_s{d}" for d in range(ir)]
        params += ["out", "numel"] + [f"size{d}" for d in range(rank)] + ["err", "NIDX", "BLOCK: tl.constexpr"]
        body = ["    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)", "    mask = offs < numel", "    rem = offs"]
        _coords(body, rank)
        c = [f"c{d}" for d in range(rank)]
        if n.op == "take":  # out = x[:ax] + idx + x[ax+1:]
            icoords = c[ax:ax + ir]
            src = c[:ax] + ["j"] + c[ax + ir:]
            pos = _c_order(icoords, [f"size{d}" for d in range(ax, ax + ir)])
        else:  # gather: idx has the output's shape
            icoords = c
            src = [("j" if d == ax else c[d]) for d in range(xr)]
            pos = "offs"
        body.append(f"    j = tl.load(idx + {_offs(icoords, [f'i_s{d}' for d in range(ir)])}, mask=mask, other=0)")
        index_check(body, pos)
        body.append(f"    y = {self._load('x', _offs(src, [f'x_s{d}' for d in range(xr)]), 'mask', x)}")
        body.append("    tl.store(out + offs, _store_cast(y, out), mask=mask)")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        self._alloc(n.outputs[0], names, lines)
        xs, iv, o = names[x], names[idx], names[n.outputs[0]]
        nm, blk = f"n{self._next()}", f"blk{self._next()}"
        lines.append(f"    {nm} = {o}.numel()")
        lines.append(f"    {blk} = _rt.pointwise_block({nm})")
        args = [xs] + [f"{xs}.stride({d})" for d in range(xr)] + [iv] + [f"{iv}.stride({d})" for d in range(ir)]
        args += [o, nm] + [f"{o}.shape[{d}]" for d in range(rank)] + ["{err}", f"{xs}.shape[{ax}]"]
        self._flagged_launch(n, iv, f"{xs}.shape[{ax}]", [f"    if {nm}:",
                             f"        {k.name}[(_rt.cdiv({nm}, {blk}),)]({', '.join(args)}, BLOCK={blk})"], lines)

    # ---- segment_sum / segment_mean / segment_max / scatter_add ---------------------------------------
    def _k_scatter(self, k, names, lines, plan):
        n = k.nodes[0]
        op = n.op
        out_v = n.outputs[0]
        out_t = out_v.type
        dt = out_t.dtype
        rank = out_t.rank
        if op == "scatter_add":
            x, idx, src = n.inputs
            ax = n.attrs["axis"]
        else:
            src, idx = n.inputs
            ax = 0
        sr = src.type.rank
        ir = idx.type.rank
        wide = is_float(dt) and dt != "f32"          # f16/bf16 accumulate in f32
        counts = op in ("segment_mean", "segment_max")
        atomic = "tl.atomic_max" if op == "segment_max" else "tl.atomic_add"
        params = ["src"] + [f"s_s{d}" for d in range(sr)] + ["idx"] + [f"i_s{d}" for d in range(ir)]
        params += ["acc"] + [f"a_s{d}" for d in range(rank)] + ["cnt", "numel"] + [f"size{d}" for d in range(sr)]
        params += ["err", "NIDX", "BLOCK: tl.constexpr"]
        body = ["    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)", "    mask = offs < numel", "    rem = offs"]
        _coords(body, sr)
        c = [f"c{d}" for d in range(sr)]
        icoords = c if op == "scatter_add" else ["c0"]
        body.append(f"    j = tl.load(idx + {_offs(icoords, [f'i_s{d}' for d in range(ir)])}, mask=mask, other=0)")
        index_check(body, "offs" if op == "scatter_add" else "c0")  # idx has src's shape / one id per row
        v = self._load("src", _offs(c, [f"s_s{d}" for d in range(sr)]), "mask", src)
        body.append(f"    v = {v}")
        dst = [("j" if d == ax else c[d]) for d in range(rank)]
        if op == "segment_max" and is_float(dt):
            # NaN propagates (docs/language.md): a float atomic_max compares bit patterns, where a NaN with its sign
            # bit set (inf - inf on x86) loses to any number and a positive one wins over all: make every NaN positive
            body.append('    v = tl.where(v != v, float("nan"), v)')
        body.append(f"    {atomic}(acc + {_offs(dst, [f'a_s{d}' for d in range(rank)])}, v.to(acc.dtype.element_ty), mask=mask)")
        if counts:  # one count per source row: its first element adds it
            first = " & ".join([f"(c{d} == 0)" for d in range(1, sr)]) or "offs >= 0"
            body.append(f"    tl.atomic_add(cnt + j, tl.full((BLOCK,), 1, tl.int32), mask=mask & ({first}))")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")

        # the accumulator: the output itself when no finishing pass is needed
        finish = wide or counts
        if finish:
            self._alloc(out_v, names, lines)
            o, acc = names[out_v], f"acc{self._next()}"
        else:
            o = acc = names[out_v] = f"v{self._next()}"
        shape = ", ".join(dim_code(d) for d in out_t.shape) + ("," if rank == 1 else "")
        acc_dtype = "torch.float32" if wide else f"_rt.torch_dtype({dt!r})"
        if op == "segment_max":
            lowest = 'float("-inf")' if is_float(dt) else f"torch.iinfo({acc_dtype}).min"
            lines.append(f"    {acc} = torch.full(({shape}), {lowest}, dtype={acc_dtype}, device=dev)")
        elif op == "scatter_add":  # a copy of x to add into
            lines.append(f"    {acc} = torch.empty(({shape}), dtype={acc_dtype}, device=dev)")
            lines.append(f"    {acc}.copy_({names[x]})")
        else:
            lines.append(f"    {acc} = torch.zeros(({shape}), dtype={acc_dtype}, device=dev)")
        cnt = f"cnt{self._next()}"
        if counts:
            lines.append(f"    {cnt} = torch.zeros(({dim_code(out_t.shape[0])},), dtype=torch.int32, device=dev)")
        else:
            cnt = acc
        sv, iv = names[src], names[idx]
        nm, blk = f"n{self._next()}", f"blk{self._next()}"
        lines.append(f"    {nm} = {sv}.numel()")
        lines.append(f"    {blk} = _rt.pointwise_block({nm})")
        args = [sv] + [f"{sv}.stride({d})" for d in range(sr)] + [iv] + [f"{iv}.stride({d})" for d in range(ir)]
        args += [acc] + [f"{acc}.stride({d})" for d in range(rank)] + [cnt, nm] + [f"{sv}.shape[{d}]" for d in range(sr)]
        nidx = f"{acc}.shape[{ax}]"
        self._flagged_launch(n, iv, nidx, [f"    if {nm}:", f"        {k.name}[(_rt.cdiv({nm}, {blk}),)]({', '.join(args + ['{err}', nidx])}, BLOCK={blk})"], lines)
        if not finish:
            return
        # finishing pass over the output: divide by the count / zero empty segments / cast to the output dtype
        fname = f"{k.name}_fin"
        fb = ["    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)", "    mask = offs < numel",
              "    y = tl.load(acc + offs, mask=mask, other=0)"]
        if counts:
            fb.append("    nrow = tl.load(cnt + offs // ROW, mask=mask, other=0)")
            if op == "segment_mean":
                fb.append("    y = y.to(tl.float32) / tl.maximum(nrow, 1).to(tl.float32)")
            else:
                fb.append("    y = tl.where(nrow > 0, y, 0)")
        fb.append("    tl.store(out + offs, _store_cast(y, out), mask=mask)")
        self.kernels.append(f"@triton.jit\ndef {fname}(acc, cnt, out, numel, ROW, BLOCK: tl.constexpr):\n" + "\n".join(fb) + "\n")
        m2, b2 = f"n{self._next()}", f"blk{self._next()}"
        lines.append(f"    {m2} = {o}.numel()")
        lines.append(f"    {b2} = _rt.pointwise_block({m2})")
        row = f"max({m2} // max({o}.shape[0], 1), 1)"
        lines.append(f"    if {m2}:")
        lines.append(f"        {fname}[(_rt.cdiv({m2}, {b2}),)]({acc}, {cnt}, {o}, {m2}, {row}, BLOCK={b2})")

    # ---- rows: cumsum, sort, topk -----------------------------------------------------------------------
    def _row_head(self, x, ax, outs, body, params):
        """One program per row: the program id -> coordinates of every axis but `ax`; the base offsets of
        the input and of each output (all share the input's shape off the axis)."""
        rank = x.type.rank
        kept = [d for d in range(rank) if d != ax]
        params += ["x"] + [f"x_s{d}" for d in range(rank)]
        for nm in outs:
            params += [nm] + [f"{nm}_s{d}" for d in range(rank)]
        params += [f"size{d}" for d in range(rank)] + ["N"]
        body.append("    rem = tl.program_id(0)")
        for d in reversed(kept):
            body += [f"    c{d} = rem % size{d}", f"    rem = rem // size{d}"]
        for nm in ["x"] + outs:
            body.append(f"    {nm}_base = {nm} + " + (" + ".join(f"c{d} * {nm}_s{d}" for d in kept) or "0"))

    def _row_args(self, x, outs, names):
        xs = names[x]
        rank = x.type.rank
        args = [xs] + [f"{xs}.stride({d})" for d in range(rank)]
        for o in outs:
            args += [o] + [f"{o}.stride({d})" for d in range(rank)]
        return args + [f"{xs}.shape[{d}]" for d in range(rank)]

    def _k_cumsum(self, k, names, lines, plan):
        n = k.nodes[0]
        x = n.inputs[0]
        ax = n.attrs["axis"]
        rank = x.type.rank
        params, body = [], []
        self._row_head(x, ax, ["out"], body, params)
        params += ["BLOCK: tl.constexpr"]
        fl = is_float(x.type.dtype)
        acc_t = "tl.float32" if fl else "out.dtype.element_ty"
        body += ["    cols = tl.arange(0, BLOCK)", f"    carry = tl.zeros((BLOCK,), {acc_t})",
                 "    for start in range(0, N, BLOCK):", "        j = start + cols", "        m = j < N",
                 f"        v = tl.load(x_base + j * x_s{ax}, mask=m, other=0).to({acc_t})",
                 "        s = tl.cumsum(v, axis=0) + carry",
                 f"        tl.store(out_base + j * out_s{ax}, _store_cast(s, out), mask=m)",
                 "        carry = carry + tl.sum(v, axis=0)"]
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        self._alloc(n.outputs[0], names, lines)
        o, xs = names[n.outputs[0]], names[x]
        rows = " * ".join(f"{xs}.shape[{d}]" for d in range(rank) if d != ax) or "1"
        nc = f"nc{self._next()}"
        lines.append(f"    {nc} = {xs}.shape[{ax}]")
        args = self._row_args(x, [o], names) + [nc]
        blk = f"min(_rt.next_pow2({nc}), 4096)"
        lines.append(f"    if {o}.numel():")
        lines.append(f"        {k.name}[({rows},)]({', '.join(args)}, BLOCK={blk})")

    def _k_sort(self, k, names, lines, plan):
        n = k.nodes[0]
        x = n.inputs[0]
        ax = n.attrs["axis"]
        rank = x.type.rank
        desc = n.attrs["descending"] if n.op == "sort" else n.attrs["largest"]
        params, body = [], []
        self._row_head(x, ax, ["vals", "inds"], body, params)
        params += ["K", "BLOCK: tl.constexpr"]
        body += ["    cols = tl.arange(0, BLOCK)", "    m = cols < N",
                 f"    v = tl.load(x_base + cols * x_s{ax}, mask=m, other=0)"]
        if is_float(x.type.dtype):  # an order-preserving int32 image of the value; -0.0 -> 0.0, every NaN -> one NaN
            body += ["    f = v.to(tl.float32)", "    f = tl.where(f == 0.0, 0.0, f)",
                     "    b = f.to(tl.int32, bitcast=True)", "    b = tl.where(b >= 0, b, b ^ 0x7FFFFFFF)",
                     "    b = tl.where(f != f, 0x7FC00000, b)"]
        else:
            body.append("    b = v.to(tl.int32)")
        if desc:
            body.append("    b = -1 - b")
        body += ["    key = (b.to(tl.int64) << 32) | cols.to(tl.int64)",
                 "    key = tl.where(m, key, 0x7FFFFFFFFFFFFFFF)",
                 "    key = tl.sort(key, 0)",
                 "    j = key - ((key >> 32) << 32)",  # the low half: the index (no unsigned literal)
                 "    ok = cols < K",
                 f"    y = tl.load(x_base + j * x_s{ax}, mask=ok, other=0)",
                 f"    tl.store(vals_base + cols * vals_s{ax}, y, mask=ok)",
                 f"    tl.store(inds_base + cols * inds_s{ax}, j, mask=ok)"]
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        for v in n.outputs:
            self._alloc(v, names, lines)
        vo, io, xs = names[n.outputs[0]], names[n.outputs[1]], names[x]
        rows = " * ".join(f"{xs}.shape[{d}]" for d in range(rank) if d != ax) or "1"
        nc, kk = f"nc{self._next()}", f"kk{self._next()}"
        lines.append(f"    {nc} = {xs}.shape[{ax}]")
        lines.append(f"    {kk} = {vo}.shape[{ax}]")
        args = self._row_args(x, [vo, io], names) + [nc, kk]
        lines.append(f"    if {vo}.numel() and {nc} <= {SORT_MAX_BLOCK}:")
        blk = f"blk{self._next()}"
        lines.append(f"        {blk} = _rt.next_pow2(max({nc}, 2))")
        lines.append(f"        {k.name}[({rows},)]({', '.join(args)}, BLOCK={blk}, num_warps=min(max({blk} // 256, 1), 16))")
        lines.append(f"    elif {vo}.numel():  # a row longer than one block: torch sorts it (reported)")
        lines.append(f"        {vo}, {io} = _ix.sort_rows_torch({n.op!r}, {xs}, {lit(n.attrs)})")


_oversize_reported: set = set()


def sort_rows_torch(op: str, x, attrs: dict):
    """A sort/topk row too long for one block: sorted by torch (stable), reported once per op."""
    import sys

    from .runtime import fallback
    if op not in _oversize_reported:
        _oversize_reported.add(op)
        print(f"pnet: {op} rows of {x.shape[attrs['axis']]} elements exceed one Triton block ({SORT_MAX_BLOCK}); "
              "sorting them through torch", file=sys.stderr)
    values, idx = fallback(op, [x], attrs)
    return values.contiguous(), idx.contiguous()
