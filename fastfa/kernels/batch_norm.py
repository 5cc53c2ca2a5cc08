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
def channel_sums(a, lo, hi, shift, square):
    """Per channel ``c`` in ``lo:hi``: the float64 sum over rows and positions of ``a - shift[c - lo]``,
    or of its square. Row by row in memory order, through one-dimensional views indexed from 0
    (numba then drops its negative-index checks and LLVM vectorises the loops)."""
    m, n_channels, positions = a.shape
    rows = a.reshape((m, n_channels * positions))
    out = np.zeros(hi - lo)
    for i in range(m):
        row = rows[i, lo * positions : hi * positions]
        if positions == 1:  # dense layers: one value per channel and row
            for k in range(hi - lo):
                d = row[k] - shift[k]
                out[k] += d * d if square else d
            continue
        for k in range(hi - lo):
            values = row[k * positions : (k + 1) * positions]
            total = 0.0
            for s in range(positions):
                d = values[s] - shift[k]
                total += d * d if square else d
            out[k] += total
    return out


@channel_kernel
def normalise_channels(a, hat, gamma, beta, running, batch, training, lo, hi):
    """:func:`normalise` for the channels ``lo:hi`` (in memory order, sums in float64)."""
    m, n_channels, positions = a.shape
    n = m * positions
    zero = np.zeros(hi - lo)
    if training:
        mean = channel_sums(a, lo, hi, zero, False) / n
        var = channel_sums(a, lo, hi, mean, True) / n
        unbiased = n / (n - 1) if n > 1 else 1.0
        for c in range(lo, hi):
            old_mean, old_var = running[c], running[n_channels + c]
            running[c] = (1.0 - MOMENTUM) * old_mean + MOMENTUM * mean[c - lo]
            running[n_channels + c] = (1.0 - MOMENTUM) * old_var + MOMENTUM * var[c - lo] * unbiased
    else:
        mean, var = zero.copy(), zero.copy()
        for c in range(lo, hi):
            mean[c - lo] = running[c]
            var[c - lo] = running[n_channels + c]
    inv = 1.0 / np.sqrt(var + EPSILON)
    for c in range(lo, hi):
        batch[c] = mean[c - lo]
        batch[n_channels + c] = inv[c - lo]
    gain, shift = gamma[lo:hi], beta[lo:hi]
    rows, normed = a.reshape((m, n_channels * positions)), hat.reshape((m, n_channels * positions))
    for i in range(m):
        row, out = rows[i, lo * positions : hi * positions], normed[i, lo * positions : hi * positions]
        if positions == 1:
            for k in range(hi - lo):
                v = (row[k] - mean[k]) * inv[k]
                out[k] = v
                row[k] = gain[k] * v + shift[k]
            continue
        for k in range(hi - lo):
            mu, scale, g, b = mean[k], inv[k], gain[k], shift[k]
            values, normal = (
                row[k * positions : (k + 1) * positions],
                out[k * positions : (k + 1) * positions],
            )
            for s in range(positions):
                v = (values[s] - mu) * scale
                normal[s] = v
                values[s] = g * v + b


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
    rows, normed = delta.reshape((m, n_channels * positions)), hat.reshape((m, n_channels * positions))
    dbeta = np.zeros(hi - lo)
    dgamma = np.zeros(hi - lo)
    for i in range(m):
        row, values = rows[i, lo * positions : hi * positions], normed[i, lo * positions : hi * positions]
        if positions == 1:
            for k in range(hi - lo):
                dbeta[k] += row[k]
                dgamma[k] += row[k] * values[k]
            continue
        for k in range(hi - lo):
            signal, normal = (
                row[k * positions : (k + 1) * positions],
                values[k * positions : (k + 1) * positions],
            )
            shift = 0.0
            scale = 0.0
            for s in range(positions):
                shift += signal[s]
                scale += signal[s] * normal[s]
            dbeta[k] += shift
            dgamma[k] += scale
    for c in range(lo, hi):
        batch[2 * n_channels + c] = dbeta[c - lo]
        batch[3 * n_channels + c] = dgamma[c - lo]
    scale = gamma[lo:hi] * batch[n_channels + lo : n_channels + hi]
    shift, slope = dbeta / n, dgamma / n
    for i in range(m):
        row, values = rows[i, lo * positions : hi * positions], normed[i, lo * positions : hi * positions]
        if positions == 1:
            for k in range(hi - lo):
                row[k] = scale[k] * (row[k] - shift[k] - values[k] * slope[k])
            continue
        for k in range(hi - lo):
            a, b, c = scale[k], shift[k], slope[k]
            signal, normal = (
                row[k * positions : (k + 1) * positions],
                values[k * positions : (k + 1) * positions],
            )
            for s in range(positions):
                signal[s] = a * (signal[s] - b - normal[s] * c)


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
