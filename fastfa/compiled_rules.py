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

How it is called: the function is compiled as a numba ``cfunc`` of that signature for the
network's dtype (:func:`compiled_signal`), and the epoch loop takes it as a first-class function
(numba's ``FunctionType``). The loop is therefore compiled and cached once per dtype for *every*
compiled plugin, and the plugin's own code is cached next to its source, so a second run starts
as fast as with a built-in rule; handing the loop the ``@njit`` dispatcher instead would compile
the loop again in every process (``python -m benchmarks.function_pointers`` measures both).
A call costs a few nanoseconds more than a linked one.

Dense networks on the CPU only, so far: layer lists and ``--device cuda`` refuse such a rule with
one line.
"""

from __future__ import annotations

import numpy as np

#: Compiled signals by (function, dtype): one compile per process, and numba's cache across them
_compiled: dict = {}


def signal_signature(dtype):
    """The numba signature of a compiled hidden signal for arrays of ``dtype``."""
    from numba import types

    matrix = types.Array(types.float32 if np.dtype(dtype) == np.float32 else types.float64, 2, "C")
    return types.void(types.int64, *([matrix] * 7))


def compiled_signal(rule, dtype):
    """``rule.hidden_signal`` as a ``cfunc`` for ``dtype`` arrays, or None for a rule without one.

    Raises :class:`~fastfa.rules.PluginError` (one line naming the rule) when numba cannot
    compile it with that signature.
    """
    func = rule.hidden_signal
    if func is None:
        return None
    key = (func, np.dtype(dtype).name)
    if key not in _compiled:
        from numba import cfunc

        python = getattr(func, "py_func", func)  # an @njit dispatcher, or the function itself
        try:
            _compiled[key] = cfunc(signal_signature(dtype), cache=True)(python)
        except Exception as exc:
            from fastfa.rules import PluginError

            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise PluginError(
                f"rule {rule.name!r}: hidden_signal does not compile for {np.dtype(dtype).name} "
                f"arrays ({type(exc).__name__}: {' '.join(first.split())})"
            ) from None
    return _compiled[key]
