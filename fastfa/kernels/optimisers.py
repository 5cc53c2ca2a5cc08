"""Optimiser steps of the CPU kernels: SGD (heavy ball, Nesterov), Adam, Batch Manhattan, the fused
and sparse paths."""

import math

import numpy as np
from numba import prange

from fastfa.kernels.base import (
    GEMM_GRAIN,
    PASS_GRAIN,
    flush_subnormal,
    inlined_kernel,
    kernel,
    parallel_kernel,
    parts_for,
    split,
)
from fastfa.kernels.codes import (
    ADAM,
    F_BETA1,
    F_BETA2,
    F_EPSILON,
    F_LR,
    F_MOMENTUM,
    F_WEIGHT_DECAY,
    I_NESTEROV,
    I_OPTIMIZER,
    I_THREADS,
    MANHATTAN,
    SGD,
)
from fastfa.kernels.dense import first_trainable, layer_input
from fastfa.kernels.layout import activation_view, bias_view, n_weights, weight_view
from fastfa.kernels.products import (
    NO_TRANS,
    TRANS,
    count_nonzero,
    is_sparse,
    nonzeros,
    product,
    weighted_rows,
)

# ----------------------------------------------------------------------- optimisers


@kernel
def _sgd_range(params, grads, carried, lo, hi, lr, momentum, decay, nesterov):
    """SGD over ``params[lo:hi]`` with gradient ``g = grad + decay * w``.

    Plain (momentum 0): ``w -= lr g``. Momentum (Polyak's heavy ball):
    ``v <- mu v - lr g``, then ``w += v``, or ``w += mu v - lr g`` with
    Nesterov's correction (Sutskever et al. 2013; the form scikit-learn's MLP
    uses). ``carried`` holds ``mu v``, the momentum the next step carries, so
    that :func:`fused_sgd_step` can let BLAS add the gradient to it with
    ``beta = 1``; it is flushed to zero once subnormal (:func:`flush_subnormal`).
    """
    tiny = np.finfo(params.dtype).tiny
    # Slices indexed from 0, not ``range(lo, hi)``: an index numba cannot prove non-negative
    # gets a wraparound check that keeps LLVM from vectorising the loop (5-10x slower).
    w, g_in, c = params[lo:hi], grads[lo:hi], carried[lo:hi]
    if momentum == 0.0:
        for i in range(w.size):
            w[i] -= lr * (g_in[i] + decay * w[i])
    elif nesterov:
        for i in range(w.size):
            g = g_in[i] + decay * w[i]
            v = c[i] - lr * g
            w[i] += momentum * v - lr * g
            c[i] = flush_subnormal(momentum * v, tiny)
    else:
        for i in range(w.size):
            v = c[i] - lr * (g_in[i] + decay * w[i])
            w[i] += v
            c[i] = flush_subnormal(momentum * v, tiny)


@kernel
def _adam_range(params, grads, first, second, lo, hi, lr, beta1, beta2, eps, decay, step):
    """Adam (Kingma and Ba 2015) over ``params[lo:hi]``, with bias correction folded into the rate.

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``; the moments are flushed
    to zero once subnormal (:func:`flush_subnormal`).
    """
    tiny = np.finfo(params.dtype).tiny
    rate = lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    w, g_in, m, v = params[lo:hi], grads[lo:hi], first[lo:hi], second[lo:hi]  # see _sgd_range
    for i in range(w.size):
        g = g_in[i] + decay * w[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = flush_subnormal(mi, tiny)
        v[i] = flush_subnormal(vi, tiny)
        w[i] -= rate * mi / (math.sqrt(vi) + eps)


@parallel_kernel
def optimise_range(params, grads, state, lo, hi, icfg, fcfg, decay, step):
    """The optimiser of ``icfg`` over ``params[lo:hi]``, the range split over threads."""
    n = hi - lo
    parts = parts_for(icfg[I_THREADS], n, PASS_GRAIN, n)
    if parts == 1:
        _optimise(params, grads, state, lo, hi, icfg, fcfg, decay, step)
        return
    for part in prange(parts):
        a, b = split(part, parts, n)
        _optimise(params, grads, state, lo + a, lo + b, icfg, fcfg, decay, step)


@kernel
def _signs(grads, lo, hi):
    """``grads[lo:hi] <- sign(grads[lo:hi])`` (``-1``, ``0`` or ``1``; Batch Manhattan's step)."""
    g = grads[lo:hi]
    for i in range(g.size):
        g[i] = 1.0 if g[i] > 0.0 else (-1.0 if g[i] < 0.0 else 0.0)


@kernel
def _optimise(params, grads, state, lo, hi, icfg, fcfg, decay, step):
    """Serial body of :func:`optimise_range`.

    Batch Manhattan (Liao, Leibo and Poggio 2016) is SGD (momentum and Nesterov included) on
    ``sign(grad)``: each parameter moves by ``lr`` times the momentum recursion of its batch
    gradient's sign, ``v <- mu v + sign(g) + decay w``, ``w <- w - lr v``; the weight decay is
    added after the sign, as Liao et al. write the update. The signs replace the gradient in
    ``grads`` (scratch of the step) before the SGD pass.
    """
    lr = fcfg[F_LR]
    if icfg[I_OPTIMIZER] == MANHATTAN:
        _signs(grads, lo, hi)
    if icfg[I_OPTIMIZER] == ADAM:
        b1, b2, eps = fcfg[F_BETA1], fcfg[F_BETA2], fcfg[F_EPSILON]
        _adam_range(params, grads, state[0], state[1], lo, hi, lr, b1, b2, eps, decay, step)
    else:
        _sgd_range(params, grads, state[0], lo, hi, lr, fcfg[F_MOMENTUM], decay, icfg[I_NESTEROV] != 0)


@kernel
def update_parameters(params, grads, state, sizes, icfg, fcfg, step):
    """One optimiser step on the trainable layers (weight decay on weights only).

    ``state`` is ``(2, params.size)``: the carried momentum ``mu v`` for SGD,
    first and second moments for Adam. ``step`` counts updates from 1 (Adam's bias correction).
    """
    first = first_trainable(icfg)
    w_lo = 0
    for k in range(first):
        w_lo += sizes[k] * sizes[k + 1]
    w_hi = n_weights(sizes)
    b_lo = w_hi
    for k in range(1, first + 1):
        b_lo += sizes[k]
    optimise_range(params, grads, state, w_lo, w_hi, icfg, fcfg, fcfg[F_WEIGHT_DECAY], step)
    optimise_range(params, grads, state, b_lo, params.size, icfg, fcfg, 0.0, step)


@kernel
def uses_fused_sgd(icfg, fcfg):
    """Whether a step takes :func:`fused_sgd_step`: SGD without Nesterov's correction, or with it
    but without momentum, where the correction is void. Nesterov with momentum and Adam go
    through a gradient buffer (:func:`weight_gradients`, :func:`update_parameters`)."""
    return icfg[I_OPTIMIZER] == SGD and (icfg[I_NESTEROV] == 0 or fcfg[F_MOMENTUM] == 0.0)


@inlined_kernel
def fused_sgd_step(params, state, sizes, icfg, fcfg, x, hidden, deltas, decayed, sparse, step):
    """SGD (plain or heavy-ball momentum) with the weight gradient accumulated by BLAS.

    With ``g = h_{l-1}^T delta_l`` (never stored):

    - plain:    ``W <- (1 - lr wd) W - lr g``, one GEMM with ``beta = 1 - lr wd``;
    - momentum: ``v <- mu v - lr g`` as one GEMM with ``beta = 1`` onto the
      carried momentum ``mu v`` kept in ``state[0]``, then one pass
      ``v <- v - lr wd W``, ``W <- W + v``, ``state[0] <- mu v``.

    Sparse inputs take :func:`sparse_sgd` for the first layer (unless ``sparse`` is None, as in
    :func:`~fastfa.kernels.dense.forward`), which defers the decay of the rows it does not
    touch when ``decayed`` has entries (:func:`defers_decay`). Biases
    likewise, without decay. The same step as :func:`weight_gradients` followed by
    :func:`update_parameters`, up to rounding, with fewer passes over the weights.
    ``step`` numbers this update.
    """
    m = x.shape[0]
    lr, mu, decay = fcfg[F_LR], fcfg[F_MOMENTUM], fcfg[F_WEIGHT_DECAY]
    threads = icfg[I_THREADS]
    carried = state[0]
    for layer in range(first_trainable(icfg), sizes.size - 1):
        h_in = layer_input(x, hidden, sizes, layer, m)
        delta = activation_view(deltas, sizes, layer, m)
        w = weight_view(params, sizes, layer)
        v = weight_view(carried, sizes, layer)
        nonzero = count_nonzero(x) if layer == 0 and sparse is not None else 0
        if layer == 0 and sparse is not None and is_sparse(x, nonzero):
            sparse_sgd(x, delta, w, v, lr, mu, lr * decay, nonzero, threads, decayed, step)
        elif mu == 0.0:
            product(-lr, h_in, TRANS, delta, NO_TRANS, 1.0 - lr * decay, w, threads)
        else:
            product(-lr, h_in, TRANS, delta, NO_TRANS, 1.0, v, threads)
            apply_velocity(w, v, lr * decay, mu, threads)
        b = bias_view(params, sizes, layer)
        n_out = b.size
        if mu == 0.0:
            for i in range(m):
                for j in range(n_out):
                    b[j] -= lr * delta[i, j]
            continue
        vb = bias_view(carried, sizes, layer)
        for i in range(m):
            for j in range(n_out):
                vb[j] -= lr * delta[i, j]
        tiny = np.finfo(vb.dtype).tiny
        for j in range(n_out):
            b[j] += vb[j]
            vb[j] = flush_subnormal(mu * vb[j], tiny)


@kernel
def _apply_velocity(w, v, shrink, mu):
    """``v <- v - shrink w``, ``w <- w + v``, ``v <- mu v`` (flushed once subnormal), row by row."""
    rows, cols = w.shape
    tiny = np.finfo(v.dtype).tiny
    for i in range(rows):
        w_row, v_row = w[i], v[i]
        for j in range(cols):
            vj = v_row[j] - shrink * w_row[j]
            w_row[j] += vj
            v_row[j] = flush_subnormal(mu * vj, tiny)


@parallel_kernel
def apply_velocity(w, v, shrink, mu, threads):
    """:func:`_apply_velocity` with the rows split over threads."""
    rows, cols = w.shape
    parts = parts_for(threads, rows * cols, PASS_GRAIN, rows)
    if parts == 1:
        _apply_velocity(w, v, shrink, mu)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, rows)
        _apply_velocity(w[lo:hi], v[lo:hi], shrink, mu)


@parallel_kernel
def sparse_sgd(x, delta, w, carried, lr, mu, shrink, nonzero, threads, decayed, step):
    """The SGD step of a first layer with sparse inputs, the rows of ``w`` split over threads.

    ``g_j = sum_{i: x_ij != 0} x_ij delta_i`` from the non-zero inputs only, then
    as :func:`fused_sgd_step`: plain ``w_j <- (1 - shrink) w_j - lr g_j`` (without
    decay, ``w_j += sum_i (-lr x_ij) delta_i`` straight into the row, so a row whose
    input is zero throughout the batch is not touched), or with momentum
    ``v = carried_j - lr g_j - shrink w_j``, ``w_j += v``, ``carried_j = mu v``.
    ``shrink`` is ``lr * weight_decay``; ``nonzero`` counts the non-zero entries of ``x``.

    Deferred decay (plain SGD, ``decayed`` not empty; :func:`defers_decay`): only the rows
    with a non-zero input move. Row ``j`` owes the decay of the steps after ``decayed[j]``,
    ``f_j = (1 - shrink)^(step - 1 - decayed[j])``, and ``x`` arrives already scaled by it
    (:func:`scale_by_pending_decay`, so the forward pass saw ``f_j w_j``); the step is then
    ``w_j <- (1 - shrink) f_j w_j - (lr / f_j) sum_i x_ij delta_i`` and ``decayed[j] = step``.
    """
    n_in = x.shape[1]
    deferred = mu == 0.0 and shrink != 0.0 and decayed.size > 0
    whole_rows = w.size if (mu != 0.0 or shrink != 0.0) and not deferred else 0  # passes over every row
    parts = parts_for(threads, nonzero * w.shape[1] + whole_rows, GEMM_GRAIN, n_in)
    if parts == 1:
        _sparse_sgd_rows(x, delta, w, carried, lr, mu, shrink, 0, n_in, deferred, decayed, step)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n_in)
        _sparse_sgd_rows(x, delta, w, carried, lr, mu, shrink, lo, hi, deferred, decayed, step)


@kernel
def _sparse_sgd_rows(x, delta, w, carried, lr, mu, shrink, lo, hi, deferred, decayed, step):
    """Rows ``lo..hi`` of :func:`sparse_sgd`."""
    tiny = np.finfo(w.dtype).tiny
    index = np.empty(x.shape[0], dtype=np.int64)
    value = np.empty_like(x[:, 0])
    g = np.empty_like(w[0])
    for j in range(lo, hi):
        count = nonzeros(x[:, j], index, value)
        w_row = w[j]
        if mu == 0.0 and shrink == 0.0:  # w_j += sum_i (-lr x_ij) delta_i, non-zero inputs only
            for k in range(count):
                value[k] *= -lr
            weighted_rows(delta, index, value, count, w_row, True)
            continue
        if deferred:
            if count == 0:
                continue
            owed = owed_decay(1.0 - shrink, step - 1 - decayed[j])
            keep = w_row.dtype.type((1.0 - shrink) * owed)  # the row's dtype keeps the loop narrow
            for k in range(count):
                value[k] *= -lr / owed
            if count == 1:  # one pass: w_j <- keep w_j - (lr / f_j) x_ij delta_i
                d, v0 = delta[index[0]], value[0]
                for c in range(w_row.size):
                    w_row[c] = keep * w_row[c] + v0 * d[c]
            else:
                for c in range(w_row.size):
                    w_row[c] *= keep
                weighted_rows(delta, index, value, count, w_row, True)
            decayed[j] = step
            continue
        weighted_rows(delta, index, value, count, g)
        if mu == 0.0:
            for c in range(g.size):
                w_row[c] = (1.0 - shrink) * w_row[c] - lr * g[c]
        else:
            v_row = carried[j]
            for c in range(g.size):
                vc = v_row[c] - lr * g[c] - shrink * w_row[c]
                w_row[c] += vc
                v_row[c] = flush_subnormal(mu * vc, tiny)


# ------------------------------------------------------------- deferred weight decay
#
# Plain SGD with weight decay at small batches: a sparse first layer moves only the rows of
# its non-zero inputs, but decay shrinks every row at every step, which would cost a pass
# over the whole matrix per step. Instead row j records in ``decayed[j]`` the step up to
# which its decay has been applied; the forward pass sees the owed decay through the inputs
# (``x_ij f_j`` times the stored row equals ``x_ij`` times the decayed row), a row settles
# its debt when it is next updated, and every row settles at the end of a call and whenever
# the smallest owed factor could fall below one half. Exactly the eager step, up to rounding.


@kernel
def defers_decay(icfg, fcfg, sizes):
    """Whether the first layer's weight decay is deferred: plain SGD with decay, first layer learning."""
    return (
        icfg[I_OPTIMIZER] == SGD
        and fcfg[F_MOMENTUM] == 0.0
        and fcfg[F_WEIGHT_DECAY] != 0.0
        and first_trainable(icfg) == 0
        and sizes.size > 1
    )


@kernel
def owed_decay(keep, steps):
    """``keep^steps`` as ``exp(steps log keep)``: one ``exp``, a few times cheaper than ``pow``."""
    return math.exp(steps * math.log(keep))


@kernel
def settle_decay(w, decayed, step, keep):
    """``w_j <- keep^(step - decayed[j]) w_j`` and ``decayed[j] = step`` for every row ``j``."""
    for j in range(w.shape[0]):
        owed = step - decayed[j]
        if owed > 0:
            factor = w.dtype.type(owed_decay(keep, owed))
            row = w[j]
            for c in range(row.size):
                row[c] *= factor
        decayed[j] = step


@kernel
def settle_interval(keep):
    """Steps after which every row settles, so that no owed factor falls below 1/2."""
    if keep >= 1.0:
        return 1 << 62
    return max(1, int(math.log(0.5) / math.log(keep)))


@kernel
def scale_by_pending_decay(x, decayed, step, keep):
    """``x_ij <- keep^(step - decayed[j]) x_ij`` for the non-zero inputs: the forward pass's
    view of the decay each first-layer row owes."""
    for j in range(x.shape[1]):
        owed = step - decayed[j]
        factor = 0.0  # computed at the column's first non-zero input (most columns have none)
        for i in range(x.shape[0]):
            if x[i, j] != 0 and owed > 0:
                if factor == 0.0:
                    factor = owed_decay(keep, owed)
                x[i, j] *= factor
