"""Feedback that changes in training, as CUDA kernels (the twin of :mod:`fastfa.kernels.feedback`).

:func:`shift_kernel` (Kolen-Pollack), :func:`sign_feedback_kernel` (sign-concordant feedback,
with brsf's redrawn magnitudes), :func:`mirror_noise_kernel` (the weight mirror's noise); the
random draws come from the CPU engine's counter-based generator
(:func:`fastfa.kernels.feedback.counter_uniform`), so both engines draw the same numbers.
The device functions ``_sign_feedback`` and ``_mirror_noise`` are shared with the fused kernel.
"""

from __future__ import annotations

from numba import config, cuda

from fastfa.kernels.codes import DYNAMICS_SIGN_REDRAW
from fastfa.kernels.cuda_elementwise import _sign
from fastfa.kernels.feedback import MIRROR_STREAM, counter_uniform

if config.ENABLE_CUDASIM:  # device functions run as Python there; numpy would warn at each wrap-around
    _counter_uniform = counter_uniform
else:  # the CPU engine's draws, compiled for the GPU
    _counter_uniform = cuda.jit(device=True)(counter_uniform.py_func)


@cuda.jit(device=True, inline=True)
def _sign_feedback(params, feedback, magnitude, w_at, f_at, dynamics, seed, step):
    """Sign-concordant feedback entry ``f_at`` before update ``step``, as the CPU engine's
    ``refresh_feedback``: ``F = |B0| sign(W)`` from the forward weight at ``w_at`` (Liao et al.
    2016), times a fresh ``U[0, 1)`` draw keyed by ``(seed, step, f_at)`` for ``sign-redraw``."""
    v = magnitude[f_at] * _sign(params[w_at])
    if dynamics == DYNAMICS_SIGN_REDRAW:
        v *= _counter_uniform(seed, step, f_at)
    feedback[f_at] = v


@cuda.jit(device=True, inline=True)
def _mirror_noise(seed, step, index, half_width):
    """Entry ``index`` of the weight mirror's noise at update ``step``, as the CPU engine's
    ``mirror_feedback`` draws it: ``half_width (2 u - 1)`` with ``u`` from the counter
    ``(seed ^ MIRROR_STREAM, step, index)``."""
    return half_width * (2.0 * _counter_uniform(seed ^ MIRROR_STREAM, step, index) - 1.0)


@cuda.jit
def mirror_noise_kernel(xi, seed, step, base, half_width):
    """``xi[i, j] = `` :func:`_mirror_noise` ``(seed, step, base + i n + j, half_width)`` for an
    ``(m, n)`` ``xi``, one thread per entry."""
    i = cuda.grid(1)
    rows, cols = xi.shape
    if i < rows * cols:
        xi[i // cols, i % cols] = _mirror_noise(seed, step, base + i, half_width)


@cuda.jit
def sign_feedback_kernel(params, feedback, magnitude, w0, f0, n, dynamics, seed, step):
    """:func:`_sign_feedback` on ``n`` entries: one layer's ``F`` from ``params[w0:]`` into
    ``feedback[f0:]`` (the two share a layout), one thread per entry."""
    i = cuda.grid(1)
    if i < n:
        _sign_feedback(params, feedback, magnitude, w0 + i, f0 + i, dynamics, seed, step)


@cuda.jit
def shift_kernel(f, w, keep, weight):
    """``f <- keep f + weight w`` entry by entry (Kolen-Pollack's bookkeeping, as on the CPU)."""
    i = cuda.grid(1)
    rows, cols = f.shape
    if i < rows * cols:
        f[i // cols, i % cols] = keep * f[i // cols, i % cols] + weight * w[i // cols, i % cols]
