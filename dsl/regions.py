"""The places elaboration writes into: a Region is the graph being built (the model, or a scan body, which
captures the outer values it reads as extra inputs); a Frame is one scope's variables (the model body, a def
call, a scan body); ReturnSignal carries a def's `return` values out of its body."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PnetError
from ..ir.graph import Graph, Value
from . import ast as A


class ReturnSignal(Exception):
    """Raised by `return` and caught by the def call (or reported, in a model or a scan body)."""
    def __init__(self, values):
        self.values = values


# ---- regions: the graph being built (the model, or a scan body) ------------------------------------
class Region:
    def __init__(self, graph: Graph, parent: "Region | None" = None):
        self.graph = graph
        self.parent = parent
        self.own: set[Value] = set()
        self.captures: dict[Value, Value] = {}  # outer value -> body input

    def lift(self, v: Value) -> Value:
        """The value as seen from this region (capturing it into scan bodies on the way)."""
        if v in self.own:
            return v
        if self.parent is None:
            raise PnetError("internal: value escapes its scan body")  # pragma: no cover
        outer = self.parent.lift(v)
        if outer not in self.captures:
            inner = Value(outer.type)
            self.captures[outer] = inner
            self.graph.inputs.append((f"cap{len(self.captures)}", inner))
            self.own.add(inner)
        return self.captures[outer]


@dataclass
class Frame:
    vars: dict
    module: A.Module
    scope: tuple
    region: Region
    annotations: tuple = ()
    yields: list | None = None  # set inside a scan body
    is_model: bool = False

