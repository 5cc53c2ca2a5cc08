"""Optimiser steps as CUDA kernels (the twin of :mod:`fastfa.kernels.optimisers`): SGD (heavy ball,
Nesterov), Adam and Batch Manhattan, with weight decay, in the CPU engine's form.

:func:`sgd_kernel`: the state holds the carried momentum ``mu v``, as on the CPU, so optimiser
state moves between engines unchanged; :func:`adam_kernel`: the state holds both moments.
The device functions ``_sgd`` and ``_adam`` are shared with the fused kernel.
"""

from __future__ import annotations

import math

from numba import cuda

from fastfa.kernels.cuda_elementwise import _sign


@cuda.jit(device=True, inline=True)
def _sgd(w, carried, at, grad, lr, mu, nesterov):
    """SGD on entry ``at`` as the CPU engine does it: ``v = carried - lr grad``, then
    ``w <- w + v`` (heavy ball) or ``w <- w + mu v - lr grad`` (Nesterov), ``carried <- mu v``."""
    v = carried[at] - lr * grad
    if nesterov:
        w[at] += mu * v - lr * grad
    else:
        w[at] += v
    carried[at] = mu * v


@cuda.jit(device=True, inline=True)
def _adam(w, first, second, at, grad, rate, beta1, beta2, eps):
    """Adam on entry ``at`` as the CPU engine does it (Kingma and Ba 2015):
    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, ``w -= rate m / (sqrt(v) + eps)``
    with the bias correction folded into ``rate`` (:func:`adam_rate`)."""
    m = beta1 * first[at] + (1.0 - beta1) * grad
    v = beta2 * second[at] + (1.0 - beta2) * grad * grad
    first[at] = m
    second[at] = v
    w[at] -= rate * m / (math.sqrt(v) + eps)


def adam_rate(lr, beta1, beta2, step):
    """Adam's step size at update ``step`` (counted from 1): ``lr sqrt(1 - b2^t) / (1 - b1^t)``."""
    return lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)


_adam_rate = cuda.jit(device=True)(adam_rate)


@cuda.jit
def adam_kernel(w, g, first, second, rate, beta1, beta2, eps, decay):
    """Adam with weight decay on a flat range, one thread per entry (:func:`_adam` on
    ``g + decay w``); the state holds the two moments, as on the CPU."""
    i = cuda.grid(1)
    if i < w.size:
        _adam(w, first, second, i, g[i] + decay * w[i], rate, beta1, beta2, eps)


@cuda.jit
def sgd_kernel(w, g, carried, lr, mu, decay, nesterov):
    """SGD with weight decay on a flat range, one thread per entry (:func:`_sgd` on
    ``g + decay w``); the state holds the carried momentum ``mu v``, as on the CPU, so
    optimiser state moves between engines unchanged."""
    i = cuda.grid(1)
    if i < w.size:
        _sgd(w, carried, i, g[i] + decay * w[i], lr, mu, nesterov)


@cuda.jit
def manhattan_kernel(w, g, carried, lr, mu, decay, nesterov):
    """Batch Manhattan (Liao et al. 2016) with weight decay on a flat range, one thread per entry:
    :func:`_sgd` on ``sign(g) + decay w``, as the CPU engine does it."""
    i = cuda.grid(1)
    if i < w.size:
        _sgd(w, carried, i, _sign(g[i]) + decay * w[i], lr, mu, nesterov)
