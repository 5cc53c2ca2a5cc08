"""Elementwise CUDA kernels (the twin of :mod:`fastfa.kernels.elementwise`): bias and activation,
derivative times signal, the output error, signs, column sums, and the row gather and loss totals.

- :func:`bias_activation_kernel`: ``z <- f(z + b)`` (tanh, logistic, relu, identity).
- :func:`output_error_kernel`: a row's output (softmax or elementwise), its loss
  (cross-entropy or squared error) and the output error ``dLoss/da_L / m``, one thread per row.
- :func:`derivative_kernel`: ``delta <- delta * f'(a)`` written through ``h = f(a)``.
- :func:`sign_kernel`: ``sign(a)`` (the direct-sign signal); :func:`column_sum_kernel`: bias
  gradients.
- :func:`gather_rows_kernel`: a batch order's rows of a dataset chunk held on the device;
  :func:`accumulate_kernel`: a batch's summed loss and error count.

The device functions ``_activate``, ``_derivative``, ``_output_row`` and ``_sign`` are shared
with the fused kernel (:mod:`fastfa.kernels.cuda_fused`).
"""

from __future__ import annotations

import math

from numba import cuda, float32

from fastfa.kernels.base import LOG_CLIP  # probabilities are clipped here when the loss is reported
from fastfa.kernels.codes import CROSS_ENTROPY, LOGISTIC, RELU, SOFTMAX, TANH
from fastfa.kernels.cuda_base import _greater


@cuda.jit(device=True, inline=True)
def _activate(v, act):
    if act == TANH:
        return math.tanh(v)
    if act == LOGISTIC:
        return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    if act == RELU:
        return v if v > 0 else 0.0
    return v


@cuda.jit(device=True, inline=True)
def _derivative(h, act):
    if act == TANH:
        return 1.0 - h * h
    if act == LOGISTIC:
        return h * (1.0 - h)
    if act == RELU:
        return 1.0 if h > 0 else 0.0
    return 1.0


@cuda.jit(device=True, inline=True)
def _sign(v):
    return float32(1.0) if v > 0 else (float32(-1.0) if v < 0 else float32(0.0))


@cuda.jit
def bias_activation_kernel(z, b, act):
    """``z[i, j] <- f(z[i, j] + b[j])``, one thread per entry (hidden activations)."""
    i = cuda.grid(1)
    rows, cols = z.shape
    if i < rows * cols:
        r, j = i // cols, i % cols
        z[r, j] = _activate(z[r, j] + b[j], act)


@cuda.jit
def derivative_kernel(delta, h, act):
    """``delta <- delta * f'(a)`` written through ``h = f(a)``, one thread per entry."""
    i = cuda.grid(1)
    rows, cols = delta.shape
    if i < rows * cols:
        r, j = i // cols, i % cols
        delta[r, j] *= _derivative(h[r, j], act)


@cuda.jit(device=True)
def _output_row(z, t, e, scale, act, loss, classification):
    """One row of the output layer, as the CPU engine's ``output_error``: ``z`` (``a_L``, bias
    included) becomes ``y = f(z)`` in place (softmax or an elementwise ``f``) and ``e`` the error
    ``scale dLoss/da_L``; returns the row's loss and whether it is misclassified.

    Cross-entropy (softmax or logistic output): ``e = scale (y - t)``, loss ``-sum t log y``
    (plus ``-(1 - t) log(1 - y)`` per unit for logistic). Squared error ``0.5 ||y - t||^2``:
    ``e = scale (y - t) f'(a_L)``. With ``classification`` a row is wrong when ``argmax y !=
    argmax t`` (one output: ``y`` and ``t`` on different sides of 0.5).
    """
    c = z.shape[0]
    if act == SOFTMAX:
        top = z[0]
        for j in range(1, c):
            top = _greater(top, z[j])
        total = float32(0.0)
        for j in range(c):
            v = math.exp(z[j] - top)
            z[j] = v
            total += v
        for j in range(c):
            z[j] = z[j] / total
    else:
        for j in range(c):
            z[j] = _activate(z[j], act)
    value, best_y, best_t = float32(0.0), 0, 0
    for j in range(c):
        y, diff = z[j], z[j] - t[j]
        if loss == CROSS_ENTROPY:
            if t[j] != 0:
                value -= t[j] * math.log(_greater(y, float32(LOG_CLIP)))
            if act == LOGISTIC and t[j] != 1:
                value -= (1.0 - t[j]) * math.log(_greater(1.0 - y, float32(LOG_CLIP)))
            e[j] = scale * diff
        else:
            value += 0.5 * diff * diff
            e[j] = scale * diff * _derivative(y, act)
        if y > z[best_y]:
            best_y = j
        if t[j] > t[best_t]:
            best_t = j
    if not classification:
        return value, False
    if c == 1:
        return value, (z[0] > 0.5) != (t[0] > 0.5)
    return value, best_y != best_t


@cuda.jit
def output_error_kernel(z, b, t, e, loss_rows, errors, scale, act, loss, classification):
    """Row ``i``: ``y = f(z_i + b)`` into ``z``, its error ``e_i``, its loss into ``loss_rows[i]``
    and ``errors[i] = 1`` when it is misclassified (:func:`_output_row`), one thread per row."""
    i = cuda.grid(1)
    rows, cols = z.shape
    if i < rows:
        for j in range(cols):
            z[i, j] += b[j]
        loss_rows[i], wrong = _output_row(z[i], t[i], e[i], scale, act, loss, classification)
        errors[i] = 1 if wrong else 0


@cuda.jit
def sign_kernel(a, out):
    """``out = sign(a)`` entry by entry, one thread per entry."""
    i = cuda.grid(1)
    rows, cols = a.shape
    if i < rows * cols:
        out[i // cols, i % cols] = _sign(a[i // cols, i % cols])


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
def gather_rows_kernel(src, order, dst):
    """``dst[i, :] = src[order[i], :]``, one thread per entry of ``dst`` (rows of a chunk on
    the device, in the order an epoch visits them)."""
    i = cuda.grid(1)
    rows, cols = dst.shape
    if i < rows * cols:
        r = i // cols
        dst[r, i - r * cols] = src[order[r], i - r * cols]


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
