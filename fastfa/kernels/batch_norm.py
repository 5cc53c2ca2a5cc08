"""Batch normalisation of a layer's pre-activation (Ioffe and Szegedy 2015), CPU kernels.

A layer with batch norm (``conv:...+bn``, ``dense:...+bn``; :mod:`fastfa.layers`) computes its
pre-activation ``a`` without a bias, normalises each channel (conv) or unit (dense) over the
batch and, for conv, over the positions, then scales, shifts and activates::

    mu_c  = mean(a[:, c, :])                 var_c = mean((a[:, c, :] - mu_c) ** 2)
    hat   = (a - mu_c) / sqrt(var_c + eps)   z = gamma_c * hat + beta_c      h = f(z)

``a`` is read as ``m x C x S`` (``S = H W`` for conv, 1 for dense), so each mean runs over
``N = m S`` values. ``beta`` is the layer's bias slot, ``gamma`` a parameter of its own
(:class:`fastfa.layers.Table`). In training the batch statistics normalise, and the running
statistics move as PyTorch's ``nn.BatchNorm`` moves them (momentum :data:`MOMENTUM`, the
variance's unbiased estimate ``var_c N / (N - 1)``); evaluation normalises with the running
statistics. They live in the run file, so a resumed run continues bit for bit.

The backward pass is local to the layer: every quantity in it is the layer's own, so batch
norm transports no weights and every rule sends its signal through it as backprop does (the
peers do the same: BioTorch and the DFA codes leave batch norm to autograd). With
``dz = dLoss/dz`` (the rule's signal times ``f'(z)``)::

    dbeta_c  = sum(dz[:, c, :])              dgamma_c = sum(dz[:, c, :] * hat[:, c, :])
    da       = gamma_c / sqrt(var_c + eps) * (dz - dbeta_c / N - hat * dgamma_c / N)

and ``da`` is the signal the layer's weights learn from (and, for bp and layerwise rules, the
one sent on down). The per-batch quantities sit in a scratch block of ``4 C`` entries per
layer: ``mu``, ``1 / sqrt(var + eps)``, ``dbeta``, ``dgamma``.
"""

import math

import numpy as np
from numba import njit, prange

from fastfa.kernels.base import parallel_kernel, parts_for, split

#: The per-channel passes may reassociate their sums: LLVM then vectorises them (several partial
#: sums in float64) instead of adding one value at a time, several times faster. The order is
#: still fixed by the compiled code, so a run repeats bit for bit on the same machine.
channel_kernel = njit(cache=True, error_model="numpy", fastmath={"reassoc"})

#: Weight of the newest batch in the running statistics (PyTorch's default)
MOMENTUM = 0.1
#: Added to the variance before the square root (PyTorch's default)
EPSILON = 1e-5
#: Channel-values that make a thread's share of a batch-norm pass worth it
NORM_GRAIN = 1 << 14


@channel_kernel
def normalise_channels(a, hat, gamma, beta, running, batch, training, lo, hi):
    """:func:`normalise` for the channels ``lo:hi``. Every pass walks the block in memory order
    (row, channel, position), each channel's sums in float64."""
    m, n_channels, positions = a.shape
    n = m * positions
    mean = np.zeros(hi - lo)
    var = np.zeros(hi - lo)
    if training:
        for i in range(m):
            for c in range(lo, hi):
                total = 0.0
                for s in range(positions):
                    total += a[i, c, s]
                mean[c - lo] += total
        mean /= n
        for i in range(m):
            for c in range(lo, hi):
                squares = 0.0
                for s in range(positions):
                    d = a[i, c, s] - mean[c - lo]
                    squares += d * d
                var[c - lo] += squares
        var /= n
        unbiased = n / (n - 1) if n > 1 else 1.0
        for c in range(lo, hi):
            running[c] = (1.0 - MOMENTUM) * running[c] + MOMENTUM * mean[c - lo]
            running[n_channels + c] = (1.0 - MOMENTUM) * running[n_channels + c] + MOMENTUM * var[
                c - lo
            ] * unbiased
    else:
        for c in range(lo, hi):
            mean[c - lo] = running[c]
            var[c - lo] = running[n_channels + c]
    for c in range(lo, hi):
        var[c - lo] = 1.0 / math.sqrt(var[c - lo] + EPSILON)  # from here on: the inverse deviation
        batch[c] = mean[c - lo]
        batch[n_channels + c] = var[c - lo]
    for i in range(m):
        for c in range(lo, hi):
            mu, inv, g, b = mean[c - lo], var[c - lo], gamma[c], beta[c]
            for s in range(positions):
                v = (a[i, c, s] - mu) * inv
                hat[i, c, s] = v
                a[i, c, s] = g * v + b


@parallel_kernel
def normalise(a, hat, gamma, beta, running, batch, training, threads):
    """Normalise, scale and shift the pre-activation ``a`` (``m x C x S``) in place.

    Parameters
    ----------
    a : ndarray
        The layer's pre-activation without bias; becomes ``z = gamma hat + beta``.
    hat : ndarray
        Receives the normalised values (``m x C x S``), which the backward pass reads.
    gamma, beta : ndarray
        ``C`` scales and shifts.
    running : ndarray
        ``2 C`` entries: running means, then running variances; moved when ``training``.
    batch : ndarray
        ``4 C`` scratch entries; receives the means and ``1 / sqrt(var + eps)`` used.
    training : int
        1: batch statistics (and move the running ones); 0: the running statistics.
    threads : int
        Threads the channels are split over.
    """
    m, n_channels, positions = a.shape
    parts = parts_for(threads, a.size, NORM_GRAIN, n_channels)
    if parts == 1:
        normalise_channels(a, hat, gamma, beta, running, batch, training, 0, n_channels)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n_channels)
        normalise_channels(a, hat, gamma, beta, running, batch, training, lo, hi)


@channel_kernel
def normalise_backward_channels(delta, hat, gamma, batch, lo, hi):
    """:func:`normalise_backward` for the channels ``lo:hi``, in memory order as
    :func:`normalise_channels`."""
    m, n_channels, positions = delta.shape
    n = m * positions
    dbeta = np.zeros(hi - lo)
    dgamma = np.zeros(hi - lo)
    for i in range(m):
        for c in range(lo, hi):
            shift = 0.0
            scale = 0.0
            for s in range(positions):
                shift += delta[i, c, s]
                scale += delta[i, c, s] * hat[i, c, s]
            dbeta[c - lo] += shift
            dgamma[c - lo] += scale
    for c in range(lo, hi):
        batch[2 * n_channels + c] = dbeta[c - lo]
        batch[3 * n_channels + c] = dgamma[c - lo]
    for i in range(m):
        for c in range(lo, hi):
            scale = gamma[c] * batch[n_channels + c]
            shift = dbeta[c - lo] / n
            slope = dgamma[c - lo] / n
            for s in range(positions):
                delta[i, c, s] = scale * (delta[i, c, s] - shift - hat[i, c, s] * slope)


@parallel_kernel
def normalise_backward(delta, hat, gamma, batch, threads):
    """``dz -> da`` through the normalisation, in place (see the module notes).

    ``delta`` (``m x C x S``) holds ``dz`` and receives ``da``; ``batch`` (as :func:`normalise`
    filled it) receives ``dbeta`` and ``dgamma`` in its last ``2 C`` entries.
    """
    m, n_channels, positions = delta.shape
    parts = parts_for(threads, delta.size, NORM_GRAIN, n_channels)
    if parts == 1:
        normalise_backward_channels(delta, hat, gamma, batch, 0, n_channels)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n_channels)
        normalise_backward_channels(delta, hat, gamma, batch, lo, hi)
