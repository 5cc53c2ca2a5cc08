"""CUDA kernels (numba ``@cuda.jit``), under one name for the CUDA engines (:mod:`fastfa.cuda_engine`,
:mod:`fastfa.cuda_layers`; the latter takes the convolutions from :mod:`~fastfa.kernels.cuda_conv`).

The kernels live in modules by concern, each the twin of a CPU kernel module:

- :mod:`~fastfa.kernels.cuda_base` (of :mod:`~fastfa.kernels.base`): :func:`available`,
  :func:`launch_1d`, the block sizes :data:`TILE` and :data:`THREADS`, device ``min`` and ``max``;
- :mod:`~fastfa.kernels.cuda_elementwise` (of :mod:`~fastfa.kernels.elementwise`): bias and
  activation, derivative, output error and loss, signs, column sums, the row gather;
- :mod:`~fastfa.kernels.cuda_products` (of :mod:`~fastfa.kernels.products`): the tiled
  :func:`gemm`, ``C <- alpha op(A) op(B) + beta C``;
- :mod:`~fastfa.kernels.cuda_optimisers` (of :mod:`~fastfa.kernels.optimisers`): SGD with
  momentum (heavy ball, Nesterov) and Adam, with weight decay;
- :mod:`~fastfa.kernels.cuda_feedback` (of :mod:`~fastfa.kernels.feedback`): sign-concordant
  refresh, Kolen-Pollack's shift, the weight mirror's noise;
- :mod:`~fastfa.kernels.cuda_fused`: every batch of a chunk in one cooperative launch;
- :mod:`~fastfa.kernels.cuda_conv` (of :mod:`~fastfa.kernels.conv` and
  :mod:`~fastfa.kernels.pooling`): convolution and pooling.

These are the only modules of fastfa that import numba's CUDA target. They keep the
conventions of :mod:`fastfa.kernels.cpu` (row vectors, ``a = h W + b``, feedback in forward
orientation, the output error carrying the batch's ``1/m``), so a device step computes what a
CPU step computes, up to float32 rounding. This module gives every name of the dense parts
(and ``numba.cuda`` as ``cuda``), so ``fastfa.kernels.cuda.X`` works for all of them.

Set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported to run them on the CPU simulator
(slow: tiny shapes only); :func:`available` says whether a GPU or the simulator is there.
"""

from __future__ import annotations

from numba import cuda  # noqa: F401

from fastfa.kernels.cuda_base import (  # noqa: F401 (the parts, under their old names)
    THREADS,
    TILE,
    TILE_ROW,
    _greater,
    _lesser,
    available,
    launch_1d,
)
from fastfa.kernels.cuda_dropout import derivative_dropped_kernel, dropout_kernel  # noqa: F401
from fastfa.kernels.cuda_elementwise import (  # noqa: F401
    LOG_CLIP,
    _activate,
    _derivative,
    _output_row,
    _sign,
    accumulate_kernel,
    bias_activation_kernel,
    column_sum_kernel,
    derivative_kernel,
    gather_rows_kernel,
    output_error_kernel,
    sign_kernel,
)
from fastfa.kernels.cuda_feedback import (  # noqa: F401
    _counter_uniform,
    _mirror_noise,
    _sign_feedback,
    mirror_noise_kernel,
    shift_kernel,
    sign_feedback_kernel,
)
from fastfa.kernels.cuda_fused import (  # noqa: F401
    SPLIT_DEPTH,
    SPLIT_TILES,
    _mirror_phases,
    _output_error,
    _split_count,
    _thread_in_grid,
    _tile_origin,
    _tiles,
    fused_chunk_kernel,
    launch_cooperative,
    split_count,
    tile_product,
)
from fastfa.kernels.cuda_optimisers import (  # noqa: F401
    _adam,
    _adam_rate,
    _sgd,
    adam_kernel,
    adam_rate,
    manhattan_kernel,
    sgd_kernel,
)
from fastfa.kernels.cuda_products import gemm, gemm_kernel  # noqa: F401
