"""Matrix products as CUDA kernels (the twin of :mod:`fastfa.kernels.products`).

:func:`gemm_kernel`: ``C <- alpha op(A) op(B) + beta C`` with ``TILE x TILE`` tiles in shared
memory, one thread per entry of ``C``; ``op`` transposes through strides, so one kernel serves
the forward product (``h W``), the hidden signal (``delta F^T``) and the weight gradient
(``h^T delta``). :func:`gemm` launches it.
"""

from __future__ import annotations

from numba import cuda, float32

from fastfa.kernels.cuda_base import TILE


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
