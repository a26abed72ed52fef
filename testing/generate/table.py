"""THE table: everything the generator knows per op (`TABLE`: op name -> `Spec`), assembled from the sampler
families' `SPECS`, and the generic sampler of each op kind (`GENERIC`) for the ops TABLE has no sampler for.
An op missing from TABLE is still generated, by the sampler of its kind with default `Spec()` knowledge."""
from __future__ import annotations

from .samplers import (attention, conv_pool, elementwise, index, linalg, movement, norms, quant,
                       reductions)
from .samplers.generic import generic_unary, generic_unknown
from .values import Spec

FAMILIES = (elementwise, reductions, linalg, conv_pool, movement, norms, index, quant, attention)
from .samplers import resample as _resample  # noqa: E402  (issue 21: interpolate, grid_sample, 3-D / adaptive pools)
FAMILIES += (_resample,)
from .samplers import random as _random  # noqa: E402  (issue 21: Philox sampling ops)
FAMILIES += (_random,)
from .samplers import dense_linalg as _dense_linalg  # noqa: E402  (issue 21: solve, inv, cholesky, eigh, qr, ...)
FAMILIES += (_dense_linalg,)
from .samplers import special as _special  # noqa: E402  (issue 21: atan/atan2/asin/acos, lgamma/digamma, erfinv, log1p/expm1, logaddexp, xlogy)
FAMILIES += (_special,)
from .samplers import fft as _fft  # noqa: E402  (issue 21: complex values and FFTs, drawn in real-to-real chains)
FAMILIES += (_fft,)


def _assemble() -> dict[str, Spec]:
    table: dict[str, Spec] = {}
    for family in FAMILIES:
        twice = set(table) & set(family.SPECS)
        assert not twice, f"{family.__name__} specs ops another family already has: {sorted(twice)}"
        table.update(family.SPECS)
    return table


TABLE: dict[str, Spec] = _assemble()

GENERIC = {
    "elementwise": generic_unknown, "reduce": generic_unary, "norm": generic_unary,
    "movement": generic_unknown, "contraction": generic_unknown, "index": generic_unknown,
    "attention": generic_unknown,
}
