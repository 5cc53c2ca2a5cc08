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

Modules, by concern: :mod:`~fastfa.kernels.base` (compile options, thread splits),
:mod:`~fastfa.kernels.layout` (views into the flat buffers), :mod:`~fastfa.kernels.elementwise`
(activations, derivatives, the output error), :mod:`~fastfa.kernels.products` (GEMM over
threads, sparse first-layer products), :mod:`~fastfa.kernels.dense` (forward pass, signals,
weight gradients), :mod:`~fastfa.kernels.optimisers` and :mod:`~fastfa.kernels.feedback`
(feedback that changes). This module holds the batch and epoch loops and gives every part's
names, so ``fastfa.kernels.cpu.X`` works for all of them.
"""

import numpy as np

from fastfa.kernels.base import (  # noqa: F401 (the engine's parts, under their old names)
    GEMM_GRAIN,
    LOG_CLIP,
    PASS_GRAIN,
    SPARSE_DENSITY,
    flush_subnormal,
    inlined_kernel,
    kernel,
    parallel_kernel,
    parts_for,
    split,
)
from fastfa.kernels.codes import (
    DYNAMICS_KOLEN_POLLACK,
    DYNAMICS_MIRROR,
    F_LR,
    F_WEIGHT_DECAY,
    I_CLASSIFICATION,
    I_DYNAMICS,
    I_LOSS,
    I_SEED,
    I_THREADS,
)
from fastfa.kernels.dense import (  # noqa: F401 (the engine's parts, under their old names)
    backward,
    compute_gradients,
    first_trainable,
    forward,
    layer_input,
    weight_gradients,
)
from fastfa.kernels.elementwise import (  # noqa: F401 (the engine's parts, under their old names)
    activate,
    bias_activation,
    column_sums,
    derive,
    multiply_derivative,
    output_error,
    tanh_bias,
)
from fastfa.kernels.feedback import (  # noqa: F401 (the engine's parts, under their old names)
    MIRROR_STREAM,
    counter_uniform,
    mirror_feedback,
    plugin_feedback_step,
    refresh_feedback,
    shift_feedback,
)
from fastfa.kernels.layout import (  # noqa: F401 (the engine's parts, under their old names)
    activation_view,
    bias_view,
    feedback_cols,
    feedback_view,
    n_weights,
    weight_view,
)
from fastfa.kernels.optimisers import (  # noqa: F401 (the engine's parts, under their old names)
    apply_velocity,
    defers_decay,
    fused_sgd_step,
    optimise_range,
    scale_by_pending_decay,
    settle_decay,
    settle_interval,
    sparse_sgd,
    update_parameters,
    uses_fused_sgd,
)
from fastfa.kernels.products import (  # noqa: F401 (the engine's parts, under their old names)
    count_nonzero,
    is_sparse,
    nonzeros,
    product,
    sparse_gradient,
    sparse_product,
    weighted_rows,
)

# ---------------------------------------------------------------------- batch/epoch


@kernel
def copy_row(src, dst):
    """``dst[:] = src`` for two 1-D arrays of one length, as a loop: numba's array-to-array slice
    assignment compiles a formatted shape-mismatch error (string machinery, several seconds of
    the first run's compile) that these copies, whose shapes always match, do not need."""
    for j in range(dst.size):
        dst[j] = src[j]


@kernel
def gather_batch(x_all, labels, targets, order, start, m, xb, tb):
    """Copy rows ``order[start:start+m]`` into ``xb`` and their targets into ``tb``.

    Classification passes integer ``labels`` (one-hot encoded here) and an
    empty ``targets``; regression passes float ``targets`` and empty ``labels``.
    """
    for i in range(m):
        row = order[start + i]
        copy_row(x_all[row], xb[i])
        if labels.size > 0:
            tb[i, :] = 0.0
            tb[i, labels[row]] = 1.0
        else:
            copy_row(targets[row], tb[i])


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
        for i in range(m):
            copy_row(x_all[start + i], xb[i])
    return xb, tb


@kernel
def score_rows(y, tb, e, act, icfg, has_targets, outputs, start):
    """Copy the outputs ``y`` of rows ``start...`` into ``outputs`` (when it has rows) and return
    their summed loss and error count (zeros without targets); ``e`` is scratch for the error."""
    if outputs.shape[0] > 0:
        for i in range(y.shape[0]):
            copy_row(y[i], outputs[start + i])
    if not has_targets:
        return 0.0, 0
    return output_error(y, tb, act, icfg[I_LOSS], icfg[I_CLASSIFICATION], e, 1.0)


@inlined_kernel
def train_batch(
    params, feedback, magnitude, learning, grads, sparse, plugin, feedback_plugin, dropout, state, sizes,
    acts, icfg, fcfg, x, t, hidden, deltas, decayed, step,
):  # fmt: skip
    """One training step on batch ``(x, t)``: refresh feedback, deltas, update, learn feedback.

    SGD without Nesterov's correction (or without momentum, where the correction is void)
    takes the fused path (:func:`fused_sgd_step`); Nesterov and Adam go through the
    gradient buffer ``grads``.

    ``grads``, ``magnitude``, ``learning`` (``feedback`` again, for feedback that learns: kp,
    wm) and ``sparse`` (a marker) may be None, and the trainer passes None where a run cannot use
    them: ``grads`` on the fused path, ``magnitude`` without sign-concordant feedback,
    ``learning`` with fixed feedback, ``sparse`` when no batch of the rows can be sparse, and
    ``plugin`` and ``feedback_plugin`` (a rule's compiled hidden signal,
    :func:`~fastfa.kernels.dense.backward`, and feedback step,
    :func:`~fastfa.kernels.feedback.plugin_feedback_step`) for the built-in rules, and ``dropout``
    (each layer's keep probability, :mod:`fastfa.kernels.dropout`) without dropout.
    numba then prunes the branches that would use them before typing, so a run compiles only
    the optimiser path and feedback dynamics it takes (a first run compiles less); with arrays
    every path is compiled and chosen at run time, as before.

    Plain SGD with weight decay defers the decay of the first layer's untouched rows
    (:func:`~fastfa.kernels.optimisers.defers_decay`; ``decayed`` has one entry per input,
    the step each row's decay has reached, and ``x``, the batch buffer, is scaled in place);
    otherwise ``decayed`` is unused.

    Returns ``(summed loss, error count)`` measured before the update.
    """
    if magnitude is not None:
        refresh_feedback(params, feedback, magnitude, sizes, icfg, step)
    keep = 1.0 - fcfg[F_LR] * fcfg[F_WEIGHT_DECAY]
    deferred = False
    sparse_batch = False
    if sparse is not None:  # only sparse batches defer decay: on dense data every step decays every row
        deferred = defers_decay(icfg, fcfg, sizes) and decayed.size > 0
        sparse_batch = deferred and is_sparse(x, count_nonzero(x))
        if sparse_batch:
            scale_by_pending_decay(x, decayed, step - 1, keep)
        elif deferred:  # the dense step decays every row: settle the debts first
            settle_decay(weight_view(params, sizes, 0), decayed, step - 1, keep)
    loss, errors = backward(
        params, feedback, sizes, acts, icfg, x, t, hidden, deltas, sparse, plugin, dropout, step
    )
    dynamics = icfg[I_DYNAMICS]
    kolen_pollack = learning is not None and dynamics == DYNAMICS_KOLEN_POLLACK
    if kolen_pollack:
        shift_feedback(params, learning, sizes, 1.0, -1.0)
    if feedback_plugin is not None:
        plugin_feedback_step(
            feedback_plugin, 0, params, feedback, sizes, icfg, fcfg, step, x.shape[0], hidden, deltas
        )
    if grads is None or uses_fused_sgd(icfg, fcfg):
        fused_sgd_step(
            params, state, sizes, icfg, fcfg, x, hidden, deltas, decayed[: decayed.size * sparse_batch],
            sparse, step,
        )  # fmt: skip
        if sparse is None:
            pass
        elif deferred and not sparse_batch:  # the dense step decayed every row
            decayed[:] = step
        elif sparse_batch and step % settle_interval(keep) == 0:
            settle_decay(weight_view(params, sizes, 0), decayed, step, keep)
    else:
        m = x.shape[0]
        weight_gradients(x, hidden, deltas, grads, sizes, first_trainable(icfg), m, sparse, icfg[I_THREADS])
        update_parameters(params, grads, state, sizes, icfg, fcfg, step)
    if kolen_pollack:
        shift_feedback(params, learning, sizes, 1.0 - fcfg[F_LR] * fcfg[F_WEIGHT_DECAY], 1.0)
    elif learning is not None and dynamics == DYNAMICS_MIRROR:
        m = x.shape[0]
        mirror_feedback(
            params, learning, sizes, acts, fcfg, icfg[I_SEED], step, m, hidden, deltas, icfg[I_THREADS]
        )
    if feedback_plugin is not None:
        plugin_feedback_step(
            feedback_plugin, 1, params, feedback, sizes, icfg, fcfg, step, x.shape[0], hidden, deltas
        )
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
    learning,
    grads,
    sparse,
    plugin,
    feedback_plugin,
    dropout,
    state,
    sizes,
    acts,
    icfg,
    fcfg,
    hidden,
    deltas,
    xbuf,
    tbuf,
    decayed,
    step,
):
    """Train on the rows ``order`` of ``x_all`` in batches, entirely in compiled code.

    ``step`` is the number of updates made before this call. ``decayed`` (int64, one entry
    per input) is scratch for the deferred weight decay of :func:`train_batch`; every row's
    decay is settled before this returns. ``magnitude``, ``learning``, ``grads``, ``sparse``,
    ``plugin``, ``feedback_plugin`` and ``dropout`` may be None, as :func:`train_batch` says. Returns
    ``(summed loss, error count)`` over the epoch, each batch measured before its own update (the
    convention of scikit-learn's ``loss_curve_``).
    """
    decayed[:] = step
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
            params, feedback, magnitude, learning, grads, sparse, plugin, feedback_plugin, dropout, state,
            sizes, acts, icfg, fcfg, xb, tb, hidden, deltas, decayed, step,
        )  # fmt: skip
        total_loss += loss
        total_errors += errors
    if sparse is not None and decayed.size > 0 and defers_decay(icfg, fcfg, sizes):
        settle_decay(weight_view(params, sizes, 0), decayed, step, 1.0 - fcfg[F_LR] * fcfg[F_WEIGHT_DECAY])
    return total_loss, total_errors


def evaluate(x_all, labels, targets, params, sizes, acts, icfg, hidden, deltas, xbuf, tbuf, outputs, sparse):
    """Summed loss and error count of the network on every row of ``x_all``.

    Rows go through in chunks as large as the workspace holds. When
    ``outputs`` has rows, the network's outputs are written there too. ``sparse``: as in
    :func:`~fastfa.kernels.dense.forward`.

    A Python loop over compiled parts (:func:`load_rows`, :func:`forward`, :func:`score_rows`),
    one call of each per chunk of thousands of rows: those parts are the training loop's own
    compiled code, where a compiled loop would link and generate the forward pass again on a
    first run (about 2.5 s; docs/engine.md, "The first run").
    """
    n_in, n_out = int(sizes[0]), int(sizes[-1])
    capacity = xbuf.size // n_in
    n = x_all.shape[0]
    order = np.arange(n)
    total_loss = 0.0
    total_errors = 0
    has_targets = labels.size > 0 or targets.size > 0
    threads, out_act = icfg[I_THREADS], acts[sizes.size - 2]
    for start in range(0, n, capacity):
        m = min(capacity, n - start)
        xb, tb = load_rows(x_all, labels, targets, order, start, m, xbuf, tbuf, n_in, n_out)
        y = forward(params, sizes, acts, xb, hidden, sparse, threads, None, 0, 0)
        e = activation_view(deltas, sizes, sizes.size - 2, m)
        loss, errors = score_rows(y, tb, e, out_act, icfg, has_targets, outputs, start)
        total_loss += loss
        total_errors += errors
    return total_loss, total_errors
