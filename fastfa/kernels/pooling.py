"""CPU kernels for max- and average pooling (NCHW), standalone: forward and backward.

Windows are ``k x k`` with stride ``s`` and no padding, ``H_out = (H - k) // s + 1``
(PyTorch's ``ceil_mode=False``); global average pooling is ``k = H = W``. Layout, threads and
the ``1/N`` carried by ``delta`` as in :mod:`fastfa.kernels.conv`.
"""

import numpy as np
from numba import prange

from fastfa.kernels.base import PASS_GRAIN, kernel, parallel_kernel, parts_for, split
from fastfa.kernels.conv import pool_output_size

# --------------------------------------------------------------------------- pooling


@kernel
def check_pool_shapes(x_shape, a_shape, k, stride):
    """Raise ``ValueError`` unless ``a_shape`` is ``k x k`` pooling of ``x_shape``; return ``(H_out, W_out)``.

    Shared with the CUDA twins (:mod:`fastfa.kernels.cuda_conv`).
    """
    if k < 1 or stride < 1:
        raise ValueError("pool: k and stride must be >= 1")
    if k > x_shape[2] or k > x_shape[3]:
        raise ValueError("pool: the window is larger than the input")
    h_out = pool_output_size(x_shape[2], k, stride)
    w_out = pool_output_size(x_shape[3], k, stride)
    if a_shape[0] != x_shape[0] or a_shape[1] != x_shape[1] or a_shape[2] != h_out or a_shape[3] != w_out:
        raise ValueError("pool: the output must be (N, C, H_out, W_out)")
    return h_out, w_out


@kernel
def _check_pool(x_shape, a_shape, k, stride, threads):
    """:func:`check_pool_shapes`; return the parts to use."""
    h_out, w_out = check_pool_shapes(x_shape, a_shape, k, stride)
    work = x_shape[0] * x_shape[1] * h_out * w_out * k * k
    return parts_for(threads, work, PASS_GRAIN, x_shape[0])


@kernel
def _maxpool_samples(x, k, stride, out, argmax, lo, hi):
    _, c_in, h, w = x.shape
    h_out, w_out = out.shape[2], out.shape[3]
    for s in range(lo, hi):
        for c in range(c_in):
            xc = x[s, c]
            for y in range(h_out):
                for xo in range(w_out):
                    y0, x0 = y * stride, xo * stride
                    best = xc[y0, x0]
                    where = y0 * w + x0
                    for i in range(k):
                        for j in range(k):
                            v = xc[y0 + i, x0 + j]
                            if v > best:
                                best = v
                                where = (y0 + i) * w + x0 + j
                    out[s, c, y, xo] = best
                    argmax[s, c, y, xo] = where


@parallel_kernel
def maxpool_forward(x, k, stride, out, argmax, threads):
    """``out[n, c, y, x] = max_{i,j < k} x[n, c, y s + i, x s + j]``; ``argmax`` records where.

    ``argmax[n, c, y, x]`` (an integer array of ``out``'s shape) is the flat index
    ``u W + v`` of the maximum within its ``(H, W)`` map; ties go to the first in row-major
    order. Samples are split over ``threads``.
    """
    parts = _check_pool(x.shape, out.shape, k, stride, threads)
    if argmax.shape != out.shape:
        raise ValueError("maxpool: argmax must have the output's shape")
    n = x.shape[0]
    if parts == 1:
        _maxpool_samples(x, k, stride, out, argmax, np.intp(0), n)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        _maxpool_samples(x, k, stride, out, argmax, lo, hi)


@kernel
def _maxpool_back_samples(delta, argmax, out, lo, hi):
    _, c_in, h_out, w_out = delta.shape
    w = out.shape[3]
    for s in range(lo, hi):
        for c in range(c_in):
            oc = out[s, c]
            oc[...] = 0
            for y in range(h_out):
                for x in range(w_out):
                    where = argmax[s, c, y, x]
                    oc[where // w, where % w] += delta[s, c, y, x]


@parallel_kernel
def maxpool_backward(delta, argmax, out, threads):
    """``out[n, c, u, v] = sum_{y,x: argmax[n, c, y, x] = u W + v} delta[n, c, y, x]``.

    Each output's delta goes to the input that won its window; overlapping windows
    (``s < k``) that share a winner add up. ``out`` (``(N, C, H, W)``) is overwritten; it
    must have the shape of the input ``argmax`` was recorded on (only roughly checked).
    """
    if argmax.shape != delta.shape:
        raise ValueError("maxpool: argmax must have delta's shape")
    if out.shape[0] != delta.shape[0] or out.shape[1] != delta.shape[1]:
        raise ValueError("maxpool: out must be (N, C, H, W) with delta's N and C")
    if out.shape[2] < delta.shape[2] or out.shape[3] < delta.shape[3]:
        raise ValueError("maxpool: out must have the forward input's shape")
    n = delta.shape[0]
    parts = parts_for(threads, out.size, PASS_GRAIN, n)
    if parts == 1:
        _maxpool_back_samples(delta, argmax, out, np.intp(0), n)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        _maxpool_back_samples(delta, argmax, out, lo, hi)


@kernel
def _avgpool_samples(x, k, stride, out, lo, hi):
    c_in = x.shape[1]
    h_out, w_out = out.shape[2], out.shape[3]
    scale = 1.0 / (k * k)
    for s in range(lo, hi):
        for c in range(c_in):
            xc = x[s, c]
            for y in range(h_out):
                for xo in range(w_out):
                    y0, x0 = y * stride, xo * stride
                    total = xc[y0, x0] * 0
                    for i in range(k):
                        for j in range(k):
                            total += xc[y0 + i, x0 + j]
                    out[s, c, y, xo] = total * scale


@parallel_kernel
def avgpool_forward(x, k, stride, out, threads):
    """``out[n, c, y, x] = (1 / k^2) sum_{i,j < k} x[n, c, y s + i, x s + j]``.

    Global average pooling is ``k = H = W`` (output ``(N, C, 1, 1)``).
    """
    parts = _check_pool(x.shape, out.shape, k, stride, threads)
    n = x.shape[0]
    if parts == 1:
        _avgpool_samples(x, k, stride, out, np.intp(0), n)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        _avgpool_samples(x, k, stride, out, lo, hi)


@kernel
def _avgpool_back_samples(delta, k, stride, out, lo, hi):
    c_in, h_out, w_out = delta.shape[1], delta.shape[2], delta.shape[3]
    scale = 1.0 / (k * k)
    for s in range(lo, hi):
        for c in range(c_in):
            oc = out[s, c]
            oc[...] = 0
            for y in range(h_out):
                for xo in range(w_out):
                    d = delta[s, c, y, xo] * scale
                    y0, x0 = y * stride, xo * stride
                    for i in range(k):
                        for j in range(k):
                            oc[y0 + i, x0 + j] += d


@parallel_kernel
def avgpool_backward(delta, k, stride, out, threads):
    """``out[n, c, u, v] = (1 / k^2) sum_{y,x: u - y s in [0, k), v - x s in [0, k)} delta[n, c, y, x]``.

    The adjoint of :func:`avgpool_forward`; ``out`` (``(N, C, H, W)``) is overwritten,
    and inputs that no window covers get 0.
    """
    parts = _check_pool(out.shape, delta.shape, k, stride, threads)
    n = delta.shape[0]
    if parts == 1:
        _avgpool_back_samples(delta, k, stride, out, np.intp(0), n)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        _avgpool_back_samples(delta, k, stride, out, lo, hi)
