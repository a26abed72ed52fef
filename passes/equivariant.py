"""Equivariance weight-tying: layers made equivariant by construction through parameter sharing.

Driven by `@equivariant(GROUP, ...)` annotations (docs/language.md, "Equivariance"):

- on a layer (a call, statement or def): `inp=` / `out=` give the action of one group factor on the data
  operand and on the result of every linear op the annotation covers (matmul, einsum, conv1d/2d/3d);
  `out` defaults to `inp`. Several `@equivariant` annotations on one layer are a direct product.
- on the model: keyword arguments named after model inputs / outputs give their actions; the pass
  propagates them forward, and the checker (`testing/equivariance.py`) samples them.

An action is a string of terms, all driven by the same group element:
  `perm(a)`            the group permutes the entries of axis a (S(n): any permutation; C(n), T(n): cyclic
                       shifts; D(n): the symmetries of an n-gon); `perm(a, c)`: axis a is [n, c] flattened,
                       the n blocks of c are permuted.
  `grid(a, b)`         C(n) / D(n), n in {1, 2, 4}: rotations (and flips) of the square grid on axes a, b.
  `regular(a)`         axis a is [c, |G|] flattened (group index fastest): g acts by h -> g h on the group index.
  `trivial`            no action.

Every supported action permutes tensor entries, so the equivariant weights are exactly the weights constant
on the orbits of the group acting on weight indices: the pass replaces a free weight W by
`take(theta, orbit_index)` with one entry of `theta` per orbit (a new, smaller parameter of the same name)
and a constant i64 orbit-index tensor. A dense layer over a set becomes the DeepSets form, a dense layer over a
periodic axis with translations a circulant, a conv with C4/D4 + regular channels a group convolution.

Between layers, pointwise ops, reductions, softmax, norms, pooling, transposes and contractions are checked
to commute with the propagated action; the pass refuses (a PnetError at the op) where equivariance breaks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Annotation, Graph, Init, Node, Param, Value, clone, fans, replace_uses
from ..ir.types import TensorType
from .symmetry import (Action, EquivarianceError, Group, Term, _fmt_terms, _size, orbits, parse_action, parse_group,
                       resolve, tensor_perm, term_perm)

ANNOTATION = "equivariant"
TIED = "orbit_index"          # marks the constant orbit-index tensor of a tied parameter


# ---- annotation reading -------------------------------------------------------------------------------
@dataclass
class Spec:
    key: str
    group: Group
    inp: tuple | None       # terms (unresolved) or None
    out: tuple | None
    tensors: dict            # model-level: tensor name -> terms


def read_specs(annotations, loc=None) -> list[Spec]:
    specs = []
    for a in annotations:
        if a.name != ANNOTATION:
            continue
        if not a.kwargs:
            continue   # `@equivariant("tied-across-segments")`: a label for hand-written tying, no action to apply
        if len(a.args) != 1:
            raise EquivarianceError(f"{a}: give exactly one group, e.g. @equivariant(\"C4\", inp=\"grid(2, 3)\")", loc)
        group, key = parse_group(a.args[0], loc)
        kw = dict(a.kwargs)
        if "name" in kw:
            key = str(kw.pop("name"))
        inp = parse_action(kw.pop("inp"), loc) if "inp" in kw else None
        out = parse_action(kw.pop("out"), loc) if "out" in kw else None
        tensors = {k: parse_action(v, loc) for k, v in kw.items()}
        specs.append(Spec(key, group, inp, out, tensors))
    return specs


def model_actions(graph: Graph) -> dict[str, dict[str, tuple]]:
    """Model-level declarations: {tensor name: {factor key: (group, terms)}} for model inputs/outputs."""
    names = {n for n, _ in graph.inputs} | {n for n, _ in graph.outputs}
    out: dict[str, dict] = {}
    seen = set()
    carriers = [p.annotations for p in graph.params] + [n.annotations for n in graph.walk()]
    for annots in carriers:
        for a in annots:
            if a.name != ANNOTATION or a in seen:
                continue
            seen.add(a)
            for s in read_specs([a]):
                for t, terms in s.tensors.items():
                    if t not in names:
                        raise EquivarianceError(f"{a}: '{t}' is not an input or output of model {graph.name} "
                                                f"(layer actions are inp= and out=)")
                    out.setdefault(t, {})[s.key] = (s.group, terms)
    return out


# ---- the pass -----------------------------------------------------------------------------------------
LINEAR = ("matmul", "einsum", "conv1d", "conv2d", "conv3d")
BROKEN = "broken"


@dataclass
class Broken:
    node: Node
    reason: str


def _name(n: Node) -> str:
    return f"{n.op}" + (f" in {n.scope}" if n.scope else "")


class _State:
    def __init__(self, g: Graph):
        self.g = g
        self.params = {p.value: p for p in g.params}
        # weights an earlier run already tied (take(theta, orbit_index)): equivariant as they are, nothing to tie
        self.tied = {n.outputs[0] for n in g.walk() if n.op == "take" and n.inputs[0] in self.params
                     and n.inputs[1].producer is not None and n.inputs[1].producer.op == "const"
                     and any(a.name == TIED for a in n.inputs[1].producer.annotations)}
        self.acts: dict[Value, dict] = {}          # value -> {key: Action | Broken}
        self.gens: dict[Value, list] = {}          # param value -> flat generator perms over its entries
        self.tied_ops: set = set()
        self.report: list[dict] = []

    def add_gens(self, v: Value, action_pieces_per_gen):
        self.gens.setdefault(v, []).extend(action_pieces_per_gen)


def equivariant(graph: Graph) -> Graph:
    """The pass: tie the weights of `@equivariant` layers; refuse where equivariance breaks."""
    g = clone(graph)
    st = _State(g)
    declared = model_actions(g)
    for name, v in g.inputs:
        for key, (group, terms) in declared.get(name, {}).items():
            st.acts.setdefault(v, {})[key] = resolve(group, terms, v.type.shape, f"input '{name}'")
    for n in g.nodes:
        _visit(st, n)
    for name, v in g.outputs:
        have = st.acts.get(v, {})
        for key, (group, terms) in declared.get(name, {}).items():
            got = have.get(key)
            if isinstance(got, Broken):
                raise EquivarianceError(f"{got.node.op} breaks {group}-equivariance of output '{name}': {got.reason}", got.node.loc)
            if isinstance(got, Action):
                want = resolve(got.group, terms, v.type.shape, f"output '{name}'")
                if got.terms != want.terms:
                    raise EquivarianceError(f"output '{name}': the layers give it {_fmt_terms(got.terms)} under {group}, "
                                            f"but the model declares {_fmt_terms(want.terms) or 'trivial'}",
                                            v.producer.loc if v.producer else None)
    _tie(st)
    g.equivariance = st.report   # per-parameter counts before/after (this graph only; see param_counts)
    from .verify import verify
    verify(g)
    return g


def _set(st, v: Value, key, a):
    st.acts.setdefault(v, {})[key] = a


def _visit(st: _State, n: Node):
    specs = [s for s in read_specs(n.annotations, n.loc) if s.inp is not None or s.out is not None]
    ins = [st.acts.get(v, {}) if v is not None else {} for v in n.inputs]
    keys = set().union(*ins) if ins else set()
    weights = n.inputs[1:2] if n.op.startswith("conv") else n.inputs
    if n.op in LINEAR and specs and any(v in st.params or v in st.tied for v in weights if v is not None):
        _tie_linear(st, n, specs, ins)
        return
    _propagate(st, n, ins, keys, tie_params=bool(specs))


# -- tying a linear op ---------------------------------------------------------------------------------
def _letters_matmul(a: TensorType, b: TensorType):
    ra, rb = a.rank, b.rank
    nb = max(ra - 2, rb - 2, 0)
    batch = "".join(chr(ord("A") + i) for i in range(nb))
    la = batch[nb - max(ra - 2, 0):] + ("m" if ra > 1 else "") + "k"
    lb = batch[nb - max(rb - 2, 0):] + "k" + ("n" if rb > 1 else "")
    ly = batch + ("m" if ra > 1 else "") + ("n" if rb > 1 else "")
    return [la, lb], ly


def _letters(n: Node):
    if n.op == "matmul":
        return _letters_matmul(n.inputs[0].type, n.inputs[1].type)
    lhs, rhs = n.attrs["equation"].split("->")
    return lhs.split(","), rhs


def _letter_terms(action: Action, letters: str):
    """Terms in letter form: (kind, letters, inner)."""
    return [(t.kind, tuple(letters[a] for a in t.axes), t.inner) for t in action.terms]


def _tie_linear(st: _State, n: Node, specs, ins):
    if n.op.startswith("conv"):
        return _tie_conv(st, n, specs, ins)
    ops_letters, out_letters = _letters(n)
    wpos = [i for i, v in enumerate(n.inputs) if v in st.params or v in st.tied]
    dpos = [i for i, v in enumerate(n.inputs) if v not in st.params and v not in st.tied]
    if len(dpos) != 1 or len(wpos) != 1:
        raise EquivarianceError(f"@equivariant on {_name(n)}: a tied layer needs one data operand and one weight parameter "
                                f"(got {len(dpos)} data and {len(wpos)} weights)", n.loc)
    (xi,), (wi,) = dpos, wpos
    x, w, y = n.inputs[xi], n.inputs[wi], n.outputs[0]
    xl, wl, yl = ops_letters[xi], ops_letters[wi], out_letters
    spec_keys = set()
    for s in specs:
        spec_keys.add(s.key)
        xa = _input_action(st, n, s, ins[xi], x, "input")
        ya = resolve(xa.group, s.out if s.out is not None else s.inp or (), y.type.shape, f"{n.op} output", n.loc)
        group = _unify(xa.group, ya.group, n)
        xa, ya = Action(group, xa.terms), Action(group, ya.terms)
        lt = {}
        for side, terms in (("input", _letter_terms(xa, xl)), ("output", _letter_terms(ya, yl))):
            for kind, lets, inner in terms:
                lt.setdefault(lets, {})[side] = (kind, inner)
        wterms = []
        for lets, sides in lt.items():
            if len(sides) == 2 and sides["input"] != sides["output"]:
                raise EquivarianceError(f"@equivariant {group} on {_name(n)}: input and output act differently on the shared index", n.loc)
            kind, inner = next(iter(sides.values()))
            in_x, in_y, in_w = (all(c in s for c in lets) for s in (xl, yl, wl))
            part = [s for s, inside in ((xl, in_x), (yl, in_y), (wl, in_w)) if not inside and any(c in s for c in lets)]
            if part:
                raise EquivarianceError(f"@equivariant {group} on {_name(n)}: the action on axes '{''.join(lets)}' is split "
                                        "across operands", n.loc)
            if in_x and in_y and len(sides) == 1:
                missing = "out" if "input" in sides else "inp"
                raise EquivarianceError(f"@equivariant {group} on {_name(n)}: axes '{''.join(lets)}' pass through the op, "
                                        f"but {missing}= does not declare the same action on them", n.loc)
            if "output" in sides and not in_x and not in_w:
                raise EquivarianceError(f"@equivariant {group} on {_name(n)}: output axes '{''.join(lets)}' do not depend on "
                                        "the input or the weight", n.loc)
            if in_w:
                wterms.append(Term(kind, tuple(wl.index(c) for c in lets), inner))
        _set(st, y, s.key, ya)
        _add_weight_gens(st, w, group, wterms, n)
    _pass_other_keys(st, n, ins, spec_keys, xi, (xl, yl))
    st.tied_ops.add(n)


def _input_action(st, n, s: Spec, have: dict, x: Value, what) -> Action:
    got = have.get(s.key)
    if isinstance(got, Broken):
        raise EquivarianceError(f"{got.node.op} breaks {s.group}-equivariance before the @equivariant {_name(n)}: {got.reason}",
                                got.node.loc)
    if s.inp is None:
        if got is None:
            raise EquivarianceError(f"@equivariant {s.group} on {_name(n)}: no action reaches its {what}; give it with inp=\"...\"", n.loc)
        return got
    xa = resolve(s.group if got is None else _unify(s.group, got.group, n), s.inp, x.type.shape, f"{n.op} {what}", n.loc)
    if got is not None and got.terms != xa.terms:
        raise EquivarianceError(f"@equivariant {s.group} on {_name(n)}: its {what} carries {_fmt_terms(got.terms)} "
                                f"but the annotation declares inp=\"{_fmt_terms(xa.terms)}\"", n.loc)
    return xa


def _unify(a: Group, b: Group, n) -> Group:
    if a.kind != b.kind or (a.n is not None and b.n is not None and a.n != b.n):
        raise EquivarianceError(f"@equivariant on {_name(n)}: group {a} meets {b} (different sizes of one factor; "
                                "name independent factors apart with name=\"...\")", n.loc)
    return Group(a.kind, a.n if a.n is not None else b.n)


def _add_weight_gens(st, w: Value, group: Group, terms, n: Node):
    if w in st.tied:
        return   # tied by an earlier run of the pass
    shape = [int(d) for d in w.type.shape]
    for t in terms:
        sizes = [shape[a] for a in t.axes]
        if t.kind == "perm":
            group = group.with_n(sizes[0] // t.inner, f"weight axis {t.axes[0]}", n.loc)
    if group.n is None or not terms:
        st.gens.setdefault(w, [])
        return
    perms = []
    for gen in group.generators():
        pieces = [(t.axes, term_perm(group, t, gen, [shape[a] for a in t.axes])) for t in terms]
        perms.append(tensor_perm(shape, pieces))
    st.gens.setdefault(w, []).extend(perms)


def _pass_other_keys(st, n, ins, done, xi, letters):
    """Factors the annotation does not mention flow through the op by the general contraction rule."""
    rest = {k: a for k, a in ins[xi].items() if k not in done}
    if rest:
        _propagate(st, n, [rest if i == xi else {} for i in range(len(n.inputs))], set(rest), False, only=set(rest))


def _tie_conv(st: _State, n: Node, specs, ins):
    x, w = n.inputs[0], n.inputs[1]
    b = n.inputs[2] if len(n.inputs) > 2 else None
    y = n.outputs[0]
    if w not in st.params and w not in st.tied:
        raise EquivarianceError(f"@equivariant on {_name(n)}: the conv weight must be a parameter to be tied", n.loc)
    nd = x.type.rank - 2
    ks = [int(d) for d in w.type.shape[2:]]
    a = n.attrs
    spatial = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * nd
    stride, pad, dil = spatial(a["stride"]), spatial(a["padding"]), spatial(a["dilation"])
    done = set()
    for s in specs:
        done.add(s.key)
        xa = _input_action(st, n, s, ins[0], x, "input")
        ya = resolve(xa.group, s.out if s.out is not None else s.inp or (), y.type.shape, f"{n.op} output", n.loc)
        group = _unify(xa.group, ya.group, n)
        wterms = []
        xs = {t.axes: t for t in xa.terms}
        ys = {t.axes: t for t in ya.terms}
        for axes in set(xs) | set(ys):
            tx, ty = xs.get(axes), ys.get(axes)
            if axes == (1,):
                if (tx or ty) and a["groups"] != 1:
                    raise EquivarianceError(f"@equivariant {group} on {_name(n)}: channel actions need groups=1", n.loc)
                if tx:
                    wterms.append(Term(tx.kind, (1,), tx.inner))
                if ty:
                    wterms.append(Term(ty.kind, (0,), ty.inner))
                continue
            if tx != ty:
                raise EquivarianceError(f"@equivariant {group} on {_name(n)}: input acts by {_fmt_terms([tx] if tx else [])} but the "
                                        f"output by {_fmt_terms([ty] if ty else [])} on axes {list(axes)}", n.loc)
            if axes == (0,):
                continue  # a permutation of the batch passes through
            if tx.kind != "grid" or any(ax < 2 for ax in axes):
                raise EquivarianceError(f"@equivariant {group} on {_name(n)}: {_fmt_terms([tx])} on a conv's spatial axes is not "
                                        "supported (a zero-padded conv does not commute with periodic shifts; rotations use grid(a, b))",
                                        n.loc)
            i, j = axes[0] - 2, axes[1] - 2
            _check_grid_geometry(n, group, x.type.shape, (i, j), ks, stride, pad, dil)
            wterms.append(Term("grid", axes))
        _set(st, y, s.key, Action(group, ya.terms))
        _add_weight_gens(st, w, group, wterms, n)
        if b is not None and b in st.params:
            bterms = [Term(t.kind, (0,), t.inner) for t in ya.terms if t.axes == (1,)]
            _add_weight_gens(st, b, group, bterms, n)
    _pass_other_keys(st, n, ins, done, 0, None)
    st.tied_ops.add(n)


def _check_grid_geometry(n, group, xshape, ij, ks, stride, pad, dil):
    i, j = ij
    h, w_ = _size(xshape[2 + i]), _size(xshape[2 + j])
    bad = None
    if ks[i] != ks[j]:
        bad = f"kernel {ks[i]}x{ks[j]} is not square"
    elif (stride[i], pad[i], dil[i]) != (stride[j], pad[j], dil[j]):
        bad = "stride/padding/dilation differ between the rotated axes"
    elif h is not None and w_ is not None and h != w_:
        bad = f"input {h}x{w_} is not square"
    elif h is not None and (h + 2 * pad[i] - dil[i] * (ks[i] - 1) - 1) % stride[i]:
        bad = f"stride {stride[i]} does not tile the {h}-pixel input symmetrically"
    if bad:
        raise EquivarianceError(f"@equivariant {group} on {_name(n)}: rotations need a centred conv: {bad}", n.loc)


# -- propagation through the other ops -------------------------------------------------------------------
_REDUCE = ("sum", "mean", "max", "min", "prod", "logsumexp", "var", "std")
_ELEMENTWISE_KINDS = ("elementwise",)


def _propagate(st: _State, n: Node, ins, keys, tie_params: bool, only=None):
    from ..ir import registry
    if not keys or n.op == "scan":
        return
    y = n.outputs[0] if n.outputs else None
    kind = registry.get(n.op).kind if n.op != "scan" else "control"
    for key in keys:
        present = [(i, d[key]) for i, d in enumerate(ins) if key in d]
        br = next((a for _, a in present if isinstance(a, Broken)), None)
        if br is not None:
            for v in n.outputs:
                _set(st, v, key, br)
            continue
        try:
            res = _rule(st, n, kind, key, ins, present, tie_params)
        except _Break as e:
            res = Broken(n, str(e))
        if res is None:
            continue
        if isinstance(res, Broken):
            for v in n.outputs:
                _set(st, v, key, res)
        else:
            _set(st, y, key, res)


class _Break(Exception):
    pass


def _aligned(action: Action, rank_in: int, rank_out: int) -> tuple:
    off = rank_out - rank_in
    return tuple(Term(t.kind, tuple(a + off for a in t.axes), t.inner) for t in action.terms)


def _rule(st, n: Node, kind, key, ins, present, tie_params):
    y = n.outputs[0]
    group = present[0][1].group
    if kind == "elementwise":
        rank = y.type.rank
        union: list = []
        for i, a in present:
            for t in _aligned(a, n.inputs[i].type.rank, rank):
                if t not in union:
                    union.append(t)
        for i, a in present:   # an operand of size 1 along a term's axes broadcasts: invariant there
            mine = _aligned(a, n.inputs[i].type.rank, rank)
            off = rank - n.inputs[i].type.rank
            for t in union:
                full = any(ax - off >= 0 and _size(n.inputs[i].type.shape[ax - off]) != 1 for ax in t.axes)
                if full and t not in mine:
                    raise _Break(f"its operands carry different actions ({_fmt_terms(union)} vs {_fmt_terms(mine)})")
        taken = [ax for t in union for ax in t.axes]
        if len(taken) != len(set(taken)):
            raise _Break(f"its operands carry different actions on the same axes ({_fmt_terms(union)})")
        terms = tuple(union)
        acted = {ax for t in terms for ax in t.axes}
        for i, v in enumerate(n.inputs):
            if v is None or key in ins[i]:
                continue
            off = rank - v.type.rank
            spans = [ax for ax in acted if ax - off >= 0 and _size(v.type.shape[ax - off]) != 1]
            if not spans:
                continue
            if v in st.tied and tie_params:
                continue   # an annotated operand that an earlier run tied
            if v in st.params:
                if tie_params:
                    tterms = []
                    for t in terms:
                        inside = [ax - off >= 0 and _size(v.type.shape[ax - off]) != 1 for ax in t.axes]
                        if any(inside) and not all(inside):
                            raise EquivarianceError(f"@equivariant {group} on {_name(n)}: parameter {st.params[v].name} "
                                                    f"covers only part of the axes {list(t.axes)} that move together", n.loc)
                        if all(inside):
                            tterms.append(Term(t.kind, tuple(ax - off for ax in t.axes), t.inner))
                    _add_weight_gens(st, v, group, tterms, n)
                    continue
                raise _Break(f"the free parameter {st.params[v].name} varies along acted axes {sorted(spans)}; "
                             "annotate it with @equivariant to tie it")
            return None   # another tensor without a known action: cannot tell
        return Action(group, terms)
    if n.op in _REDUCE or n.op in ("argmax", "argmin"):
        (_, a), = present
        axes = set(n.attrs["axis"])
        keep = n.attrs["keepdims"]
        out = []
        for t in a.terms:
            inter = axes & set(t.axes)
            if inter and inter != set(t.axes):
                raise _Break(f"it reduces axes {sorted(axes)} but {_fmt_terms([t])} moves axes {list(t.axes)} together")
            if inter:
                if n.op in ("argmax", "argmin"):
                    raise _Break(f"{n.op} over an acted axis returns positions, which the action moves")
                continue
            out.append(Term(t.kind, tuple(ax if keep else ax - sum(1 for r in axes if r < ax) for ax in t.axes), t.inner))
        return Action(group, tuple(out))
    if n.op == "cumsum":
        (_, a), = present
        if any(n.attrs["axis"] % y.type.rank in t.axes for t in a.terms):
            raise _Break(f"a running sum along axis {n.attrs['axis']} depends on the order that {group} changes")
        return a
    if n.op in ("softmax", "log_softmax"):
        (_, a), = present
        ax = n.attrs["axis"]
        for t in a.terms:
            if ax in t.axes and t.kind == "grid":
                raise _Break(f"softmax along axis {ax} alone does not commute with {_fmt_terms([t])}")
        return a
    if n.op in ("layernorm", "rmsnorm"):
        a = ins[0].get(key)
        if a is None:
            return None
        axes = set(n.attrs["axis"])
        for t in a.terms:
            if axes & set(t.axes) and not set(t.axes) <= axes:
                raise _Break(f"it normalizes axes {sorted(axes)} but {_fmt_terms([t])} moves axes {list(t.axes)} together")
        first = min(axes)
        inner = [t for t in a.terms if set(t.axes) <= axes]
        for v in n.inputs[1:]:
            if v is None or not inner:
                continue
            if v in st.params and tie_params:
                _add_weight_gens(st, v, group, [Term(t.kind, tuple(ax - first for ax in t.axes), t.inner) for t in inner], n)
            elif v in st.params:
                raise _Break(f"its affine parameter {st.params[v].name} varies along acted axes; annotate it with @equivariant")
            else:
                return None
        return a
    if n.op == "transpose":
        (_, a), = present
        perm = n.attrs["perm"] or list(range(y.type.rank))[::-1]
        where = {old: new for new, old in enumerate(perm)}
        return Action(group, tuple(Term(t.kind, tuple(where[ax] for ax in t.axes), t.inner) for t in a.terms))
    if n.op in ("expand_dims", "squeeze"):
        (_, a), = present
        x = n.inputs[0].type
        if n.op == "expand_dims":
            ax = n.attrs["axis"] % y.type.rank
            return Action(group, tuple(Term(t.kind, tuple(q + (q >= ax) for q in t.axes), t.inner) for t in a.terms))
        gone = [i for i in range(x.rank) if _size(x.shape[i]) == 1] if n.attrs["axis"] is None else \
            [q % x.rank for q in (n.attrs["axis"] if isinstance(n.attrs["axis"], (list, tuple)) else [n.attrs["axis"]])]
        return Action(group, tuple(Term(t.kind, tuple(q - sum(1 for r in gone if r < q) for q in t.axes), t.inner) for t in a.terms))
    if n.op == "concat":
        if len(present) != len(n.inputs):
            return None
        ax = n.attrs["axis"] % y.type.rank
        terms = {a.terms for _, a in present}
        if len(terms) != 1:
            raise _Break("its inputs carry different actions")
        (t,) = terms
        if any(ax in q.axes for q in t):
            return None
        return present[0][1]
    if n.op in ("matmul", "einsum"):
        return _contract(st, n, key, ins, group)
    if n.op.startswith("conv") and not n.op.startswith("conv_transpose"):
        (_, a), = [(i, q) for i, q in present if i == 0] or [(None, None)]
        if a is None:
            raise _Break("the action reaches its weight, not its input")
        ks = [int(d) for d in n.inputs[1].type.shape[2:]]
        for t in a.terms:
            if t.axes == (0,):
                continue
            if t.kind == "grid" and all(k == 1 for k in ks) and all(q >= 2 for q in t.axes):
                continue
            raise _Break(f"its free weight {_pname(st, n.inputs[1])} mixes axes {list(t.axes)} that {group} acts on; "
                         "annotate the layer with @equivariant to tie it")
        return a
    if n.op in ("max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d"):
        (_, a), = present
        for t in a.terms:
            if t.axes == (0,) or t.axes == (1,):
                continue
            if t.kind == "grid":
                continue
            raise _Break(f"pooling windows do not commute with {_fmt_terms([t])}")
        return a
    if n.op == "global_avg_pool":
        (_, a), = present
        return Action(group, tuple(t for t in a.terms if all(q < 2 for q in t.axes)))
    return None   # unknown op: the action stops here (the numerical checker still measures it)


def _pname(st, v):
    return st.params[v].name if v in st.params else "operand"


def _contract(st, n, key, ins, group):
    ops_letters, yl = _letters(n)
    lt: dict = {}
    for i, v in enumerate(n.inputs):
        a = ins[i].get(key)
        if a is None:
            continue
        for kind, lets, inner in _letter_terms(a, ops_letters[i]):
            prev = lt.get(lets)
            if prev is not None and prev != (kind, inner):
                raise _Break("its operands act differently on a shared index")
            lt[lets] = (kind, inner)
    acted = {c for lets in lt for c in lets}
    for i, v in enumerate(n.inputs):
        a = ins[i].get(key)
        mine = {lets for lets in (_letter_terms(a, ops_letters[i]) if a else [])}
        mine = {lets for _, lets, _ in mine}
        for lets in lt:
            has = [c in ops_letters[i] for c in lets]
            if any(has) and lets not in mine:
                if v in st.params:
                    raise _Break(f"its free weight {st.params[v].name} mixes axes that {group} acts on; annotate the "
                                 "layer with @equivariant to tie it")
                if a is None:
                    return None
                raise _Break("it contracts an acted index with a tensor that is not acted on there")
    out = []
    for lets, (kind, inner) in lt.items():
        inside = [c in yl for c in lets]
        if any(inside) and not all(inside):
            raise _Break(f"it keeps only part of an acted index group")
        if all(inside):
            out.append(Term(kind, tuple(yl.index(c) for c in lets), inner))
    del acted
    return Action(group, tuple(out))


# -- rewriting the tied parameters -----------------------------------------------------------------------
def _tie(st: _State):
    g = st.g
    new_nodes = []
    for p in list(g.params):
        gens = st.gens.get(p.value)
        if gens is None:
            continue
        shape = tuple(int(d) for d in p.value.type.shape)
        before = int(np.prod(shape)) if shape else 1
        if not gens:
            st.report.append({"param": p.name, "shape": list(shape), "before": before, "after": before})
            continue
        idx, k = orbits(shape, gens)
        st.report.append({"param": p.name, "shape": list(shape), "before": before, "after": k})
        if k == before:
            continue
        theta = Value(TensorType(p.value.type.dtype, (k,)))
        pos = g.params.index(p)
        g.params[pos] = Param(p.name, theta, _tied_init(p.init, shape), p.loc, p.annotations, p.state)
        const = Node("const", [], {"value": idx.tolist(), "dtype": "i64", "shape": list(shape)}, [], p.loc, p.name,
                     (Annotation(TIED, (p.name,)),))
        const.outputs = [Value(TensorType("i64", shape), const)]
        take = Node("take", [theta, const.outputs[0]], {"axis": 0}, [], p.loc, p.name, p.annotations)
        take.outputs = [Value(p.value.type, take)]
        new_nodes += [const, take]
        replace_uses(g, p.value, take.outputs[0])
    g.nodes = new_nodes + g.nodes


def _tied_init(init: Init, shape) -> Init:
    """The same distribution per entry: fan-based inits keep the untied weight's fans."""
    if init.fn in ("kaiming", "xavier"):
        fi, fo = fans(shape)
        kw = dict(init.kwargs)
        kw.setdefault("fan_in", fi)
        kw.setdefault("fan_out", fo)
        return Init(init.fn, init.args, tuple(sorted(kw.items())))
    if init.fn == "orthogonal":
        gain = init.args[0] if init.args else 1.0
        return Init("normal", (0.0, float(gain) / math.sqrt(max(fans(shape)[0], 1))))
    return init


def param_counts(graph: Graph) -> tuple[int, int]:
    """(before, after) tying: a tied parameter is read by `take(theta, const)` with an orbit-index constant,
    so the counts survive later passes (they are read from the graph, not from a side table)."""
    after = graph.param_count()
    params = {p.value for p in graph.params}
    seen = set()
    extra = 0
    for n in graph.walk():
        if n.op == "take" and n.inputs[0] in params and n.inputs[0] not in seen:
            idx = n.inputs[1].producer
            if idx is not None and idx.op == "const" and any(a.name == TIED for a in idx.annotations):
                seen.add(n.inputs[0])
                extra += int(np.prod([int(d) for d in n.outputs[0].type.shape])) - int(n.inputs[0].type.shape[0])
    return after + extra, after
