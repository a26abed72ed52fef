"""The per-op samplers, grouped by op family: each family module holds its samplers (functions
`(g, ctx, op) -> Call | None`: which tensors, which attributes) and `SPECS`, what the generator knows about each of
its ops (`values.Spec`). `generic.py` holds the samplers by op kind that every op without its own sampler gets;
`../table.py` assembles the families' `SPECS` into the one `TABLE`.

A sampler gets `g`, the program's generator (`gen.Gen`: its chooser `g.ch`, pools, new inputs and params), and
proposes a call; the op's own type rule (`OpDef.infer`) accepts or rejects it."""
