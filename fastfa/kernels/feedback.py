"""Feedback that changes in training (CPU kernels): sign-concordant, Kolen-Pollack, weight mirror."""

import math

import numpy as np

from fastfa.kernels.base import kernel
from fastfa.kernels.codes import (
    DYNAMICS_SIGN,
    DYNAMICS_SIGN_REDRAW,
    F_LR,
    F_MIRROR_DECAY,
    F_MIRROR_LR,
    F_MIRROR_NOISE,
    F_MIRROR_RESPONSE,
    F_WEIGHT_DECAY,
    I_DYNAMICS,
    I_SEED,
    I_SIGNAL,
    SIGNAL_LAYERWISE,
)
from fastfa.kernels.elementwise import activate
from fastfa.kernels.layout import activation_view, bias_view, feedback_view, weight_view
from fastfa.kernels.products import NO_TRANS, TRANS, product

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
def mirror_feedback(params, feedback, sizes, acts, fcfg, seed, step, m, hidden, deltas, threads):
    """Weight mirror: every hidden layer's feedback learns ``W_{l+1}`` from injected noise.

    With noise ``xi`` (``m`` rows over layer ``l``'s units, independent entries of
    mean 0 and standard deviation ``sigma``, uniform) and the response
    ``y = xi W_{l+1}`` it causes one layer up,

        ``F_l <- (1 - eta lam) F_l + (eta / m) xi^T y``,

    whose mean step is ``eta (sigma^2 W_{l+1} - lam F_l)``. With ``F_MIRROR_RESPONSE`` set the
    response goes through the layer above's bias and activation, ``y = f(xi W_{l+1} + b_{l+1})``,
    as in Akrout et al.'s code (``mirror_response="activation"``). For linear responses ``F_l`` tends to
    ``(sigma^2 / lam) W_{l+1}``, i.e. ``B = F^T`` to ``W^T`` (Akrout et al. 2019's
    mirror mode, with uniform instead of Gaussian noise; only its covariance
    matters). The noise comes from the counter-based generator, keyed by the run's
    seed and the update count, so a resumed run injects the same noise. ``xi`` and ``y``
    are written into the workspaces ``hidden`` and ``deltas`` (layer ``l``'s and layer
    ``l + 1``'s rows), which the batch no longer needs once its update is done.
    """
    eta, lam, nonlinear = fcfg[F_MIRROR_LR], fcfg[F_MIRROR_DECAY], fcfg[F_MIRROR_RESPONSE] != 0.0
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
        product(1.0, xi, NO_TRANS, weight_view(params, sizes, layer + 1), NO_TRANS, 0.0, y, threads)
        if nonlinear:  # Akrout et al.'s code: y = f(xi W + b) through the layer above's own units
            activate(y, bias_view(params, sizes, layer + 1), acts[layer + 1], threads)
        f = feedback_view(feedback, sizes, SIGNAL_LAYERWISE, layer)
        product(eta / m, xi, TRANS, y, NO_TRANS, 1.0 - eta * lam, f, threads)


@kernel
def plugin_feedback_step(step_fn, phase, params, feedback, sizes, icfg, fcfg, step, m, hidden, deltas):
    """A compiled plugin's ``feedback_step`` (:mod:`fastfa.compiled_rules`) for every hidden
    layer: ``phase`` 0 before the parameter update, 1 after it."""
    last = sizes.size - 2
    signal = icfg[I_SIGNAL]
    e = activation_view(deltas, sizes, last, m)
    for layer in range(last):
        step_fn(
            phase, layer, step, icfg[I_SEED], fcfg[F_LR], fcfg[F_WEIGHT_DECAY], e,
            activation_view(deltas, sizes, layer + 1, m), activation_view(hidden, sizes, layer, m),
            weight_view(params, sizes, layer + 1), feedback_view(feedback, sizes, signal, layer),
        )  # fmt: skip
