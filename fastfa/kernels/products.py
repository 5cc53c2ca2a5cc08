"""Matrix products of the CPU kernels: BLAS GEMM split over threads, and the sparse first-layer products."""

import numpy as np
from numba import prange

from fastfa.kernels.base import GEMM_GRAIN, SPARSE_DENSITY, kernel, parallel_kernel, parts_for, split
from fastfa.kernels.blas import gemm

# ---------------------------------------------------------------------- products


#: BLAS's transpose flags for :func:`product`. numba types a constant ``True`` or ``False``
#: argument as a literal and compiles the callee once for each combination; these numpy booleans
#: are typed as plain booleans, so one compile serves all four (BLAS takes the flags at run time).
TRANS = np.bool_(True)
NO_TRANS = np.bool_(False)


@parallel_kernel
def product(alpha, a, trans_a, b, trans_b, beta, c, threads):
    """``c <- alpha op(a) op(b) + beta c`` (BLAS :func:`gemm`), the columns of ``c`` split over
    threads; ``trans_*``: :data:`TRANS` or :data:`NO_TRANS`. Raises ``ValueError`` when the
    shapes do not chain (BLAS would only print a complaint and leave ``c`` as it was)."""
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    a_rows = a.shape[1] if trans_a else a.shape[0]
    b_depth, b_cols = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if a_rows != rows or b_cols != cols or b_depth != depth:
        raise ValueError("product: the shapes of op(a), op(b) and c do not chain")
    parts = parts_for(threads, rows * cols * depth, GEMM_GRAIN, cols)
    if parts == 1:
        gemm(alpha, a, trans_a, b, trans_b, beta, c)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, cols)
        if trans_b:
            gemm(alpha, a, trans_a, b[lo:hi], True, beta, c[:, lo:hi])
        else:
            gemm(alpha, a, trans_a, b[:, lo:hi], False, beta, c[:, lo:hi])


@kernel
def count_nonzero(x):
    """Number of non-zero entries of ``x``."""
    count = 0
    for v in x.flat:
        if v != 0:
            count += 1
    return count


@kernel
def is_sparse(x, nonzero):
    """True when ``nonzero`` (non-zero entries of ``x``) is at most :data:`SPARSE_DENSITY` of ``x.size``."""
    return nonzero <= SPARSE_DENSITY * x.size


@kernel
def nonzeros(v, index, value):
    """Positions and values of the non-zero entries of the vector ``v``; returns their count."""
    count = 0
    for k in range(v.size):
        if v[k] != 0:
            index[count] = k
            value[count] = v[k]
            count += 1
    return count


@kernel
def weighted_rows(matrix, index, value, count, out, accumulate=False):
    """``out = sum_{k < count} value[k] * matrix[index[k]]``, in order of ``k`` (``+=`` with ``accumulate``).

    Four rows go into each pass over ``out`` (the same additions, in the same
    order, as one row per pass), so ``out`` is read and written a quarter as often.
    """
    n = out.size
    if not accumulate:
        out[:] = 0.0
    k = 0
    while k + 4 <= count:
        v0, v1, v2, v3 = value[k], value[k + 1], value[k + 2], value[k + 3]
        r0, r1 = matrix[index[k]], matrix[index[k + 1]]
        r2, r3 = matrix[index[k + 2]], matrix[index[k + 3]]
        for j in range(n):
            out[j] = out[j] + v0 * r0[j] + v1 * r1[j] + v2 * r2[j] + v3 * r3[j]
        k += 4
    while k < count:
        v0, r0 = value[k], matrix[index[k]]
        for j in range(n):
            out[j] += v0 * r0[j]
        k += 1


@kernel
def _sparse_product_rows(x, w, out, lo, hi):
    """Rows ``lo..hi`` of :func:`sparse_product`."""
    index = np.empty(x.shape[1], dtype=np.int64)
    value = np.empty_like(x[0])
    for i in range(lo, hi):
        count = nonzeros(x[i], index, value)
        weighted_rows(w, index, value, count, out[i])


@parallel_kernel
def sparse_product(x, w, out, nonzero, threads):
    """``out = x @ w`` from the non-zero entries of ``x``, the rows of ``x`` split over threads.

    ``out_i = sum_{j: x_ij != 0} x_ij w_j``: a sample reads only the rows of ``w``
    its non-zero inputs select. ``nonzero`` counts the non-zero entries of ``x``.
    """
    m = x.shape[0]
    parts = parts_for(threads, nonzero * out.shape[1], GEMM_GRAIN, m)
    if parts == 1:
        _sparse_product_rows(x, w, out, 0, m)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, m)
        _sparse_product_rows(x, w, out, lo, hi)


@kernel
def _sparse_gradient_rows(x, delta, grad, lo, hi):
    """Rows ``lo..hi`` of :func:`sparse_gradient`."""
    index = np.empty(x.shape[0], dtype=np.int64)
    value = np.empty_like(x[:, 0])
    for j in range(lo, hi):
        count = nonzeros(x[:, j], index, value)
        weighted_rows(delta, index, value, count, grad[j])


@parallel_kernel
def sparse_gradient(x, delta, grad, nonzero, threads):
    """``grad = x^T delta`` from the non-zero entries of ``x``, the rows of ``grad`` split over threads.

    ``grad_j = sum_{i: x_ij != 0} x_ij delta_i``; ``nonzero`` counts the non-zero entries of ``x``.
    """
    n_in = x.shape[1]
    parts = parts_for(threads, nonzero * grad.shape[1] + grad.size, GEMM_GRAIN, n_in)
    if parts == 1:
        _sparse_gradient_rows(x, delta, grad, 0, n_in)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n_in)
        _sparse_gradient_rows(x, delta, grad, lo, hi)
