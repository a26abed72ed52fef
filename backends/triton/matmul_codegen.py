"""tl.dot kernels (a mixin of codegen.ModuleGen): dense matmuls (batched; sibling products sharing A; int8
qmatmul with exact int32 accumulation; N:M sparse weights decompressed in registers; operands computed in the
tile loop by a prologue) with a fused pointwise epilogue, block-sparse (BSR) matmuls over their stored blocks
only, and flash attention (causal, boolean and additive masks). Launched with autotuned tiles (_tuned_launch)."""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import Node, Value
from ...ir.types import is_float
from ...passes.fuse import Kernel
from .source_text import dim_code

MATMUL_OPS = ("matmul", "qmatmul", "nm_matmul")


@dataclass
class Products:
    """A matmul kernel's parts: C_j = A @ B_j for every product sharing A, over [*batch, M, N]."""
    k: Kernel
    mms: list[Node]                        # the products (matmul, qmatmul, nm_matmul), in kernel order
    epi: list[Node]                        # the pointwise epilogue
    a: Value
    bs: list[Value]                        # B of each product
    batch: int                             # leading batch dims of the output
    ops: list[Value]                       # what the epilogue reads from memory (a residual may read A itself)
    pro_ops: dict[Value, list[Value]]      # an operand computed in-tile -> the values its prologue reads
    flat_reads: dict[Value, list]          # an operand computed from flat indices -> its reads (_flat_reads)
    integer: bool                          # qmatmul: int8 tiles, exact int32 accumulation

    def tag(self, x: Value) -> str:
        return "a" if x is self.a else f"b{self.bs.index(x)}"


def _batch_base(nm: str, batch: int) -> str:
    """Pointer to operand `nm`'s matrix at this program's batch coordinates (cb0, cb1, ...)."""
    return " + ".join([nm] + [f"cb{i} * {nm}_sb{i}" for i in range(batch)])


def _tile_offs(nm: str, batch: int, rows: str, cols: str, s_rows: str, s_cols: str) -> str:
    """Offsets of a [rows x cols] tile of operand `nm` (its batch coordinates included)."""
    return " + ".join([f"cb{i} * {nm}_sb{i}" for i in range(batch)] + [f"{rows} * {nm}_{s_rows}", f"{cols} * {nm}_{s_cols}"])


def _strided_params(nm: str, batch: int, s_rows: str, s_cols: str) -> list[str]:
    """Kernel parameters of a batched matrix operand: its pointer, batch strides, row and column strides."""
    return [nm] + [f"{nm}_sb{i}" for i in range(batch)] + [f"{nm}_{s_rows}", f"{nm}_{s_cols}"]


class MatmulKernels:
    @staticmethod
    def _nm_tile(j: int, n: int, m: int, batch: int, mask: str) -> list[str]:
        """The dense [BK, BN] tile of an N:M weight, decompressed in registers: dense row k of a column is the
        stored row (k // m) * n + i whose metadata says k % m (zero if none does). Only the compressed values
        and the metadata are read from memory; the tile then feeds an ordinary tl.dot."""
        out = ["        bt = tl.zeros((BK, BN), dtype=tl.float32)", "        st = tl.zeros((BK, BN), dtype=tl.int32)"]
        for i in range(n):
            offs = f"((kk // {m}) * {n} + {i})[:, None] * b{j}_sk + rn[None, :] * b{j}_sn"
            moffs = f"((kk // {m}) * {n} + {i})[:, None] * m{j}_sk + rn[None, :] * m{j}_sn"
            out += [f"        v = tl.load({_batch_base(f'b{j}', batch)} + {offs}, mask={mask}, other=0.0).to(tl.float32)",
                    f"        mt = tl.load({_batch_base(f'm{j}', batch)} + {moffs}, mask={mask}, other=-1)",
                    f"        bt += tl.where(mt == (kk % {m})[:, None], v, 0.0)",
                    f"        st += tl.where(mt == (kk % {m})[:, None], 1, 0)"]
        return out

    @staticmethod
    def _nm_nonfinite(j: int) -> list[str]:
        """The N:M products' pruned entries are absent: a dense tile's zero times an inf activation would add
        NaN, so the main loop dots A's finite values only (`atf`) and notes whether A held an inf or NaN. Only
        then does a second K loop run (zero times otherwise, so the common case pays one flag): it counts, by
        sign, the inf and NaN activations meeting stored entries (0/1 dots, exact in f32) and applies them to
        product j's accumulator at once (inf and NaN absorb every other term, so the order does not matter).
        A separate loop keeps these tiles' registers out of the main loop's."""
        dot = 'input_precision="ieee"'
        inf = 'float("inf")'
        # one code per activation: NaN 1, +inf 256, -inf 65536; a tile's counts (at most BK <= 64 each) stay in
        # their own 8 bits of an exactly computed f32 dot, one dot per kind of stored weight
        return [
            f"        xc = tl.where(at != at, 1.0, tl.where(at == {inf}, 256.0, tl.where(at == -{inf}, 65536.0, 0.0)))",
            f"        dp = tl.dot(xc, tl.where((st > 0) & (bt > 0), 1.0, 0.0), {dot})",
            f"        dn = tl.dot(xc, tl.where((st > 0) & (bt < 0), 1.0, 0.0), {dot})",
            f"        dz = tl.dot(xc, tl.where((st > 0) & ((bt == 0) | (bt != bt)), 1.0, 0.0), {dot})   # inf * 0 is NaN",
            "        ip = dp.to(tl.int32)",
            "        jn = dn.to(tl.int32)",
            "        pos = (((ip >> 8) & 255) > 0) | ((jn >> 16) > 0)",
            "        neg = ((ip >> 16) > 0) | (((jn >> 8) & 255) > 0)",
            "        nan = ((ip & 255) > 0) | ((jn & 255) > 0) | (dz > 0)",
            f"        acc{j} = tl.where(pos, acc{j} + {inf}, acc{j})",
            f"        acc{j} = tl.where(neg, acc{j} - {inf}, acc{j})",
            f"        acc{j} = tl.where(nan, float(\"nan\"), acc{j})"]

    def _k_matmul(self, k: Kernel, names, lines, plan):
        """C_j = A @ B_j for every product sharing A (loaded once per tile), then the pointwise
        epilogue over [*batch, M, N] (bias, activation, residual, scale)."""
        g = self._products(k, plan)
        params = self._matmul_params(g)
        body = self._matmul_loop_head(g)
        dot = "out_dtype=tl.int32" if g.integer else 'input_precision="ieee"'
        nm = [j for j, mm in enumerate(g.mms) if mm.op == "nm_matmul"]
        finite = ["        fin = (at == at) & (tl.abs(at) < float(\"inf\"))"]
        if nm:   # A's finite values, for the N:M products' dots (see _nm_nonfinite)
            body[-2:-2] = ["    bad = tl.program_id(0) * 0"]
        self._a_tile(g, plan, body)
        if nm:
            body += finite + ["        atf = tl.where(fin, at, 0.0)", "        bad = tl.maximum(bad, tl.max(tl.where(fin, 0, 1)))"]
        for j in range(len(g.bs)):
            self._b_tile(g, j, plan, body)
            body.append(f'        acc{j} += tl.dot({"atf" if j in nm else "at"}, bt, {dot})')
        if nm:   # the second K loop, run only when A held an inf or NaN
            body += ["    for k0 in range(0, K * bad, BK):", "        kk = k0 + rk"]
            self._a_tile(g, plan, body)
            for j in nm:
                self._b_tile(g, j, plan, body)
                body += self._nm_nonfinite(j)
        self._matmul_epilogue(g, plan, body)
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        bshape = [dim_code(d) for d in g.mms[0].outputs[0].type.shape[:g.batch]]
        args = self._matmul_args(g, bshape, names, lines)
        a_v, bs = g.a, g.bs
        M, N, K = dim_code(a_v.type.shape[-2]), dim_code(bs[0].type.shape[-1]), dim_code(a_v.type.shape[-1])
        args += [M, N, K] + bshape
        nb = " * ".join(bshape) or "1"
        self._tuned_launch(k.name, (M, N, K, nb), f"_rt.gemm_configs({M}, {N}, {K}{', min_bk=32' if g.integer else ''}"
                           f"{', computed=True' if k.prologue else ''}{', decompressed=True' if any(m.op == 'nm_matmul' for m in g.mms) else ''})", f"(_rt.cdiv({M}, c['BM']), _rt.cdiv({N}, c['BN']), {nb})", args, lines)

    def _products(self, k: Kernel, plan) -> Products:
        pro = {n for nodes in k.prologue.values() for n in nodes}   # operands computed in-tile
        mms = [n for n in k.nodes if n.op in MATMUL_OPS and n not in pro]
        epi = [n for n in k.nodes if n not in mms and n not in pro]
        return Products(
            k=k, mms=mms, epi=epi, a=mms[0].inputs[0], bs=[n.inputs[1] for n in mms],
            batch=len(mms[0].outputs[0].type.shape) - 2,
            ops=self._operands(k, plan, nodes=epi),
            pro_ops={x: self._operands(k, plan, nodes=nodes) for x, nodes in k.prologue.items() if x not in k.flat},
            # in the prologue's (program) order: k.flat is a set, whose order changes from run to run
            flat_reads={x: self._flat_reads(nodes, plan) for x, nodes in k.prologue.items() if x in k.flat},
            integer=mms[0].op == "qmatmul")

    def _matmul_params(self, g: Products) -> list[str]:
        """The kernel's parameters: A, each B (an N:M one's metadata after all Bs), the epilogue's operands, each
        in-tile operand's own operands, the outputs, the sizes and the tile constants."""
        batch = g.batch
        params = _strided_params("a", batch, "sm", "sk")
        for j, b in enumerate(g.bs):
            params += _strided_params(f"b{j}", batch, "sk", "sn") + self.table_param(f"b{j}", b)
        for j, mm in enumerate(g.mms):
            if mm.op == "nm_matmul":  # N:M: B is the compressed values, plus the metadata
                params += _strided_params(f"m{j}", batch, "sk", "sn")
        for i, v in enumerate(g.ops):
            params += _strided_params(f"in{i}", batch, "sm", "sn") + self.table_param(f"in{i}", v)
        for x, vals in g.pro_ops.items():
            for i, v in enumerate(vals):
                params += _strided_params(f"{g.tag(x)}p{i}", batch, "s0", "s1") + self.table_param(f"{g.tag(x)}p{i}", v)
        for x, reads in g.flat_reads.items():
            params += self._flat_params(f"b{g.bs.index(x)}", reads)
        params += [f"out{j}" for j in range(len(g.k.outputs))]
        return params + ["M", "N", "K"] + [f"bs{i}" for i in range(batch)] + ["BM: tl.constexpr", "BN: tl.constexpr", "BK: tl.constexpr"]

    @staticmethod
    def _matmul_loop_head(g: Products) -> list[str]:
        """Kernel lines up to the K loop's first: this program's batch coordinates, tile rows and columns, and
        one accumulator per product (int32 for qmatmul, else f32)."""
        body = ["    pid_m = tl.program_id(0)", "    pid_n = tl.program_id(1)", "    rem = tl.program_id(2)"]
        for i in reversed(range(g.batch)):
            body += [f"    cb{i} = rem % bs{i}", f"    rem = rem // bs{i}"]
        body += ["    rm = pid_m * BM + tl.arange(0, BM)", "    rn = pid_n * BN + tl.arange(0, BN)", "    rk = tl.arange(0, BK)"]
        acc_t = "tl.int32" if g.integer else "tl.float32"
        body += [f"    acc{j} = tl.zeros((BM, BN), dtype={acc_t})" for j in range(len(g.bs))]
        return body + ["    for k0 in range(0, K, BK):", "        kk = k0 + rk"]

    def _a_tile(self, g: Products, plan, body: list):
        """Lines setting `at`, A's [BM, BK] tile: loaded through its strides, or computed by its prologue."""
        a_mask = "(rm[:, None] < M) & (kk[None, :] < K)"
        if g.a in g.k.prologue:
            at = self._computed_tile(g, g.a, 'a', 'rm[:, None]', 'kk[None, :]', a_mask, plan, body)
            body.append(f"        at = {at}" if g.integer else f"        at = ({at}).to(tl.float32)")
        else:
            body.append(f"        at = {self._load('a', _tile_offs('a', g.batch, 'rm[:, None]', 'kk[None, :]', 'sm', 'sk'), a_mask, g.a)}")

    def _b_tile(self, g: Products, j: int, plan, body: list):
        """Lines setting `bt`, product j's [BK, BN] tile of B: decompressed from N:M, computed by its prologue, or
        loaded through its strides (a tied weight through its index tensor: theta[idx[...]])."""
        b_mask = "(kk[:, None] < K) & (rn[None, :] < N)"
        mm, b = g.mms[j], g.bs[j]
        if mm.op == "nm_matmul":
            body += self._nm_tile(j, mm.attrs["n"], mm.attrs["m"], g.batch, b_mask)
        elif b in g.k.prologue:
            body.append(f"        bt = {self._computed_tile(g, b, f'b{j}', 'kk[:, None]', 'rn[None, :]', b_mask, plan, body)}")
        else:
            body.append(f"        bt = {self._load(f'b{j}', _tile_offs(f'b{j}', g.batch, 'kk[:, None]', 'rn[None, :]', 'sk', 'sn'), b_mask, b)}")

    def _computed_tile(self, g: Products, x: Value, tag: str, rows: str, cols: str, mask: str, plan, body: list) -> str:
        """The operand tile computed by its prologue from its own operands' tiles (lines into `body`; returns
        the tile expression, zero in padding lanes so they add nothing to the dot)."""
        k = g.k
        if x in k.flat:   # element (r, c) of x is element r * N + c of the computed value (c * K + r: x = W^T)
            index = f"({cols}) * {int(x.type.shape[0])} + ({rows})" if x in k.transposed else \
                f"({rows}) * {int(x.type.shape[-1])} + ({cols})"
            return self._flat_tile(k.prologue[x], g.flat_reads[x], index, tag, mask, plan, body)
        reg = {}
        unpack = {n.inputs[0]: n for n in k.prologue[x] if n.op == "unpack_bits"}   # packed int4/2/1 bytes
        coords = [cols, rows] if x in k.transposed else [rows, cols]   # in the computed value's own layout
        for i, v in enumerate(g.pro_ops[x]):
            nm = f"{tag}p{i}"
            reg[v] = f"{tag}_{i}"
            if v in unpack:
                u = unpack[v]
                reg[u.outputs[0]] = reg.pop(v)
                self._load_packed(u, nm, lambda rc, nm=nm: _tile_offs(nm, g.batch, *rc[-2:], 's0', 's1'),
                                  [":"] * (x.type.rank - 2) + coords, mask, reg[u.outputs[0]], body, "        ")
            else:
                body.append(f"        {tag}_{i} = {self._load(nm, _tile_offs(nm, g.batch, *coords, 's0', 's1'), mask, v)}")
        self._expr_chain([n for n in k.prologue[x] if n.op != "unpack_bits"], reg, plan, body, indent="        ")
        if x in k.transposed:
            reg[x] = reg[x.producer.inputs[0]]
        if not is_float(x.type.dtype):   # an int8 operand of qmatmul
            return f"tl.where({mask}, {reg[x]}, 0).to(tl.int8)"
        return f"tl.where({mask}, {reg[x]}, 0.0)"   # padding lanes must add nothing to the dot

    def _matmul_epilogue(self, g: Products, plan, body: list):
        """After the K loop: the pointwise epilogue on the accumulators, and the stores (outputs contiguous)."""
        batch = g.batch
        body.append("    mask = (rm[:, None] < M) & (rn[None, :] < N)")
        reg = {n.outputs[0]: f"acc{j}" for j, n in enumerate(g.mms)}
        for i, v in enumerate(g.ops):
            reg[v] = f"e{i}"
            body.append(f"    e{i} = {self._load(f'in{i}', _tile_offs(f'in{i}', batch, 'rm[:, None]', 'rn[None, :]', 'sm', 'sn'), 'mask', v)}")
        self._expr_chain(g.epi, reg, plan, body)
        flat_b = " + ".join(["0"] + [f"cb{i} * {'*'.join(f'bs{j}' for j in range(i + 1, batch)) or '1'}" for i in range(batch)])
        body.append(f"    out_offs = ({flat_b}) * M * N + rm[:, None] * N + rn[None, :]")
        for j, v in enumerate(g.k.outputs):
            body.append(f"    tl.store(out{j} + out_offs, _store_cast({reg[v]}, out{j}), mask=mask)")

    def _matmul_args(self, g: Products, bshape: list[str], names, lines) -> list[str]:
        """The launcher's arguments in the kernel's parameter order, operands expanded to the output's batch
        dims (views, no copies); allocates the outputs."""
        k, batch = g.k, g.batch
        args = []
        for v in [g.a] + g.bs:
            if v in k.prologue:  # computed in-tile: its pointer argument is never read
                first = g.pro_ops[v][0] if v in g.pro_ops else g.flat_reads[v][0][0]
                args += [names[first]] + ["0"] * (batch + 2)
                continue
            sh = bshape + [dim_code(v.type.shape[-2]), dim_code(v.type.shape[-1])]
            args += self._expanded(names[v], sh, lines) + (self.table_arg(names, v) if v is not g.a else [])
        for mm in g.mms:
            if mm.op == "nm_matmul":
                meta = mm.inputs[2]
                args += self._expanded(names[meta], bshape + [dim_code(meta.type.shape[-2]), dim_code(meta.type.shape[-1])], lines)
        for v in k.outputs:
            self._alloc(v, names, lines)
        out_shape = [dim_code(d) for d in g.mms[0].outputs[0].type.shape]
        for v in g.ops:
            args += self._expanded(names[v], out_shape, lines) + self.table_arg(names, v)
        packed = {n.inputs[0] for nodes in k.prologue.values() for n in nodes if n.op == "unpack_bits"}   # bytes: their own last two dims
        for x, vals in g.pro_ops.items():
            computed = x.producer.inputs[0] if x in k.transposed else x
            for v in vals:
                sh = bshape + [dim_code(d) for d in (v if v in packed else computed).type.shape[-2:]]
                args += self._expanded(names[v], sh, lines) + self.table_arg(names, v)
        for x, reads in g.flat_reads.items():
            args += self._flat_args(names, reads, lines)
        return args + [names[v] for v in k.outputs]

    def _expanded(self, x: str, shape: list[str], lines) -> list[str]:
        """Launcher arguments for `x` expanded to `shape` (a view, no copy): the view and its strides."""
        e = f"e{self._next()}"
        lines.append(f"    {e} = {x}.expand({', '.join(shape)})")
        return [e] + [f"{e}.stride({i})" for i in range(len(shape))]

    def _k_bsr_matmul(self, k: Kernel, names, lines, plan):
        """Block-sparse x [..., K] @ W (ir/ops/sparse.py's BSR layout) -> [..., N]: program (pid_m, r) walks only
        the stored blocks of output block-column r (row_ptr[r] .. row_ptr[r+1]-1), each a [bk, bn] block at
        block row col_idx[p], so the work is proportional to the stored blocks; then the pointwise epilogue
        (the planner fuses one into rank-2 products) on its [BM, bn] tile before the store. x's leading dims
        are flattened into M rows. Block dims that are not powers of two (or below 16, which tl.dot needs on a
        GPU) are padded with masked loads: 1x1 blocks (CSR, unstructured sparsity) run, if slowly."""
        n, epi = k.nodes[0], k.nodes[1:]
        x, values, col_idx, row_ptr = n.inputs
        ops = self._operands(k, plan, nodes=epi)
        params = ["x", "x_sm", "x_sk", "vals", "col", "rowptr"]
        for i, v in enumerate(ops):
            params += [f"in{i}", f"in{i}_sm", f"in{i}_sn"] + self.table_param(f"in{i}", v)
        params += [f"out{j}" for j in range(len(k.outputs))]
        params += ["M", "K", "N", "BKB: tl.constexpr", "BNB: tl.constexpr", "BM: tl.constexpr", "PK: tl.constexpr",
                   "PN: tl.constexpr"]
        body = ["    rm = tl.program_id(0) * BM + tl.arange(0, BM)", "    r = tl.program_id(1)",
                "    ok_ = tl.arange(0, PK)", "    on_ = tl.arange(0, PN)", "    rn = r * BNB + on_",
                "    acc = tl.zeros((BM, PN), dtype=tl.float32)",
                "    for p in range(tl.load(rowptr + r), tl.load(rowptr + r + 1)):",
                "        ks = tl.load(col + p) * BKB + ok_   # a block row outside W adds nothing (masked)",
                "        at = tl.load(x + rm[:, None] * x_sm + ks[None, :] * x_sk, mask=(rm[:, None] < M) & (ok_[None, :] < BKB) & (ks[None, :] >= 0) & (ks[None, :] < K), other=0.0)",
                "        bt = tl.load(vals + p * (BKB * BNB) + ok_[:, None] * BNB + on_[None, :], mask=(ok_[:, None] < BKB) & (on_[None, :] < BNB), other=0.0)",
                '        acc += tl.dot(at.to(tl.float32), bt.to(tl.float32), input_precision="ieee")',
                "    mask = (rm[:, None] < M) & (on_[None, :] < BNB) & (rn[None, :] < N)"]
        reg = {n.outputs[0]: "acc"}
        for i, v in enumerate(ops):
            reg[v] = f"e{i}"
            body.append(f"    e{i} = {self._load(f'in{i}', f'rm[:, None] * in{i}_sm + rn[None, :] * in{i}_sn', 'mask', v)}")
        self._expr_chain(epi, reg, plan, body)
        for j, v in enumerate(k.outputs):   # outputs are contiguous: row m of the flattened [M, N] at m * N
            body.append(f"    tl.store(out{j} + rm[:, None] * N + rn[None, :], _store_cast({reg[v]}, out{j}), mask=mask)")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        for v in k.outputs:
            self._alloc(v, names, lines)
        xs = f"e{self._next()}"   # x as [M, K] rows
        lines.append(f"    {xs} = {names[x]}.reshape(-1, {names[x]}.shape[-1])")
        args = [xs, f"{xs}.stride(0)", f"{xs}.stride(1)", f"{names[values]}.contiguous()",
                f"{names[col_idx]}.to(torch.int32).contiguous()", f"{names[row_ptr]}.to(torch.int32).contiguous()"]
        out_shape = ", ".join(dim_code(d) for d in n.outputs[0].type.shape)
        for v in ops:
            e = f"e{self._next()}"
            lines.append(f"    {e} = {names[v]}.expand({out_shape})")
            args += [e, f"{e}.stride(0)", f"{e}.stride(1)"] + self.table_arg(names, v)
        args += [names[v] for v in k.outputs]
        bk, bn = (dim_code(d) for d in values.type.shape[1:])
        args += [f"{xs}.shape[0]", f"{xs}.shape[1]", f"{names[k.outputs[0]]}.shape[-1]"]
        lines.append(f"    {k.name}[(_rt.cdiv({xs}.shape[0], 32), {names[row_ptr]}.shape[0] - 1)]({', '.join(args)}, "
                     f"BKB={bk}, BNB={bn}, BM=32, PK=max(16, triton.next_power_of_2({bk})), PN=max(16, triton.next_power_of_2({bn})))")

    def _k_attention(self, k: Kernel, names, lines, plan):
        n = k.nodes[0]
        q, kk, v = n.inputs[:3]
        mask = n.inputs[3] if len(n.inputs) > 3 else None
        out_t = n.outputs[0].type
        batch = len(out_t.shape) - 2
        mask_kind = 0 if mask is None else (1 if mask.type.dtype == "bool" else 2)
        params = []
        for nm in ("q", "k", "v"):
            params += [nm] + [f"{nm}_sb{i}" for i in range(batch)] + [f"{nm}_st", f"{nm}_sd"]
        params += ["mk"] + [f"mk_sb{i}" for i in range(batch)] + ["mk_sq", "mk_sk"]
        params += ["out"] + [f"o_sb{i}" for i in range(batch)] + ["o_st", "o_sd", "TQ", "TK", "D", "DV"] + [f"bs{i}" for i in range(batch)]
        params += ["scale", "BM: tl.constexpr", "BN: tl.constexpr", "BD: tl.constexpr", "BDV: tl.constexpr",
                   "CAUSAL: tl.constexpr", "MASK: tl.constexpr"]
        body = ["    pid_m = tl.program_id(0)", "    rem = tl.program_id(1)"]
        for i in reversed(range(batch)):
            body += [f"    cb{i} = rem % bs{i}", f"    rem = rem // bs{i}"]
        body += [
            "    rm = pid_m * BM + tl.arange(0, BM)",
            "    rd = tl.arange(0, BD)",
            "    rdv = tl.arange(0, BDV)",
            f"    qt = tl.load({_batch_base('q', batch)} + rm[:, None] * q_st + rd[None, :] * q_sd, mask=(rm[:, None] < TQ) & (rd[None, :] < D), other=0.0).to(tl.float32)",
            '    m_i = tl.full((BM,), float("-inf"), tl.float32)',
            "    l_i = tl.zeros((BM,), tl.float32)",
            "    acc = tl.zeros((BM, BDV), tl.float32)",
            "    hi = TK",
            "    if CAUSAL:   # key blocks past this query block's diagonal are masked whole: skip them",
            "        hi = tl.minimum(TK, (pid_m + 1) * BM)",
            "    for start in range(0, hi, BN):",
            "        rn = start + tl.arange(0, BN)",
            f"        kt = tl.load({_batch_base('k', batch)} + rn[None, :] * k_st + rd[:, None] * k_sd, mask=(rn[None, :] < TK) & (rd[:, None] < D), other=0.0).to(tl.float32)",
            '        s = tl.dot(qt, kt, input_precision="ieee") * scale',
            "        ok = (rn[None, :] < TK) & (rm[:, None] >= 0)",
            "        if CAUSAL:",
            "            ok = ok & (rn[None, :] <= rm[:, None])",
            "        if MASK == 1:",
            f"            ok = ok & (tl.load({_batch_base('mk', batch)} + rm[:, None] * mk_sq + rn[None, :] * mk_sk, mask=(rm[:, None] < TQ) & (rn[None, :] < TK), other=0) != 0)",
            "        if MASK == 2:",
            f"            am = tl.load({_batch_base('mk', batch)} + rm[:, None] * mk_sq + rn[None, :] * mk_sk, mask=(rm[:, None] < TQ) & (rn[None, :] < TK), other=0.0).to(tl.float32)",
            # an additive -inf masks the key as a boolean mask does, even against a NaN score (the reference's rule)
            '            ok = ok & (am != float("-inf"))',
            "            s = s + am",
            '        s = tl.where(ok, s, float("-inf"))',
            "        m_new = tl.maximum(m_i, tl.max(s, axis=1))",
            '        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)',
            "        alpha = tl.exp(m_i - m_safe)",
            "        p = tl.exp(s - m_safe[:, None])",
            "        l_i = l_i * alpha + tl.sum(p, axis=1)",
            f"        vt = tl.load({_batch_base('v', batch)} + rn[:, None] * v_st + rdv[None, :] * v_sd, mask=(rn[:, None] < TK) & (rdv[None, :] < DV), other=0.0).to(tl.float32)",
            '        acc = acc * alpha[:, None] + tl.dot(p, vt, input_precision="ieee")',
            "        m_i = m_new",
            # a row with no allowed key (l_i == 0) gives 0; a NaN l_i (a NaN score) keeps the NaN, as the reference
            "    y = tl.where(l_i[:, None] != 0, acc / tl.where(l_i[:, None] != 0, l_i[:, None], 1.0), 0.0)",
        ]
        o_base = " + ".join(["out"] + [f"cb{i} * o_sb{i}" for i in range(batch)])
        body.append(f"    tl.store({o_base} + rm[:, None] * o_st + rdv[None, :] * o_sd, _store_cast(y, out), mask=(rm[:, None] < TQ) & (rdv[None, :] < DV))")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        bshape = [dim_code(d) for d in out_t.shape[:batch]]
        args = []
        for val in (q, kk, v):
            args += self._expanded(names[val], bshape + [dim_code(val.type.shape[-2]), dim_code(val.type.shape[-1])], lines)
        tq, tk = dim_code(q.type.shape[-2]), dim_code(kk.type.shape[-2])
        if mask is not None:
            args += self._expanded(names[mask], bshape + [tq, tk], lines)
        else:
            args += [args[0]] + ["0"] * (batch + 2)
        self._alloc(n.outputs[0], names, lines, plan.layouts.get(n.outputs[0]))
        d, dv = dim_code(q.type.shape[-1]), dim_code(v.type.shape[-1])
        scale = n.attrs["scale"]
        scale_code = repr(float(scale)) if scale is not None else f"_rt.inv_sqrt({d})"
        o = names[n.outputs[0]]
        args += [o] + [f"{o}.stride({i})" for i in range(batch + 2)] + [tq, tk, d, dv] + bshape + [scale_code]
        nb = " * ".join(bshape) or "1"
        args += [f"BD=_rt.dot_block({d}, 1 << 16)", f"BDV=_rt.dot_block({dv}, 1 << 16)",
                 f"CAUSAL={bool(n.attrs['causal'])}", f"MASK={mask_kind}"]
        self._tuned_launch(k.name, (tq, tk, d, nb), f"_rt.attention_configs({tq}, {tk}, {d})",
                           f"(_rt.cdiv({tq}, c['BM']), {nb})", args, lines)
