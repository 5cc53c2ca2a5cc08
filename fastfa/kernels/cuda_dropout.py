"""Dropout as CUDA kernels (the twin of :mod:`fastfa.kernels.dropout`): the same masks, drawn from
the CPU engine's counter-based generator with the same unit numbering, so both engines drop the
same units at every update.
"""

from __future__ import annotations

from numba import cuda

from fastfa.kernels.cuda_elementwise import _derivative
from fastfa.kernels.cuda_feedback import _counter_uniform
from fastfa.kernels.dropout import DROPOUT_STREAM


@cuda.jit(device=True, inline=True)
def _kept(seed, step, index, keep):
    return _counter_uniform(seed ^ DROPOUT_STREAM, step, index) < keep


@cuda.jit
def dropout_kernel(h, keep, seed, step, base):
    """``h[i, j] <- h[i, j] / keep`` for kept units, 0 for dropped ones (units numbered from
    ``base``, as :func:`fastfa.kernels.dropout.drop_units`), one thread per entry."""
    k = cuda.grid(1)
    rows, cols = h.shape
    if k < rows * cols:
        r, j = k // cols, k % cols
        h[r, j] = h[r, j] * (1.0 / keep) if _kept(seed, step, base + k, keep) else 0.0


@cuda.jit
def derivative_dropped_kernel(delta, h, act, keep, seed, step, base):
    """``delta <- delta f'(a) mask / keep`` with ``f'`` from the undropped ``h keep``
    (:func:`fastfa.kernels.dropout.derive_dropped`), one thread per entry."""
    k = cuda.grid(1)
    rows, cols = delta.shape
    if k < rows * cols:
        r, j = k // cols, k % cols
        if _kept(seed, step, base + k, keep):
            delta[r, j] = delta[r, j] * _derivative(h[r, j] * keep, act) * (1.0 / keep)
        else:
            delta[r, j] = 0.0
