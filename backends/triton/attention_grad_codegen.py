"""The flash-attention-2 backward (a mixin of codegen.ModuleGen): sdpa_grad (ir/ops/attention_backward.py) as two
tl.dot kernels that never write a [Tq, Tk] tensor.

- `<name>_dq`, one program per (query block, batch): a first loop over the key blocks recomputes the row maxima
  and sums of exp (the forward's online softmax) into the row logsumexp L; D = rowsum(dO * O); a second loop
  rebuilds P = exp(S - L) per key block, dP = dO V^T and dS = P (dP - D), and accumulates dQ += dS K. It
  writes dQ and, per query row, L and D (8 bytes a row, a scratch buffer the launcher allocates).
- `<name>_dkdv`, one program per (key block, batch): loops over the query blocks (causal: from the first that
  may see the block), rebuilds P from L, and accumulates dV += P^T dO and dK += dS^T Q. Launched only when dK or
  dV is used.
Causal, boolean and additive masks are applied as the forward kernel applies them; a query row that may attend
to no key has L = +inf, so P = 0 there and its gradients are 0 (the forward gives 0). Tiles: GRAD_TILES (16 x 16
under the interpreter; on a GPU each kernel is autotuned over them, as the forward's tiles are).

The plan counts q, k, v, o, dO (and the mask) read once and dQ, dK, dV written once, as it counts the forward
kernel (which also rereads K and V per query block); the L / D scratch, 8 bytes per query row, is not counted."""
from __future__ import annotations

from ...passes.fuse import Kernel
from .source_text import dim_code


def _base(nm: str, batch: int) -> str:
    return " + ".join([nm] + [f"cb{i} * {nm}_sb{i}" for i in range(batch)])


def _tile(nm: str, batch: int, rows: str, cols: str, s_rows: str, s_cols: str, mask: str) -> str:
    """A [rows x cols] f32 tile of operand `nm` (zero outside `mask`)."""
    return (f"tl.load({_base(nm, batch)} + {rows} * {nm}_{s_rows} + {cols} * {nm}_{s_cols}, mask={mask}, "
            f"other=0.0).to(tl.float32)")


def _scores(batch: int, q_tile: str, kt_tile: str) -> list[str]:
    """s = q k^T * scale over the [BM, BN] tile at rows rm, keys rn, masked to -inf (indent: 8)."""
    mk = f"{_base('mk', batch)} + rm[:, None] * mk_sq + rn[None, :] * mk_sk"
    inside = "(rm[:, None] < TQ) & (rn[None, :] < TK)"
    return [
        f'        s = tl.dot({q_tile}, {kt_tile}, input_precision="ieee") * scale',
        f"        ok = {inside}",
        "        if CAUSAL:",
        "            ok = ok & (rn[None, :] <= rm[:, None])",
        "        if MASK == 1:",
        f"            ok = ok & (tl.load({mk}, mask={inside}, other=0) != 0)",
        "        if MASK == 2:",
        f"            am = tl.load({mk}, mask={inside}, other=0.0).to(tl.float32)",
        '            ok = ok & (am != float("-inf"))',
        "            s = s + am",
        '        s = tl.where(ok, s, float("-inf"))',
    ]


def _decode_batch(batch: int) -> list[str]:
    out = ["    bid = tl.program_id(1)", "    rem = bid"]
    for i in reversed(range(batch)):
        out += [f"    cb{i} = rem % bs{i}", f"    rem = rem // bs{i}"]
    return out


# (query block, key block, warps, stages): the first is the interpreter's (and the GPU's smallest); then GPU tiles
# chosen from sm_90 builds (backends/triton/aot.py, f32 operands): at d = 64 none of the first four spills in either
# kernel and 64 x 32 / 32 x 64 do not in the dQ kernel; 64 x 64 spilled in both and 32 x 32 with 4 warps in dK/dV,
# so they are left out; at d = 128 the 16 x 16 tiles spill in neither kernel.
GRAD_TILES = [(16, 16, 4, 2), (16, 16, 8, 1), (32, 32, 8, 1), (32, 32, 8, 2), (64, 32, 8, 2), (32, 64, 8, 2)]


def _candidates(tq: str, tk: str) -> str:
    """The launcher's candidate configs: GRAD_TILES clipped to the problem, each once."""
    return ("list({tuple(c.items()): c for c in ({'BM': max(16, min(bm, triton.next_power_of_2(" + tq + "))), "
            "'BN': max(16, min(bn, triton.next_power_of_2(" + tk + "))), 'num_warps': w, 'num_stages': st} "
            f"for bm, bn, w, st in {GRAD_TILES!r})}}.values())")


class AttentionGradKernels:
    def _k_attention_grad(self, k: Kernel, names, lines, plan):
        n = k.nodes[0]
        q, kk, v, o, do = n.inputs[:5]
        mask = n.inputs[5] if len(n.inputs) > 5 else None
        dq_v, dk_v, dv_v = n.outputs
        batch = len(o.type.shape) - 2
        mask_kind = 0 if mask is None else (1 if mask.type.dtype == "bool" else 2)
        params = []
        for nm in ("q", "k", "v", "o", "do"):
            params += [nm] + [f"{nm}_sb{i}" for i in range(batch)] + [f"{nm}_st", f"{nm}_sd"]
        params += ["mk"] + [f"mk_sb{i}" for i in range(batch)] + ["mk_sq", "mk_sk"]
        tail = ["lse", "dlt", "TQ", "TK", "D", "DV"] + [f"bs{i}" for i in range(batch)] + [
            "scale", "BM: tl.constexpr", "BN: tl.constexpr", "BD: tl.constexpr", "BDV: tl.constexpr",
            "CAUSAL: tl.constexpr", "MASK: tl.constexpr"]
        qmask, vmask = "(rm[:, None] < TQ) & (rd[None, :] < D)", "(rm[:, None] < TQ) & (rdv[None, :] < DV)"

        # ---- dQ, L, D: one program per query block ----
        dq_params = params + ["dq"] + [f"dq_sb{i}" for i in range(batch)] + ["dq_st", "dq_sd"] + tail
        body = ["    pid_m = tl.program_id(0)"] + _decode_batch(batch) + [
            "    rm = pid_m * BM + tl.arange(0, BM)",
            "    rd = tl.arange(0, BD)",
            "    rdv = tl.arange(0, BDV)",
            f"    qt = {_tile('q', batch, 'rm[:, None]', 'rd[None, :]', 'st', 'sd', qmask)}",
            '    m_i = tl.full((BM,), float("-inf"), tl.float32)',
            "    l_i = tl.zeros((BM,), tl.float32)",
            "    hi = TK",
            "    if CAUSAL:   # key blocks past this query block's diagonal are masked whole",
            "        hi = tl.minimum(TK, (pid_m + 1) * BM)",
            "    for start in range(0, hi, BN):   # the row logsumexp, as the forward's online softmax",
            "        rn = start + tl.arange(0, BN)",
            f"        kt = {_tile('k', batch, 'rn[None, :]', 'rd[:, None]', 'st', 'sd', '(rn[None, :] < TK) & (rd[:, None] < D)')}",
            *_scores(batch, "qt", "kt"),
            "        m_new = tl.maximum(m_i, tl.max(s, axis=1))",
            '        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)',
            "        l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), axis=1)",
            "        m_i = m_new",
            '    m_safe = tl.where(m_i == float("-inf"), 0.0, m_i)',
            # a row with no allowed key: L = +inf, so exp(S - L) = exp(-inf) = 0 everywhere on it
            '    lrow = tl.where(l_i != 0, m_safe + tl.log(tl.where(l_i != 0, l_i, 1.0)), float("inf"))',
            f"    dot_ = {_tile('do', batch, 'rm[:, None]', 'rdv[None, :]', 'st', 'sd', vmask)}",
            f"    drow = tl.sum(dot_ * {_tile('o', batch, 'rm[:, None]', 'rdv[None, :]', 'st', 'sd', vmask)}, axis=1)",
            "    acc = tl.zeros((BM, BD), tl.float32)",
            "    for start in range(0, hi, BN):",
            "        rn = start + tl.arange(0, BN)",
            f"        kt = {_tile('k', batch, 'rn[None, :]', 'rd[:, None]', 'st', 'sd', '(rn[None, :] < TK) & (rd[:, None] < D)')}",
            *_scores(batch, "qt", "kt"),
            "        p = tl.exp(s - lrow[:, None])",
            f"        vt = {_tile('v', batch, 'rn[None, :]', 'rdv[:, None]', 'st', 'sd', '(rn[None, :] < TK) & (rdv[:, None] < DV)')}",
            '        dp = tl.dot(dot_, vt, input_precision="ieee")',
            "        ds = p * (dp - drow[:, None])",
            '        acc += tl.dot(ds, tl.trans(kt), input_precision="ieee")',
            f"    tl.store({_base('dq', batch)} + rm[:, None] * dq_st + rd[None, :] * dq_sd, _store_cast(acc * scale, dq), mask={qmask})",
            "    tl.store(lse + bid * TQ + rm, lrow, mask=rm < TQ)",
            "    tl.store(dlt + bid * TQ + rm, drow, mask=rm < TQ)",
        ]
        dq_name = f"{k.name}_dq"
        self.kernels.append(f"@triton.jit\ndef {dq_name}({', '.join(dq_params)}):\n" + "\n".join(body) + "\n")

        # the launcher: operands expanded to the forward's batch (views), outputs and the L / D scratch
        bshape = [dim_code(d) for d in o.type.shape[:batch]]
        tq, tk = dim_code(q.type.shape[-2]), dim_code(kk.type.shape[-2])
        d, dv = dim_code(q.type.shape[-1]), dim_code(v.type.shape[-1])
        nb = " * ".join(bshape) or "1"
        args = []
        for val in (q, kk, v, o, do):
            args += self._expanded(names[val], bshape + [dim_code(s) for s in val.type.shape[-2:]], lines)
        if mask is not None:
            args += self._expanded(names[mask], bshape + [tq, tk], lines)
        else:
            args += [args[0]] + ["0"] * (batch + 2)
        for val in n.outputs:   # (stored pre-transposed where the plan says so: strides only)
            self._alloc(val, names, lines, plan.layouts.get(val))
        lse, dlt = f"e{self._next()}", f"e{self._next()}"
        lines.append(f"    {lse} = torch.empty(({nb}) * ({tq}), dtype=torch.float32, device=dev)")
        lines.append(f"    {dlt} = torch.empty(({nb}) * ({tq}), dtype=torch.float32, device=dev)")
        scale = n.attrs["scale"]
        scale_code = repr(float(scale)) if scale is not None else f"_rt.inv_sqrt({d})"
        rest = [lse, dlt, tq, tk, d, dv] + bshape + [scale_code]
        consts = [f"BD=_rt.dot_block({d}, 1 << 16)", f"BDV=_rt.dot_block({dv}, 1 << 16)",
                  f"CAUSAL={bool(n.attrs['causal'])}", f"MASK={mask_kind}"]

        def out_args(val):
            x = names[val]
            return [x] + [f"{x}.stride({i})" for i in range(batch + 2)]

        self._tuned_launch(dq_name, (tq, tk, d, nb), _candidates(tq, tk),
                           f"(_rt.cdiv({tq}, c['BM']), {nb})", args + out_args(dq_v) + rest + consts, lines)
        if dk_v not in k.outputs and dv_v not in k.outputs:
            return

        # ---- dK, dV: one program per key block ----
        kv_params = params + ["dk"] + [f"dk_sb{i}" for i in range(batch)] + ["dk_st", "dk_sd"] \
            + ["dv"] + [f"dv_sb{i}" for i in range(batch)] + ["dv_st", "dv_sd"] + tail
        kmask, kvmask = "(rn[:, None] < TK) & (rd[None, :] < D)", "(rn[:, None] < TK) & (rdv[None, :] < DV)"
        body = ["    pid_n = tl.program_id(0)"] + _decode_batch(batch) + [
            "    rn = pid_n * BN + tl.arange(0, BN)",
            "    rd = tl.arange(0, BD)",
            "    rdv = tl.arange(0, BDV)",
            f"    kt = {_tile('k', batch, 'rn[None, :]', 'rd[:, None]', 'st', 'sd', '(rn[None, :] < TK) & (rd[:, None] < D)')}",
            f"    vt = {_tile('v', batch, 'rn[None, :]', 'rdv[:, None]', 'st', 'sd', '(rn[None, :] < TK) & (rdv[:, None] < DV)')}",
            "    acc_k = tl.zeros((BN, BD), tl.float32)",
            "    acc_v = tl.zeros((BN, BDV), tl.float32)",
            "    lo = 0",
            "    if CAUSAL:   # query blocks wholly before this key block see none of its keys",
            "        lo = (pid_n * BN // BM) * BM",
            "    for start in range(lo, TQ, BM):",
            "        rm = start + tl.arange(0, BM)",
            f"        qt = {_tile('q', batch, 'rm[:, None]', 'rd[None, :]', 'st', 'sd', qmask)}",
            *_scores(batch, "qt", "kt"),
            '        lrow = tl.load(lse + bid * TQ + rm, mask=rm < TQ, other=float("inf"))',
            "        drow = tl.load(dlt + bid * TQ + rm, mask=rm < TQ, other=0.0)",
            "        p = tl.exp(s - lrow[:, None])",
            f"        dot_ = {_tile('do', batch, 'rm[:, None]', 'rdv[None, :]', 'st', 'sd', vmask)}",
            '        acc_v += tl.dot(tl.trans(p), dot_, input_precision="ieee")',
            '        dp = tl.dot(dot_, vt, input_precision="ieee")',
            "        ds = p * (dp - drow[:, None])",
            '        acc_k += tl.dot(tl.trans(ds), qt, input_precision="ieee")',
            f"    tl.store({_base('dk', batch)} + rn[:, None] * dk_st + rd[None, :] * dk_sd, _store_cast(acc_k * scale, dk), mask={kmask})",
            f"    tl.store({_base('dv', batch)} + rn[:, None] * dv_st + rdv[None, :] * dv_sd, _store_cast(acc_v, dv), mask={kvmask})",
        ]
        kv_name = f"{k.name}_dkdv"
        self.kernels.append(f"@triton.jit\ndef {kv_name}({', '.join(kv_params)}):\n" + "\n".join(body) + "\n")
        self._tuned_launch(kv_name, (tq, tk, d, nb), _candidates(tq, tk),
                           f"(_rt.cdiv({tk}, c['BN']), {nb})", args + out_args(dk_v) + out_args(dv_v) + rest + consts,
                           lines)
