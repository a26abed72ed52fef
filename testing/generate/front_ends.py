"""The two front ends of one generator -- `programs()`, a hypothesis strategy (shrinks to small programs), and
`random_program(seed)` (`random.Random`, for scripts that need no hypothesis) -- and the per-op entry points
the coverage test uses (`generatable_ops`, `try_generate_op`)."""
from __future__ import annotations

from ...ir import registry
from .chooser import Chooser, DrawChooser, RandomChooser
from .config import PASS_ONLY_OPS, SKIP_KINDS
from .gen import Gen
from .program import Program
from .values import Ctx


def generate(ch: Chooser, **config) -> Program:
    return Gen(ch, **config).program()


def random_program(seed, **config) -> Program:
    return generate(RandomChooser(seed), **config)


def programs(**config):
    """A hypothesis strategy of `Program`s (shrinks toward few statements and simple ops)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        return generate(DrawChooser(draw), **config)
    return build()


def generatable_ops() -> list[str]:
    """The registry ops the differential tester must be able to generate."""
    return [n for n, o in registry.all_ops().items() if o.kind not in SKIP_KINDS and n not in PASS_ONLY_OPS]


def try_generate_op(op: str, seeds=range(40), accept=None) -> Program | None:
    """A program whose generation applied `op` and that `accept(program)` (when given) likes; None when no
    seed managed to."""
    for seed in seeds:
        g = Gen(RandomChooser(seed), max_stmts=3, features=False)
        model = Ctx("model", [], "  ", [])
        for rank in (2, 3, 4):
            model.pool.append(g.new_input(model, "f32", g.rand_shape(model, rank, declare=True)))
        if g.apply(model, op, tries=8):
            lines = list(g.inputs) + model.lines
            outs = [f"  output y = {model.pool[-1].name}"]
            body = "\n".join("  " + l if l.startswith("input ") else l for l in lines + outs)
            prog = Program(f"model fuzz() {{\n{body}\n}}\n", dict(g.dims), {}, 0, (op,))
            if accept is None or accept(prog):
                return prog
    return None
