"""Dropout of hidden units (Srivastava et al. 2014), with masks from the counter-based generator.

In training, unit ``j`` of row ``i`` of hidden layer ``l`` is kept when
``counter_uniform(seed ^ DROPOUT_STREAM, step, base_l + i n_l + j) < keep_l`` (``keep_l = 1 - p_l``,
``base_l = m (n_1 + ... + n_{l-1})`` for a batch of ``m`` rows), and the layer passes on
``h~ = h m / keep`` ("inverted" dropout: evaluation uses the network as it is). The mask depends
only on the run's seed, the update number and the unit's place in the batch, so a resumed run
draws the same masks, and the CUDA engine, whose kernels use the same generator, too.

The dropped activations ``h~`` are what the activation buffer holds after the forward pass: the
next layer's product and its weight gradient read them unchanged. The signal then needs
``f'(a_l)`` of the *undropped* ``h = h~ keep`` of the kept units (a dropped unit's signal is zero
whatever its ``h``): ``delta_l = s * f'(a_l) * m / keep`` (:func:`derive_dropped`).

Both passes split a layer's rows over threads (:func:`drop_rows`, :func:`derive_dropped_rows`):
each unit's draw depends on its number only, so the result is the same for any thread count.
"""

import numpy as np
from numba import prange

from fastfa.kernels.base import PASS_GRAIN, flush_subnormal, kernel, parallel_kernel, parts_for, split
from fastfa.kernels.codes import LOGISTIC, RELU, TANH
from fastfa.kernels.feedback import counter_uniform

#: Keeps dropout's draws apart from every other stream of a run
DROPOUT_STREAM = 0x64726F706F7574


@kernel
def is_kept(seed, step, index, keep):
    """Whether the unit at ``index`` of update ``step`` is kept (probability ``keep``)."""
    return counter_uniform(seed ^ DROPOUT_STREAM, step, index) < keep


@kernel
def drop_units(h, keep, seed, step, base):
    """In place: ``h[i, j] <- h[i, j] / keep`` for kept units, 0 for dropped ones (``h`` is
    ``m x n``, its units numbered from ``base``)."""
    m, n = h.shape
    scale = 1.0 / keep
    for i in range(m):
        for j in range(n):
            h[i, j] = h[i, j] * scale if is_kept(seed, step, base + i * n + j, keep) else 0.0


@kernel
def _slope(h, act):
    """``f'(a)`` written through ``h = f(a)`` (as :func:`~fastfa.kernels.elementwise.multiply_derivative`)."""
    if act == TANH:
        return 1.0 - h * h
    if act == LOGISTIC:
        return h * (1.0 - h)
    if act == RELU:
        return 1.0 if h > 0 else 0.0
    return 1.0


@kernel
def derive_dropped(delta, h, act, keep, seed, step, base):
    """In place: ``delta <- delta * f'(a) * mask / keep``, with ``f'`` from the undropped
    ``h~ keep`` of each kept unit and 0 for dropped ones (``h`` holds ``h~``); subnormal results
    are flushed to zero."""
    m, n = delta.shape
    tiny = np.finfo(delta.dtype).tiny
    scale = 1.0 / keep
    for i in range(m):
        for j in range(n):
            if is_kept(seed, step, base + i * n + j, keep):
                delta[i, j] = flush_subnormal(delta[i, j] * _slope(h[i, j] * keep, act) * scale, tiny)
            else:
                delta[i, j] = 0.0


@parallel_kernel
def drop_rows(h, keep, seed, step, base, threads):
    """:func:`drop_units` with the rows of ``h`` split over threads (row ``i``'s units are numbered
    from ``base + i n`` whichever thread draws them)."""
    m, n = h.shape
    parts = parts_for(threads, m * n, PASS_GRAIN, m)
    if parts == 1:  # a parallel region costs microseconds even for one part
        drop_units(h, keep, seed, step, base)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, m)
        drop_units(h[lo:hi], keep, seed, step, base + lo * n)


@parallel_kernel
def derive_dropped_rows(delta, h, act, keep, seed, step, base, threads):
    """:func:`derive_dropped` with the rows split over threads."""
    m, n = delta.shape
    parts = parts_for(threads, m * n, PASS_GRAIN, m)
    if parts == 1:
        derive_dropped(delta, h, act, keep, seed, step, base)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, m)
        derive_dropped(delta[lo:hi], h[lo:hi], act, keep, seed, step, base + lo * n)
