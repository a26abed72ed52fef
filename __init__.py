"""pnet: a compiler for neural networks written as text."""
__version__ = "0.1.0"

from .api import Model, load, loads  # noqa: E402,F401  (the Python API: pnet.load("model.pnet"))
