"""The layer engine's training step, epoch loop and evaluation (CPU kernels).

The passes they run (forward, signals, gradients) are in :mod:`fastfa.kernels.layers`, whose
docstring describes the layer table and the buffers; the feedback dynamics are in
:mod:`fastfa.kernels.layer_feedback`.
"""

import numpy as np

from fastfa.kernels.base import inlined_kernel, kernel
from fastfa.kernels.codes import (
    DYNAMICS_KOLEN_POLLACK,
    DYNAMICS_MIRROR,
    F_LR,
    F_WEIGHT_DECAY,
    I_DYNAMICS,
    I_SEED,
    I_THREADS,
    L_ACT,
    L_B_OFF,
    L_IN_SIZE,
    L_OUT_SIZE,
    L_W_OFF,
)
from fastfa.kernels.cpu import load_rows, score_rows
from fastfa.kernels.layer_feedback import (
    mirror_layer_feedback,
    plugin_layer_feedback_step,
    refresh_layer_feedback,
    shift_layer_feedback,
)
from fastfa.kernels.layer_table import has_params, output_rows, weight_count
from fastfa.kernels.layers import backward_layers, first_learning_layer, forward_layers, layer_gradients
from fastfa.kernels.optimisers import optimise_range

# ------------------------------------------------------------------------ training


@inlined_kernel
def update_layers(params, grads, state, ltab, icfg, fcfg, step):
    """One optimiser step on the layers that learn (weight decay on weights only).

    Weights occupy ``params[:n_w]`` and biases the rest, layer after layer, so the
    layers from the first that learns to the last are two contiguous ranges.
    """
    first = first_learning_layer(ltab, icfg)
    while not has_params(ltab, first):
        first += 1
    last = ltab.shape[0] - 1
    n_weights = ltab[last, L_W_OFF] + weight_count(ltab, last)
    decay = fcfg[F_WEIGHT_DECAY]
    optimise_range(params, grads, state, ltab[first, L_W_OFF], n_weights, icfg, fcfg, decay, step)
    optimise_range(params, grads, state, ltab[first, L_B_OFF], params.size, icfg, fcfg, 0.0, step)


@inlined_kernel
def train_batch_layers(
    params,
    feedback,
    magnitude,
    learning,
    grads,
    state,
    ltab,
    icfg,
    fcfg,
    x,
    t,
    hidden,
    deltas,
    indices,
    zeros,
    workspace,
    averages,
    sparse,
    ops,
    plugin,
    feedback_plugin,
    dropout,
    norm,
    step,
):
    """One training step on batch ``(x, t)``: refresh feedback, signals, gradients, update.

    ``magnitude`` (``|B0|``, sign-concordant feedback) and ``learning`` (``feedback`` again, for
    feedback that learns: kp, wm) are None where the rule cannot use them, and numba then leaves
    the refresh and the feedback's learning step out of the compile. ``plugin`` and
    ``feedback_plugin`` are a compiled plugin's hidden signal and feedback step
    (:func:`backward_layers`, :func:`~fastfa.kernels.layer_feedback.plugin_layer_feedback_step`),
    None for the built-in rules; ``dropout`` each layer's keep probability, None without dropout;
    ``norm`` the batch-norm buffers in training mode, None without batch norm
    (:func:`~fastfa.kernels.layers.forward_layers`).

    Returns ``(summed loss, error count)`` measured before the update.
    """
    if magnitude is not None:  # None without sign-concordant feedback: not compiled then
        refresh_layer_feedback(params, feedback, magnitude, ltab, icfg, step)
    loss, errors = backward_layers(
        params, feedback, ltab, icfg, x, t, hidden, deltas, indices, zeros, workspace, averages, sparse, ops,
        plugin, dropout, step, norm,
    )  # fmt: skip
    first = first_learning_layer(ltab, icfg)
    threads = icfg[I_THREADS]
    layer_gradients(x, hidden, deltas, grads, ltab, first, workspace, sparse, ops, threads, norm)
    dynamics = icfg[I_DYNAMICS]
    kolen_pollack = learning is not None and dynamics == DYNAMICS_KOLEN_POLLACK
    if kolen_pollack:
        shift_layer_feedback(params, learning, ltab, 1.0, -1.0)
    if feedback_plugin is not None:
        plugin_layer_feedback_step(
            feedback_plugin, 0, feedback, ltab, icfg, fcfg, step, x.shape[0], hidden, deltas
        )
    update_layers(params, grads, state, ltab, icfg, fcfg, step)
    if feedback_plugin is not None:
        plugin_layer_feedback_step(
            feedback_plugin, 1, feedback, ltab, icfg, fcfg, step, x.shape[0], hidden, deltas
        )
    if kolen_pollack:
        shift_layer_feedback(params, learning, ltab, 1.0 - fcfg[F_LR] * fcfg[F_WEIGHT_DECAY], 1.0)
    elif learning is not None and dynamics == DYNAMICS_MIRROR:
        m = x.shape[0]
        mirror_layer_feedback(
            params,
            learning,
            grads,
            ltab,
            fcfg,
            icfg[I_SEED],
            step,
            m,
            hidden,
            deltas,
            workspace,
            ops,
            threads,
        )
    return loss, errors


@kernel
def train_epoch_layers(
    x_all,
    labels,
    targets,
    order,
    batch_size,
    params,
    feedback,
    magnitude,
    learning,
    grads,
    state,
    ltab,
    icfg,
    fcfg,
    plugin,
    feedback_plugin,
    dropout,
    norm,
    hidden,
    deltas,
    indices,
    zeros,
    workspace,
    averages,
    sparse,
    ops,
    xbuf,
    tbuf,
    step,
):
    """Train on the rows ``order`` of ``x_all`` in batches, entirely in compiled code.

    As :func:`fastfa.kernels.cpu.train_epoch`: ``step`` counts the updates made before
    this call; returns ``(summed loss, error count)``, each batch measured before its update.
    ``plugin``, ``feedback_plugin``, ``dropout`` and ``norm``: as :func:`train_batch_layers` takes them.
    """
    n_in = ltab[0, L_IN_SIZE]
    n_out = ltab[ltab.shape[0] - 1, L_OUT_SIZE]
    total_loss = 0.0
    total_errors = 0
    n = order.size
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        xb, tb = load_rows(x_all, labels, targets, order, start, m, xbuf, tbuf, n_in, n_out)
        step += 1
        loss, errors = train_batch_layers(
            params, feedback, magnitude, learning, grads, state, ltab, icfg, fcfg, xb, tb, hidden, deltas,
            indices, zeros, workspace, averages, sparse, ops, plugin, feedback_plugin, dropout, norm, step,
        )  # fmt: skip
        total_loss += loss
        total_errors += errors
    return total_loss, total_errors


@kernel
def evaluate_layers(
    x_all, labels, targets, params, ltab, icfg, hidden, deltas, indices, zeros, workspace, averages,
    sparse, ops, xbuf, tbuf, outputs, norm,
):  # fmt: skip
    """Summed loss and error count on every row of ``x_all`` (as :func:`fastfa.kernels.cpu.evaluate`;
    ``norm``: the batch-norm buffers in evaluation mode, None without batch norm)."""
    n_in = ltab[0, L_IN_SIZE]
    last = ltab.shape[0] - 1
    n_out = ltab[last, L_OUT_SIZE]
    capacity = xbuf.size // n_in
    n = x_all.shape[0]
    order = np.arange(n)
    total_loss = 0.0
    total_errors = 0
    has_targets = labels.size > 0 or targets.size > 0
    for start in range(0, n, capacity):
        m = min(capacity, n - start)
        xb, tb = load_rows(x_all, labels, targets, order, start, m, xbuf, tbuf, n_in, n_out)
        threads = icfg[I_THREADS]
        y = forward_layers(
            params, ltab, xb, hidden, indices, zeros, workspace, averages, sparse, ops, threads, None, 0, 0,
            norm,
        )  # fmt: skip
        e = output_rows(deltas, ltab, last, m)
        loss, errors = score_rows(y, tb, e, ltab[last, L_ACT], icfg, has_targets, outputs, start)
        total_loss += loss
        total_errors += errors
    return total_loss, total_errors
