"""CUDA twins of :mod:`fastfa.kernels.conv`: 2-D convolution and pooling, numba ``@cuda.jit``.

The same layout, conventions and formulas as the CPU kernels (C-contiguous
``N x C x H x W`` images of one float dtype, float32 or float64; a square kernel
``(C_out, C_in, k, k)``, one stride ``s`` and zero padding ``p`` for both axes;
PyTorch's ``Conv2d`` cross-correlation; pooling without padding, global average pooling
as ``k = H = W``; the batch's ``1/N`` carried by ``delta``, so gradients are plain sums;
max-pooling's ``argmax`` an int64 array holding the flat index ``u W + v`` within a map),
so a device step computes what a CPU step computes, up to rounding.

Kernels and launches
--------------------
Each ``*_kernel`` has a host-side helper of the CPU kernel's name that checks the shapes
(``ValueError`` with the CPU kernel's message) and launches it on device arrays, results
written in place:

- :func:`conv_forward`, :func:`avgpool_forward`, :func:`maxpool_forward`: one thread per
  output entry ``(n, o, y, x)``, summing (or comparing) its window in ``(c, i, j)`` order.
- :func:`conv_backward_input`, :func:`avgpool_backward`: one thread per input entry
  ``(n, c, u, v)``, gathering the ``(o, y, x)`` whose window covers it (the transposed
  convolution without atomics).
- :func:`conv_weight_grad`: one block of :data:`REDUCE` threads per entry of ``grad_w``
  and of ``grad_b``; each thread sums a strided share of the ``(n, y, x)`` terms, then a
  tree reduction in shared memory adds the shares.
- :func:`maxpool_backward`: one thread per ``(n, c)`` map, clearing it and then adding
  each output's delta at its ``argmax`` in ``(y, x)`` order, as the CPU kernel does (its
  signature has no ``k`` and ``stride`` to find the windows covering an input by).

No kernel uses atomics, so every result is deterministic: the same inputs give the same
bits on every run (and max-pooling gives the CPU kernel's bits). The elementwise kernels
run blocks of :data:`~fastfa.kernels.cuda_base.THREADS` threads.

Differences from the CPU signatures: no ``workspace`` and no ``threads`` (the grid is
picked from the shapes), and an optional keyword ``stream`` (default 0) to launch on.

:class:`fastfa.cuda_layers.CudaLayerEngine` trains layer lists with them (float32).

Set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported to run them on the CPU simulator
(slow: tiny shapes only).
"""

from __future__ import annotations

from numba import config, cuda

from fastfa.kernels import conv
from fastfa.kernels.cuda_base import _greater, _lesser, launch_1d

#: Threads per block of the weight gradient's reduction (a power of 2); small under the
#: simulator, which runs every thread as a Python thread.
REDUCE = 4 if config.ENABLE_CUDASIM else 128

# ----------------------------------------------------------------------- index helpers


@cuda.jit(device=True, inline=True)
def _zero(a):
    """0 in ``a``'s dtype (so float32 sums stay float32)."""
    return a.dtype.type(0)


@cuda.jit(device=True, inline=True)
def _mean_scale(a, k):
    """``1 / k^2`` in ``a``'s dtype: an average over a ``k x k`` window."""
    return a.dtype.type(1.0 / (k * k))


@cuda.jit(device=True, inline=True)
def _unravel(i, shape):
    """``(a, b, c, d)``: the indices of flat entry ``i`` of a C-ordered 4-D array of ``shape``."""
    d = i % shape[3]
    i //= shape[3]
    c = i % shape[2]
    i //= shape[2]
    return i // shape[1], i % shape[1], c, d


@cuda.jit(device=True, inline=True)
def _taps(y, stride, padding, k, h):
    """Kernel rows ``[lo, hi)`` whose input row ``y s + i - p`` of output row ``y`` lies in ``[0, h)``."""
    start = y * stride - padding
    return _greater(0, -start), _lesser(k, h - start)


@cuda.jit(device=True, inline=True)
def _covering(u, stride, padding, k, h_out):
    """Output rows ``[lo, hi)`` whose window covers input row ``u``: ``0 <= u + p - y s < k``."""
    t = u + padding
    lo = 0 if t < k else (t - k) // stride + 1
    return lo, _lesser(h_out, t // stride + 1)


@cuda.jit(device=True, inline=True)
def _inside(i, stride, padding, h, h_out):
    """Output rows ``[lo, hi)`` whose input row ``y s + i - p`` for kernel row ``i`` lies in ``[0, h)``.

    :func:`fastfa.kernels.conv._inside`, spelled without the builtin ``min`` and ``max``.
    """
    lo = (padding - i + stride - 1) // stride if padding > i else 0
    hi = (h - 1 + padding - i) // stride + 1
    return _lesser(lo, h_out), _lesser(h_out, _greater(hi, lo))


# ------------------------------------------------------------------------ shape checks


def _check_conv(x_shape, w_shape, a_shape, stride, padding):
    """:func:`fastfa.kernels.conv.check_conv_shapes` on the device arrays' shapes (same messages)."""
    conv.check_conv_shapes(tuple(x_shape), tuple(w_shape), tuple(a_shape), stride, padding)


def _check_pool(x_shape, a_shape, k, stride):
    """:func:`fastfa.kernels.conv.check_pool_shapes` on the device arrays' shapes (same messages)."""
    conv.check_pool_shapes(tuple(x_shape), tuple(a_shape), k, stride)


# ------------------------------------------------------------------------- convolution


@cuda.jit
def conv_forward_kernel(x, w, b, stride, padding, out):
    """``out[n, o, y, x] = b[o] + sum_{c,i,j} w[o, c, i, j] x[n, c, y s + i - p, x s + j - p]``.

    One thread per entry of ``out``, summing over the taps that fall inside the image.
    """
    at = cuda.grid(1)
    if at >= out.size:
        return
    n, o, y, xo = _unravel(at, out.shape)
    k = w.shape[2]
    i_lo, i_hi = _taps(y, stride, padding, k, x.shape[2])
    j_lo, j_hi = _taps(xo, stride, padding, k, x.shape[3])
    row, col = y * stride - padding, xo * stride - padding
    total = b[o]
    for c in range(x.shape[1]):
        for i in range(i_lo, i_hi):
            for j in range(j_lo, j_hi):
                total += w[o, c, i, j] * x[n, c, row + i, col + j]
    out[n, o, y, xo] = total


def conv_forward(x, w, b, stride, padding, out, stream=0):
    """Convolution: ``out[n, o, y, x] = b[o] + sum_{c,i,j} w[o, c, i, j] x[n, c, y s + i - p, x s + j - p]``.

    Parameters
    ----------
    x : device array ``(N, C_in, H, W)``, read as 0 outside the image.
    w : device array ``(C_out, C_in, k, k)``.
    b : device array ``(C_out,)``.
    stride, padding : int
        ``s >= 1`` and ``p >= 0``, both axes.
    out : device array ``(N, C_out, H_out, W_out)``, overwritten.
    stream : CUDA stream, optional
    """
    _check_conv(x.shape, w.shape, out.shape, stride, padding)
    if b.shape[0] != w.shape[0]:
        raise ValueError("conv: the bias must have C_out entries")
    launch_1d(conv_forward_kernel, out.size, x, w, b, stride, padding, out, stream=stream)


@cuda.jit
def conv_backward_input_kernel(delta, kernel, stride, padding, out):
    """``out[n, c, u, v] = sum_{o, i, j, y, x} kernel[o, c, i, j] delta[n, o, y, x]`` over
    ``u = y s + i - p``, ``v = x s + j - p``.

    One thread per entry of ``out``, gathering the outputs ``(y, x)`` whose window covers
    ``(u, v)`` in ``(o, y, x)`` order.
    """
    at = cuda.grid(1)
    if at >= out.size:
        return
    n, c, u, v = _unravel(at, out.shape)
    k = kernel.shape[2]
    y_lo, y_hi = _covering(u, stride, padding, k, delta.shape[2])
    x_lo, x_hi = _covering(v, stride, padding, k, delta.shape[3])
    total = _zero(out)
    for o in range(delta.shape[1]):
        for y in range(y_lo, y_hi):
            i = u + padding - y * stride
            for xo in range(x_lo, x_hi):
                total += kernel[o, c, i, v + padding - xo * stride] * delta[n, o, y, xo]
    out[n, c, u, v] = total


def conv_backward_input(delta, kernel, stride, padding, out, stream=0):
    """Transposed convolution of ``delta`` with ``kernel``.

        out[n, c, u, v] = sum_{o, i, j, y, x} kernel[o, c, i, j] delta[n, o, y, x]

    over the ``(y, x, i, j)`` with ``u = y s + i - p`` and ``v = x s + j - p``: the adjoint
    of :func:`conv_forward`'s linear part. With ``kernel = W`` backprop's signal (before the
    derivative), with a fixed random ``B`` of ``W``'s shape feedback alignment's.

    Parameters
    ----------
    delta : device array ``(N, C_out, H_out, W_out)``.
    kernel : device array ``(C_out, C_in, k, k)``, the forward weights' shape.
    stride, padding : int
    out : device array ``(N, C_in, H, W)``, the input's shape, overwritten.
    stream : CUDA stream, optional
    """
    _check_conv(out.shape, kernel.shape, delta.shape, stride, padding)
    launch_1d(conv_backward_input_kernel, out.size, delta, kernel, stride, padding, out, stream=stream)


@cuda.jit(device=True, inline=True)
def _block_sum(partial):
    """The sum of ``partial[:REDUCE]`` (shared memory, one entry per thread), added as a
    fixed tree; every thread of the block must call it, and gets the total."""
    t = cuda.threadIdx.x
    half = REDUCE // 2
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        cuda.syncthreads()
        half //= 2
    return partial[0]


@cuda.jit
def conv_weight_grad_kernel(x, delta, stride, padding, grad_w, grad_b):
    """``grad_w[o, c, i, j] = sum_{n, y, x} delta[n, o, y, x] x[n, c, y s + i - p, x s + j - p]``,
    ``grad_b[o] = sum_{n, y, x} delta[n, o, y, x]``.

    One block of ``REDUCE`` threads per entry: blocks ``0 .. grad_w.size - 1`` take
    ``grad_w`` in C order, the next ``C_out`` blocks ``grad_b``. Thread ``t`` sums the terms
    ``t, t + REDUCE, ...`` of the flat ``(n, y, x)`` range, then :func:`_block_sum` adds the
    threads' sums: a fixed order, so the result is deterministic.
    """
    partial = cuda.shared.array(REDUCE, x.dtype)
    entry, t = cuda.blockIdx.x, cuda.threadIdx.x
    h_out, w_out = delta.shape[2], delta.shape[3]
    bias = entry >= grad_w.size
    if bias:
        o, c, i, j = entry - grad_w.size, 0, 0, 0
        y_lo, y_hi, x_lo, x_hi = 0, h_out, 0, w_out
    else:
        o, c, i, j = _unravel(entry, grad_w.shape)
        y_lo, y_hi = _inside(i, stride, padding, x.shape[2], h_out)
        x_lo, x_hi = _inside(j, stride, padding, x.shape[3], w_out)
    rows, cols = y_hi - y_lo, x_hi - x_lo
    total = _zero(x)
    for q in range(t, delta.shape[0] * rows * cols, REDUCE):
        n, r = q // (rows * cols), q % (rows * cols)
        y, xo = y_lo + r // cols, x_lo + r % cols
        d = delta[n, o, y, xo]
        total += d if bias else d * x[n, c, y * stride + i - padding, xo * stride + j - padding]
    partial[t] = total
    cuda.syncthreads()
    total = _block_sum(partial)
    if t == 0:
        if bias:
            grad_b[o] = total
        else:
            grad_w[o, c, i, j] = total


def conv_weight_grad(x, delta, stride, padding, grad_w, grad_b, stream=0):
    """Weight and bias gradients of a convolution.

        grad_w[o, c, i, j] = sum_{n, y, x} delta[n, o, y, x] x[n, c, y s + i - p, x s + j - p],
        grad_b[o] = sum_{n, y, x} delta[n, o, y, x].

    Sums over the batch, not means: ``delta`` carries the ``1/N``.

    Parameters
    ----------
    x : device array ``(N, C_in, H, W)``.
    delta : device array ``(N, C_out, H_out, W_out)``.
    stride, padding : int
    grad_w : device array ``(C_out, C_in, k, k)``, overwritten.
    grad_b : device array ``(C_out,)``, overwritten.
    stream : CUDA stream, optional
    """
    _check_conv(x.shape, grad_w.shape, delta.shape, stride, padding)
    if grad_b.shape[0] != grad_w.shape[0]:
        raise ValueError("conv: the bias gradient must have C_out entries")
    blocks = grad_w.size + grad_b.size
    conv_weight_grad_kernel[blocks, REDUCE, stream](x, delta, stride, padding, grad_w, grad_b)


# ----------------------------------------------------------------------------- pooling


@cuda.jit
def maxpool_forward_kernel(x, k, stride, out, argmax):
    """``out[n, c, y, x] = max_{i,j < k} x[n, c, y s + i, x s + j]``, ``argmax`` its flat
    index ``u W + v`` in the map (ties: the first in row-major order); one thread per output."""
    at = cuda.grid(1)
    if at >= out.size:
        return
    n, c, y, xo = _unravel(at, out.shape)
    w = x.shape[3]
    row, col = y * stride, xo * stride
    best, where = x[n, c, row, col], row * w + col
    for i in range(k):
        for j in range(k):
            v = x[n, c, row + i, col + j]
            if v > best:
                best, where = v, (row + i) * w + col + j
    out[n, c, y, xo] = best
    argmax[n, c, y, xo] = where


def maxpool_forward(x, k, stride, out, argmax, stream=0):
    """Max pooling: ``out[n, c, y, x] = max_{i,j < k} x[n, c, y s + i, x s + j]``.

    ``argmax[n, c, y, x]`` is the flat index ``u W + v`` of the maximum within its
    ``(H, W)`` map; ties go to the first in row-major order.

    Parameters
    ----------
    x : device array ``(N, C, H, W)``.
    k, stride : int
        The window's side and stride (no padding).
    out : device array ``(N, C, H_out, W_out)``, overwritten.
    argmax : int64 device array of ``out``'s shape, overwritten.
    stream : CUDA stream, optional
    """
    _check_pool(x.shape, out.shape, k, stride)
    if tuple(argmax.shape) != tuple(out.shape):
        raise ValueError("maxpool: argmax must have the output's shape")
    launch_1d(maxpool_forward_kernel, out.size, x, k, stride, out, argmax, stream=stream)


@cuda.jit
def maxpool_backward_kernel(delta, argmax, out):
    """``out[n, c, u, v] = sum_{y,x: argmax[n, c, y, x] = u W + v} delta[n, c, y, x]``.

    One thread per ``(n, c)`` map: it clears the map, then adds the deltas in ``(y, x)``
    order (the CPU kernel's order, hence its bits).
    """
    at = cuda.grid(1)
    if at >= out.shape[0] * out.shape[1]:
        return
    n, c = at // out.shape[1], at % out.shape[1]
    w = out.shape[3]
    for u in range(out.shape[2]):
        for v in range(w):
            out[n, c, u, v] = 0
    for y in range(delta.shape[2]):
        for xo in range(delta.shape[3]):
            where = argmax[n, c, y, xo]
            out[n, c, where // w, where % w] += delta[n, c, y, xo]


def maxpool_backward(delta, argmax, out, stream=0):
    """Max pooling's backward pass: each output's delta to the input that won its window.

        out[n, c, u, v] = sum_{y,x: argmax[n, c, y, x] = u W + v} delta[n, c, y, x]

    Overlapping windows that share a winner add up.

    Parameters
    ----------
    delta : device array ``(N, C, H_out, W_out)``.
    argmax : int64 device array of ``delta``'s shape, from :func:`maxpool_forward`.
    out : device array ``(N, C, H, W)``, the forward input's shape (only roughly checked),
        overwritten.
    stream : CUDA stream, optional
    """
    if tuple(argmax.shape) != tuple(delta.shape):
        raise ValueError("maxpool: argmax must have delta's shape")
    if out.shape[0] != delta.shape[0] or out.shape[1] != delta.shape[1]:
        raise ValueError("maxpool: out must be (N, C, H, W) with delta's N and C")
    if out.shape[2] < delta.shape[2] or out.shape[3] < delta.shape[3]:
        raise ValueError("maxpool: out must have the forward input's shape")
    maps = out.shape[0] * out.shape[1]
    launch_1d(maxpool_backward_kernel, maps, delta, argmax, out, stream=stream)


@cuda.jit
def avgpool_forward_kernel(x, k, stride, out):
    """``out[n, c, y, x] = (1 / k^2) sum_{i,j < k} x[n, c, y s + i, x s + j]``; one thread per output."""
    at = cuda.grid(1)
    if at >= out.size:
        return
    n, c, y, xo = _unravel(at, out.shape)
    row, col = y * stride, xo * stride
    total = _zero(x)
    for i in range(k):
        for j in range(k):
            total += x[n, c, row + i, col + j]
    out[n, c, y, xo] = total * _mean_scale(out, k)


def avgpool_forward(x, k, stride, out, stream=0):
    """Average pooling: ``out[n, c, y, x] = (1 / k^2) sum_{i,j < k} x[n, c, y s + i, x s + j]``.

    Global average pooling is ``k = H = W`` (output ``(N, C, 1, 1)``).

    Parameters
    ----------
    x : device array ``(N, C, H, W)``.
    k, stride : int
        The window's side and stride (no padding).
    out : device array ``(N, C, H_out, W_out)``, overwritten.
    stream : CUDA stream, optional
    """
    _check_pool(x.shape, out.shape, k, stride)
    launch_1d(avgpool_forward_kernel, out.size, x, k, stride, out, stream=stream)


@cuda.jit
def avgpool_backward_kernel(delta, k, stride, out):
    """``out[n, c, u, v] = (1 / k^2) sum_{y,x: u - y s in [0, k), v - x s in [0, k)} delta[n, c, y, x]``.

    One thread per entry of ``out``, gathering the windows that cover it in ``(y, x)``
    order; inputs that no window covers get 0.
    """
    at = cuda.grid(1)
    if at >= out.size:
        return
    n, c, u, v = _unravel(at, out.shape)
    y_lo, y_hi = _covering(u, stride, 0, k, delta.shape[2])
    x_lo, x_hi = _covering(v, stride, 0, k, delta.shape[3])
    total = _zero(out)
    for y in range(y_lo, y_hi):
        for xo in range(x_lo, x_hi):
            total += delta[n, c, y, xo]
    out[n, c, u, v] = total * _mean_scale(out, k)


def avgpool_backward(delta, k, stride, out, stream=0):
    """Average pooling's backward pass, the adjoint of :func:`avgpool_forward`.

        out[n, c, u, v] = (1 / k^2) sum_{y,x: u - y s in [0, k), v - x s in [0, k)} delta[n, c, y, x]

    Parameters
    ----------
    delta : device array ``(N, C, H_out, W_out)``.
    k, stride : int
        The forward pass's window and stride.
    out : device array ``(N, C, H, W)``, overwritten; inputs that no window covers get 0.
    stream : CUDA stream, optional
    """
    _check_pool(out.shape, delta.shape, k, stride)
    launch_1d(avgpool_backward_kernel, out.size, delta, k, stride, out, stream=stream)
