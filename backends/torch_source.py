"""IR graph -> a plain, readable Python file defining an nn.Module that imports only torch (and math).

    src = to_source(graph)         # write it anywhere; it runs without pnet installed

The generated class has the same state_dict keys as `torch_backend.to_module` (the pnet parameter names),
straight-line forward code with one statement per node (named variables, a comment with the node's scope
and source line), symbolic dims read from the input shapes (`B = x.shape[0]`), and every `scan` as a
for-loop over a helper method holding the body.

How each op is written: a one-line template from TEMPLATES (the one table of per-op source here) when there
is one; otherwise the op's torch lowering from the registry is copied into the file as a helper function
(`_op_pad(torch, x, pads=..., ...)`) together with the module-level helpers and constants it uses. An op
whose lowering cannot be copied (it needs numpy, or an unprintable value) is an error naming the op.
"""
from __future__ import annotations

import ast
import builtins
import dis
import inspect
import keyword
import math
import os
import re
import textwrap
import types as pytypes

import sympy

from ..errors import PnetError
from ..ir.graph import STATE_OUTPUT_PREFIX, Graph, Node, Value
from ..ir.types import dims_equal, is_float
from .numpy_ref import DEFAULT_DIM, DEFAULT_DIMS, symbols
from .pysrc import comment_text, dim_var, docstring_text, identifier
from .torch_backend import TORCH_DTYPES, dim_src, lowering

_TORCH_NAME = {v: f"torch.{str(v).split('.')[1]}" for v in TORCH_DTYPES.values()}


def dtype_src(name: str) -> str:
    return _TORCH_NAME[TORCH_DTYPES[name]]


# ---- rendering attribute values as Python source -----------------------------------------------------------
def value_src(v) -> str:
    """An attribute value as a Python literal (dims as expressions over the dim variables)."""
    if isinstance(v, sympy.Basic):
        return dim_src(v)
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return repr(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return f"float('{v}')"
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(value_src(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(value_src(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {value_src(x)}" for k, x in v.items()) + "}"
    if hasattr(v, "item") and hasattr(v, "dtype"):  # a numpy scalar
        return value_src(v.item())
    raise PnetError(f"cannot write the attribute value {v!r} as Python")


def _attr_srcs(attrs: dict) -> dict[str, str]:
    out = {}
    for k, v in attrs.items():
        out[k] = dtype_src(v) if k == "dtype" and isinstance(v, str) and v in TORCH_DTYPES else value_src(v)
    return out


# ---- the one table of per-op source templates -------------------------------------------------------------
# Each entry: a format string over the input names ({0}, {1}, ...; {xs} = all of them) and the rendered
# attributes ({axis}, ...), or a function (args, attrs, raw_attrs, node) -> expression. Ops missing here
# are written by copying their registry lowering (see _Helpers).
def _fn(name):
    return f"torch.{name}({{0}})"


def _reduce(fn):
    def render(a, at, raw, node):
        if not raw["axis"]:
            return a[0]
        if fn in ("amax", "amin") and not all(d.is_Integer for d in node.inputs[0].type.shape):
            return None  # a dim may be bound to 0: the registry lowering gives the empty result torch refuses
        return f"torch.{fn}({a[0]}, dim={tuple(raw['axis'])!r}, keepdim={raw['keepdims']!r})"
    return render


def _argmax(a, at, raw, node):
    if not all(d.is_Integer for d in node.inputs[0].type.shape):
        return None  # a dim may be bound to 0: the registry lowering gives the empty result torch refuses
    return f"torch.argmax({a[0]}, dim={at['axis']}, keepdim={at['keepdims']})"


def _var(fn):
    def render(a, at, raw, node):
        if not raw["axis"]:  # the spread of single values
            return f"torch.zeros_like({a[0]})"
        return f"torch.{fn}({a[0]}, dim={tuple(raw['axis'])!r}, keepdim={raw['keepdims']!r}, correction={at['correction']})"
    return render


def _div(a, at, raw, node):
    if all(not is_float(v.type.dtype) for v in node.inputs):
        return None   # the registry's lowering: x // 0 = 0 (torch.div raises)
    return f"{a[0]} / {a[1]}"


def _mod(a, at, raw, node):
    if all(not is_float(v.type.dtype) for v in node.inputs):
        return None   # the registry's lowering: x % 0 = 0 (torch.remainder raises)
    return f"torch.remainder({a[0]}, {a[1]})"


def _const(a, at, raw, node):
    if isinstance(raw["value"], (list, tuple)):
        return f"torch.tensor({at['value']}, dtype={at['dtype']}, device={at['_device']}).expand({at['shape']})"
    return f"torch.full({value_src(tuple(raw['shape']))}, {at['value']}, dtype={at['dtype']}, device={at['_device']})"


def _slice(a, at, raw, node):
    parts = []
    for start, stop, step in raw["slices"]:
        s = f"{value_src(start)}:{value_src(stop)}"
        parts.append(s if step in (1, None) else f"{s}:{value_src(step)}")
    return f"{a[0]}[{', '.join(parts)}]" if parts else a[0]


def _pad(a, at, raw, node):
    if raw["mode"] != "constant":  # torch pads these modes for some ranks only: gather (see _pad_gather)
        return f"_pad_gather({a[0]}, {at['pads']}, {at['mode']})"
    flat = [v for lo, hi in reversed(raw["pads"]) for v in (lo, hi)]
    return f"F.pad({a[0]}, {value_src(flat)}, value={at['value']})"


# Small torch-only helpers that templates call; each is written into a generated file that uses it.
SOURCE_HELPERS = {
    "_pad_gather": '''def _pad_gather(x, pads, mode):
    """reflect / replicate / circular padding of the trailing axes of any rank, as index gathers."""
    for i, (before, after) in enumerate(pads):
        axis, n = x.ndim - len(pads) + i, x.shape[x.ndim - len(pads) + i]
        idx = torch.arange(-before, n + after, device=x.device)
        if mode == "replicate":
            idx = idx.clamp(0, n - 1)
        elif mode == "circular":
            idx = idx.remainder(n)
        else:  # reflect, numpy's rule (the edge is not repeated), folding as often as needed
            period = max(2 * (n - 1), 1)
            idx = idx.remainder(period)
            idx = torch.where(idx >= n, period - idx, idx)
        x = x.index_select(axis, idx)
    return x''',
    # an output that is a parameter or a view of one (`output y = w.T`) still requires grad under no_grad
    "_outputs": '''def _outputs(outs):
    """The outputs; under torch.no_grad(), any that is a parameter or a view of one is detached."""
    if torch.is_grad_enabled():
        return outs
    return {k: v.detach() if v.requires_grad else v for k, v in outs.items()}''',
}


def _sdpa(a, at, raw, node):
    q, k, v = (x.type.shape[:-2] for x in node.inputs[:3])
    same = len(q) == len(k) == len(v) and all(dims_equal(x, y) and dims_equal(x, z) for x, y, z in zip(q, k, v))
    if node.inputs[3] is not None or not same:
        return None  # masks and broadcast batches: the registry's lowering handles the corner cases
    return f"F.scaled_dot_product_attention({a[0]}, {a[1]}, {a[2]}, is_causal={at['causal']}, scale={at['scale']})"


def _prod(a, at, raw, node):
    out = a[0]  # torch.prod takes one dim: innermost axis first, so the others keep their numbers
    for axis in sorted(raw["axis"], reverse=True):
        out = f"torch.prod({out}, dim={axis}, keepdim={raw['keepdims']!r})"
    return out


def _embedding(a, at, raw, node):
    return f"F.embedding({a[1]}.long(), {a[0]})" if node.inputs[0].type.rank == 2 else None


def _static_shape(text: str):
    """A template for inputs of fixed shape only: a symbolic dim may be bound to 0 at run time, which torch's
    conv and pooling kernels refuse; the registry's lowering handles empty inputs."""
    def template(a, at, raw, node):
        return text.format(*a, **at) if all(d.is_Integer for d in node.inputs[0].type.shape) else None
    return template


def _conv(nd, transpose=False):
    name = f"conv_transpose{nd}d" if transpose else f"conv{nd}d"
    extra = ", output_padding={output_padding}" if transpose else ""
    text = (f"F.{name}({{0}}, {{1}}, {{2}}, stride={{stride}}, padding={{padding}}{extra}, "
            "dilation={dilation}, groups={groups})")
    return _static_shape(text)


TEMPLATES: dict[str, object] = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": _div,
    "pow": "torch.pow({0}, {1})", "maximum": "torch.maximum({0}, {1})", "minimum": "torch.minimum({0}, {1})",
    "mod": _mod,
    "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}", "eq": "{0} == {1}", "ne": "{0} != {1}",
    "logical_and": "{0} & {1}", "logical_or": "{0} | {1}", "logical_not": "~{0}",
    "where": "torch.where({0}, {1}, {2})",
    "neg": "-{0}", "square": "{0} * {0}", "scale": "{0} * {factor}", "heaviside": "({0} > 0).to({0}.dtype)",
    **{op: _fn(op) for op in ("abs", "exp", "log", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tanh",
                              "erf", "floor", "round", "sigmoid", "relu")},
    "leaky_relu": "F.leaky_relu({0}, {alpha})", "elu": "F.elu({0}, {alpha})",
    "silu": "F.silu({0})", "softplus": "F.softplus({0}, {beta}, {threshold})",
    "hardswish": "F.hardswish({0})", "hardsigmoid": "F.hardsigmoid({0})",
    "clamp": "torch.clamp({0}, {min}, {max})", "cast": "{0}.to({dtype})",
    "const": _const, "arange": "torch.arange({n}, dtype={dtype}, device={_device})",
    "sum": _reduce("sum"), "mean": _reduce("mean"), "max": _reduce("amax"), "min": _reduce("amin"),
    "logsumexp": _reduce("logsumexp"), "var": _var("var"), "std": _var("std"), "prod": _prod,
    "argmax": _argmax,
    "argmin": "torch.argmin({0}, dim={axis}, keepdim={keepdims})", "cumsum": "torch.cumsum({0}, dim={axis})",
    "matmul": "{0} @ {1}", "einsum": "torch.einsum({equation}, {xs})",
    "reshape": "{0}.reshape({shape})", "transpose": "{0}.permute({perm})", "expand_dims": "{0}.unsqueeze({axis})",
    "squeeze": lambda a, at, raw, node: f"{a[0]}.squeeze({tuple(raw['axis'])!r})" if raw["axis"] else a[0],
    "concat": "torch.cat([{xs}], dim={axis})", "split": "torch.split({0}, {sizes}, dim={axis})",
    "slice": _slice, "pad": _pad, "broadcast_to": "{0}.expand({shape})",
    "repeat": "torch.repeat_interleave({0}, {repeats}, dim={axis})", "tile": "{0}.repeat({reps})",
    "flip": "torch.flip({0}, {axis})", "roll": "torch.roll({0}, {shift}, dims={axis})",
    "conv1d": _conv(1), "conv2d": _conv(2), "conv3d": _conv(3), "conv_transpose2d": _conv(2, transpose=True),
    "softmax": "F.softmax({0}, dim={axis})", "log_softmax": "F.log_softmax({0}, dim={axis})",
    "layernorm": lambda a, at, raw, node: f"F.layer_norm({a[0]}, {a[0]}.shape[{raw['axis'][0]}:], {a[1]}, {a[2]}, {at['eps']})",
    "rmsnorm": lambda a, at, raw, node: f"F.rms_norm({a[0]}, {a[0]}.shape[{raw['axis'][0]}:], {a[1]}, {at['eps']})",
    "groupnorm": "torch.group_norm({0}, {groups}, {1}, {2}, {eps})",
    "max_pool1d": _static_shape("F.max_pool1d({0}, {kernel}, {stride}, {padding})"),
    "avg_pool1d": _static_shape("F.avg_pool1d({0}, {kernel}, {stride}, {padding})"),
    "max_pool2d": _static_shape("F.max_pool2d({0}, {kernel}, {stride}, {padding})"),
    "avg_pool2d": _static_shape("F.avg_pool2d({0}, {kernel}, {stride}, {padding})"),
    "global_avg_pool": lambda a, at, raw, node: (f"{a[0]}.mean(dim={tuple(range(2, node.inputs[0].type.rank))!r})"
                                                 if node.inputs[0].type.rank > 2 else a[0]),
    "sort": "torch.sort({0}, dim={axis}, descending={descending}, stable=True)",
    "embedding": _embedding, "gather": "torch.gather({0}, {axis}, {1}.long())",
    "scatter_add": "torch.scatter_add({0}, {axis}, {1}.long(), {2})",
    "one_hot": "({0}.unsqueeze(-1) == torch.arange({depth}, device={0}.device)).to({dtype})",
    "sdpa": _sdpa,
}
# batchnorm is deliberately absent: the torch backend overrides its registry lowering (see
# torch_backend.LOWERING_OVERRIDES) and the copied helper keeps the source module identical to it.

# Ops whose output dtype torch always gets right (so no `.to(dtype)` is ever needed after them).
_DTYPE_EXACT = {"cast", "const", "arange", "one_hot", "argmax", "argmin", "lt", "le", "gt", "ge", "eq", "ne",
                "logical_and", "logical_or", "logical_not"}
# Inputs that are indices or conditions, not data: they do not decide the output dtype.
_NON_DATA_INPUTS = {"where": (0,), "take": (1,), "embedding": (1,), "gather": (1,), "scatter_add": (1,),
                    "segment_sum": (1,), "segment_mean": (1,), "segment_max": (1,)}
_WIDENING = {"sum", "prod", "cumsum"}  # torch widens integer results of these to int64


def needs_cast(node: Node, i: int) -> bool:
    """Whether torch's result dtype for output i might differ from the declared one (then `.to` it)."""
    out = node.outputs[i].type.dtype
    if node.op in _DTYPE_EXACT or (node.op in ("sort", "topk") and i == 1):
        return False
    skip = _NON_DATA_INPUTS.get(node.op, ())
    data = {v.type.dtype for j, v in enumerate(node.inputs) if v is not None and j not in skip}
    if node.op in _WIDENING and not is_float(out):
        return True
    return data != {out}


# ---- copying registry lowerings into the file ------------------------------------------------------------
_LITERALS = (int, float, str, bool, type(None), tuple, list, dict)


def _is_literal(v) -> bool:
    try:
        return isinstance(v, _LITERALS) and ast.literal_eval(repr(v)) == v
    except (ValueError, SyntaxError, TypeError, RecursionError):
        return False


_AST_CACHE: dict = {}


def _module_ast(fn):
    path = inspect.getsourcefile(fn)
    mtime = os.stat(path).st_mtime_ns
    if _AST_CACHE.get(path, (None,))[0] != mtime:
        with open(path, encoding="utf-8") as f:
            _AST_CACHE[path] = (mtime, ast.parse(f.read()))
    return _AST_CACHE[path][1]


def _names_used(code: pytypes.CodeType) -> set[str]:
    """Global names the code reads (co_names alone also holds attribute names such as the `nn` of `T.nn`)."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for c in code.co_consts:
        if isinstance(c, pytypes.CodeType):
            names |= _names_used(c)
    return names


def _function_node(fn) -> ast.FunctionDef:
    """The def (or lambda, turned into a def) of `fn` in its module's source, named fn.__name__. Matched by
    line first; if the file changed since it was imported, by name (defs) or by compiled code (lambdas)."""
    code = fn.__code__
    tree = _module_ast(fn)
    if code.co_name != "<lambda>":
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name]
        at_line = [n for n in defs if n.lineno == code.co_firstlineno
                   or any(d.lineno == code.co_firstlineno for d in n.decorator_list)]
        found = at_line or (defs if len(defs) == 1 else [])
        if not found:
            raise PnetError(f"cannot find the source of {fn.__qualname__}")
        n = found[0]
        return ast.fix_missing_locations(ast.FunctionDef(n.name, n.args, n.body, [], n.returns, None, type_params=[]))
    # a lambda: several can share a line; the one whose compiled code matches is ours
    lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
    for candidates in ([n for n in lambdas if n.lineno == code.co_firstlineno], lambdas):
        for n in candidates:
            if _same_code(n, code):
                body = [ast.Return(n.body)]
                return ast.fix_missing_locations(ast.FunctionDef("<lambda>", n.args, body, [], None, None, type_params=[]))
    raise PnetError(f"cannot find the source of a lambda at {code.co_filename}:{code.co_firstlineno}")


def _same_code(node: ast.Lambda, code) -> bool:
    compiled = compile(ast.Expression(node), "<lambda>", "eval").co_consts
    cand = next((c for c in compiled if isinstance(c, pytypes.CodeType)), None)
    return (cand is not None and cand.co_code == code.co_code and cand.co_names == code.co_names
            and cand.co_varnames == code.co_varnames and repr(cand.co_consts) == repr(code.co_consts))


def _renamed(node: ast.FunctionDef, name: str) -> ast.FunctionDef:
    node.name = name
    return node


class _Helpers:
    """The registry functions copied into the generated file, with what they need (helpers, constants)."""

    def __init__(self):
        self.defs: dict[str, str] = {}        # name -> source
        self.objects: dict[str, object] = {}  # name -> the object it was copied from (to detect clashes)
        self.imports: set[str] = set()

    def op_helper(self, op: str) -> str:
        fn = lowering(op)
        # a top-level function keeps its own name (other copied helpers may call it by that name); lambdas
        # and closures (one `lower` per op family) get one per op
        top = isinstance(fn, pytypes.FunctionType) and fn.__code__.co_name != "<lambda>" and not fn.__code__.co_freevars \
            and fn.__globals__.get(fn.__name__) is fn
        name = fn.__name__ if top else f"_op_{op}"
        if name not in self.defs:
            self._copy(fn, name)
        return name

    def _copy(self, fn, name: str):
        if name in self.objects:
            if self.objects[name] is not fn:
                raise PnetError(f"two registry helpers are both called {name}")
            return
        if not isinstance(fn, pytypes.FunctionType):
            raise PnetError(f"{fn!r} is not a Python function")
        self.objects[name] = fn
        node = _function_node(fn)
        node.name = name if fn.__code__.co_freevars == () else "_inner"
        src = ast.unparse(node)
        if fn.__code__.co_freevars:  # a closure: rebuild it with a factory taking the captured values
            literals, nested = self._closure(fn)
            inner = [ast.unparse(_renamed(_function_node(f), var)) for var, f in nested.items()] + [src]
            body = textwrap.indent("\n".join(inner), "    ")
            args = ", ".join(value_src(v) if not isinstance(v, str) else repr(v) for v in literals.values())
            src = (f"def _make{name}({', '.join(literals)}):\n{body}\n    return _inner\n\n\n"
                   f"{name} = _make{name}({args})")
            for f in nested.values():
                self._dependencies(f)
        self.defs[name] = src
        self._dependencies(fn)

    @staticmethod
    def _closure(fn) -> tuple[dict, dict]:
        """What a closure captures: literal values, and sibling functions of the same factory (followed)."""
        literals, nested, todo = {}, {}, [fn]
        while todo:
            f = todo.pop()
            for var, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
                v = cell.cell_contents
                if isinstance(v, pytypes.FunctionType) and v is not fn:
                    if var not in nested:
                        nested[var] = v
                        todo.append(v)
                elif v is not fn and not _is_literal(v):
                    raise PnetError(f"{fn.__qualname__} captures '{var}', which cannot be written as source")
                elif v is not fn:
                    literals[var] = v
        return literals, nested

    def _dependencies(self, fn):
        g = fn.__globals__
        for n in sorted(_names_used(fn.__code__)):
            if n not in g or n in ("T",):
                continue  # an attribute name, a builtin, or the torch module argument
            v = g[n]
            if isinstance(v, pytypes.ModuleType):
                if v.__name__ in ("math", "torch"):
                    self.imports.add(v.__name__) if v.__name__ == "math" else None
                    continue
                raise PnetError(f"{fn.__qualname__} uses module '{v.__name__}' (the generated file imports only torch)")
            if isinstance(v, pytypes.FunctionType):
                self._copy(v, n)
            elif _is_literal(v):
                self.objects[n] = v
                self.defs[n] = f"{n} = {v!r}"
            else:
                raise PnetError(f"{fn.__qualname__} uses '{n}' ({type(v).__name__}), which cannot be written as source")


# ---- names ----------------------------------------------------------------------------------------------
_BUILTINS = set(dir(builtins))
_RESERVED = {"self", "torch", "nn", "F", "math", "_param", "_add_param"} | set(SOURCE_HELPERS)


class _Names:
    def __init__(self, taken=()):
        self.used = set(_RESERVED) | set(taken)

    def fresh(self, hint: str) -> str:
        base = identifier(hint)
        if base in _BUILTINS:  # never shadow max(), sum(), ...
            base += "_"
        name, k = base, 1
        while name in self.used or keyword.iskeyword(name):
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


def _class_name(graph: Graph) -> str:
    name = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^0-9a-zA-Z]+", graph.name) if p) or "Model"
    return name if name[0].isalpha() else "Model" + name


def _where(node: Node) -> str:
    """The node's scope and FILE:LINE, raw user text: only ever written through pysrc.comment_text/docstring_text."""
    where = []
    if node.scope:
        where.append(node.scope)
    if node.loc is not None:
        where.append(f"{node.loc.file.rsplit('/', 1)[-1]}:{node.loc.line}")
    return "  ".join(where)


def _loc(node: Node) -> str:
    where = _where(node)
    return "  # " + comment_text(where) if where else ""


def _promoted_args(node: Node, args: list[str]) -> list[str]:
    """Float operands of mixed dtypes (an f64 input, f32 params) cast to the node's promoted float dtype first, as
    torch_backend._promoting does: torch's conv and norm kernels want one dtype."""
    floats = [v for v in node.inputs if v is not None and is_float(v.type.dtype)]
    out = node.outputs[0].type.dtype if node.outputs else None
    if len({v.type.dtype for v in floats}) < 2 or out is None or not is_float(out):
        return args
    return [f"{a}.to({dtype_src(out)})" if v is not None and is_float(v.type.dtype) and v.type.dtype != out else a
            for v, a in zip(node.inputs, args)]


# ---- the generator --------------------------------------------------------------------------------------
class _Generator:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.helpers = _Helpers()
        self.methods: list[str] = []
        self.n_scans = 0
        self.uses_F = False
        self.untemplated: set[str] = set()
        self.symbols = symbols(graph)
        self.dim_vars = [dim_var(s) for s in self.symbols]  # the variables holding them (pysrc.dim_var)
        # a value the model outputs is named after its output (first name wins)
        self.preferred = {}
        for n, v in reversed(graph.outputs):
            self.preferred[v] = n

    def statement(self, node: Node, names: dict, fresh: _Names) -> list[str]:
        args = _promoted_args(node, [names[v] if v is not None else "None" for v in node.inputs])
        raw = dict(node.attrs)
        at = _attr_srcs(raw)
        ctx = {**at, "_device": self.dev}  # templates that create tensors put them on the inputs' device
        expr = None
        tpl = TEMPLATES.get(node.op)
        if isinstance(tpl, str):
            expr = tpl.format(*args, xs=", ".join(args), **ctx)
        elif tpl is not None:
            expr = tpl(args, ctx, raw, node)
        if expr is None:  # no template: call the copied registry lowering
            self.untemplated.add(node.op)
            helper = self.helpers.op_helper(node.op)
            kw = ", ".join(f"{k}={v}" for k, v in at.items())
            expr = f"{helper}(torch, {', '.join(args + ([kw] if kw else []))})"
            if not node.inputs and registry_kind(node.op) == "source":
                expr += f".to({self.dev})"
        self.uses_F |= "F." in expr
        outs = []
        for v in node.outputs:
            outs.append(fresh.fresh(self.preferred.get(v, node.op)))
            names[v] = outs[-1]
        casts = [needs_cast(node, i) for i in range(len(node.outputs))]
        lines = [f"{', '.join(outs)}{',' if len(outs) == 1 and len(node.outputs) > 1 else ''} = {expr}{_loc(node)}"]
        if len(outs) == 1 and casts[0]:
            lines[0] = f"{outs[0]} = ({expr}).to({dtype_src(node.outputs[0].type.dtype)}){_loc(node)}"
        else:
            for o, c, v in zip(outs, casts, node.outputs):
                if c and len(outs) > 1:
                    lines.append(f"{o} = {o}.to({dtype_src(v.type.dtype)})")
        return lines

    def block(self, graph: Graph, names: dict, fresh: _Names) -> list[str]:
        lines = []
        for node in graph.nodes:
            if node.op == "scan":
                lines += self.scan(node, names, fresh)
            else:
                lines += self.statement(node, names, fresh)
        return lines

    def scan(self, node: Node, names: dict, fresh: _Names) -> list[str]:
        """The loop in the caller; the body becomes a method `_scanN(carries..., slices..., captured...)`."""
        idx = self.n_scans
        self.n_scans += 1
        a = node.attrs
        k, s = a["n_carries"], a["n_seqs"]
        body = node.body
        # the body method
        bnames: dict = {}
        bfresh = _Names(self.dim_vars + [self.dev])
        # carries and slices keep their pnet names; a captured value keeps the caller's name for it
        hints = [n for n, _ in body.inputs[:k + s]] + [names[v] for v in node.inputs[k + s:]]
        params = [bfresh.fresh(h) for h in hints]
        for (_, v), p in zip(body.inputs, params):
            bnames[v] = p
        blines = self.block(body, bnames, bfresh)
        # dims the body's code mentions: attributes, and the shapes of nested scans' empty stacks
        used = {s for n in body.walk()
                for s in _attr_symbols([n.attrs] + [v.type.shape for v in n.outputs if n.op == "scan"])}
        uses_device = any(re.search(rf"\b{self.dev}\b", ln) for ln in blines)
        extra = ([self.dev] if uses_device else []) + sorted(dim_var(s) for s in used & set(self.symbols))
        outs = [bnames[v] for _, v in body.outputs]
        method = [f"def _scan{idx}(self, {', '.join(params + extra)}):",
                  f'    """Scan body ({docstring_text(_where(node)) or "?"}): (carries, slices, captured) -> (new carries, yields)."""']
        method += ["    " + ln for ln in blines]
        method.append(f"    return {', '.join(outs)}{',' if len(outs) == 1 else ''}")
        self.methods.append("\n".join(method))
        # the loop
        args = [names[v] for v in node.inputs]
        carries = [fresh.fresh(n) for n, _ in body.inputs[:k]]
        ys = [fresh.fresh(f"ys{idx}") for _ in body.outputs[k:]]
        steps = [fresh.fresh(f"y{idx}") for _ in body.outputs[k:]]
        tv = fresh.fresh("t")
        seq_args = [f"{args[k + j]}.select({ax}, {tv})" for j, ax in enumerate(a["axes"])]
        where = comment_text(_where(node))
        lines = [f"# scan over axis {a['axes'][0]} of {args[k] if s else '?'} (length {value_src(a['length'])})"
                 + (f", {where}" if where else "")]
        lines += [f"{c} = {x}" for c, x in zip(carries, args[:k])]
        lines += [f"{y} = []" for y in ys]
        lhs = ", ".join(carries + steps) + ("," if len(carries + steps) == 1 else "")
        call = ", ".join(seq_args[:0] + carries + seq_args + args[k + s:] + extra)
        lines.append(f"for {tv} in range({value_src(a['length'])}):")
        lines.append(f"    {lhs} = self._scan{idx}({call})")
        lines += [f"    {y}.append({st})" for y, st in zip(ys, steps)]
        for v, c in zip(node.outputs[:k], carries):
            names[v] = c
        for j, (v, y) in enumerate(zip(node.outputs[k:], ys)):
            out = fresh.fresh(f"scan{idx}_y{j}")
            shape = value_src(tuple(v.type.shape))
            lines.append(f"{out} = torch.stack({y}, {a['out_axis']}) if {y} else "
                         f"torch.zeros({shape}, dtype={dtype_src(v.type.dtype)}, device={self.dev})")
            names[v] = out
        return lines

    def generate(self) -> str:
        g = self.graph
        cls = _class_name(g)
        fresh = _Names(self.dim_vars)
        names: dict[Value, str] = {}
        inputs = []
        for n, v in g.inputs:
            names[v] = fresh.fresh(n)
            inputs.append(names[v])
        self.dev = fresh.fresh("device")  # where created tensors (constants, aranges) go: the inputs' device
        init, fetch = [], []
        for p in g.params:
            names[p.value] = fresh.fresh(p.name.replace(".", "_"))
            shape = value_src(tuple(int(d) for d in p.value.type.shape))
            if p.state:   # a buffer: in state_dict, not in parameters()
                init.append(f"_add_param(self, {p.name!r}, {shape}, {dtype_src(p.value.type.dtype)}, state=True)")
            else:
                grad = "" if is_float(p.value.type.dtype) else ", requires_grad=False"
                init.append(f"_add_param(self, {p.name!r}, {shape}, {dtype_src(p.value.type.dtype)}{grad})")
            fetch.append(f"{names[p.value]} = _param(self, {p.name!r})")
        # dims: read from the first input that has each one as a whole dim; the rest get pnet's defaults
        dims = []
        for s in self.symbols:
            src = next((f"{names[v]}.shape[{ax}]" for _, v in g.inputs for ax, d in enumerate(v.type.shape)
                        if d.is_Symbol and d.name == s), None)
            default = g.dims.get(s, DEFAULT_DIMS.get(s, DEFAULT_DIM))
            dims.append(f"{dim_var(s)} = {src}" if src else f"{dim_var(s)} = {default}  # not fixed by an input shape: pnet's default")
        device = f"{inputs[0]}.device" if inputs else (
            "next(self.parameters()).device" if g.params else "torch.device('cpu')")
        body = self.block(g, names, fresh)
        outs = _outputs_src(g, names)

        lines = [f'"""{docstring_text(g.name)}: a torch module generated by pnet (needs only torch).',
                 "",
                 "Parameters carry the pnet names (the state_dict keys) and start at zero: load a state_dict,",
                 "e.g. one saved from pnet's torch backend, before use. forward returns a dict of outputs.",
                 '"""',
                 "import torch"]
        if "math" in self.helpers.imports:
            lines.insert(lines.index("import torch"), "import math")
        lines.append("from torch import nn")
        if self.uses_F or any("F." in d for d in self.helpers.defs.values()):
            lines.append("import torch.nn.functional as F")
        lines += ["", "", _RUNTIME]
        used = "\n".join(body) + "\n".join(self.methods) + outs
        for name, src in SOURCE_HELPERS.items():
            if f"{name}(" in used:
                lines += ["", "", src]
        for src in self.helpers.defs.values():
            lines += ["", "", src]
        lines += ["", "", f"class {cls}(nn.Module):",
                  f"    input_names = {tuple(n for n, _ in g.inputs)!r}",
                  f"    output_names = {tuple(n for n, _ in g.outputs)!r}",
                  "",
                  "    def __init__(self):",
                  "        super().__init__()"]
        lines += ["        " + ln for ln in init]
        lines += ["", f"    def forward(self{''.join(', ' + i for i in inputs)}):"]
        lines += ["        " + ln for ln in dims + [f"{self.dev} = {device}"] + fetch + body]
        updates = [(n[len(STATE_OUTPUT_PREFIX):], names[v]) for n, v in g.outputs if n.startswith(STATE_OUTPUT_PREFIX)]
        if updates:   # a training-mode graph: write each state's next value into its buffer, as torch's BatchNorm
            lines.append("        if self.training:")
            lines.append("            with torch.no_grad():")
            lines += [f"                _param(self, {name!r}).copy_({var})" for name, var in updates]
        lines.append(f"        return {outs}")
        for m in self.methods:
            lines += [""] + ["    " + ln if ln else "" for ln in m.split("\n")]
        lines += ["", "", f"Model = {cls}", ""]
        return "\n".join(lines)


def _outputs_src(g: Graph, names: dict) -> str:
    """The forward's return value: the outputs by name, through `_outputs` where a parameter can reach one."""
    outs = "{" + ", ".join(f"{n!r}: {names[v]}" for n, v in g.outputs) + "}"
    return f"_outputs({outs})" if g.params else outs


def registry_kind(op: str) -> str:
    from ..ir import registry
    return registry.get(op).kind


def _attr_symbols(v) -> set[str]:
    if isinstance(v, sympy.Basic):
        return {s.name for s in v.free_symbols}
    if isinstance(v, dict):
        return set().union(*(_attr_symbols(x) for x in v.values())) if v else set()
    if isinstance(v, (list, tuple)):
        return set().union(*(_attr_symbols(x) for x in v)) if v else set()
    return set()


_RUNTIME = '''def _add_param(module, name, shape, dtype, requires_grad=True, state=False):
    """Register parameter `name` ("blocks.0.linear.w") under nested containers, so state_dict keys keep the dots;
    a `state` tensor (running statistics, frozen weights) is a buffer: in state_dict, not in parameters()."""
    *scopes, leaf = name.split(".")
    for s in scopes:
        if s not in module._modules:
            module._modules[s] = nn.Module()
        module = module._modules[s]
    if state:
        module._buffers[leaf] = torch.zeros(shape, dtype=dtype)
    else:
        module._parameters[leaf] = nn.Parameter(torch.zeros(shape, dtype=dtype), requires_grad=requires_grad)


def _param(module, name):
    *scopes, leaf = name.split(".")
    for s in scopes:
        module = module._modules[s]
    return module._parameters[leaf] if leaf in module._parameters else module._buffers[leaf]'''


def to_source(graph: Graph) -> str:
    """Python source for an nn.Module equivalent to `torch_backend.to_module(graph)` (f32, parameters at zero)."""
    return _Generator(graph).generate()


def untemplated_ops(graph: Graph) -> set[str]:
    """The ops of `graph` written by copying their registry lowering rather than from a template."""
    gen = _Generator(graph)
    gen.generate()
    return gen.untemplated
