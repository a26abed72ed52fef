"""Quantization schemes and their options: the scheme names (and aliases), the activation modes and observers,
and the Options a layer is quantized with (from the pass's arguments or a `@quantize(...)` annotation)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import PnetError, UsageError

SCHEMES = ("w8a8", "w8", "w4", "binary", "ternary")
ALIASES = {"int8": "w8a8", "i8": "w8a8", "int4": "w4", "i4": "w4", "a8w8": "w8a8", "int8_weight": "w8",
           "none": "none", "off": "none", "float": "none"}
OBSERVERS = ("minmax", "percentile", "mse")
CLIP_RATIOS = np.linspace(0.5, 1.0, 26)
ACTS = ("auto", "static", "dynamic")
CONVS = ("conv1d", "conv2d", "conv3d")
STORAGE_BITS = {"w4": 4, "ternary": 2, "binary": 1}   # packed storage (pack_bits); the others are int8
ANNOTATION_KEYS = ("scheme", "group_size", "act", "observer", "percentile")


def scheme_name(s, loc=None) -> str:
    """A scheme name (aliases resolved); unknown names are a one-line error."""
    if s is False or s is None:
        return "none"
    key = str(s).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCHEMES and key != "none":
        raise UsageError(f"unknown quantization scheme '{s}' (schemes: {', '.join(SCHEMES)}; "
                         f"aliases: {', '.join(k for k in ALIASES if ALIASES[k] != 'none')}; 'none' keeps a layer float)",
                         loc) if loc is None else PnetError(
            f"@quantize: unknown scheme '{s}' (schemes: {', '.join(SCHEMES)}, or 'none')", loc)
    return key


@dataclass
class Options:
    scheme: str
    group_size: int = 128
    act: str = "auto"
    observer: str = "minmax"
    percentile: float = 99.99
    weight_observer: str = "mse"


def _options(scheme, group_size, act, observer, percentile, loc=None) -> Options:
    name = scheme_name(scheme, loc)
    err = (lambda m: PnetError(m, loc)) if loc is not None else UsageError
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise err(f"quantize: group size must be a positive integer, got {group_size!r}")
    if act not in ACTS:
        raise err(f"quantize: act must be one of {', '.join(ACTS)}, got {act!r}")
    if observer not in OBSERVERS:
        raise err(f"quantize: observer must be one of {', '.join(OBSERVERS)}, got {observer!r}")
    if not isinstance(percentile, (int, float)) or isinstance(percentile, bool) or not 0 < percentile <= 100:
        raise err(f"quantize: percentile must be in (0, 100], got {percentile!r}")
    return Options(name, int(group_size), act, observer, float(percentile))


def _act_mode(opts: Options, calib) -> str:
    if opts.act == "auto":
        return "static" if calib is not None else "dynamic"
    return opts.act

