"""Random well-typed pnet programs, for the differential tester (NNSmith / GenCoG style).

The op registry drives the generator: every op a program uses is proposed by a *sampler* (which tensors,
which attributes) and accepted only if the op's own type rule (`OpDef.infer`) accepts it, so output types
come from the registry, never from a second copy of the shape rules here. Ops whose constraints a generic
sampler cannot meet (convs, pools, sdpa, split, einsum, index and segment ops, topk, ...) have a per-op
sampler; all such knowledge lives in ONE table, `TABLE`, keyed by op name. An op missing from the table is
still fuzzed by the generic sampler of its kind (`GENERIC`): unary/binary elementwise with broadcasting,
reductions with axes/keepdims, movement ops with attributes sampled from their names and defaults
(`sample_attr`). `tests/test_properties.py::test_every_op_can_be_generated` fails when a registered op
(kind other than control/source) cannot be generated either way.

Programs are source text (so the parser, elaborator and formatter are exercised too) with defs, params,
compile-time `for`/`if`, `scan`, index notation, hyperparameters overridden like `--set`, and symbolic
dims bound at run time. Values stay finite (inputs of log/sqrt/rsqrt/reciprocal/pow/div are made safe in
the source, exp's input is bounded, large values are squashed with tanh). Discontinuous ops (floor, round,
sign, heaviside, comparisons, argmax, sort/topk indices, float->int casts) only see *exact* values -- ones
equal in the float32 and float64 references (inputs, params, constants and movement/selection of them) --
so both references agree and integer outputs must match exactly.

Two front ends share one generator: `programs()` is a hypothesis strategy (shrinks to small programs) and
`random_program(seed)` uses `random.Random` (for scripts that need no hypothesis).

The rooms, bottom up:
  config.py        the constants: names drawn (dims, models, inputs, file paths), limits, rates, OPEN_BUGS
  chooser.py       where the randomness comes from (random.Random or hypothesis)
  program.py       `Program`: a generated program and its .pnet text with the `#` header that says how to run it
  values.py        what generator and samplers pass around: Var, Arg, Call, Spec, Ctx, source-literal printers
  samplers/        the per-op samplers by op family (generic.py: by op kind), each family with its SPECS
  table.py         TABLE, assembled from the families' SPECS, and GENERIC, the sampler of each op kind
  stdlib_calls.py  standard-library calls a program may make, typed by elaborating a probe
  statements.py    straight-line statements (ops, stdlib calls, constants, CSE bait, index notation, ...)
  control.py       statements with a body (for, if, scan, def)
  gen.py           `Gen`: one program's dims, pools, inputs and params, applying an op, the whole program
  front_ends.py    programs(), random_program(), generatable_ops(), try_generate_op()
"""
from .config import HOSTILE_INPUTS, HOSTILE_SYMBOLS, OPEN_BUGS, PASS_ONLY_OPS
from .front_ends import generatable_ops, generate, programs, random_program, try_generate_op
from .program import Program
from .table import GENERIC, TABLE

__all__ = ["GENERIC", "HOSTILE_INPUTS", "HOSTILE_SYMBOLS", "OPEN_BUGS", "PASS_ONLY_OPS", "TABLE", "Program",
           "generatable_ops", "generate", "programs", "random_program", "try_generate_op"]
