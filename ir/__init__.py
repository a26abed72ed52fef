"""The IR: typed SSA graphs (graph.py) of registered ops (registry.py, ops/) with symbolic shapes (types.py).

Importing any module under `pnet.ir` imports the op families of `ir/ops/`, which register themselves."""
from . import ops  # noqa: F401
