"""CPU kernels for 2-D convolution and pooling: numba ``@njit`` functions, standalone.

Layout and conventions
----------------------
Images are C-contiguous ``N x C x H x W`` arrays of one float dtype (float32 or
float64). A convolution has a square kernel ``W`` of shape ``(C_out, C_in, k, k)``,
a bias ``b`` of shape ``(C_out,)``, one stride ``s`` and one zero padding ``p`` for
both spatial axes, and computes the cross-correlation of PyTorch's ``Conv2d``:

    a[n, o, y, x] = b[o] + sum_{c, i, j} W[o, c, i, j] x[n, c, y s + i - p, x s + j - p],

with ``x`` read as 0 outside the image, and ``H_out = (H + 2p - k) // s + 1`` (the
same for ``W_out``). Pooling windows are ``k x k`` with stride ``s`` and no padding,
``H_out = (H - k) // s + 1`` (PyTorch's ``ceil_mode=False``); global average pooling
is ``k = H = W``.

im2col: the patches of one image form the matrix ``cols`` of shape ``(K, P)``,
``K = C_in k k`` (rows ordered ``(c, i, j)``, as ``W.reshape(C_out, K)``'s columns)
and ``P = H_out W_out`` (columns ordered ``(y, x)``, as one output map). A sample's
convolution is then one GEMM, ``a[n].reshape(C_out, P) = W.reshape(C_out, K) @ cols``,
written straight into NCHW; its transposed convolution is ``col2im(W^T delta[n])``
and its weight gradient ``delta[n] @ cols^T``.

Gradients follow :mod:`fastfa.kernels.cpu`: the ``1/N`` of the batch mean is carried
by ``delta`` (the output error is divided by the batch size once), so the weight and
bias gradients here are plain sums over the batch and the positions.

Threads: every batch kernel takes ``threads`` and splits the *samples* into that many
contiguous parts (numba ``prange``), each part writing only its own samples and its
own slice of ``workspace``; the weight gradient sums per-part buffers afterwards in a
fixed order (deterministic for a given thread count; thread counts differ by rounding).
BLAS is called from inside the parallel region, so the caller must hold OpenBLAS to one
thread meanwhile (:func:`fastfa.threads.kernel_threads`), as for the dense kernels:
OpenBLAS's own threads and numba's would fight for the cores (DESIGN.md section 4).
``python -m benchmarks.conv_kernels`` measures both ways.

Workspace: a 1-D array of the images' dtype with at least
:func:`conv_workspace_size` entries, one block per thread (``cols`` plus a gradient
accumulator). The kernels check the shapes they are given (BLAS does not) and raise
``ValueError`` on a mismatch.
"""

import numpy as np
from numba import prange

from fastfa.kernels.base import GEMM_GRAIN, PASS_GRAIN, kernel, parallel_kernel, parts_for, split
from fastfa.kernels.blas import gemm

# --------------------------------------------------------------------------- shapes


@kernel
def conv_output_size(h, k, stride, padding):
    """``h_out = (h + 2 padding - k) // stride + 1``; 0 or less when the kernel does not fit."""
    return (h + 2 * padding - k) // stride + 1


@kernel
def pool_output_size(h, k, stride):
    """``h_out = (h - k) // stride + 1`` (no padding, windows that fit entirely)."""
    return (h - k) // stride + 1


@kernel
def conv_output_shape(x_shape, w_shape, stride, padding):
    """``(N, C_out, H_out, W_out)`` of a convolution of ``x_shape`` with a kernel of ``w_shape``."""
    return (
        x_shape[0],
        w_shape[0],
        conv_output_size(x_shape[2], w_shape[2], stride, padding),
        conv_output_size(x_shape[3], w_shape[3], stride, padding),
    )


@kernel
def pool_output_shape(x_shape, k, stride):
    """``(N, C, H_out, W_out)`` of ``k x k`` pooling with stride ``stride``."""
    return (
        x_shape[0],
        x_shape[1],
        pool_output_size(x_shape[2], k, stride),
        pool_output_size(x_shape[3], k, stride),
    )


@kernel
def im2col_shape(c_in, h, w, k, stride, padding):
    """``(K, P) = (c_in k k, h_out w_out)``: the shape of one image's ``cols``."""
    return c_in * k * k, conv_output_size(h, k, stride, padding) * conv_output_size(w, k, stride, padding)


@kernel
def _block_size(c_in, h, w, c_out, k, stride, padding):
    """Entries of one thread's workspace block: ``cols`` (``K x P``) and a ``C_out x (K + 1)`` gradient."""
    kk, p = im2col_shape(c_in, h, w, k, stride, padding)
    return kk * p + c_out * (kk + 1)


@kernel
def conv_workspace_size(x_shape, w_shape, stride, padding, threads):
    """Workspace entries for every conv kernel on these shapes with ``threads`` threads.

    ``threads x (K P + C_out (K + 1))``, ``K = C_in k k``, ``P = H_out W_out``.
    """
    size = _block_size(x_shape[1], x_shape[2], x_shape[3], w_shape[0], w_shape[2], stride, padding)
    return max(1, threads) * size


# --------------------------------------------------------------------------- im2col


@kernel
def _inside(j, stride, padding, w, w_out):
    """Output columns ``[lo, hi)`` whose input column ``x s + j - p`` lies in ``[0, w)``."""
    lo = 0
    if padding > j:
        lo = (padding - j + stride - 1) // stride
    hi = (w - 1 + padding - j) // stride + 1
    hi = min(w_out, max(hi, lo))
    return min(lo, w_out), hi


@kernel
def im2col(image, k, stride, padding, cols):
    """Patches of one image: ``cols[(c k + i) k + j, y W_out + x] = image[c, y s + i - p, x s + j - p]``.

    ``image`` is ``(C, H, W)``, ``cols`` is ``(C k k, H_out W_out)``; entries that fall in
    the padding are 0. Every entry of ``cols`` is written.
    """
    c_in, h, w = image.shape
    h_out = conv_output_size(h, k, stride, padding)
    w_out = conv_output_size(w, k, stride, padding)
    if stride == 1 and padding == 0:  # every window inside the image: plain row copies
        for c in range(c_in):
            for i in range(k):
                for j in range(k):
                    dst = cols[(c * k + i) * k + j]
                    for y in range(h_out):
                        src = image[c, y + i]
                        base = y * w_out
                        for x in range(w_out):
                            dst[base + x] = src[x + j]
        return
    for c in range(c_in):
        for i in range(k):
            for j in range(k):
                row = (c * k + i) * k + j
                lo, hi = _inside(j, stride, padding, w, w_out)
                shift = j - padding
                for y in range(h_out):
                    iy = y * stride + i - padding
                    base = y * w_out
                    if iy < 0 or iy >= h:
                        for x in range(w_out):
                            cols[row, base + x] = 0
                        continue
                    for x in range(lo):
                        cols[row, base + x] = 0
                    if stride == 1:  # a contiguous copy, which vectorises
                        for x in range(lo, hi):
                            cols[row, base + x] = image[c, iy, x + shift]
                    else:
                        for x in range(lo, hi):
                            cols[row, base + x] = image[c, iy, x * stride + shift]
                    for x in range(hi, w_out):
                        cols[row, base + x] = 0


@kernel
def col2im(cols, k, stride, padding, image):
    """The adjoint of :func:`im2col`, accumulating.

        image[c, y s + i - p, x s + j - p] += cols[(c k + i) k + j, y W_out + x].

    Entries that fall in the padding are dropped. ``image`` (``(C, H, W)``) is not
    cleared first: overlapping windows (``s < k``) and earlier contents add up.
    """
    c_in, h, w = image.shape
    h_out = conv_output_size(h, k, stride, padding)
    w_out = conv_output_size(w, k, stride, padding)
    if stride == 1 and padding == 0:
        for c in range(c_in):
            for i in range(k):
                for j in range(k):
                    src = cols[(c * k + i) * k + j]
                    for y in range(h_out):
                        dst = image[c, y + i]
                        base = y * w_out
                        for x in range(w_out):
                            dst[x + j] += src[base + x]
        return
    for c in range(c_in):
        for i in range(k):
            for j in range(k):
                row = (c * k + i) * k + j
                lo, hi = _inside(j, stride, padding, w, w_out)
                shift = j - padding
                for y in range(h_out):
                    iy = y * stride + i - padding
                    if iy < 0 or iy >= h:
                        continue
                    base = y * w_out
                    if stride == 1:
                        for x in range(lo, hi):
                            image[c, iy, x + shift] += cols[row, base + x]
                    else:
                        for x in range(lo, hi):
                            image[c, iy, x * stride + shift] += cols[row, base + x]


@kernel
def _patches(x, cols, k, stride, padding, lo, hi, gather):
    """Samples ``lo:hi``: ``cols[n] = im2col(x[n])`` (``gather``) or ``x[n] += col2im(cols[n])``."""
    for s in range(lo, hi):
        if gather:
            im2col(x[s], k, stride, padding, cols[s])
        else:
            col2im(cols[s], k, stride, padding, x[s])


@parallel_kernel
def _patches_batch(x, cols, k, stride, padding, threads, gather):
    """:func:`_patches` of every sample, the samples split into parts over threads."""
    n = x.shape[0]
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    kk, p = im2col_shape(c_in, h, w, k, stride, padding)
    if cols.shape[0] != n or cols.shape[1] != kk or cols.shape[2] != p:
        raise ValueError("im2col_batch/col2im_batch: cols must be (N, C k k, H_out W_out)")
    parts = parts_for(threads, n * kk * p, PASS_GRAIN, n)
    if parts == 1:
        _patches(x, cols, k, stride, padding, 0, n, gather)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        _patches(x, cols, k, stride, padding, lo, hi, gather)


@kernel
def im2col_batch(x, k, stride, padding, cols, threads):
    """:func:`im2col` of every sample: ``cols[n] = im2col(x[n])``, ``cols`` is ``(N, K, P)``."""
    _patches_batch(x, cols, k, stride, padding, threads, True)


@kernel
def col2im_batch(cols, k, stride, padding, x, threads):
    """:func:`col2im` of every sample, accumulating: ``x[n] += col2im(cols[n])``."""
    _patches_batch(x, cols, k, stride, padding, threads, False)


# ----------------------------------------------------------------------- convolution


@kernel
def check_conv_shapes(x_shape, w_shape, a_shape, stride, padding):
    """Raise ``ValueError`` unless ``a_shape`` is the convolution of ``x_shape`` by ``w_shape``.

    Shared with the CUDA twins (:mod:`fastfa.kernels.cuda_conv`). Returns ``(H_out, W_out)``.
    """
    if stride < 1 or padding < 0:
        raise ValueError("conv: stride must be >= 1 and padding >= 0")
    if w_shape[2] != w_shape[3]:
        raise ValueError("conv: the kernel must be square (C_out, C_in, k, k)")
    if x_shape[1] != w_shape[1]:
        raise ValueError("conv: the input's channels differ from the kernel's C_in")
    h_out = conv_output_size(x_shape[2], w_shape[2], stride, padding)
    w_out = conv_output_size(x_shape[3], w_shape[3], stride, padding)
    if h_out < 1 or w_out < 1:
        raise ValueError("conv: the kernel is larger than the padded input")
    if a_shape[0] != x_shape[0] or a_shape[1] != w_shape[0] or a_shape[2] != h_out or a_shape[3] != w_out:
        raise ValueError("conv: the output must be (N, C_out, H_out, W_out)")
    return h_out, w_out


@kernel
def _check_conv(x_shape, w_shape, a_shape, stride, padding, workspace, threads):
    """:func:`check_conv_shapes` and the workspace's size; return the parts to use and the block size.

    The parts are at most ``threads``, the samples, one per :data:`GEMM_GRAIN`
    multiply-adds and as many as ``workspace`` holds blocks for.
    """
    h_out, w_out = check_conv_shapes(x_shape, w_shape, a_shape, stride, padding)
    block = _block_size(x_shape[1], x_shape[2], x_shape[3], w_shape[0], w_shape[2], stride, padding)
    if workspace.size < block:
        raise ValueError("conv: workspace smaller than conv_workspace_size(..., threads=1)")
    kk = x_shape[1] * w_shape[2] * w_shape[3]
    work = x_shape[0] * w_shape[0] * kk * h_out * w_out
    return min(parts_for(threads, work, GEMM_GRAIN, x_shape[0]), workspace.size // block), block


@kernel
def _is_pointwise(k, stride, padding):
    """A 1 x 1 kernel with stride 1 and no padding: ``cols`` is the image itself."""
    return k == 1 and stride == 1 and padding == 0


@kernel
def _forward_samples(x, wm, b, k, stride, padding, am, cols, lo, hi):
    """Samples ``lo..hi`` of :func:`conv_forward`; ``am`` is the output as ``(N, C_out, P)``."""
    c_out = wm.shape[0]
    for s in range(lo, hi):
        out = am[s]
        if _is_pointwise(k, stride, padding):
            gemm(1.0, wm, False, x[s].reshape((x.shape[1], out.shape[1])), False, 0.0, out)
        else:
            im2col(x[s], k, stride, padding, cols)
            gemm(1.0, wm, False, cols, False, 0.0, out)
        for o in range(c_out):
            bo = b[o]
            for q in range(out.shape[1]):
                out[o, q] += bo


@parallel_kernel
def conv_forward(x, w, b, stride, padding, out, workspace, threads):
    """``out[n, o, y, x] = b[o] + sum_{c,i,j} w[o, c, i, j] x[n, c, y s + i - p, x s + j - p]``.

    PyTorch's ``Conv2d`` (cross-correlation, zero padding): per sample, im2col and one
    GEMM ``W.reshape(C_out, K) @ cols`` into ``out[n]``, then the bias. ``x`` is
    ``(N, C_in, H, W)``, ``w`` ``(C_out, C_in, k, k)``, ``b`` ``(C_out,)``, ``out``
    ``(N, C_out, H_out, W_out)``; the samples are split over ``threads``.
    """
    parts, block = _check_conv(x.shape, w.shape, out.shape, stride, padding, workspace, threads)
    if b.shape[0] != w.shape[0]:
        raise ValueError("conv: the bias must have C_out entries")
    c_out, c_in, k = w.shape[0], w.shape[1], w.shape[2]
    kk = c_in * k * k
    p = out.shape[2] * out.shape[3]
    n = x.shape[0]
    wm = w.reshape((c_out, kk))
    am = out.reshape((n, c_out, p))
    # A parallel region costs microseconds even for one part. np.intp(0), not 0: a literal
    # would compile the helper a second time, for Literal[int](0) (so in every kernel here).
    if parts == 1:
        _forward_samples(
            x, wm, b, k, stride, padding, am, workspace[: kk * p].reshape((kk, p)), np.intp(0), n
        )
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        cols = workspace[part * block : part * block + kk * p].reshape((kk, p))
        _forward_samples(x, wm, b, k, stride, padding, am, cols, lo, hi)


@kernel
def _input_samples(delta, km, k, stride, padding, out, cols, lo, hi):
    """Samples ``lo..hi`` of :func:`conv_backward_input`; ``delta`` as ``(N, C_out, P)``."""
    c_in = out.shape[1]
    for s in range(lo, hi):
        if _is_pointwise(k, stride, padding):
            gemm(1.0, km, True, delta[s], False, 0.0, out[s].reshape((c_in, delta.shape[2])))
        else:
            gemm(1.0, km, True, delta[s], False, 0.0, cols)
            out[s][...] = 0
            col2im(cols, k, stride, padding, out[s])


@parallel_kernel
def conv_backward_input(delta, kernel, stride, padding, out, workspace, threads):
    """Transposed convolution of ``delta`` with ``kernel``.

        out[n, c, u, v] = sum_{o, i, j, y, x} kernel[o, c, i, j] delta[n, o, y, x]

    over the ``(y, x, i, j)`` with ``u = y s + i - p`` and ``v = x s + j - p``.

    The adjoint of :func:`conv_forward`'s linear part: per sample the GEMM
    ``cols = kernel.reshape(C_out, K)^T @ delta[n]`` and :func:`col2im` into a cleared
    ``out[n]``. ``delta`` is ``(N, C_out, H_out, W_out)``, ``kernel`` has the forward
    weights' shape ``(C_out, C_in, k, k)`` and ``out`` the input's ``(N, C_in, H, W)``.
    With ``kernel = W`` this is backprop's signal (before the derivative); with a fixed
    random ``B`` of ``W``'s shape, feedback alignment's.
    """
    parts, block = _check_conv(out.shape, kernel.shape, delta.shape, stride, padding, workspace, threads)
    c_out, c_in, k = kernel.shape[0], kernel.shape[1], kernel.shape[2]
    kk = c_in * k * k
    p = delta.shape[2] * delta.shape[3]
    n = delta.shape[0]
    km = kernel.reshape((c_out, kk))
    dm = delta.reshape((n, c_out, p))
    if parts == 1:
        _input_samples(dm, km, k, stride, padding, out, workspace[: kk * p].reshape((kk, p)), np.intp(0), n)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        cols = workspace[part * block : part * block + kk * p].reshape((kk, p))
        _input_samples(dm, km, k, stride, padding, out, cols, lo, hi)


@kernel
def _clear(gw, gb):
    """``gw <- 0``, ``gb <- 0`` (here: in a parallel kernel each would become a parallel region)."""
    gw[...] = 0
    gb[:] = 0


@kernel
def _weight_grad_samples(x, delta, k, stride, padding, gw, gb, cols, lo, hi):
    """Samples ``lo..hi`` of :func:`conv_weight_grad`, added into ``gw`` (``(C_out, K)``) and ``gb``."""
    c_out, p = delta.shape[1], delta.shape[2]
    for s in range(lo, hi):
        ds = delta[s]
        if _is_pointwise(k, stride, padding):
            gemm(1.0, ds, False, x[s].reshape((x.shape[1], p)), True, 1.0, gw)
        else:
            im2col(x[s], k, stride, padding, cols)
            gemm(1.0, ds, False, cols, True, 1.0, gw)
        for o in range(c_out):
            total = ds[o, 0] * 0
            for q in range(p):
                total += ds[o, q]
            gb[o] += total


@parallel_kernel
def conv_weight_grad(x, delta, stride, padding, grad_w, grad_b, workspace, threads):
    """Weight and bias gradients of a convolution.

        grad_w[o, c, i, j] = sum_{n, y, x} delta[n, o, y, x] x[n, c, y s + i - p, x s + j - p],
        grad_b[o] = sum_{n, y, x} delta[n, o, y, x].

    Sums over the batch, not means: ``delta`` carries the ``1/N`` (module docstring).
    Per sample im2col and the GEMM ``delta[n] @ cols^T``. ``grad_w`` (``(C_out, C_in, k, k)``)
    and ``grad_b`` are overwritten. With several parts each part sums its samples in its
    own workspace block; the blocks are then added in order.
    """
    parts, block = _check_conv(x.shape, grad_w.shape, delta.shape, stride, padding, workspace, threads)
    if grad_b.shape[0] != grad_w.shape[0]:
        raise ValueError("conv: the bias gradient must have C_out entries")
    c_out, c_in, k = grad_w.shape[0], grad_w.shape[1], grad_w.shape[2]
    kk = c_in * k * k
    p = delta.shape[2] * delta.shape[3]
    n = x.shape[0]
    dm = delta.reshape((n, c_out, p))
    gw = grad_w.reshape((c_out, kk))
    _clear(gw, grad_b)
    if parts == 1:
        cols = workspace[: kk * p].reshape((kk, p))
        _weight_grad_samples(x, dm, k, stride, padding, gw, grad_b, cols, np.intp(0), n)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n)
        start = part * block
        cols = workspace[start : start + kk * p].reshape((kk, p))
        pw = workspace[start + kk * p : start + kk * p + c_out * kk].reshape((c_out, kk))
        pb = workspace[start + kk * p + c_out * kk : start + block]
        _clear(pw, pb)
        _weight_grad_samples(x, dm, k, stride, padding, pw, pb, cols, lo, hi)
    for part in range(parts):
        start = part * block + kk * p
        for o in range(c_out):
            for q in range(kk):
                gw[o, q] += workspace[start + o * kk + q]
            grad_b[o] += workspace[start + c_out * kk + o]


# The pooling kernels live in :mod:`fastfa.kernels.pooling`; their names stay reachable here.
from fastfa.kernels.pooling import (  # noqa: E402, F401
    avgpool_backward,
    avgpool_forward,
    check_pool_shapes,
    maxpool_backward,
    maxpool_forward,
)
