"""Feedback that changes in training, for layer-table networks (CPU kernels): sign-concordant
refresh, Kolen-Pollack and the weight mirror, kernel by kernel (:mod:`fastfa.kernels.layers`),
and a compiled plugin's feedback step on direct feedback matrices.
"""

import math

import numpy as np

from fastfa.kernels.base import (
    kernel,
)
from fastfa.kernels.codes import (
    DYNAMICS_SIGN,
    DYNAMICS_SIGN_REDRAW,
    F_LR,
    F_MIRROR_DECAY,
    F_MIRROR_LR,
    F_MIRROR_NOISE,
    F_WEIGHT_DECAY,
    I_DYNAMICS,
    I_SEED,
    I_SIGNAL,
    KIND_DENSE,
    L_B_OFF,
    L_C_OUT,
    L_FB_OFF,
    L_KIND,
    L_PAD,
    L_STRIDE,
    L_W_OFF,
    SIGNAL_LAYERWISE,
)
from fastfa.kernels.feedback import (
    MIRROR_STREAM,
    counter_uniform,
)
from fastfa.kernels.layer_ops import OP_CONV_FORWARD, OP_CONV_WEIGHT_GRAD
from fastfa.kernels.layer_table import (
    as_input_images,
    conv_kernel,
    dense_matrix,
    direct_matrix,
    has_params,
    output_images,
    output_rows,
    weight_count,
)
from fastfa.kernels.products import (
    NO_TRANS,
    TRANS,
    product,
)


@kernel
def refresh_layer_feedback(params, feedback, magnitude, ltab, icfg, step):
    """Sign-concordant feedback before a batch: ``K_l = |B0_l| * sign(W_l)`` entry by entry.

    For dense and conv layers alike (the feedback has ``W_l``'s shape); with ``sign-redraw``
    each entry is further scaled by a fresh ``U[0, 1)`` draw (Liao et al. 2016). The draws
    are keyed by ``(seed, step, index)`` with the index running over the feedback buffer, so
    a dense network draws what :func:`fastfa.kernels.cpu.refresh_feedback` draws.
    """
    dynamics = icfg[I_DYNAMICS]
    if (dynamics != DYNAMICS_SIGN and dynamics != DYNAMICS_SIGN_REDRAW) or icfg[I_SIGNAL] != SIGNAL_LAYERWISE:
        return
    seed = icfg[I_SEED]
    for layer in range(1, ltab.shape[0]):
        start, w_start = ltab[layer, L_FB_OFF], ltab[layer, L_W_OFF]
        if start < 0:  # no weights, or the first layer with weights (nothing below to teach)
            continue
        size = weight_count(ltab, layer)
        for i in range(size):
            v = magnitude[start + i] * np.sign(params[w_start + i])
            if dynamics == DYNAMICS_SIGN_REDRAW:
                v *= counter_uniform(seed, step, start + i)
            feedback[start + i] = v


@kernel
def plugin_layer_feedback_step(step_fn, phase, feedback, ltab, icfg, fcfg, step, m, hidden, deltas):
    """A compiled plugin's ``feedback_step`` (:mod:`fastfa.compiled_rules`) for every layer with
    weights below the output of a layer-table network (direct feedback: ``b`` is the layer's
    ``D_l``, ``size x n_out``; ``above`` and ``w_above`` are empty ``0 x 0`` matrices here):
    ``phase`` 0 before the parameter update, 1 after it."""
    last = ltab.shape[0] - 1
    e = output_rows(deltas, ltab, last, m)
    empty = feedback[:0].reshape((0, 0))
    for layer in range(last):
        if has_params(ltab, layer):
            step_fn(
                phase, layer, step, icfg[I_SEED], fcfg[F_LR], fcfg[F_WEIGHT_DECAY], e, empty,
                output_rows(hidden, ltab, layer, m), empty, direct_matrix(feedback, ltab, layer, e.shape[1]),
            )  # fmt: skip


@kernel
def shift_layer_feedback(params, feedback, ltab, keep, weight):
    """``K_l <- keep * K_l + weight * W_l`` for every layer that owns layerwise feedback.

    Kolen-Pollack's bookkeeping, as :func:`fastfa.kernels.cpu.shift_feedback` does it for dense
    layers: ``K <- K - W`` before the update and ``K <- (1 - lr wd) K + W`` after it give each
    feedback kernel exactly its weights' update plus its own decay (Akrout et al. 2019), so
    ``K - W`` shrinks by ``(1 - lr wd)`` every step, kernel entry by kernel entry.
    """
    for layer in range(1, ltab.shape[0]):
        start, w_start = ltab[layer, L_FB_OFF], ltab[layer, L_W_OFF]
        if start < 0:
            continue
        for i in range(weight_count(ltab, layer)):
            feedback[start + i] = keep * feedback[start + i] + weight * params[w_start + i]


@kernel
def mirror_layer_feedback(
    params, feedback, grads, ltab, fcfg, seed, step, m, hidden, deltas, workspace, ops, threads
):
    """Weight mirror: every feedback kernel learns its layer's weights from injected noise.

    With noise ``xi`` at layer ``l``'s input (``m`` samples, independent uniform entries of mean
    0 and standard deviation ``sigma``) and the response ``y`` of the layer's linear part
    (``xi W_l`` dense, ``conv(xi, W_l)`` conv, no bias), ``K_l <- (1 - eta lam) K_l + (eta / m) g``
    where ``g`` is the weight gradient of input ``xi`` and signal ``y`` (``xi^T y``, or the
    correlation of ``xi`` with ``y``): in expectation ``sigma^2 W_l`` per position, so ``K_l``
    tends to a multiple of ``W_l`` (Akrout et al. 2019's mirror mode, the dense version in
    :func:`fastfa.kernels.cpu.mirror_feedback`). ``xi``, ``y`` and ``g`` use the activation, delta
    and gradient buffers, which the batch no longer needs once its update is done.
    """
    eta, lam = fcfg[F_MIRROR_LR], fcfg[F_MIRROR_DECAY]
    half_width = fcfg[F_MIRROR_NOISE] * math.sqrt(3.0)
    base = 0
    for layer in range(1, ltab.shape[0]):
        start = ltab[layer, L_FB_OFF]
        if start < 0:
            continue
        xi = output_rows(hidden, ltab, layer - 1, m)
        n_in = xi.shape[1]
        for i in range(m):
            for j in range(n_in):
                u = counter_uniform(seed ^ MIRROR_STREAM, step, base + i * n_in + j)
                xi[i, j] = half_width * (2.0 * u - 1.0)
        base += m * n_in
        w_off = ltab[layer, L_W_OFF]
        y = output_rows(deltas, ltab, layer, m)
        if ltab[layer, L_KIND] == KIND_DENSE:
            product(1.0, xi, NO_TRANS, dense_matrix(params, ltab, layer, w_off), NO_TRANS, 0.0, y, threads)
            product(
                eta / m,
                xi,
                TRANS,
                y,
                NO_TRANS,
                1.0 - eta * lam,
                dense_matrix(feedback, ltab, layer, start),
                threads,
            )
            continue
        images = as_input_images(xi, ltab, layer)
        no_bias = grads[ltab[layer, L_B_OFF] : ltab[layer, L_B_OFF] + ltab[layer, L_C_OUT]]
        no_bias[:] = 0.0
        stride, pad = ltab[layer, L_STRIDE], ltab[layer, L_PAD]
        response = output_images(deltas, ltab, layer, m)
        ops[OP_CONV_FORWARD](
            images,
            conv_kernel(params, ltab, layer, w_off),
            no_bias,
            stride,
            pad,
            response,
            workspace,
            threads,
        )
        g = conv_kernel(grads, ltab, layer, w_off)
        ops[OP_CONV_WEIGHT_GRAD](images, response, stride, pad, g, no_bias, workspace, threads)
        for i in range(weight_count(ltab, layer)):
            feedback[start + i] = (1.0 - eta * lam) * feedback[start + i] + (eta / m) * grads[w_off + i]
