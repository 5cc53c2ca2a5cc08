"""CUDA kernels around a compiled rule plugin's device twins (:mod:`fastfa.compiled_rules`).

A plugin's ``hidden_signal_cuda`` and ``feedback_step_cuda`` are numba CUDA device functions
that compute *one entry*: the engine launches one thread per entry of the signal (``m x n_l``)
or of the feedback matrix (``n_l x n_src``) and each thread calls the device function for its
``(i, j)``. The kernels here are made once per device function (a closure over it, so numba
compiles the device function into the kernel) and launched like the engine's elementwise
kernels (:func:`fastfa.kernels.cuda_base.launch_1d`).
"""

from __future__ import annotations

from numba import cuda

from fastfa.kernels.cuda_base import launch_1d

_signal_kernels: dict = {}
_feedback_kernels: dict = {}


def signal_kernel(device_fn):
    """The kernel ``out[i, j] = device_fn(layer, i, j, e, t, above, w_above, b, h)`` for every entry
    of ``out``: a plugin's hidden signal before the derivative."""
    kernel = _signal_kernels.get(device_fn)
    if kernel is None:

        @cuda.jit
        def kernel(layer, e, t, above, w_above, b, h, out):
            k = cuda.grid(1)
            rows, cols = out.shape
            if k < rows * cols:
                i, j = k // cols, k % cols
                out[i, j] = device_fn(layer, i, j, e, t, above, w_above, b, h)

        _signal_kernels[device_fn] = kernel
    return kernel


def feedback_kernel(device_fn):
    """The kernel ``b[i, j] = device_fn(phase, layer, step, seed, lr, decay, i, j, e, above, h,
    w_above, b)`` for every entry of ``b``: a plugin's feedback step."""
    kernel = _feedback_kernels.get(device_fn)
    if kernel is None:

        @cuda.jit
        def kernel(phase, layer, step, seed, lr, decay, e, above, h, w_above, b):
            k = cuda.grid(1)
            rows, cols = b.shape
            if k < rows * cols:
                i, j = k // cols, k % cols
                b[i, j] = device_fn(phase, layer, step, seed, lr, decay, i, j, e, above, h, w_above, b)

        _feedback_kernels[device_fn] = kernel
    return kernel


def hidden_signal(device_fn, layer, e, t, above, w_above, b, h, out):
    """Launch :func:`signal_kernel` of ``device_fn`` over ``out`` (device arrays)."""
    launch_1d(signal_kernel(device_fn), out.size, layer, e, t, above, w_above, b, h, out)


def feedback_step(device_fn, phase, layer, step, seed, lr, decay, e, above, h, w_above, b):
    """Launch :func:`feedback_kernel` of ``device_fn`` over ``b`` (device arrays)."""
    launch_1d(
        feedback_kernel(device_fn), b.size, phase, layer, step, seed, lr, decay, e, above, h, w_above, b
    )
