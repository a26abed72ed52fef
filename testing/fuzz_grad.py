"""The differential tester's `grad` property (issue 20): a generated program, differentiated by the autodiff pass,
agrees with torch.autograd and with the Triton backend.

For a program (`compile_program`) whose reference runs: its float outputs are seeded with random cotangents and
`grad_graph(graph, cotangents=those outputs, wrt=float inputs + trainable float params)` builds one graph computing
the outputs and every gradient. Then
  1. the reference runs that graph in float64 (its gradients must be finite and not huge, else the program is
     discarded for this property, as the forward checks discard non-finite references);
  2. torch.autograd in float64 on torch_backend.to_module of the ORIGINAL graph, sum(y * cotangent).backward(),
     gives the gradients of the same inputs and parameters: they must match the reference's with
     assert_outputs_close(got, ref64, ref64, "f64");
  3. the Triton backend (fused plan; under TRITON_INTERPRET=1 without a GPU) runs the SAME grad graph in float32:
     every output (the forward's and the gradients) within the normal tolerance rule of the float32 / float64
     reference pair.
(2) and (3) run when the backends checked (`pnet fuzz --backends`) include torch and triton.
Kinks: a gradient is discontinuous where relu, abs, max/min ties, clamp bounds, ... meet their kink exactly, and
the generator feeds such ops exact values (so that the forward results of backends agree exactly); there a
float64 rounding difference, or a float32 one under fusion, flips a gradient between two legitimate one-sided
values. So a disagreement fails the property only when it persists after re-running every side with the float
inputs and parameters shifted by a small random offset (x + 1e-3 (|x| + rms(x)) u, u uniform in [-1, 1],
seeded), which moves values off the kinks; a wrong rule disagrees at generic points too. Empty tensors (a dim
bound to 0): torch's backward of a norm over an empty group is NaN (0/0) where the gradient, a sum over nothing,
is 0, so there torch's NaN gradients are not compared.
Not differentiated, and counted (`pnet fuzz` prints how many programs were, and the commonest reasons not):
programs without a float output or a float input / parameter, programs that fail at run time or whose inputs
hold special values (NaN / inf: gradients there follow no common convention), and programs grad_graph refuses
with a GradError (an op without a gradient on the path, a path blocked by a non-float value, scan).
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .fuzz_core import Discard, PropertyFailed, Reference, check_ir, usable_float_output
from .generate import Program
from .tolerance import assert_outputs_close, rmse

SHIFT = 1e-3
# torch's float64 backward of these multiplies by a float32 constant (hardsigmoid: 1/6 rounded, a relative error of
# 3e-8, as tests/test_autodiff.py notes): compared at that precision
TORCH_F32_CONSTANT = {"hardsigmoid"}
# digamma: torch's float64 polygamma(1) truncates its series (relative error up to 3e-10; pnet's trigamma is within
# 1e-14): compared at the same precision
TORCH_F32_CONSTANT |= {"digamma"}
DONE = "differentiated"


def check_grad(prog: Program, graph, ref: Reference, backends=("numpy", "torch", "triton")) -> str | None:
    """The `grad` property on one program (torch / Triton checked when in `backends`). Returns None when the
    program was differentiated and checked, else why it was not (a short reason: counted, not failed)."""
    from ..errors import PnetError
    from ..ir.types import is_float
    from ..passes.autodiff import GradError, grad_graph
    from .gradcheck import default_wrt
    if ref.error is not None:
        return "fails at run time"
    if prog.specials:
        return "special input values"
    outs = [name for name, v in graph.outputs if is_float(v.type.dtype)]
    wrt = default_wrt(graph)
    if not outs or not wrt:
        return "no float output" if not outs else "nothing to differentiate"
    try:
        gg = grad_graph(graph, cotangents=outs, wrt=wrt)
    except GradError as e:
        return _reason(e.message)
    except Exception as e:  # noqa: BLE001 - an internal error of a rule (a wrong shape) or of the pass
        where = f" ({e.loc})" if isinstance(e, PnetError) and e.loc else ""
        raise PropertyFailed("grad", f"grad_graph: {type(e).__name__}: {str(e)[:300]}{where}") from None
    check_ir(gg, "gradient graph")
    rng = np.random.default_rng([prog.seed, 20])
    cots = {f"cotangent.{k}": rng.standard_normal(np.shape(ref.ref64[k])) for k in outs}
    grads = {f"grad.{n}": n for n in wrt}
    try:
        base = _Run(graph, gg, ref.inputs, ref.params, cots, grads)
    except Discard:
        return "gradient not finite (or huge)"
    if "torch" in backends:
        _check(base, prog.seed, "torch", _compare_torch)
    if "triton" in backends:   # (the caller names only backends that can run here)
        _check(base, prog.seed, "triton", _compare_triton)
    return None


def _reason(message: str) -> str:
    """A GradError's message cut to its kind ('sign has no gradient', 'no gradient reaches a value ...')."""
    m = re.match(r"(\w+ has no gradient|no gradient reaches)", message)
    if m and m.group(1) == "no gradient reaches":
        op = re.search(r"goes through (\w+)", message)
        return f"blocked by {op.group(1)}" if op else "blocked path"
    return m.group(1) if m else message.split(";")[0][:60]


class _Run:
    """The grad graph's reference runs (float64 and float32) on one set of inputs, parameters and cotangents."""

    def __init__(self, graph, gg, inputs: dict, params: dict, cots: dict, grads: dict):
        from ..backends import numpy_ref
        self.graph, self.gg, self.inputs, self.params, self.cots, self.grads = graph, gg, inputs, params, cots, grads
        self.empty = any(np.size(a) == 0 for a in (*inputs.values(), *params.values()))   # a dim bound to 0
        feed32 = inputs | {k: v.astype(np.float32) for k, v in cots.items()}
        try:
            self.ref64 = numpy_ref.run(gg, inputs | cots, params, float64=True)
            self.ref32 = numpy_ref.run(gg, feed32, params)
        except Exception as e:  # noqa: BLE001
            raise PropertyFailed("grad", f"the reference cannot run the gradient graph: {type(e).__name__}: "
                                 f"{str(e)[:300]}") from None
        for k in grads:
            try:
                usable_float_output(k, self.ref32[k], self.ref64[k], False)
            except Discard as d:
                raise Discard(f"gradient {d}") from None
        self.feed32 = {k: v.astype(self.ref32[k[len("cotangent."):]].dtype) for k, v in cots.items()}

    def shifted(self, seed: int) -> "_Run":
        """The same runs with every float input and parameter moved off the kinks (module docstring)."""
        rng = np.random.default_rng([seed, 21])

        def shift(arrays: dict) -> dict:
            out = {}
            for k, a in arrays.items():
                a = np.asarray(a)
                if a.dtype.kind == "f" and a.size:
                    a64 = a.astype(np.float64)
                    scale = np.abs(a64) + (float(np.sqrt(np.mean(a64 ** 2))) or 1.0)
                    a = (a64 + SHIFT * scale * rng.uniform(-1, 1, a.shape)).astype(a.dtype)
                out[k] = a
            return out
        return _Run(self.graph, self.gg, shift(self.inputs), shift(self.params), self.cots, self.grads)


def _check(base: _Run, seed: int, what: str, compare) -> None:
    """compare(run) on the program's own values; a disagreement fails only if it persists off the kinks."""
    try:
        compare(base)
        return
    except PropertyFailed:
        raise
    except AssertionError as e:
        first = e
    try:
        off = base.shifted(seed)
    except Discard:
        off = None   # moved into an overflow: the first disagreement stands
    try:
        if off is not None:
            compare(off)
            return
    except PropertyFailed:
        raise
    except AssertionError as e:
        raise PropertyFailed("grad", f"{what} disagrees with the reference's gradients, also off the kinks: {e}") \
            from None
    raise PropertyFailed("grad", f"{what} disagrees with the reference's gradients: {first}")


def _compare_torch(run: _Run) -> None:
    """torch.autograd (float64) on the original graph vs the reference's float64 run of the grad graph."""
    from .gradcheck import torch_gradients
    try:
        got = torch_gradients(run.graph, run.inputs, run.params, wrt=list(run.grads.values()),
                              cotangents={k[len("cotangent."):]: c for k, c in run.cots.items()})
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed("grad", f"torch autograd: {type(e).__name__}: {str(e)[:300]}") from None
    want = {k: got[n] for k, n in run.grads.items()}
    mine = {k: run.ref64[k] for k in run.grads}
    if run.empty:   # torch's backward of a norm over an empty group is NaN (0/0), where the sum over nothing is 0
        for k, v in want.items():
            torch_nan = np.isnan(v) & np.isfinite(mine[k])
            v[torch_nan] = mine[k][torch_nan]
    if any(n.op in TORCH_F32_CONSTANT for n in run.graph.walk()):
        for k, v in mine.items():
            bound = 1e-7 * max(1.0, float(np.max(np.abs(v), initial=0.0)))
            if rmse(want[k], v) > bound:
                raise AssertionError(f"{k}: RMSE {rmse(want[k], v):.3g} vs float64 reference exceeds {bound:.3g}")
    else:
        assert_outputs_close(want, mine, mine, "f64")


def _compare_triton(run: _Run) -> None:
    """The Triton backend's fused plan of the grad graph (float32) vs the reference's float32 / float64 pair."""
    from ..backends import triton as triton_backend
    from ..backends.triton import runtime
    runtime.ensure_mode()
    try:
        got = triton_backend.compile(run.gg).run(run.inputs | run.feed32, run.params)
    except Exception as e:  # noqa: BLE001
        raise PropertyFailed("grad", f"Triton, the gradient graph: {type(e).__name__}: {str(e)[:300]}") from None
    assert_outputs_close(got, run.ref32, run.ref64)


def summary(counts: Counter) -> str:
    """`pnet fuzz`'s line on the property: how many programs were differentiated, the commonest reasons not."""
    skipped = sum(v for k, v in counts.items() if k != DONE)
    why = ", ".join(f"{k} {v}" for k, v in counts.most_common() if k != DONE)
    return f"differentiated: {counts[DONE]}  not differentiated: {skipped}" + (f" ({why[:300]})" if why else "")
