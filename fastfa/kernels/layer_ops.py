"""The convolution and pooling kernels as function pointers for the layer engine's passes.

The passes of :mod:`fastfa.kernels.layers` (forward, backward, gradients, the epoch loop and the
evaluation) reach the kernels of :mod:`fastfa.kernels.conv` and :mod:`fastfa.kernels.pooling`
through ``ops``, a tuple of numba ``cfunc`` objects (:func:`layer_ops`), instead of calling
them by name. numba links the code of a callee called by name into its caller's module and
optimises and generates it again there, so every conv kernel used to be compiled once for
itself and once more for each pass above it (the forward pass, the backward pass, the epoch
loop, the evaluation): about two thirds of a LeNet run's first compile was LLVM repeating that
work. A call through a pointer costs nanoseconds, and the passes stay cacheable: numba's
``FunctionType`` is the same for every function of a signature (``python -m
benchmarks.function_pointers``; docs/engine.md, "The first run").

The kernels themselves are unchanged and still callable from Python under their own names.
"""

from __future__ import annotations

import numpy as np

#: Positions in ``ops``
OP_CONV_FORWARD = 0
OP_CONV_BACKWARD_INPUT = 1
OP_CONV_WEIGHT_GRAD = 2
OP_MAXPOOL_FORWARD = 3
OP_MAXPOOL_BACKWARD = 4
OP_AVGPOOL_FORWARD = 5
OP_AVGPOOL_BACKWARD = 6

_ops: dict = {}


def _signatures(dtype):
    """The kernels' numba signatures for C-contiguous arrays of ``dtype``, in ``ops`` order."""
    from numba import types

    real = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    images, vector = types.Array(real, 4, "C"), types.Array(real, 1, "C")
    argmax, i = types.Array(types.int64, 4, "C"), types.int64
    return (
        types.void(images, images, vector, i, i, images, vector, i),  # conv_forward
        types.void(images, images, i, i, images, vector, i),  # conv_backward_input
        types.void(images, images, i, i, images, vector, vector, i),  # conv_weight_grad
        types.void(images, i, i, images, argmax, i),  # maxpool_forward
        types.void(images, argmax, images, i),  # maxpool_backward
        types.void(images, i, i, images, i),  # avgpool_forward
        types.void(images, i, i, images, i),  # avgpool_backward
    )


def _unused4(a, b, c, d):
    pass


def _unused5(a, b, c, d, e):
    pass


def _unused6(a, b, c, d, e, f):
    pass


def _unused7(a, b, c, d, e, f, g):
    pass


def _unused8(a, b, c, d, e, f, g, h):
    pass


_UNUSED = {4: _unused4, 5: _unused5, 6: _unused6, 7: _unused7, 8: _unused8}


def layer_ops(dtype, kinds=("conv", "maxpool", "avgpool")):
    """The conv and pooling kernels for ``dtype`` arrays as ``cfunc`` objects, in the order of the
    ``OP_*`` positions: compiled (or loaded from numba's cache) once per process.

    Only the layer ``kinds`` a network has get their kernels; the others get an empty function
    of the same signature (the tuple's type, and so the compiled passes, stay the same).
    """
    kinds = tuple(sorted(set(kinds)))
    key = (np.dtype(dtype).name, kinds)
    if key not in _ops:
        from numba import cfunc

        from fastfa.kernels import conv

        kernels = (
            ("conv", conv.conv_forward),
            ("conv", conv.conv_backward_input),
            ("conv", conv.conv_weight_grad),
            ("maxpool", conv.maxpool_forward),
            ("maxpool", conv.maxpool_backward),
            ("avgpool", conv.avgpool_forward),
            ("avgpool", conv.avgpool_backward),
        )
        ops = []
        for (kind, kernel), signature in zip(kernels, _signatures(dtype)):
            func = kernel.py_func if kind in kinds else _UNUSED[len(signature.args)]
            ops.append(cfunc(signature, cache=True, parallel=kind in kinds, error_model="numpy")(func))
        _ops[key] = tuple(ops)
    return _ops[key]
