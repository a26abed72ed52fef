"""Convolution kernels (a mixin of codegen.ModuleGen): conv1d/2d/3d, conv_transpose2d and the int8
qconv1d/2d/3d as one implicit-GEMM template over any number of spatial dims.

Rows of the GEMM are output positions (n, o_0, ..., o_{nd-1}), columns the output channels of one
group (the grid's third axis), and the reduction runs over (ci, t_0, ..., t_{nd-1}): input channel
and kernel tap. No im2col buffer exists: each tile of the A operand is gathered from x by index
arithmetic, masked where a tap falls into padding.

- conv:            i_d = o_d * stride_d - pad_d + t_d * dil_d, valid when 0 <= i_d < I_d;
                   w[co, ci, t...]
- conv_transpose:  i_d = (o_d + pad_d - t_d * dil_d) / stride_d, valid when the numerator is >= 0,
                   divisible by the stride, and the quotient < I_d (the gather form of the
                   scatter the reference does); w[g * CIN_G + ci, co_in_group, t...]

Bias and the pointwise epilogue (activation, residual, scale) fuse before the store.
"""
from __future__ import annotations

from ...passes.fuse import CONV_OPS
from ...ir.types import is_float
from .source_text import dim_code


def _decode(var: str, sizes: list[str], body: list[str], indent="    ") -> str:
    """Row-major decode of `var` over `sizes` (last fastest) into fresh names; returns the leading rest."""
    body.append(f"{indent}rem_{var} = {var}")
    for name, size in reversed(sizes):
        body += [f"{indent}{name} = rem_{var} % {size}", f"{indent}rem_{var} = rem_{var} // {size}"]
    return f"rem_{var}"


class ConvKernels:
    def _k_conv(self, k, names, lines, plan):
        cv, epi = k.nodes[0], k.nodes[1:]
        transposed = cv.op.startswith("conv_transpose")
        integer = cv.op.startswith("qconv")  # int8 operands, exact int32 accumulation
        nd = CONV_OPS[cv.op]
        x, w, b = (cv.inputs + [None])[:3]
        a = cv.attrs
        stride, pad, dil, groups = a["stride"], a["padding"], a["dilation"], int(a["groups"])
        sp = range(nd)
        in_tile = w in k.prologue        # the weight is computed in its tile, from its own operands' tiles
        flat = w in k.flat               # ... or from each element's flat index (group-wise dequantization)
        pro = self._operands(k, plan, nodes=k.prologue[w]) if in_tile and not flat else []
        flat_reads = self._flat_reads(k.prologue[w], plan) if flat else []
        epi = [n for n in epi if w not in k.prologue or n not in k.prologue[w]]
        ops = self._operands(k, plan, nodes=epi)
        params = ["x"] + [f"x_s{d}" for d in range(nd + 2)] + ["w"] + [f"w_s{d}" for d in range(nd + 2)] + self.table_param("w", w)
        for i, v in enumerate(pro):
            params += [f"wp{i}"] + [f"wp{i}_s{d}" for d in range(nd + 2)] + self.table_param(f"wp{i}", v)
        params += self._flat_params("w", flat_reads)
        params += ["bias"] + (self.table_param("bias", b) if b is not None else [])
        for i, v in enumerate(ops):
            params += [f"in{i}"] + [f"in{i}_s{d}" for d in range(nd + 2)] + self.table_param(f"in{i}", v)
        params += [f"out{j}" for j in range(len(k.outputs))]
        params += ["NB", "CIN_G", "COUT_G"] + [f"I{d}" for d in sp] + [f"O{d}" for d in sp] + [f"K{d}" for d in sp]
        params += ["HAS_BIAS: tl.constexpr", "BM: tl.constexpr", "BN: tl.constexpr", "BK: tl.constexpr"]
        opos = " * ".join(f"O{d}" for d in sp)
        taps = " * ".join(f"K{d}" for d in sp)
        body = ["    pid_m = tl.program_id(0)", "    pid_n = tl.program_id(1)", "    g = tl.program_id(2)",
                "    rm = pid_m * BM + tl.arange(0, BM)", "    rn = pid_n * BN + tl.arange(0, BN)"]
        n_rest = _decode("rm", [(f"o{d}", f"O{d}") for d in sp], body)
        body += [f"    n_i = {n_rest}", "    co = g * COUT_G + rn",
                 f"    m_ok = rm < NB * {opos}", "    n_ok = rn < COUT_G",
                 f"    acc = tl.zeros((BM, BN), dtype={'tl.int32' if integer else 'tl.float32'})",
                 f"    for k0 in range(0, CIN_G * {taps}, BK):",
                 "        kk = k0 + tl.arange(0, BK)"]
        ci = _decode("kk", [(f"t{d}", f"K{d}") for d in sp], body, indent="        ")
        body += [f"        ci = {ci}", f"        k_ok = kk < CIN_G * {taps}"]
        valid = ["m_ok[:, None]", "k_ok[None, :]"]
        for d in sp:
            s, p, dl = int(stride[d]), int(pad[d]), int(dil[d])
            if not transposed:
                body.append(f"        i{d} = o{d}[:, None] * {s} - {p} + t{d}[None, :] * {dl}")
                valid.append(f"(i{d} >= 0) & (i{d} < I{d})")
                continue
            body.append(f"        q{d} = o{d}[:, None] + {p} - t{d}[None, :] * {dl}")
            valid.append(f"(q{d} >= 0)")
            if s == 1:
                body.append(f"        i{d} = q{d}")
            else:  # divide only non-negative numerators: integer // and % of negatives differ by language
                body.append(f"        i{d} = tl.maximum(q{d}, 0) // {s}")
                valid.append(f"(tl.maximum(q{d}, 0) % {s} == 0)")
            valid.append(f"(i{d} < I{d})")
        body.append(f"        ok = {' & '.join(valid)}")
        x_pos = " + ".join(f"i{d} * x_s{d + 2}" for d in sp)
        body.append(f"        at = tl.load(x + n_i[:, None] * x_s0 + (g * CIN_G + ci[None, :]) * x_s1 + {x_pos}, mask=ok, other={'0' if integer else '0.0'})")
        w_coords = (["(g * CIN_G + ci[:, None])", "rn[None, :]"] if transposed else ["co[None, :]", "ci[:, None]"]) \
            + [f"t{d}[:, None]" for d in sp]

        def w_offs_of(ptr, coords=w_coords):
            return " + ".join(f"{c} * {ptr}_s{d}" for d, c in enumerate(coords))
        w_offs, w_mask = w_offs_of("w"), "k_ok[:, None] & n_ok[None, :]"
        unpack = {n.inputs[0]: n for n in k.prologue.get(w, []) if n.op == "unpack_bits"}   # packed weight bytes
        if flat:   # w[co, ci, t...] is element co * (CIN_G * taps) + kk of the contiguous weight
            w_load = self._flat_tile(k.prologue[w], flat_reads, f"co[None, :] * (CIN_G * {taps}) + kk[:, None]", "w",
                                     w_mask, plan, body)
        elif pro:  # the weight's prologue, on its operands' tiles at the same coordinates
            reg = {}
            for i, v in enumerate(pro):
                reg[v] = f"wv{i}"
                if v in unpack:
                    reg[unpack[v].outputs[0]] = reg.pop(v)
                    self._load_packed(unpack[v], f"wp{i}", lambda cs, i=i: w_offs_of(f"wp{i}", cs), w_coords, w_mask,
                                      f"wv{i}", body, "        ")
                else:
                    body.append(f"        wv{i} = {self._load(f'wp{i}', w_offs_of(f'wp{i}'), w_mask, v)}")
            self._expr_chain([n for n in k.prologue[w] if n.op != "unpack_bits"], reg, plan, body, indent="        ")
            w_load = f"tl.where({w_mask}, {reg[w]}, 0.0)" if is_float(w.type.dtype) else \
                f"tl.where({w_mask}, {reg[w]}, 0).to(tl.int8)"
        else:  # (a tied weight: theta[idx[...]])
            w_load = self._load("w", w_offs, w_mask, w)
        body += [f"        bt = {w_load}",
                 "        acc += tl.dot(at, bt, out_dtype=tl.int32)" if integer else
                 '        acc += tl.dot(at.to(tl.float32), bt.to(tl.float32), input_precision="ieee")',
                 "    mask = m_ok[:, None] & n_ok[None, :]"]
        if b is not None:
            body.insert(-1, f"    acc = acc + {self._load('bias', 'co', 'n_ok', b)}[None, :]")
        reg = {cv.outputs[0]: "acc"}
        for i, v in enumerate(ops):
            offs = " + ".join([f"n_i[:, None] * in{i}_s0", f"co[None, :] * in{i}_s1"]
                              + [f"o{d}[:, None] * in{i}_s{d + 2}" for d in sp])
            reg[v] = f"e{i}"
            body.append(f"    e{i} = {self._load(f'in{i}', offs, 'mask', v)}")
        self._expr_chain(epi, reg, plan, body)
        # the output is contiguous [N, C_out, *O]: a row's spatial offset is rm % prod(O)
        body.append(f"    o_offs = n_i[:, None] * (COUT_G * {groups} * {opos}) + co[None, :] * ({opos}) + (rm % ({opos}))[:, None]")
        for j, v in enumerate(k.outputs):
            body.append(f"    tl.store(out{j} + o_offs, _store_cast({reg[v]}, out{j}), mask=mask)")
        self.kernels.append(f"@triton.jit\ndef {k.name}({', '.join(params)}):\n" + "\n".join(body) + "\n")
        # launcher
        for v in k.outputs:
            self._alloc(v, names, lines)
        xs, ws = names[x], None
        w_shape = ", ".join(dim_code(d) for d in w.type.shape)
        if in_tile:  # an in-tile weight: a one-element view of the weight's shape stands in for it (never read)
            ws = f"e{self._next()}"
            lines.append(f"    {ws} = {xs}.new_zeros(()).expand({w_shape})")
        ws = ws or names[w]
        args = [xs] + [f"{xs}.stride({d})" for d in range(nd + 2)] + [ws] + [f"{ws}.stride({d})" for d in range(nd + 2)]
        args += self.table_arg(names, w)
        for v in pro:  # the in-tile weight's operands, expanded to the weight's shape (views); packed bytes as they are
            e = f"e{self._next()}"
            lines.append(f"    {e} = {names[v]}" if v in unpack else f"    {e} = {names[v]}.expand({w_shape})")
            args += [e] + [f"{e}.stride({d})" for d in range(nd + 2)] + self.table_arg(names, v)
        args += self._flat_args(names, flat_reads, lines)
        args += [names[b]] + self.table_arg(names, b) if b is not None else [ws]
        out_shape = ", ".join(dim_code(d) for d in cv.outputs[0].type.shape)
        for v in ops:
            e = f"e{self._next()}"
            lines.append(f"    {e} = {names[v]}.expand({out_shape})")
            args += [e] + [f"{e}.stride({d})" for d in range(nd + 2)] + self.table_arg(names, v)
        args += [names[v] for v in k.outputs]
        o = names[k.outputs[0]]
        cin_g = f"{xs}.shape[1] // {groups}"
        cout_g = f"{ws}.shape[1]" if transposed else f"{ws}.shape[0] // {groups}"
        args += [f"{xs}.shape[0]", cin_g, cout_g] + [f"{xs}.shape[{d + 2}]" for d in sp]
        args += [f"{o}.shape[{d + 2}]" for d in sp] + [f"{ws}.shape[{d + 2}]" for d in sp] + [str(b is not None)]
        rows = " * ".join([f"{xs}.shape[0]"] + [f"{o}.shape[{d + 2}]" for d in sp])
        red = " * ".join([cin_g] + [f"{ws}.shape[{d + 2}]" for d in sp])
        self._tuned_launch(k.name, (rows, cout_g, red, str(groups)), f"_rt.gemm_configs({rows}, {cout_g}, {red}{', min_bk=32' if integer else ''}"
                           f"{', computed=True' if k.prologue else ''})",
                           f"(_rt.cdiv({rows}, c['BM']), _rt.cdiv({cout_g}, c['BN']), {groups})", args, lines)
