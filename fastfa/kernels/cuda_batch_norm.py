"""Batch normalisation as CUDA kernels: the twins of :mod:`fastfa.kernels.batch_norm`.

One thread block per channel: its threads stride over the channel's ``N = m S`` values of the
``m x C x S`` block, sum in float64 and reduce in shared memory (the CPU sums in order, so the
two engines agree to float32 rounding, not bit for bit). The formulas, the running statistics'
momentum and the scratch layout (``mean``, ``1 / sqrt(var + eps)``, ``dbeta``, ``dgamma``; ``4 C``
entries) are the CPU kernels'.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from fastfa.kernels.batch_norm import EPSILON, MOMENTUM
from fastfa.kernels.cuda_conv import REDUCE, _block_sum

#: Threads of each channel's block: the conv kernels' reduction width (a power of two)
NORM_THREADS = REDUCE


@cuda.jit(device=True, inline=True)
def _total(shared, value):
    """The sum of ``value`` over the block's threads, for every thread (:func:`cuda_conv._block_sum
    <fastfa.kernels.cuda_conv._block_sum>`'s fixed tree); ``shared`` is free again afterwards."""
    shared[cuda.threadIdx.x] = value
    cuda.syncthreads()
    total = _block_sum(shared)
    cuda.syncthreads()
    return total


@cuda.jit
def normalise_kernel(a, hat, gamma, beta, running, batch, training):
    """:func:`fastfa.kernels.batch_norm.normalise` for channel ``blockIdx.x``: ``a`` (``m x C x S``)
    becomes ``gamma hat + beta``, ``hat`` the normalised values; in training the batch statistics
    normalise and ``running`` (means, then variances) moves; ``batch`` gets the mean and inverse
    deviation used."""
    shared = cuda.shared.array(NORM_THREADS, float64)
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    m, n_channels, positions = a.shape
    n = m * positions
    if training:
        part = 0.0
        for k in range(tid, n, NORM_THREADS):
            part += a[k // positions, c, k % positions]
        mean = _total(shared, part) / n
        part = 0.0
        for k in range(tid, n, NORM_THREADS):
            d = a[k // positions, c, k % positions] - mean
            part += d * d
        var = _total(shared, part) / n
    else:
        mean = float64(running[c])
        var = float64(running[n_channels + c])
    inv = 1.0 / math.sqrt(var + EPSILON)
    if tid == 0:
        if training:
            unbiased = var * n / (n - 1) if n > 1 else var
            running[c] = (1.0 - MOMENTUM) * running[c] + MOMENTUM * mean
            running[n_channels + c] = (1.0 - MOMENTUM) * running[n_channels + c] + MOMENTUM * unbiased
        batch[c] = mean
        batch[n_channels + c] = inv
    g, b = gamma[c], beta[c]
    for k in range(tid, n, NORM_THREADS):
        i, s = k // positions, k % positions
        v = (a[i, c, s] - mean) * inv
        hat[i, c, s] = v
        a[i, c, s] = g * v + b


@cuda.jit
def normalise_backward_kernel(delta, hat, gamma, batch):
    """:func:`fastfa.kernels.batch_norm.normalise_backward` for channel ``blockIdx.x``: ``delta``
    (``dz``) becomes ``da``; ``batch`` gets ``dbeta`` and ``dgamma``."""
    shared = cuda.shared.array(NORM_THREADS, float64)
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    m, n_channels, positions = delta.shape
    n = m * positions
    part_beta = 0.0
    part_gamma = 0.0
    for k in range(tid, n, NORM_THREADS):
        i, s = k // positions, k % positions
        part_beta += delta[i, c, s]
        part_gamma += delta[i, c, s] * hat[i, c, s]
    dbeta = _total(shared, part_beta)
    dgamma = _total(shared, part_gamma)
    if tid == 0:
        batch[2 * n_channels + c] = dbeta
        batch[3 * n_channels + c] = dgamma
    scale = gamma[c] * batch[n_channels + c]
    shift = dbeta / n
    slope = dgamma / n
    for k in range(tid, n, NORM_THREADS):
        i, s = k // positions, k % positions
        delta[i, c, s] = scale * (delta[i, c, s] - shift - hat[i, c, s] * slope)


@cuda.jit
def norm_gradients_kernel(batch, grad_beta, grad_gamma):
    """The shift's and scale's gradients from the scratch into the gradient buffer, one thread
    per channel."""
    c = cuda.grid(1)
    n_channels = grad_beta.size
    if c < n_channels:
        grad_beta[c] = batch[2 * n_channels + c]
        grad_gamma[c] = batch[3 * n_channels + c]


def normalise(a, hat, gamma, beta, running, batch, training):
    """Launch :func:`normalise_kernel` over the channels of ``a`` (``m x C x S``)."""
    normalise_kernel[a.shape[1], NORM_THREADS](a, hat, gamma, beta, running, batch, int(training))


def normalise_backward(delta, hat, gamma, batch):
    """Launch :func:`normalise_backward_kernel` over the channels of ``delta`` (``m x C x S``)."""
    normalise_backward_kernel[delta.shape[1], NORM_THREADS](delta, hat, gamma, batch)
