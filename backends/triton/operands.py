"""How a kernel reads and computes its operands (a mixin of codegen.ModuleGen, used by every kernel family):
the values a kernel's pointwise part reads from memory, each read through its strides or through an index
tensor (theta[idx[...]]), tiles unpacked from packed int4/2/1 bytes, pointwise chains as kernel lines, and flat
prologues (an operand computed in another shape of the same size, passes/fuse.py)."""
from __future__ import annotations

import sympy

from ...errors import PnetError
from ...ir import registry
from ...ir.graph import Node, Value
from ...ir.types import is_float
from ...passes.fuse import Kernel
from .source_text import TL_DTYPE, scalar_code


def unpack_field(byte: str, pos: str, bits: int, out: str, indent: str) -> list[str]:
    """Lines setting `out` to the signed `bits`-bit field of int32 `byte` for coordinate `pos` along the packed
    axis (ir/ops/quant.py pack_bits: lowest bits first, two's complement; one bit is -1 / +1)."""
    per = 8 // bits
    lines = [f"{indent}{out}f = ({byte} >> ({bits} * (({pos}) % {per}))) & {(1 << bits) - 1}"]
    if bits == 1:
        return lines + [f"{indent}{out} = 2 * {out}f - 1"]
    return lines + [f"{indent}{out} = tl.where({out}f >= {1 << (bits - 1)}, {out}f - {1 << bits}, {out}f)"]


class OperandTiles:
    def _expr_chain(self, nodes, reg: dict, plan, body: list, indent="    "):
        """Kernel lines computing `nodes` (pointwise) from the registers in `reg` (value -> name), which gains
        each result: shared by pointwise kernels, prologues and epilogues."""
        for n in nodes:
            if n.op == "const":  # a fill (only in pointwise kernels, where BLOCK is the tile)
                t = f"t{self._next()}"
                body.append(f"{indent}{t} = tl.full((BLOCK,), {scalar_code(n.attrs['value'], n.outputs[0].type.dtype)}, "
                            f"{TL_DTYPE[n.outputs[0].type.dtype] if not is_float(n.outputs[0].type.dtype) else 'tl.float32'})")
                reg[n.outputs[0]] = t
                continue
            if n.op == "arange":  # only as a rank-1 pointwise kernel: the coordinate is the value
                t = f"t{self._next()}"
                body.append(f"{indent}{t} = offs.to({TL_DTYPE[n.outputs[0].type.dtype]})")
                reg[n.outputs[0]] = t
                continue
            opdef = registry.get(n.op)
            args = []
            for v in n.inputs:
                if v is None:  # an absent optional operand (a zero point)
                    args.append(None)
                elif v in reg:
                    args.append(reg[v])
                elif v in plan.scalars:
                    args.append(scalar_code(plan.scalars[v], v.type.dtype))
                else:  # pragma: no cover
                    raise PnetError(f"internal: operand of {n.op} not loaded")
            attrs = {k: v for k, v in n.attrs.items()}
            t = f"t{self._next()}"
            lower = opdef.triton_int if opdef.triton_int is not None and not is_float(n.outputs[0].type.dtype) else opdef.triton
            body.append(f"{indent}{t} = {lower(*args, **attrs)}")
            reg[n.outputs[0]] = t

    def _operands(self, k: Kernel, plan, nodes=None):
        """The values the kernel's pointwise part (`nodes`, default all) reads from memory."""
        inside = {v for n in k.nodes for v in n.outputs}
        out = []
        for n in (k.nodes if nodes is None else nodes):
            for v in n.inputs:
                if v is None or v in inside or v in plan.scalars or v in out:
                    continue
                out.append(v)
        return out

    def table(self, v: Value) -> Node | None:
        """The take(theta, idx) an indexed value (or a view of one) is read through, else None."""
        while v in self.view_of:
            v = self.view_of[v].inputs[0]
        return self.indexed.get(v)

    def table_param(self, ptr: str, v: Value) -> list[str]:
        return [f"{ptr}_t"] if self.table(v) is not None else []

    def table_arg(self, names, v: Value) -> list[str]:
        take = self.table(v)
        return [names[take.inputs[0]]] if take is not None else []

    def _load_packed(self, u: Node, ptr: str, offs, coords: list[str], mask: str, out: str, body, indent: str):
        """An operand tile computed by unpack_bits from packed bytes (a prologue): the bytes at coordinate
        // (8 / bits) along the packed axis, then each lane's field. `offs(coords)` builds the offsets."""
        ax, per = u.attrs["axis"] % len(coords), 8 // u.attrs["bits"]
        byte_coords = [f"({c}) // {per}" if d == ax else c for d, c in enumerate(coords)]
        body.append(f"{indent}{out}b = tl.load({ptr} + {offs(byte_coords)}, mask={mask}, other=0).to(tl.int32)")
        body += unpack_field(f"{out}b", coords[ax], u.attrs["bits"], out, indent)

    # ---- flat prologues: an operand computed in another shape of the same size (passes/fuse.py) ----------
    def _reshape_source(self, v: Value) -> Value:
        while v in self.view_of and self.view_of[v].op == "reshape":
            v = self.view_of[v].inputs[0]
        return v

    def _flat_reads(self, chain: list[Node], plan) -> list[tuple[Value, Node]]:
        """(value, reader) for each memory read of a flat prologue, in the order `_flat_tile` loads them."""
        made = {n.outputs[0] for n in chain}
        reads = []
        for n in chain:
            for v in n.inputs:
                if v is not None and v not in plan.scalars and self._reshape_source(v) not in made \
                        and (v, n) not in reads:
                    reads.append((v, n))
        return reads

    @staticmethod
    def _flat_shape(v: Value, reader: Node) -> list:
        """The shape a flat read is indexed in: the packed bytes' own, else its reader's (v broadcasts there)."""
        return list(v.type.shape if reader.op == "unpack_bits" else reader.outputs[0].type.shape)

    def _flat_params(self, tag: str, reads) -> list[str]:
        """Kernel parameters of a flat prologue's reads: a pointer and the strides of the shape it is indexed in."""
        return [p for i, (v, n) in enumerate(reads)
                for p in [f"{tag}p{i}"] + [f"{tag}p{i}_s{d}" for d in range(len(self._flat_shape(v, n)))]]

    def _flat_args(self, names, reads, lines) -> list[str]:
        """Launcher arguments of a flat prologue's reads, each expanded to the shape its reader computes in
        (packed bytes as they are)."""
        args = []
        for v, n in reads:
            e = f"e{self._next()}"
            sh = self._flat_shape(v, n)
            lines.append(f"    {e} = {names[v]}" if n.op == "unpack_bits" else
                         f"    {e} = {names[v]}.expand({', '.join(str(int(d)) for d in sh)}{',' if len(sh) == 1 else ''})")
            args += [e] + [f"{e}.stride({d})" for d in range(len(sh))]
        return args

    def _flat_tile(self, chain, reads, flat_index: str, tag, mask, plan, body) -> str:
        """Lines computing an operand tile of reshape(chain's result) from each element's index in it when
        flattened (`flat_index`, a tile expression), unravelled over the shape each read is indexed in."""
        ind = "        "
        fl = f"{tag}_fl"
        body.append(f"{ind}{fl} = {flat_index}")

        def unravel(shape):
            coords = []
            for d, size in enumerate(shape):
                div = int(sympy.prod(shape[d + 1:]))
                c = fl if div == 1 else f"({fl} // {div})"
                coords.append(c if d == 0 else f"({c} % {int(size)})")
            return coords

        def offs(nm, coords):
            return " + ".join([f"{c} * {nm}_s{d}" for d, c in enumerate(coords)] + [f"{fl} * 0"])
        reg = {}
        for n in chain:
            for v in n.inputs:   # a reshape of a value computed here is the same register
                if v is not None and v not in reg and self._reshape_source(v) in reg:
                    reg[v] = reg[self._reshape_source(v)]
            for i, (v, reader) in enumerate(reads):
                if reader is not n:
                    continue
                nm = f"{tag}p{i}"
                if n.op == "unpack_bits":
                    out = f"{tag}_{i}"
                    self._load_packed(n, nm, lambda cs, nm=nm: offs(nm, cs), unravel(n.outputs[0].type.shape), mask,
                                      out, body, ind)
                    reg[n.outputs[0]] = out
                else:
                    reg[v] = f"{tag}_{i}"
                    body.append(f"{ind}{tag}_{i} = {self._load(nm, offs(nm, unravel(n.outputs[0].type.shape)), mask, v)}")
            if n.op != "unpack_bits":
                self._expr_chain([n], reg, plan, body, indent=ind)
        return f"tl.where({mask}, {reg[chain[-1].outputs[0]]}, 0.0)"

    def _load(self, ptr: str, offs: str, mask: str, v: Value) -> str:
        other = "0.0" if is_float(v.type.dtype) else "0"
        if self.table(v) is not None:  # theta[idx[...]]: `ptr` walks the index tensor
            return f"tl.load({ptr}_t + tl.load({ptr} + {offs}, mask={mask}, other=0), mask={mask}, other=0.0).to(tl.float32)"
        load = f"tl.load({ptr} + {offs}, mask={mask}, other={other})"
        return f"{load}.to(tl.float32)" if is_float(v.type.dtype) else load
