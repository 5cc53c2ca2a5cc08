"""Compiled rule plugins: a rule's hidden-layer signal as numba code inside the epoch loop.

A :class:`~fastfa.rules.Rule` may give ``hidden_signal``, a function (``@njit`` or plain
Python that numba can compile) the engine calls for every hidden layer of every batch, with
no Python between batches::

    hidden_signal(layer, e, t, above, w_above, b, h, out)

- ``layer``: the hidden layer's index (0 = the first), an int64;
- ``e``: the output error ``dLoss/da_L`` of the batch (``m x n_out``), already divided by the
  batch size ``m``;
- ``t``: the targets (``m x n_out``; one-hot rows for classification);
- ``above``: the signal of the layer above, ``delta_{l+1}`` (``m x n_{l+1}``; ``e`` for the last
  hidden layer), with its derivative applied;
- ``w_above``: that layer's forward weights ``W_{l+1}`` (``n_l x n_{l+1}``; ``a = h W + b``);
- ``b``: the rule's feedback matrix of this layer in forward orientation (``n_l x n_src``, i.e.
  ``B^T``), ``n_src = n_{l+1}`` for a rule whose ``signal`` is ``layerwise`` and ``n_out`` for
  ``direct``, ``direct-sign`` or ``target``; an empty ``0 x 0`` matrix for a rule without feedback;
- ``h``: the layer's activations ``h_l = f(a_l)`` (``m x n_l``);
- ``out``: where the signal goes (``m x n_l``), *before* the derivative: the engine multiplies it
  by ``f'(a_l)`` afterwards, as for every built-in signal.

All arrays are C-contiguous, of the network's dtype. Feedback alignment, for example, is
``out = above @ b.T``; :func:`fastfa.kernels.products.product` (``product(1.0, above, NO_TRANS,
b, TRANS, 0.0, out, 1)``) computes it with the same BLAS call as the built-in rule.

A rule may also give ``feedback_step``, for feedback that learns (as kp and wm do), called for
every hidden layer twice per batch, before the parameter update (``phase`` 0) and after it
(``phase`` 1)::

    feedback_step(phase, layer, step, seed, lr, decay, e, above, h, w_above, b)

with ``step`` the update's number (from 1), ``seed`` the run's seed (for counter-based noise,
:func:`fastfa.kernels.feedback.counter_uniform`), ``lr`` and ``decay`` the current learning rate
and weight decay, and the arrays as above; it changes ``b`` in place. Kolen-Pollack, for example,
is ``b <- b - w_above`` before the update and ``b <- (1 - lr decay) b + w_above`` after it.

How it is called: the function is compiled as a numba ``cfunc`` of that signature for the
network's dtype (:func:`compiled_signal`), and the epoch loop takes it as a first-class function
(numba's ``FunctionType``). The loop is therefore compiled and cached once per dtype for *every*
compiled plugin, and the plugin's own code is cached next to its source, so a second run starts
as fast as with a built-in rule; handing the loop the ``@njit`` dispatcher instead would compile
the loop again in every process (``python -m benchmarks.function_pointers`` measures both).
A call costs a few nanoseconds more than a linked one.

On a layer list (convolutional networks, :mod:`fastfa.kernels.layers`) a compiled plugin needs
a direct signal (``direct``, ``direct-sign`` or ``target``): its functions are called for every
layer with weights below the output, conv layers included, with ``layer`` the layer's index in
the list, ``h`` and ``out`` that layer's whole output flattened per row (``m x C*H*W`` for a
convolution), ``b`` its direct matrix ``D_l`` (``size_l x n_out``), and ``above`` and
``w_above`` empty (``0 x 0``). A layerwise or backprop signal travels down through transposed
convolutions and pooling layers, which the engine owns; such a plugin is refused on a layer
list with one line.

With ``--device cuda`` a rule's device twins run instead (``hidden_signal_cuda``,
``feedback_step_cuda``): numba CUDA device functions that compute one entry each, called by one
GPU thread per entry (:mod:`fastfa.kernels.cuda_plugins`)::

    hidden_signal_cuda(layer, i, j, e, t, above, w_above, b, h) -> out[i, j]
    feedback_step_cuda(phase, layer, step, seed, lr, decay, i, j, e, above, h, w_above, b) -> new b[i, j]

with the arguments of their CPU twins (float32 arrays on the device). A feedback twin may read
``b`` only at ``[i, j]``: other threads write the other entries meanwhile. Dense networks only;
the CUDA engine runs such a rule with one kernel launch per operation (its fused kernel cannot
call a plugin). Summed in float32 in the order of fastfa's GEMM kernel (``k`` ascending), a twin
reproduces the built-in signal bit for bit (tests/test_compiled_rules.py).
"""

from __future__ import annotations

import numpy as np

#: Compiled signals by (function, dtype): one compile per process, and numba's cache across them
_compiled: dict = {}


def _matrix_type(dtype):
    from numba import types

    return types.Array(types.float32 if np.dtype(dtype) == np.float32 else types.float64, 2, "C")


def signal_signature(dtype):
    """The numba signature of a compiled hidden signal for arrays of ``dtype``."""
    from numba import types

    return types.void(types.int64, *([_matrix_type(dtype)] * 7))


def feedback_step_signature(dtype):
    """The numba signature of a compiled feedback step for arrays of ``dtype``."""
    from numba import types

    scalars = (types.int64,) * 4 + (types.float64,) * 2
    return types.void(*scalars, *([_matrix_type(dtype)] * 5))


def compiled_signal(rule, dtype):
    """``rule.hidden_signal`` as a ``cfunc`` for ``dtype`` arrays, or None for a rule without one.

    Raises :class:`~fastfa.rules.PluginError` (one line naming the rule) when numba cannot
    compile it with that signature.
    """
    return _compile(rule, "hidden_signal", signal_signature(dtype), dtype)


def compiled_feedback_step(rule, dtype):
    """``rule.feedback_step`` as a ``cfunc`` for ``dtype`` arrays, or None (as :func:`compiled_signal`)."""
    return _compile(rule, "feedback_step", feedback_step_signature(dtype), dtype)


def _compile(rule, hook, signature, dtype):
    func = getattr(rule, hook)
    if func is None:
        return None
    key = (func, np.dtype(dtype).name)
    if key not in _compiled:
        from numba import cfunc

        python = getattr(func, "py_func", func)  # an @njit dispatcher, or the function itself
        try:
            _compiled[key] = cfunc(signature, cache=True)(python)
        except Exception as exc:
            from fastfa.rules import PluginError

            raise PluginError(
                f"rule {rule.name!r}: {hook} does not compile for {np.dtype(dtype).name} arrays"
                f"{_compile_error(exc)}"
            ) from None
    return _compiled[key]


def device_failure(rule, hook, layer, exc):
    """The :class:`~fastfa.rules.PluginError` (one line) for ``rule``'s CUDA device function ``hook``
    failing on hidden layer ``layer`` with ``exc``: numba refused to compile it for the GPU, or
    it raised (on the simulator, an index outside its arrays raises ``IndexError``)."""
    from numba.core.errors import TypingError

    from fastfa.rules import PluginError

    if isinstance(exc, TypingError):
        what = "does not compile for the GPU"
    elif isinstance(exc, IndexError):
        what = f"indexes outside its arrays on hidden layer {layer}"
    else:
        what = f"raised on hidden layer {layer}"
    return PluginError(f"rule {rule.name!r}: {hook} {what}{_compile_error(exc)}")


def _compile_error(exc):
    """Where and why numba refused a function, on one line: `` at FILE line N (REASON)``."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # numba colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if not line.startswith("Failed in")), "")
    where = re.search(r'File "([^"]+)", line (\d+)', text)
    place = f" at {where.group(1)} line {where.group(2)}" if where else ""
    return (
        f"{place} ({type(exc).__name__}: {reason.rstrip(':')})"
        if reason
        else f"{place} ({type(exc).__name__})"
    )


def _cached_njit(func):
    """``func`` (a plain Python function) as an ``@njit(cache=True)`` dispatcher, one per process."""
    key = (func, "njit")
    if key not in _compiled:
        from numba import njit

        _compiled[key] = njit(cache=True)(func)
    return _compiled[key]


def check_plugin(rule, layers, dtype, rows=2):
    """Run ``rule``'s compiled functions once for each of ``layers``, on small arrays of the
    contract's shapes, compiled with numba's bounds checking.

    A ``cfunc`` cannot raise into the epoch loop (numba prints the exception and carries on), so
    this is where a function that raises (a product of shapes that do not chain, for one) is
    caught, and with numba's bounds checking on (``NUMBA_BOUNDSCHECK=1``, the way to check a new
    plugin once) also one that reads or writes outside its arrays:
    :class:`~fastfa.rules.PluginError`, one line naming the rule, the function and the layer. The
    trainer runs it before every run. It calls the rule's own ``@njit`` function (an
    ``@njit(cache=True)`` one loads from numba's cache; a plain function is compiled with
    ``cache=True``); with bounds checking on, a bounds-checked copy compiled for this check
    alone. ``layers`` holds ``(layer, n_l, n_above, n_out, b_shape)``
    for every layer the engine calls the functions for
    (:meth:`fastfa.train.Trainer.plugin_layers`; ``n_above`` 0 where ``above`` and ``w_above``
    are empty, ``b_shape`` the feedback matrix's shape as the functions see it); the arrays hold
    values drawn from a fixed seed.
    """
    from numba import njit
    from numba.core import config as numba_config

    from fastfa.rules import PluginError

    rng = np.random.default_rng(0)

    def array(*shape):
        return np.ascontiguousarray(rng.uniform(-1.0, 1.0, shape), dtype=np.dtype(dtype))

    for hook in ("hidden_signal", "feedback_step"):
        func = getattr(rule, hook)
        if func is None:
            continue
        python = getattr(func, "py_func", func)
        if numba_config.BOUNDSCHECK:
            checked = njit(boundscheck=True)(python)
        else:
            checked = func if hasattr(func, "py_func") else _cached_njit(func)
        for layer, n_l, n_above, n_out, b_shape in layers:
            e, t, above, h = array(rows, n_out), array(rows, n_out), array(rows, n_above), array(rows, n_l)
            w_above = array(n_l, n_above) if n_above else array(0, 0)
            if not n_above:
                above = array(0, 0)
            b = array(*b_shape)
            try:
                if hook == "hidden_signal":
                    checked(layer, e, t, above, w_above, b, h, array(rows, n_l))
                else:
                    for phase in (0, 1):
                        checked(phase, layer, 1, 0, 0.01, 0.0, e, above, h, w_above, b)
            except Exception as exc:
                what = "indexes outside its arrays" if isinstance(exc, IndexError) else "raised"
                raise PluginError(
                    f"rule {rule.name!r}: {hook} {what} on hidden layer {layer}{_compile_error(exc)}"
                ) from None
