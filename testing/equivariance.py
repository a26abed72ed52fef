"""The numerical equivariance checker behind `pnet check FILE --equivariance`.

For a model whose inputs and outputs carry declared actions (`@equivariant("S", x="perm(1)", y="perm(1)")` on
the model), it samples group elements g (one per factor) and random inputs x, runs the NumPy reference in
float64, and reports per output the max violation |f(g . x) - g . f(x)|. Inputs and outputs without a
declared action are taken to be invariant.
"""
from __future__ import annotations

import numpy as np

from ..errors import PnetError
from ..ir.graph import Graph
from ..passes.equivariant import model_actions, param_counts
from ..passes.symmetry import Action, Group, act, resolve


def _factor_actions(graph: Graph, arrays: dict[str, np.ndarray], declared: dict) -> dict:
    """{factor key: (group with its order, {tensor name: Action})} for concrete arrays."""
    out: dict = {}
    for name, facts in declared.items():
        if name not in arrays:
            continue
        for key, (group, terms) in facts.items():
            g0, acts = out.get(key, (group, {}))
            a = resolve(g0, terms, arrays[name].shape, f"'{name}'")
            if g0.n is not None and a.group.n is not None and g0.n != a.group.n:
                raise PnetError(f"@equivariant {group}: '{name}' gives the group order {a.group.n}, other tensors {g0.n}")
            g0 = a.group if a.group.n is not None else g0
            acts[name] = a
            out[key] = (g0, acts)
    for key, (g0, acts) in out.items():
        if g0.n is None:
            raise PnetError(f"@equivariant {g0}: no declared action fixes the group's order")
        out[key] = (g0, {k: Action(g0, a.terms) for k, a in acts.items()})
    return out


def violations(graph: Graph, params: dict | None = None, *, samples: int = 4, seed: int = 0,
               dims: dict | None = None) -> dict[str, float]:
    """Max |f(g.x) - g.f(x)| per output over `samples` random (g, x) pairs, in float64."""
    from ..backends import numpy_ref
    declared = model_actions(graph)
    if not declared:
        raise PnetError(f"model {graph.name} declares no symmetry: put @equivariant(\"GROUP\", INPUT=\"ACTION\", "
                        "OUTPUT=\"ACTION\") on the model (see docs/language.md, Equivariance)")
    rng = np.random.default_rng(seed)
    params = params if params is not None else numpy_ref.init_params(graph, seed)
    params = {k: np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else v for k, v in params.items()}
    worst = {n: 0.0 for n, _ in graph.outputs}
    for s in range(samples):
        x = numpy_ref.random_inputs(graph, seed * 1000 + s, dims)
        x = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in x.items()}
        y = numpy_ref.run(graph, x, params, float64=True, dims=dims)
        facts = _factor_actions(graph, {**x, **y}, declared)
        keys = sorted(facts)
        # the generators first (so a small group's non-identity elements are always tried), then random ones
        elems = {}
        for k in keys:
            gens = facts[k][0].generators()
            elems[k] = gens[s] if s < len(gens) else facts[k][0].random(rng)

        def move(name, arr):
            acts = [facts[k][1][name] for k in keys if name in facts[k][1]]
            els = [elems[k] for k in keys if name in facts[k][1]]
            return act(arr, acts, els) if acts else arr

        gx = {k: move(k, v) for k, v in x.items()}
        gy = numpy_ref.run(graph, gx, params, float64=True, dims=dims)
        for name, _ in graph.outputs:
            want = move(name, y[name])
            d = float(np.max(np.abs(gy[name].astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
            worst[name] = max(worst[name], d)
    return worst


def describe(graph: Graph) -> list[str]:
    lines = []
    for name, facts in model_actions(graph).items():
        for key, (group, terms) in facts.items():
            from ..passes.symmetry import _fmt_terms
            default = f"{group.kind}{group.n}" if group.kind in "CD" else group.kind
            label = f"{group} ({key})" if key != default else f"{group}"
            lines.append(f"{label} on {name}: {_fmt_terms(terms)}")
    return lines


def report(untied: Graph, tied: Graph, *, samples: int = 4, seed: int = 0, tol: float = 1e-6) -> dict:
    """Everything `pnet check --equivariance` prints: actions, parameter counts, violations tied and untied."""
    from ..backends import numpy_ref
    before, after = param_counts(tied)
    v_tied = violations(tied, samples=samples, seed=seed)
    v_untied = violations(untied, samples=samples, seed=seed)
    scale = {}
    y = numpy_ref.run(tied, numpy_ref.random_inputs(tied, seed), float64=True)
    for name, v in y.items():
        scale[name] = float(np.max(np.abs(v))) if v.size and v.dtype.kind == "f" else 1.0
    ok = all(v_tied[n] <= tol * max(1.0, scale.get(n, 1.0)) for n in v_tied)
    tied_params = []
    for r in getattr(tied, "equivariance", []) or []:
        if r["after"] != r["before"]:
            tied_params.append(r)
    return {"actions": describe(untied), "params_before": before, "params_after": after,
            "tied": tied_params, "violation": v_tied, "violation_untied": v_untied, "ok": ok, "tolerance": tol}


def format_report(rep: dict) -> str:
    out = ["equivariance:"]
    out += [f"  {a}" for a in rep["actions"]]
    out.append(f"  params {rep['params_before']:,} before tying, {rep['params_after']:,} after")
    for r in rep["tied"]:
        out.append(f"    {r['param']} {r['shape']}: {r['before']:,} -> {r['after']:,}")
    for n, v in rep["violation"].items():
        out.append(f"  max |f(g.x) - g.f(x)| {n}: {v:.3g} tied, {rep['violation_untied'][n]:.3g} untied (float64)")
    out.append("  equivariant: " + ("yes" if rep["ok"] else f"NO (violation above {rep['tolerance']:g})"))
    return "\n".join(out) + "\n"


def cli_check(untied: Graph, as_json: bool = False) -> int:
    """`pnet check FILE --equivariance`: exit 0 when the tied model is equivariant, 1 when not."""
    import json
    from ..passes.equivariant import equivariant
    tied = equivariant(untied)
    rep = report(untied, tied)
    if as_json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"model {tied.name}: ok")
        print(format_report(rep), end="")
    return 0 if rep["ok"] else 1
