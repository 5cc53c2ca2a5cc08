"""Slow, obviously correct references for convolution and pooling (float64 numpy loops).

Written from the formulas in DESIGN.md section 7 and PyTorch's ``Conv2d`` / ``MaxPool2d`` /
``AvgPool2d`` definitions, not from the compiled kernels: no im2col, the padding made
explicit with ``np.pad``, one loop over every output position of every sample and channel,
and the backward passes written as scatters (each output's delta added to the inputs of its
window), the direct reading of "the transposed convolution".

Layout: N x C x H x W; a kernel is ``(C_out, C_in, k, k)``; one stride ``s`` and padding ``p``
for both axes; ``H_out = (H + 2p - k) // s + 1`` for a convolution, ``(H - k) // s + 1`` for
pooling.
"""

from __future__ import annotations

import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def out_size(h, k, stride, padding=0):
    return (h + 2 * padding - k) // stride + 1


def pad(x, padding):
    """``x`` with ``padding`` zeros on each side of both spatial axes."""
    return np.pad(_f64(x), ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def conv(x, w, b, stride, padding):
    """``a[n, o, y, x] = b[o] + sum(W[o] * window)``, window ``x_pad[n, :, y s : y s + k, x s : x s + k]``."""
    x, w, b = _f64(x), _f64(w), _f64(b)
    n, _, h, wd = x.shape
    c_out, _, k, _ = w.shape
    h_out, w_out = out_size(h, k, stride, padding), out_size(wd, k, stride, padding)
    xp = pad(x, padding)
    a = np.zeros((n, c_out, h_out, w_out))
    for s in range(n):
        for o in range(c_out):
            for y in range(h_out):
                for xo in range(w_out):
                    window = xp[s, :, y * stride : y * stride + k, xo * stride : xo * stride + k]
                    a[s, o, y, xo] = b[o] + np.sum(w[o] * window)
    return a


def conv_transpose(delta, kernel, stride, padding, input_shape):
    """Each ``delta[n, o, y, x]`` times ``kernel[o]`` added onto its window, then the padding cut off."""
    delta, kernel = _f64(delta), _f64(kernel)
    n, c_out, h_out, w_out = delta.shape
    _, c_in, h, wd = input_shape
    k = kernel.shape[2]
    grad = np.zeros((n, c_in, h + 2 * padding, wd + 2 * padding))
    for s in range(n):
        for o in range(c_out):
            for y in range(h_out):
                for xo in range(w_out):
                    window = grad[s, :, y * stride : y * stride + k, xo * stride : xo * stride + k]
                    window += delta[s, o, y, xo] * kernel[o]
    return grad[:, :, padding : padding + h, padding : padding + wd]


def conv_weight_grad(x, delta, stride, padding, k):
    """``dW[o] = sum_{n,y,x} delta[n, o, y, x] window(n, y, x)``; ``db[o] = sum_{n,y,x} delta[n, o, y, x]``.

    The window is ``x_pad[n, :, y s : y s + k, x s : x s + k]``.
    """
    x, delta = _f64(x), _f64(delta)
    n, c_out, h_out, w_out = delta.shape
    c_in = x.shape[1]
    xp = pad(x, padding)
    dw = np.zeros((c_out, c_in, k, k))
    db = np.zeros(c_out)
    for s in range(n):
        for o in range(c_out):
            for y in range(h_out):
                for xo in range(w_out):
                    window = xp[s, :, y * stride : y * stride + k, xo * stride : xo * stride + k]
                    dw[o] += delta[s, o, y, xo] * window
                    db[o] += delta[s, o, y, xo]
    return dw, db


def im2col(image, k, stride, padding):
    """One image's patches: column ``y W_out + x`` is the window at ``(y, x)``, flattened ``(c, i, j)``."""
    xp = pad(_f64(image)[None], padding)[0]
    c, h, w = image.shape
    h_out, w_out = out_size(h, k, stride, padding), out_size(w, k, stride, padding)
    cols = np.zeros((c * k * k, h_out * w_out))
    for y in range(h_out):
        for xo in range(w_out):
            cols[:, y * w_out + xo] = xp[
                :, y * stride : y * stride + k, xo * stride : xo * stride + k
            ].ravel()
    return cols


def maxpool(x, k, stride):
    """``(out, argmax)``: the window's maximum and its flat index ``u W + v`` in the map (first on ties)."""
    x = _f64(x)
    n, c, h, w = x.shape
    h_out, w_out = out_size(h, k, stride), out_size(w, k, stride)
    out = np.zeros((n, c, h_out, w_out))
    where = np.zeros((n, c, h_out, w_out), dtype=np.int64)
    for s in range(n):
        for ch in range(c):
            for y in range(h_out):
                for xo in range(w_out):
                    window = x[s, ch, y * stride : y * stride + k, xo * stride : xo * stride + k]
                    i, j = np.unravel_index(np.argmax(window), window.shape)
                    out[s, ch, y, xo] = window[i, j]
                    where[s, ch, y, xo] = (y * stride + i) * w + xo * stride + j
    return out, where


def maxpool_backward(x, delta, k, stride):
    """Each ``delta[n, c, y, x]`` added to the input that is its window's maximum."""
    x, delta = _f64(x), _f64(delta)
    n, c, h_out, w_out = delta.shape
    grad = np.zeros(x.shape)
    for s in range(n):
        for ch in range(c):
            for y in range(h_out):
                for xo in range(w_out):
                    window = x[s, ch, y * stride : y * stride + k, xo * stride : xo * stride + k]
                    i, j = np.unravel_index(np.argmax(window), window.shape)
                    grad[s, ch, y * stride + i, xo * stride + j] += delta[s, ch, y, xo]
    return grad


def avgpool(x, k, stride):
    """The window's mean."""
    x = _f64(x)
    n, c, h, w = x.shape
    h_out, w_out = out_size(h, k, stride), out_size(w, k, stride)
    out = np.zeros((n, c, h_out, w_out))
    for s in range(n):
        for ch in range(c):
            for y in range(h_out):
                for xo in range(w_out):
                    out[s, ch, y, xo] = np.mean(
                        x[s, ch, y * stride : y * stride + k, xo * stride : xo * stride + k]
                    )
    return out


def avgpool_backward(delta, k, stride, input_shape):
    """Each ``delta[n, c, y, x] / k^2`` added to every input of its window."""
    delta = _f64(delta)
    n, c, h_out, w_out = delta.shape
    grad = np.zeros(input_shape)
    for s in range(n):
        for ch in range(c):
            for y in range(h_out):
                for xo in range(w_out):
                    grad[s, ch, y * stride : y * stride + k, xo * stride : xo * stride + k] += delta[
                        s, ch, y, xo
                    ] / (k * k)
    return grad
