"""CUDA kernels (numba ``@cuda.jit``): the only module of fastfa that imports numba's CUDA target.

The same conventions as :mod:`fastfa.kernels.cpu` (row vectors, ``a = h W + b``,
feedback in forward orientation, the output error carrying the batch's ``1/m``), so a
device step computes what a CPU step computes, up to float32 rounding.

Kernels
-------
- :func:`gemm_kernel`: ``C <- alpha op(A) op(B) + beta C`` with ``TILE x TILE`` tiles in
  shared memory, one thread per entry of ``C``; ``op`` transposes through strides, so one
  kernel serves the forward product (``h W``), the hidden signal (``delta F^T``) and the
  weight gradient (``h^T delta``).
- :func:`bias_activation_kernel`: ``z <- f(z + b)`` (tanh, logistic, relu, identity).
- :func:`softmax_error_kernel`: a row's softmax, its cross-entropy and the output error
  ``(y - t) / m``, one thread per row.
- :func:`derivative_kernel`: ``delta <- delta * f'(a)`` written through ``h = f(a)``.
- :func:`sgd_kernel`: heavy-ball momentum in the CPU engine's form (the state holds the
  carried momentum ``mu v``), so optimiser state moves between engines unchanged.
- :func:`column_sum_kernel`: bias gradients.

Set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported to run them on the CPU simulator
(slow: tiny shapes only); :func:`available` says whether a GPU or the simulator is there.
"""

from __future__ import annotations

import math

from numba import config, cuda, float32

from fastfa.kernels.codes import LOGISTIC, RELU, TANH

#: Threads per block side of the GEMM (TILE x TILE threads, two TILE x TILE tiles); small under
#: the simulator, which runs every thread as a Python thread.
TILE = 4 if config.ENABLE_CUDASIM else 16
THREADS = 128  # threads per block of the elementwise kernels


def available():
    """Whether numba can run CUDA kernels here (a GPU with a driver, or the simulator)."""
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver install raises instead of answering
        return False


@cuda.jit
def gemm_kernel(alpha, a, trans_a, b, trans_b, beta, c):
    """``c <- alpha op(a) op(b) + beta c`` (float32), tiled in shared memory.

    Launch with blocks of ``(TILE, TILE)`` threads over a grid covering ``c``
    (``x`` along columns, ``y`` along rows).
    """
    tile_a = cuda.shared.array((TILE, TILE), float32)
    tile_b = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    acc = float32(0.0)
    for k0 in range(0, depth, TILE):
        ka, kb = k0 + tx, k0 + ty
        if row < rows and ka < depth:
            tile_a[ty, tx] = a[ka, row] if trans_a else a[row, ka]
        else:
            tile_a[ty, tx] = 0.0
        if col < cols and kb < depth:
            tile_b[ty, tx] = b[col, kb] if trans_b else b[kb, col]
        else:
            tile_b[ty, tx] = 0.0
        cuda.syncthreads()
        for k in range(TILE):
            acc += tile_a[ty, k] * tile_b[k, tx]
        cuda.syncthreads()
    if row < rows and col < cols:
        if beta == 0.0:
            c[row, col] = alpha * acc
        else:
            c[row, col] = alpha * acc + beta * c[row, col]


def gemm(alpha, a, trans_a, b, trans_b, beta, c, stream=0):
    """Launch :func:`gemm_kernel` over ``c`` (device arrays)."""
    rows, cols = c.shape
    grid = ((cols + TILE - 1) // TILE, (rows + TILE - 1) // TILE)
    gemm_kernel[grid, (TILE, TILE), stream](alpha, a, trans_a, b, trans_b, beta, c)


@cuda.jit
def bias_activation_kernel(z, b, act):
    """``z[i, j] <- f(z[i, j] + b[j])``, one thread per entry (hidden activations)."""
    i = cuda.grid(1)
    rows, cols = z.shape
    if i >= rows * cols:
        return
    r, j = i // cols, i % cols
    v = z[r, j] + b[j]
    if act == TANH:
        v = math.tanh(v)
    elif act == LOGISTIC:
        v = 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    elif act == RELU:
        v = v if v > 0 else 0.0
    z[r, j] = v


@cuda.jit
def derivative_kernel(delta, h, act):
    """``delta <- delta * f'(a)`` written through ``h = f(a)``, one thread per entry."""
    i = cuda.grid(1)
    rows, cols = delta.shape
    if i >= rows * cols:
        return
    r, j = i // cols, i % cols
    if act == TANH:
        delta[r, j] *= 1.0 - h[r, j] * h[r, j]
    elif act == LOGISTIC:
        delta[r, j] *= h[r, j] * (1.0 - h[r, j])
    elif act == RELU:
        if h[r, j] <= 0:
            delta[r, j] = 0.0


@cuda.jit
def softmax_error_kernel(z, b, t, e, loss, errors, scale):
    """Row ``i``: ``y = softmax(z_i + b)`` into ``z``, ``e_i = scale (y - t_i)``, its
    cross-entropy into ``loss[i]`` and ``errors[i] = [argmax y != argmax t_i]``."""
    i = cuda.grid(1)
    rows, cols = z.shape
    if i >= rows:
        return
    top = -1e30
    for j in range(cols):
        v = z[i, j] + b[j]
        z[i, j] = v
        top = max(top, v)
    total = 0.0
    for j in range(cols):
        v = math.exp(z[i, j] - top)
        z[i, j] = v
        total += v
    best_y, best_t, cross = 0, 0, 0.0
    for j in range(cols):
        y = z[i, j] / total
        z[i, j] = y
        e[i, j] = scale * (y - t[i, j])
        if t[i, j] != 0:
            cross -= t[i, j] * math.log(max(y, 1e-12))
        if y > z[i, best_y]:
            best_y = j
        if t[i, j] > t[i, best_t]:
            best_t = j
    loss[i] = cross
    errors[i] = 1 if best_y != best_t else 0


@cuda.jit
def sign_kernel(a, out):
    """``out = sign(a)`` entry by entry, one thread per entry."""
    i = cuda.grid(1)
    rows, cols = a.shape
    if i >= rows * cols:
        return
    r, j = i // cols, i % cols
    v = a[r, j]
    out[r, j] = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


@cuda.jit
def column_sum_kernel(a, out):
    """``out[j] = sum_i a[i, j]``, one thread per column."""
    j = cuda.grid(1)
    rows, cols = a.shape
    if j >= cols:
        return
    total = 0.0
    for i in range(rows):
        total += a[i, j]
    out[j] = total


@cuda.jit
def sgd_kernel(w, g, carried, lr, mu, decay, nesterov):
    """SGD on a flat range, as the CPU engine: ``v = carried - lr (g + decay w)``, then
    ``w <- w + v`` (heavy ball; plain SGD when ``mu`` is 0) or ``w <- w + mu v - lr (g + decay w)``
    (Nesterov), and ``carried <- mu v``."""
    i = cuda.grid(1)
    if i >= w.size:
        return
    grad = g[i] + decay * w[i]
    v = carried[i] - lr * grad
    if nesterov:
        w[i] += mu * v - lr * grad
    else:
        w[i] += v
    carried[i] = mu * v


def launch_1d(kernel, n, *args, stream=0):
    """Launch an elementwise ``kernel`` with one thread for each of ``n`` items."""
    blocks = max(1, (n + THREADS - 1) // THREADS)
    kernel[blocks, THREADS, stream](*args)


@cuda.jit
def accumulate_kernel(loss_rows, error_rows, m, totals):
    """``totals += (sum of loss_rows[:m], sum of error_rows[:m])``; launch with one thread."""
    if cuda.grid(1) != 0:
        return
    loss, errors = 0.0, 0.0
    for i in range(m):
        loss += loss_rows[i]
        errors += error_rows[i]
    totals[0] += loss
    totals[1] += errors
