"""A dense network's forward pass, its learning signals and its weight gradients (CPU kernels)."""

import numpy as np

from fastfa.kernels.base import kernel
from fastfa.kernels.codes import (
    I_CLASSIFICATION,
    I_FIRST_TRAINABLE,
    I_LOSS,
    I_SEED,
    I_SIGNAL,
    I_THREADS,
    SIGNAL_BACKPROP,
    SIGNAL_DIRECT,
    SIGNAL_DIRECT_SIGN,
    SIGNAL_LAYERWISE,
    SIGNAL_NONE,
    SIGNAL_TARGET,
)
from fastfa.kernels.dropout import derive_dropped_rows, drop_rows
from fastfa.kernels.elementwise import activate, column_sums, derive, output_error
from fastfa.kernels.layout import activation_view, bias_view, feedback_view, weight_view
from fastfa.kernels.products import (
    NO_TRANS,
    TRANS,
    count_nonzero,
    is_sparse,
    product,
    sparse_gradient,
    sparse_product,
)

# ------------------------------------------------------------------------- forward


@kernel
def forward(params, sizes, acts, x, hidden, sparse, threads, dropout, seed, step):
    """Forward pass of ``x`` (``(m, sizes[0])``); activations go to ``hidden``.

    ``a_l = h_{l-1} W_l`` is one product per layer (:func:`sparse_product` for
    sparse inputs, else BLAS), then bias and activation in one fused pass.
    ``sparse`` is None when no batch of the data can be sparse (the trainer checks the rows,
    :func:`fastfa.workspace.sparse_marker`): numba then leaves the sparse-input path out of the
    compile; any array otherwise. ``dropout`` is None (evaluation, and training without
    dropout: then not compiled) or each layer's keep probability, and the hidden layers'
    units are dropped with the masks of update ``step`` (:mod:`fastfa.kernels.dropout`).
    Returns the output view ``h_{L-1}`` (``(m, sizes[-1])``).
    """
    m = x.shape[0]
    h_in = x
    base = 0
    for layer in range(sizes.size - 1):
        h = activation_view(hidden, sizes, layer, m)
        w = weight_view(params, sizes, layer)
        nonzero = count_nonzero(x) if layer == 0 and sparse is not None else 0
        if layer == 0 and sparse is not None and is_sparse(x, nonzero):
            sparse_product(x, w, h, nonzero, threads)
        else:
            product(1.0, h_in, NO_TRANS, w, NO_TRANS, 0.0, h, threads)
        activate(h, bias_view(params, sizes, layer), acts[layer], threads)
        if dropout is not None:  # None without dropout: then not compiled
            if dropout[layer] < 1.0:
                drop_rows(h, dropout[layer], seed, step, base, threads)
            base += h.size
        h_in = h
    return h_in


# ----------------------------------------------------------------------- gradients


@kernel
def backward(params, feedback, sizes, acts, icfg, x, t, hidden, deltas, sparse, plugin, dropout, step):
    """Forward pass, output error and the rule's hidden signals ``delta_l``.

    For hidden layer ``l`` (0 <= l < L-1):

    - backprop:  ``delta_l = (delta_{l+1} W_{l+1}^T) * f'(a_l)``
    - layerwise: ``delta_l = (delta_{l+1} B_{l+1}) * f'(a_l)``
    - direct:    ``delta_l = (e D_l) * f'(a_l)``
    - direct-sign: ``delta_l = (sign(e) D_l / m) * f'(a_l)``
    - target:    ``delta_l = (-t D_l) * f'(a_l)``
    - none:      no signal; hidden deltas are not computed.

    ``delta_{L-1} = e / m`` carries the ``1/m`` of the batch mean. Deltas go to
    ``deltas`` (layout of ``hidden``); ``sparse`` as in :func:`forward`. Returns ``(summed loss,
    error count)``.

    ``plugin``, when not None, is a rule's compiled hidden signal (:mod:`fastfa.compiled_rules`):
    it replaces the built-in signals, and the derivative is applied after it as after them.
    ``dropout`` and ``step``: as :func:`forward` takes them; a dropped unit's signal is zero and
    a kept one's is divided by its keep probability
    (:func:`~fastfa.kernels.dropout.derive_dropped_rows`).
    """
    m = x.shape[0]
    last = sizes.size - 2
    signal = icfg[I_SIGNAL]
    threads = icfg[I_THREADS]
    y = forward(params, sizes, acts, x, hidden, sparse, threads, dropout, icfg[I_SEED], step)
    e = activation_view(deltas, sizes, last, m)
    loss, errors = output_error(y, t, acts[last], icfg[I_LOSS], icfg[I_CLASSIFICATION], e, 1.0 / m)
    if signal == SIGNAL_NONE:
        return loss, errors
    for layer in range(last - 1, -1, -1):
        delta = activation_view(deltas, sizes, layer, m)
        if plugin is not None:  # None for the built-in rules: then not compiled
            above = activation_view(deltas, sizes, layer + 1, m)
            h = activation_view(hidden, sizes, layer, m)
            w_above = weight_view(params, sizes, layer + 1)
            if feedback.size > 0:
                plugin(layer, e, t, above, w_above, feedback_view(feedback, sizes, signal, layer), h, delta)
            else:
                plugin(layer, e, t, above, w_above, feedback[:0].reshape((0, 0)), h, delta)
        elif signal == SIGNAL_BACKPROP:
            source = activation_view(deltas, sizes, layer + 1, m)
            product(1.0, source, NO_TRANS, weight_view(params, sizes, layer + 1), TRANS, 0.0, delta, threads)
        elif signal == SIGNAL_LAYERWISE:
            source = activation_view(deltas, sizes, layer + 1, m)
            f = feedback_view(feedback, sizes, signal, layer)
            product(1.0, source, NO_TRANS, f, TRANS, 0.0, delta, threads)
        elif signal == SIGNAL_DIRECT:
            product(
                1.0, e, NO_TRANS, feedback_view(feedback, sizes, signal, layer), TRANS, 0.0, delta, threads
            )
        elif signal == SIGNAL_DIRECT_SIGN:
            f = feedback_view(feedback, sizes, signal, layer)
            product(1.0 / m, np.sign(e), NO_TRANS, f, TRANS, 0.0, delta, threads)
        elif signal == SIGNAL_TARGET:
            f = feedback_view(feedback, sizes, signal, layer)
            product(-1.0 / m, t, NO_TRANS, f, TRANS, 0.0, delta, threads)
        h = activation_view(hidden, sizes, layer, m)
        if dropout is not None and dropout[layer] < 1.0:  # None without dropout: then not compiled
            base = 0
            for below in range(layer):
                base += m * sizes[below + 1]
            derive_dropped_rows(delta, h, acts[layer], dropout[layer], icfg[I_SEED], step, base, threads)
        else:
            derive(delta, h, acts[layer], threads)
    return loss, errors


@kernel
def layer_input(x, hidden, sizes, layer, m):
    """``h_{layer-1}``: the input of layer ``layer`` (``x`` for the first)."""
    if layer == 0:
        return x
    return activation_view(hidden, sizes, layer - 1, m)


@kernel
def weight_gradients(x, hidden, deltas, grads, sizes, first, m, sparse, threads):
    """``dW_l = h_{l-1}^T delta_l`` and ``db_l = sum_rows(delta_l)`` for layers ``first..L-1``
    (``sparse``: as in :func:`forward`)."""
    for layer in range(first, sizes.size - 1):
        delta = activation_view(deltas, sizes, layer, m)
        grad = weight_view(grads, sizes, layer)
        nonzero = count_nonzero(x) if layer == 0 and sparse is not None else 0
        if layer == 0 and sparse is not None and is_sparse(x, nonzero):
            sparse_gradient(x, delta, grad, nonzero, threads)
        else:
            product(1.0, layer_input(x, hidden, sizes, layer, m), TRANS, delta, NO_TRANS, 0.0, grad, threads)
        column_sums(delta, bias_view(grads, sizes, layer))


@kernel
def first_trainable(icfg):
    """Index of the first layer that learns (the output layer alone when there is no hidden signal)."""
    return icfg[I_FIRST_TRAINABLE]


def compute_gradients(params, feedback, grads, sizes, acts, icfg, x, t, hidden, deltas, sparse, plugin):
    """:func:`backward` then :func:`weight_gradients` into ``grads`` (layout of ``params``;
    ``sparse``: as in :func:`forward`, ``plugin`` as in :func:`backward`).

    Gradients of layers that do not learn are left as they are. Returns
    ``(summed loss, error count)`` of the forward pass.

    A Python driver of two compiled kernels, not a kernel: the metrics call it once per epoch,
    and a compiled driver would link and generate :func:`backward`'s whole tree again on a
    first run (about 2.5 s; docs/engine.md, "The first run").
    """
    loss, errors = backward(
        params, feedback, sizes, acts, icfg, x, t, hidden, deltas, sparse, plugin, None, 0
    )
    weight_gradients(
        x, hidden, deltas, grads, sizes, int(icfg[I_FIRST_TRAINABLE]), x.shape[0], sparse, icfg[I_THREADS]
    )
    return loss, errors
