"""Op definitions, one module per op family; importing a module registers its ops.

Importing this package imports every op family (in this order, which is the registry's order), so the
registry is complete once `pnet.ir` is imported (`ir/__init__.py` imports this package)."""
from . import elementwise, reduce, linalg, movement, nn, conv, index, attention, control  # noqa: F401
from . import attention_backward  # noqa: F401  (sdpa_grad: attention's backward as one op, flash kernels in Triton)
from . import quant  # noqa: F401  (quantize / dequantize / qmatmul / qconv / sub-byte packing)
from . import sparse  # noqa: F401  (nm_matmul / bsr_matmul sparse weight layouts, topk_mask)
from . import elementwise_grad  # noqa: F401  (gradient rules, OpDef.vjp: one *_grad module per family)
from . import movement_grad, index_grad  # noqa: F401  (movement: views, slices, pads; index: take, gather, segments)
from . import nn_grad, attention_grad  # noqa: F401  (softmax family, normalizations, sdpa)
from . import linalg_grad, conv_grad, sparse_grad, quant_grad  # noqa: F401  (contractions, convs, sparse, quantization)
from . import reduce_grad  # noqa: F401  (reductions, cumsum, sort / topk, pools, dynamic_scale, topk_mask)
from . import resample  # noqa: F401  (interpolate, grid_sample, 3-D pools, adaptive pools)
from . import control_grad  # noqa: F401  (scan: a recompute scan and a reverse scan)
from . import resample_grad  # noqa: F401  (interpolate / adaptive pools by their tap tables, 3-D pools, grid_sample)
from . import random, random_grad  # noqa: F401  (Philox sampling: rand_uniform / rand_normal / randint / gumbel / bernoulli / dropout)
from . import dense_linalg, dense_linalg_grad  # noqa: F401  (solve / inv / cholesky / triangular_solve / eigh / qr / slogdet / matrix_exp)
from . import special, special_grad  # noqa: F401  (atan/atan2/asin/acos, lgamma/digamma, erfinv, log1p/expm1, logaddexp, xlogy)
from . import fft, fft_grad  # noqa: F401  (c64: complex / real / imag / conj / angle, complex abs and arithmetic; fft / rfft / irfft / ifft, 2-D forms)
