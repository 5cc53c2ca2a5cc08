"""CPU kernels: numba ``@njit`` functions for one family of learning rules.

Conventions (row-vector, as in DESIGN.md section 1). Layers are indexed from 0 in
the code: layer ``l`` maps ``sizes[l]`` inputs to ``sizes[l + 1]`` outputs,

    a_l = h_{l-1} W_l + b_l,    h_l = f_l(a_l),    h_{-1} = x.

All parameters live in one flat buffer ``params`` laid out as
``[W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]`` (each ``W_l`` C-ordered, shape
``(sizes[l], sizes[l+1])``), so the optimiser is one fused pass over contiguous
memory and weight decay covers exactly the first ``n_weights`` entries.

Feedback matrices live in a second flat buffer ``feedback`` in *forward
orientation*: hidden layer ``l`` owns ``F_l`` with shape ``(sizes[l+1], n_src)``
and receives

    delta_l = (s F_l^T) * f_l'(a_l),

where ``s`` is ``delta_{l+1}`` (layerwise rules; ``n_src = sizes[l+2]``) or the
output error ``e`` / the negated target (direct rules; ``n_src = sizes[L]``).
The paper's feedback matrix is ``B = F^T``. Backprop is the same product with
``F_l = W_{l+1}``, so fa with ``B = W^T`` *is* bp, operation for operation.

Every activation used here has a derivative that is a function of its output,
so only the activations ``h_l`` are kept, never the pre-activations.

The output error is divided by the batch size once, so every delta carries the
``1/m`` of the batch mean and the weight gradient is simply ``h^T delta``.

Threads: the kernels split each product and each elementwise pass over
``icfg[I_THREADS]`` threads themselves (numba ``prange``) while BLAS runs one
thread per caller (:mod:`fastfa.threads`); the two pools never compete for cores.

Sparse inputs: when at most :data:`SPARSE_DENSITY` of a batch's inputs are
non-zero (MNIST: about 19%), the first layer works from the non-zero entries
only, in the forward product and in the weight update.

Subnormal numbers: the output error, every hidden delta and the optimiser's
carried state are flushed to zero where their magnitude falls below the dtype's
smallest normal number (:func:`flush_subnormal`), as a CPU in flush-to-zero mode
would do. Late in training, saturated tanh units and confident softmax outputs
make such values common (a fifth of a deep MNIST net's output errors), and on
x86 every multiply with a subnormal operand takes a microcode assist: a GEMM with
3% subnormal entries ran 25 times slower. The values flushed are more than 30
orders of magnitude below anything that changes a weight.
"""

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from fastfa.kernels.blas import gemm
from fastfa.kernels.codes import (
    ADAM,
    CROSS_ENTROPY,
    DYNAMICS_KOLEN_POLLACK,
    DYNAMICS_MIRROR,
    DYNAMICS_SIGN,
    DYNAMICS_SIGN_REDRAW,
    F_BETA1,
    F_BETA2,
    F_EPSILON,
    F_LR,
    F_MIRROR_DECAY,
    F_MIRROR_LR,
    F_MIRROR_NOISE,
    F_MOMENTUM,
    F_WEIGHT_DECAY,
    I_CLASSIFICATION,
    I_DYNAMICS,
    I_FIRST_TRAINABLE,
    I_LOSS,
    I_NESTEROV,
    I_OPTIMIZER,
    I_SEED,
    I_SIGNAL,
    I_THREADS,
    LOGISTIC,
    RELU,
    SGD,
    SIGNAL_BACKPROP,
    SIGNAL_DIRECT,
    SIGNAL_DIRECT_SIGN,
    SIGNAL_LAYERWISE,
    SIGNAL_NONE,
    SIGNAL_TARGET,
    SOFTMAX,
    TANH,
)

#: Compile options of every kernel: cached on disk, and numpy's error model (a float
#: division by zero gives inf or nan instead of raising), without which the branch
#: numba inserts before each division keeps the loops from being vectorised.
kernel = njit(cache=True, error_model="numpy")
#: The same, for the kernels that split their work over threads.
parallel_kernel = njit(cache=True, error_model="numpy", parallel=True)

#: A batch whose inputs are at most this fraction non-zero takes the sparse
#: first-layer path. ``python -m benchmarks.sparsity`` on the 2-core development
#: machine (784 x 1000 layer): the sparse path breaks even near 0.6 of the inputs
#: non-zero at batch 32, 0.38 at batch 128 and 0.32 at batch 1024.
SPARSE_DENSITY = 0.3
GEMM_GRAIN = 1 << 18  # multiply-adds that make a thread's share of a product worth it
PASS_GRAIN = 1 << 14  # elements that make a thread's share of an elementwise pass worth it

LOG_CLIP = 1e-12  # probabilities are clipped here when the loss is reported


@kernel
def flush_subnormal(v, tiny):
    """``v``, or zero where ``|v| < tiny`` (``tiny``: the dtype's smallest normal number).

    NaN stays NaN, so divergence is still seen. See the module notes on subnormals.
    """
    return v if abs(v) >= tiny else v - v


# --------------------------------------------------------------------------- layout


@kernel
def n_weights(sizes):
    """Number of weight entries, sum_l sizes[l] * sizes[l+1]."""
    n = 0
    for layer in range(sizes.size - 1):
        n += sizes[layer] * sizes[layer + 1]
    return n


@kernel
def weight_view(params, sizes, layer):
    """``W_layer`` as a C-ordered ``(sizes[layer], sizes[layer+1])`` view of ``params``."""
    off = 0
    for k in range(layer):
        off += sizes[k] * sizes[k + 1]
    size = sizes[layer] * sizes[layer + 1]
    return params[off : off + size].reshape((sizes[layer], sizes[layer + 1]))


@kernel
def bias_view(params, sizes, layer):
    """``b_layer`` as a view of ``params`` (biases follow all the weights)."""
    off = n_weights(sizes)
    for k in range(1, layer + 1):
        off += sizes[k]
    return params[off : off + sizes[layer + 1]]


@kernel
def feedback_cols(sizes, signal, layer):
    """``n_src`` of hidden layer ``layer``: width of the signal it receives."""
    if signal == SIGNAL_LAYERWISE or signal == SIGNAL_BACKPROP:
        return sizes[layer + 2]
    return sizes[sizes.size - 1]


@kernel
def feedback_view(feedback, sizes, signal, layer):
    """``F_layer`` (forward orientation, ``(sizes[layer+1], n_src)``) inside ``feedback``."""
    off = 0
    for k in range(layer):
        off += sizes[k + 1] * feedback_cols(sizes, signal, k)
    cols = feedback_cols(sizes, signal, layer)
    return feedback[off : off + sizes[layer + 1] * cols].reshape((sizes[layer + 1], cols))


@kernel
def activation_view(buffer, sizes, layer, m):
    """Rows ``0..m`` of layer ``layer``'s ``(capacity, sizes[layer+1])`` slot in ``buffer``.

    The capacity (the most rows a workspace holds) is ``buffer.size // sum(sizes[1:])``.
    """
    total = 0
    for k in range(1, sizes.size):
        total += sizes[k]
    capacity = buffer.size // total
    off = 0
    for k in range(1, layer + 1):
        off += capacity * sizes[k]
    return buffer[off : off + m * sizes[layer + 1]].reshape((m, sizes[layer + 1]))


# ------------------------------------------------------------------------- threads


@kernel
def split(part, parts, n):
    """Bounds ``[lo, hi)`` of part ``part`` when ``n`` items are cut into ``parts`` near-equal parts."""
    return part * n // parts, (part + 1) * n // parts


@kernel
def parts_for(threads, work, grain, items):
    """Threads worth using: one per ``grain`` of work, at most ``threads`` and ``items``."""
    return max(1, min(threads, work // grain, items))


# ----------------------------------------------------------------------- elementwise

# Rational approximation tanh(x) ~ x P(x^2) / Q(x^2) on [-c, c], saturating beyond
# (the float32 approximation of Eigen's generic_fast_tanh_float): at most ~4 ulp
# from the float64 tanh on every float32, and it vectorises, where a call to libm's
# tanh per element does not (about 6x faster on a 128 x 1000 batch).
_TANH_P = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
_TANH_CLAMP = 7.90531110763549805


def tanh_bias(z, b):
    """In place ``z <- tanh(z + b)`` row by row (compiled through the overload below)."""
    np.tanh(z + b, out=z)


@overload(tanh_bias)
def _tanh_bias_impl(z, b):
    if z.dtype != types.float32:

        def exact(z, b):
            m, n = z.shape
            for i in range(m):
                for j in range(n):
                    z[i, j] = math.tanh(z[i, j] + b[j])

        return exact
    p1, p3, p5, p7, p9, p11, p13 = (np.float32(c) for c in _TANH_P)
    q0, q2, q4, q6 = (np.float32(c) for c in _TANH_Q)
    clamp = np.float32(_TANH_CLAMP)

    def rational(z, b):
        m, n = z.shape
        for i in range(m):
            for j in range(n):
                x = z[i, j] + b[j]
                x = clamp if x > clamp else x
                x = -clamp if x < -clamp else x
                x2 = x * x
                p = x2 * p13 + p11
                p = x2 * p + p9
                p = x2 * p + p7
                p = x2 * p + p5
                p = x2 * p + p3
                p = x2 * p + p1
                q = x2 * q6 + q4
                q = x2 * q + q2
                q = x2 * q + q0
                z[i, j] = x * p / q

    return rational


@kernel
def bias_activation(z, b, act):
    """In place: ``z <- f(z + b)`` for each row, fused in one pass.

    ``tanh`` in float32 is a rational approximation within a few ulp
    (:func:`tanh_bias`); ``softmax`` is ``exp(z_k - max z) / sum_j exp(z_j - max z)`` row by row;
    ``logistic`` uses the overflow-free form ``exp(min(z,0)) / (1 + exp(-|z|))``.
    """
    m, n = z.shape
    if act == TANH:
        tanh_bias(z, b)
    elif act == LOGISTIC:
        for i in range(m):
            for j in range(n):
                v = z[i, j] + b[j]
                if v >= 0:
                    z[i, j] = 1.0 / (1.0 + math.exp(-v))
                else:
                    ev = math.exp(v)
                    z[i, j] = ev / (1.0 + ev)
    elif act == RELU:
        for i in range(m):
            for j in range(n):
                v = z[i, j] + b[j]
                z[i, j] = v if v > 0 else 0.0
    elif act == SOFTMAX:
        for i in range(m):
            top = -np.inf
            for j in range(n):
                v = z[i, j] + b[j]
                z[i, j] = v
                if v > top:
                    top = v
            total = 0.0
            for j in range(n):
                v = math.exp(z[i, j] - top)
                z[i, j] = v
                total += v
            inv = 1.0 / total
            for j in range(n):
                z[i, j] *= inv
    else:  # IDENTITY
        for i in range(m):
            for j in range(n):
                z[i, j] += b[j]


@kernel
def multiply_derivative(delta, h, act):
    """In place: ``delta <- delta * f'(a)``, with ``f'`` written through ``h = f(a)``.

    tanh: ``1 - h^2``; logistic: ``h (1 - h)``; relu: ``[h > 0]``; identity: ``1``.
    Subnormal results are flushed to zero (:func:`flush_subnormal`).
    """
    m, n = delta.shape
    tiny = np.finfo(delta.dtype).tiny
    if act == TANH:
        for i in range(m):
            for j in range(n):
                delta[i, j] = flush_subnormal(delta[i, j] * (1.0 - h[i, j] * h[i, j]), tiny)
    elif act == LOGISTIC:
        for i in range(m):
            for j in range(n):
                delta[i, j] = flush_subnormal(delta[i, j] * (h[i, j] * (1.0 - h[i, j])), tiny)
    elif act == RELU:
        for i in range(m):
            for j in range(n):
                delta[i, j] = flush_subnormal(delta[i, j], tiny) if h[i, j] > 0 else 0.0
    else:  # IDENTITY
        for i in range(m):
            for j in range(n):
                delta[i, j] = flush_subnormal(delta[i, j], tiny)


@kernel
def _argmax(row):
    best = 0
    for j in range(1, row.size):
        if row[j] > row[best]:
            best = j
    return best


@kernel
def output_error(y, t, act, loss, classification, e, scale):
    """Output error ``e = scale * dLoss/da_L``, the summed loss and the error count.

    Cross-entropy with a softmax or logistic output: ``e = y - t`` and loss
    ``-sum t log y`` (plus ``-(1-t) log(1-y)`` per unit for logistic).
    Squared error ``0.5 ||y - t||^2``: ``e = (y - t) * f'(a_L)``.
    An error is counted when ``argmax y != argmax t`` (one output: ``y`` and
    ``t`` on different sides of 0.5) and ``classification`` is set.
    Subnormal errors are flushed to zero (:func:`flush_subnormal`).
    """
    m, n = y.shape
    tiny = np.finfo(e.dtype).tiny
    total = 0.0
    for i in range(m):
        for j in range(n):
            diff = y[i, j] - t[i, j]
            if loss == CROSS_ENTROPY:
                p = y[i, j]
                if t[i, j] != 0:
                    total -= t[i, j] * math.log(max(p, LOG_CLIP))
                if act == LOGISTIC and t[i, j] != 1:
                    total -= (1.0 - t[i, j]) * math.log(max(1.0 - p, LOG_CLIP))
                e[i, j] = flush_subnormal(scale * diff, tiny)
            else:
                total += 0.5 * diff * diff
                e[i, j] = flush_subnormal(scale * diff, tiny)
    if loss != CROSS_ENTROPY:
        multiply_derivative(e, y, act)
    errors = 0
    if classification:
        for i in range(m):
            if n == 1:
                if (y[i, 0] > 0.5) != (t[i, 0] > 0.5):
                    errors += 1
            elif _argmax(y[i]) != _argmax(t[i]):
                errors += 1
    return total, errors


@kernel
def column_sums(a, out):
    """``out[j] = sum_i a[i, j]`` (the bias gradient)."""
    out[:] = 0.0
    m, n = a.shape
    for i in range(m):
        for j in range(n):
            out[j] += a[i, j]


@parallel_kernel
def activate(z, b, act, threads):
    """:func:`bias_activation` with the rows of ``z`` split over threads."""
    m, n = z.shape
    parts = parts_for(threads, m * n, PASS_GRAIN, m)
    if parts == 1:  # a parallel region costs microseconds even for one part
        bias_activation(z, b, act)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, m)
        bias_activation(z[lo:hi], b, act)


@parallel_kernel
def derive(delta, h, act, threads):
    """:func:`multiply_derivative` with the rows split over threads."""
    m, n = delta.shape
    parts = parts_for(threads, m * n, PASS_GRAIN, m)
    if parts == 1:
        multiply_derivative(delta, h, act)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, m)
        multiply_derivative(delta[lo:hi], h[lo:hi], act)


# ---------------------------------------------------------------------- products


@parallel_kernel
def product(alpha, a, trans_a, b, trans_b, beta, c, threads):
    """``c <- alpha op(a) op(b) + beta c`` (BLAS :func:`gemm`), the columns of ``c`` split over threads."""
    rows, cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
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


# ------------------------------------------------------------------------- forward


@kernel
def forward(params, sizes, acts, x, hidden, threads):
    """Forward pass of ``x`` (``(m, sizes[0])``); activations go to ``hidden``.

    ``a_l = h_{l-1} W_l`` is one product per layer (:func:`sparse_product` for
    sparse inputs, else BLAS), then bias and activation in one fused pass.
    Returns the output view ``h_{L-1}`` (``(m, sizes[-1])``).
    """
    m = x.shape[0]
    h_in = x
    for layer in range(sizes.size - 1):
        h = activation_view(hidden, sizes, layer, m)
        w = weight_view(params, sizes, layer)
        nonzero = count_nonzero(x) if layer == 0 else 0
        if layer == 0 and is_sparse(x, nonzero):
            sparse_product(x, w, h, nonzero, threads)
        else:
            product(1.0, h_in, False, w, False, 0.0, h, threads)
        activate(h, bias_view(params, sizes, layer), acts[layer], threads)
        h_in = h
    return h_in


# ------------------------------------------------------------------------ feedback


@kernel
def counter_uniform(seed, step, index):
    """A uniform draw in [0, 1) from the counter ``(seed, step, index)``.

    SplitMix64's finaliser (Steele, Lea, Flood 2014) on a mix of the three
    integers: stateless, so a resumed run redraws exactly what it would have.
    """
    z = (
        np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        + np.uint64(step) * np.uint64(0xD1B54A32D192ED03)
        + np.uint64(index)
    )
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@kernel
def refresh_feedback(params, feedback, magnitude, sizes, icfg, step):
    """Sign-concordant feedback before a batch: ``F_l = |B0_l| * sign(W_{l+1})``.

    With ``sign-redraw`` dynamics each entry is further scaled by a fresh
    ``U[0, 1)`` draw (Liao et al. 2016's batchwise random magnitudes).
    ``magnitude`` holds ``|B0|`` in the layout of ``feedback``.
    """
    dynamics = icfg[I_DYNAMICS]
    signal = icfg[I_SIGNAL]
    if (dynamics != DYNAMICS_SIGN and dynamics != DYNAMICS_SIGN_REDRAW) or signal != SIGNAL_LAYERWISE:
        return
    seed = icfg[I_SEED]
    base = 0
    for layer in range(sizes.size - 2):
        f = feedback_view(feedback, sizes, signal, layer)
        mag = feedback_view(magnitude, sizes, signal, layer)
        w = weight_view(params, sizes, layer + 1)
        rows, cols = f.shape
        for i in range(rows):
            for j in range(cols):
                v = mag[i, j] * np.sign(w[i, j])
                if dynamics == DYNAMICS_SIGN_REDRAW:
                    v *= counter_uniform(seed, step, base + i * cols + j)
                f[i, j] = v
        base += rows * cols


# ----------------------------------------------------------------------- gradients


@kernel
def backward(params, feedback, sizes, acts, icfg, x, t, hidden, deltas):
    """Forward pass, output error and the rule's hidden signals ``delta_l``.

    For hidden layer ``l`` (0 <= l < L-1):

    - backprop:  ``delta_l = (delta_{l+1} W_{l+1}^T) * f'(a_l)``
    - layerwise: ``delta_l = (delta_{l+1} B_{l+1}) * f'(a_l)``
    - direct:    ``delta_l = (e D_l) * f'(a_l)``
    - direct-sign: ``delta_l = (sign(e) D_l / m) * f'(a_l)``
    - target:    ``delta_l = (-t D_l) * f'(a_l)``
    - none:      no signal; hidden deltas are not computed.

    ``delta_{L-1} = e / m`` carries the ``1/m`` of the batch mean. Deltas go to
    ``deltas`` (layout of ``hidden``). Returns ``(summed loss, error count)``.
    """
    m = x.shape[0]
    last = sizes.size - 2
    signal = icfg[I_SIGNAL]
    threads = icfg[I_THREADS]
    y = forward(params, sizes, acts, x, hidden, threads)
    e = activation_view(deltas, sizes, last, m)
    loss, errors = output_error(y, t, acts[last], icfg[I_LOSS], icfg[I_CLASSIFICATION], e, 1.0 / m)
    if signal == SIGNAL_NONE:
        return loss, errors
    for layer in range(last - 1, -1, -1):
        delta = activation_view(deltas, sizes, layer, m)
        if signal == SIGNAL_BACKPROP:
            source = activation_view(deltas, sizes, layer + 1, m)
            product(1.0, source, False, weight_view(params, sizes, layer + 1), True, 0.0, delta, threads)
        elif signal == SIGNAL_LAYERWISE:
            source = activation_view(deltas, sizes, layer + 1, m)
            f = feedback_view(feedback, sizes, signal, layer)
            product(1.0, source, False, f, True, 0.0, delta, threads)
        elif signal == SIGNAL_DIRECT:
            product(1.0, e, False, feedback_view(feedback, sizes, signal, layer), True, 0.0, delta, threads)
        elif signal == SIGNAL_DIRECT_SIGN:
            f = feedback_view(feedback, sizes, signal, layer)
            product(1.0 / m, np.sign(e), False, f, True, 0.0, delta, threads)
        elif signal == SIGNAL_TARGET:
            f = feedback_view(feedback, sizes, signal, layer)
            product(-1.0 / m, t, False, f, True, 0.0, delta, threads)
        derive(delta, activation_view(hidden, sizes, layer, m), acts[layer], threads)
    return loss, errors


@kernel
def layer_input(x, hidden, sizes, layer, m):
    """``h_{layer-1}``: the input of layer ``layer`` (``x`` for the first)."""
    if layer == 0:
        return x
    return activation_view(hidden, sizes, layer - 1, m)


@kernel
def weight_gradients(x, hidden, deltas, grads, sizes, first, m, threads):
    """``dW_l = h_{l-1}^T delta_l`` and ``db_l = sum_rows(delta_l)`` for layers ``first..L-1``."""
    for layer in range(first, sizes.size - 1):
        delta = activation_view(deltas, sizes, layer, m)
        grad = weight_view(grads, sizes, layer)
        nonzero = count_nonzero(x) if layer == 0 else 0
        if layer == 0 and is_sparse(x, nonzero):
            sparse_gradient(x, delta, grad, nonzero, threads)
        else:
            product(1.0, layer_input(x, hidden, sizes, layer, m), True, delta, False, 0.0, grad, threads)
        column_sums(delta, bias_view(grads, sizes, layer))


@kernel
def first_trainable(icfg):
    """Index of the first layer that learns (the output layer alone when there is no hidden signal)."""
    return icfg[I_FIRST_TRAINABLE]


@kernel
def compute_gradients(params, feedback, grads, sizes, acts, icfg, x, t, hidden, deltas):
    """:func:`backward` then :func:`weight_gradients` into ``grads`` (layout of ``params``).

    Gradients of layers that do not learn are left as they are. Returns
    ``(summed loss, error count)`` of the forward pass.
    """
    loss, errors = backward(params, feedback, sizes, acts, icfg, x, t, hidden, deltas)
    weight_gradients(x, hidden, deltas, grads, sizes, first_trainable(icfg), x.shape[0], icfg[I_THREADS])
    return loss, errors


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
    if momentum == 0.0:
        for i in range(lo, hi):
            params[i] -= lr * (grads[i] + decay * params[i])
    elif nesterov:
        for i in range(lo, hi):
            g = grads[i] + decay * params[i]
            v = carried[i] - lr * g
            params[i] += momentum * v - lr * g
            carried[i] = flush_subnormal(momentum * v, tiny)
    else:
        for i in range(lo, hi):
            v = carried[i] - lr * (grads[i] + decay * params[i])
            params[i] += v
            carried[i] = flush_subnormal(momentum * v, tiny)


@kernel
def _adam_range(params, grads, first, second, lo, hi, lr, beta1, beta2, eps, decay, step):
    """Adam (Kingma and Ba 2015) over ``params[lo:hi]``, with bias correction folded into the rate.

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``; the moments are flushed
    to zero once subnormal (:func:`flush_subnormal`).
    """
    tiny = np.finfo(params.dtype).tiny
    rate = lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    for i in range(lo, hi):
        g = grads[i] + decay * params[i]
        mi = beta1 * first[i] + (1.0 - beta1) * g
        vi = beta2 * second[i] + (1.0 - beta2) * g * g
        first[i] = flush_subnormal(mi, tiny)
        second[i] = flush_subnormal(vi, tiny)
        params[i] -= rate * mi / (math.sqrt(vi) + eps)


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
def _optimise(params, grads, state, lo, hi, icfg, fcfg, decay, step):
    """Serial body of :func:`optimise_range`."""
    lr = fcfg[F_LR]
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
def fused_sgd_step(params, state, sizes, icfg, fcfg, x, hidden, deltas):
    """SGD (plain or heavy-ball momentum) with the weight gradient accumulated by BLAS.

    With ``g = h_{l-1}^T delta_l`` (never stored):

    - plain:    ``W <- (1 - lr wd) W - lr g``, one GEMM with ``beta = 1 - lr wd``;
    - momentum: ``v <- mu v - lr g`` as one GEMM with ``beta = 1`` onto the
      carried momentum ``mu v`` kept in ``state[0]``, then one pass
      ``v <- v - lr wd W``, ``W <- W + v``, ``state[0] <- mu v``.

    Sparse inputs take :func:`sparse_sgd` for the first layer. Biases likewise,
    without decay. The same step as :func:`weight_gradients` followed by
    :func:`update_parameters`, up to rounding, with fewer passes over the weights.
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
        nonzero = count_nonzero(x) if layer == 0 else 0
        if layer == 0 and is_sparse(x, nonzero):
            sparse_sgd(x, delta, w, v, lr, mu, lr * decay, nonzero, threads)
        elif mu == 0.0:
            product(-lr, h_in, True, delta, False, 1.0 - lr * decay, w, threads)
        else:
            product(-lr, h_in, True, delta, False, 1.0, v, threads)
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
def sparse_sgd(x, delta, w, carried, lr, mu, shrink, nonzero, threads):
    """The SGD step of a first layer with sparse inputs, the rows of ``w`` split over threads.

    ``g_j = sum_{i: x_ij != 0} x_ij delta_i`` from the non-zero inputs only, then
    as :func:`fused_sgd_step`: plain ``w_j <- (1 - shrink) w_j - lr g_j`` (without
    decay, ``w_j += sum_i (-lr x_ij) delta_i`` straight into the row, so a row whose
    input is zero throughout the batch is not touched), or with momentum
    ``v = carried_j - lr g_j - shrink w_j``, ``w_j += v``, ``carried_j = mu v``.
    ``shrink`` is ``lr * weight_decay``; ``nonzero`` counts the non-zero entries of ``x``.
    """
    n_in = x.shape[1]
    whole_rows = w.size if mu != 0.0 or shrink != 0.0 else 0  # passes over every row of w
    parts = parts_for(threads, nonzero * w.shape[1] + whole_rows, GEMM_GRAIN, n_in)
    if parts == 1:
        _sparse_sgd_rows(x, delta, w, carried, lr, mu, shrink, 0, n_in)
        return
    for part in prange(parts):
        lo, hi = split(part, parts, n_in)
        _sparse_sgd_rows(x, delta, w, carried, lr, mu, shrink, lo, hi)


@kernel
def _sparse_sgd_rows(x, delta, w, carried, lr, mu, shrink, lo, hi):
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


# ------------------------------------------------------------------ learned feedback

MIRROR_STREAM = 0x6D6972726F72  # keeps the mirror's noise apart from brsf's draws


@kernel
def shift_feedback(params, feedback, sizes, keep, weight):
    """``F_l <- keep * F_l + weight * W_{l+1}`` for every hidden layer (layerwise feedback).

    Kolen-Pollack's bookkeeping: ``F <- F - W`` before the update and
    ``F <- (1 - lr wd) F + W`` after it give ``F_new = F + dW + lr wd (W - F)``:
    the feedback receives exactly the forward weights' update with its own
    decay, so ``F - W`` shrinks by ``(1 - lr wd)`` every step (Akrout et al. 2019).
    """
    for layer in range(sizes.size - 2):
        f = feedback_view(feedback, sizes, SIGNAL_LAYERWISE, layer)
        w = weight_view(params, sizes, layer + 1)
        rows, cols = f.shape
        for i in range(rows):
            f_row, w_row = f[i], w[i]
            for j in range(cols):
                f_row[j] = keep * f_row[j] + weight * w_row[j]


@kernel
def mirror_feedback(params, feedback, sizes, fcfg, seed, step, m, hidden, deltas, threads):
    """Weight mirror: every hidden layer's feedback learns ``W_{l+1}`` from injected noise.

    With noise ``xi`` (``m`` rows over layer ``l``'s units, independent entries of
    mean 0 and standard deviation ``sigma``, uniform) and the response
    ``y = xi W_{l+1}`` it causes one layer up,

        ``F_l <- (1 - eta lam) F_l + (eta / m) xi^T y``,

    whose mean step is ``eta (sigma^2 W_{l+1} - lam F_l)``: ``F_l`` tends to
    ``(sigma^2 / lam) W_{l+1}``, i.e. ``B = F^T`` to ``W^T`` (Akrout et al. 2019's
    mirror mode, with uniform instead of Gaussian noise; only its covariance
    matters). The noise comes from the counter-based generator, keyed by the run's
    seed and the update count, so a resumed run injects the same noise. ``xi`` and ``y``
    are written into the workspaces ``hidden`` and ``deltas`` (layer ``l``'s and layer
    ``l + 1``'s rows), which the batch no longer needs once its update is done.
    """
    eta, lam = fcfg[F_MIRROR_LR], fcfg[F_MIRROR_DECAY]
    half_width = fcfg[F_MIRROR_NOISE] * math.sqrt(3.0)
    base = 0
    for layer in range(sizes.size - 2):
        n_l = sizes[layer + 1]
        xi = activation_view(hidden, sizes, layer, m)
        for i in range(m):
            for j in range(n_l):
                u = counter_uniform(seed ^ MIRROR_STREAM, step, base + i * n_l + j)
                xi[i, j] = half_width * (2.0 * u - 1.0)
        base += m * n_l
        y = activation_view(deltas, sizes, layer + 1, m)
        product(1.0, xi, False, weight_view(params, sizes, layer + 1), False, 0.0, y, threads)
        f = feedback_view(feedback, sizes, SIGNAL_LAYERWISE, layer)
        product(eta / m, xi, True, y, False, 1.0 - eta * lam, f, threads)


# ---------------------------------------------------------------------- batch/epoch


@kernel
def gather_batch(x_all, labels, targets, order, start, m, xb, tb):
    """Copy rows ``order[start:start+m]`` into ``xb`` and their targets into ``tb``.

    Classification passes integer ``labels`` (one-hot encoded here) and an
    empty ``targets``; regression passes float ``targets`` and empty ``labels``.
    """
    for i in range(m):
        row = order[start + i]
        xb[i, :] = x_all[row]
        if labels.size > 0:
            tb[i, :] = 0.0
            tb[i, labels[row]] = 1.0
        else:
            tb[i, :] = targets[row]


@kernel
def load_rows(x_all, labels, targets, order, start, m, xbuf, tbuf, n_in, n_out):
    """Views ``(xb, tb)`` of the first ``m`` rows of the batch buffers, filled with rows
    ``order[start:start+m]`` and their targets (:func:`gather_batch`); without labels or
    targets (prediction) ``xb`` gets ``x_all[start:start+m]`` and ``tb`` is left alone."""
    xb = xbuf[: m * n_in].reshape((m, n_in))
    tb = tbuf[: m * n_out].reshape((m, n_out))
    if labels.size > 0 or targets.size > 0:
        gather_batch(x_all, labels, targets, order, start, m, xb, tb)
    else:
        xb[:, :] = x_all[start : start + m]
    return xb, tb


@kernel
def score_rows(y, tb, e, act, icfg, has_targets, outputs, start):
    """Copy the outputs ``y`` of rows ``start...`` into ``outputs`` (when it has rows) and return
    their summed loss and error count (zeros without targets); ``e`` is scratch for the error."""
    if outputs.shape[0] > 0:
        outputs[start : start + y.shape[0]] = y
    if not has_targets:
        return 0.0, 0
    return output_error(y, tb, act, icfg[I_LOSS], icfg[I_CLASSIFICATION], e, 1.0)


@kernel
def train_batch(
    params, feedback, magnitude, grads, state, sizes, acts, icfg, fcfg, x, t, hidden, deltas, step
):
    """One training step on batch ``(x, t)``: refresh feedback, deltas, update, learn feedback.

    SGD without Nesterov's correction takes the fused path
    (:func:`fused_sgd_step`); Nesterov and Adam go through a gradient buffer.

    Returns ``(summed loss, error count)`` measured before the update.
    """
    refresh_feedback(params, feedback, magnitude, sizes, icfg, step)
    loss, errors = backward(params, feedback, sizes, acts, icfg, x, t, hidden, deltas)
    dynamics = icfg[I_DYNAMICS]
    if dynamics == DYNAMICS_KOLEN_POLLACK:
        shift_feedback(params, feedback, sizes, 1.0, -1.0)
    if icfg[I_OPTIMIZER] == SGD and icfg[I_NESTEROV] == 0:
        fused_sgd_step(params, state, sizes, icfg, fcfg, x, hidden, deltas)
    else:
        weight_gradients(x, hidden, deltas, grads, sizes, first_trainable(icfg), x.shape[0], icfg[I_THREADS])
        update_parameters(params, grads, state, sizes, icfg, fcfg, step)
    if dynamics == DYNAMICS_KOLEN_POLLACK:
        shift_feedback(params, feedback, sizes, 1.0 - fcfg[F_LR] * fcfg[F_WEIGHT_DECAY], 1.0)
    elif dynamics == DYNAMICS_MIRROR:
        m = x.shape[0]
        mirror_feedback(params, feedback, sizes, fcfg, icfg[I_SEED], step, m, hidden, deltas, icfg[I_THREADS])
    return loss, errors


@kernel
def train_epoch(
    x_all,
    labels,
    targets,
    order,
    batch_size,
    params,
    feedback,
    magnitude,
    grads,
    state,
    sizes,
    acts,
    icfg,
    fcfg,
    hidden,
    deltas,
    xbuf,
    tbuf,
    step,
):
    """Train on the rows ``order`` of ``x_all`` in batches, entirely in compiled code.

    ``step`` is the number of updates made before this call. Returns
    ``(summed loss, error count)`` over the epoch, each batch measured before
    its own update (the convention of scikit-learn's ``loss_curve_``).
    """
    n_in = sizes[0]
    n_out = sizes[sizes.size - 1]
    total_loss = 0.0
    total_errors = 0
    n = order.size
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        xb, tb = load_rows(x_all, labels, targets, order, start, m, xbuf, tbuf, n_in, n_out)
        step += 1
        loss, errors = train_batch(
            params, feedback, magnitude, grads, state, sizes, acts, icfg, fcfg, xb, tb, hidden, deltas, step
        )
        total_loss += loss
        total_errors += errors
    return total_loss, total_errors


@kernel
def evaluate(x_all, labels, targets, params, sizes, acts, icfg, hidden, deltas, xbuf, tbuf, outputs):
    """Summed loss and error count of the network on every row of ``x_all``.

    Rows go through in chunks as large as the workspace holds. When
    ``outputs`` has rows, the network's outputs are written there too.
    """
    n_in = sizes[0]
    n_out = sizes[sizes.size - 1]
    capacity = xbuf.size // n_in
    n = x_all.shape[0]
    order = np.arange(n)
    total_loss = 0.0
    total_errors = 0
    has_targets = labels.size > 0 or targets.size > 0
    for start in range(0, n, capacity):
        m = min(capacity, n - start)
        xb, tb = load_rows(x_all, labels, targets, order, start, m, xbuf, tbuf, n_in, n_out)
        y = forward(params, sizes, acts, xb, hidden, icfg[I_THREADS])
        e = activation_view(deltas, sizes, sizes.size - 2, m)
        loss, errors = score_rows(y, tb, e, acts[sizes.size - 2], icfg, has_targets, outputs, start)
        total_loss += loss
        total_errors += errors
    return total_loss, total_errors
