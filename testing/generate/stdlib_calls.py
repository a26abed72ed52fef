"""Calls of standard-library blocks (`import nn.core` ... `linear(x, 5)`) a program may make, and their result
types, found by elaborating each call once on a probe model (the stdlib's own shape patterns decide what is valid)."""
from __future__ import annotations

from ...errors import PnetError
from ...ir.types import TensorType
from .values import type_src


def _last_even(v):
    return v.type.rank >= 2 and v.type.shape[-1].is_Integer and int(v.type.shape[-1]) % 2 == 0


def _seq(v):
    return v.type.rank == 3


# (module, call with {x} the tensor and {n} {h} {k} small ints, number of results, which tensors it takes)
STDLIB_CALLS = [
    ("nn.core", "linear({x}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "linear({x}, {n}, bias=false)", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "mlp({x}, {h}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "mlp({x}, {h}, {n}, depth=3, act=gelu)", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "gelu_mlp({x}, {h})", 1, lambda v: v.type.rank >= 1),
    ("nn.core", "swiglu_mlp({x}, {h}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.norm", "layer_norm({x})", 1, lambda v: v.type.rank >= 1 and v.type.shape[-1].is_Integer and int(v.type.shape[-1]) >= 2),
    ("nn.norm", "rms_norm({x})", 1, lambda v: v.type.rank >= 1),
    ("nn.rnn", "rnn({x}, {h})", 2, _seq),
    ("nn.rnn", "gru({x}, {h})", 2, _seq),
    ("nn.rnn", "lstm({x}, {h})", 3, _seq),
    ("nn.attention", "mha({x}, heads={k})", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.attention", "mha({x}, heads={k}, causal=true, rotary=true)", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.attention", "rope({x})", 1, _last_even),
    ("nn.transformer", "gpt_block({x}, heads={k}, ffn={h})", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.transformer", "encoder_block({x}, heads={k}, ffn={h})", 1, lambda v: _seq(v) and _last_even(v)),
    ("nn.kan", "kan_layer({x}, {n})", 1, lambda v: v.type.rank >= 1),
    ("nn.ssm", "causal_conv1d({x})", 1, _seq),
    ("nn.vision", "mixer_block({x}, {h}, {h})", 1, _seq),
]
_STDLIB_TYPES: dict = {}


def stdlib_result_types(module, call, n_out, t: TensorType, dims) -> list | None:
    """The result types of `call` on an input of type t, by elaborating it once (cached); None when the stdlib
    block rejects it with a PnetError (its shape patterns or asserts say no). Any other exception is a front-end
    crash: the call is still generated (typed like its input) so that the program's 'compile' property reports it."""
    key = (module, call, str(t), dims)
    if key not in _STDLIB_TYPES:
        names = [f"r{i}" for i in range(n_out)]
        src = (f"import {module}\nmodel probe() {{\n  input x: {type_src(t)}\n  {', '.join(names)} = {call}\n"
               + "".join(f"  output {r}\n" for r in names) + "}\n")
        try:
            g = _probe(src, dict(dims))
            _STDLIB_TYPES[key] = [v.type for _, v in g.outputs]
        except PnetError:
            _STDLIB_TYPES[key] = None
        except Exception:  # noqa: BLE001
            _STDLIB_TYPES[key] = [t] * n_out
    return _STDLIB_TYPES[key]


_PROBE_LOADER = None


def _probe(src: str, overrides: dict):
    """Elaborate a probe program, keeping the parsed stdlib modules between probes (load_source re-parses)."""
    global _PROBE_LOADER
    from ...dsl.elaborate import Elaborator
    from ...dsl.loader import Loader
    from ...dsl.parser import parse
    if _PROBE_LOADER is None:
        _PROBE_LOADER = Loader()
    module = parse(src, "<probe>")
    for imp in module.imports:
        _PROBE_LOADER.imported(module, imp)
    el = Elaborator(_PROBE_LOADER)
    el._main_source = ("<probe>", src)
    return el.elaborate_model(module, None, overrides).graph
