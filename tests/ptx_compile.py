"""Compile every CUDA kernel of fastfa to PTX without a GPU: ``python -m tests.ptx_compile [CC [DIR]]``.

The simulator runs kernels as Python, so it accepts code that numba's CUDA compiler rejects
(a builtin ``min`` on integers, a shared-array shape that is not a constant). This script
types and compiles each kernel with the argument types :mod:`fastfa.cuda_engine` launches it
with, for compute capability CC (default 9.0, Hopper), and the fused kernel in configurations
that together take all its branches (:func:`fused_configurations`); with DIR it also writes
each kernel's PTX there. The convolution and pooling kernels of
:mod:`fastfa.kernels.cuda_conv` compile for float32 images, the CUDA engine's dtype
(:func:`conv_kernel_signatures`), and so do the batch-norm kernels. It needs libNVVM, found through
``CUDA_HOME`` (the ``nvidia-cuda-nvcc-cu12`` wheel has it), and must run without
``NUMBA_ENABLE_CUDASIM``. Prints one line per kernel; exits 1 on the first failure.
"""

from __future__ import annotations

import sys
import types as pytypes
from pathlib import Path


def kernel_signatures():
    """``{kernel name: argument types}`` as the engine launches them."""
    from numba import types

    flat, rows = types.float32[::1], types.Array(types.float32, 2, "C")
    vector = types.Array(types.float32, 1, "C")
    offsets, codes = types.int64[::1], types.int32[::1]
    f, i, b = types.float64, types.int64, types.boolean
    # x .. partial; sizes .. h_off; acts, loss_rows, error_rows; batch, first; lr, mu, decay;
    # nesterov; second, beta1, beta2, eps, step; magnitude, seed, classification; the mirror's three
    fused = (flat,) * 8 + (offsets,) * 5 + (codes, flat, codes) + (i,) * 2 + (f,) * 3 + (i,)
    fused += (flat, f, f, f, i, flat, i, i, f, f, f)
    return {
        "fused_chunk_kernel": fused,
        "gemm_kernel": (f, rows, b, rows, b, f, rows),
        "bias_activation_kernel": (rows, vector, i),
        "derivative_kernel": (rows, rows, i),
        "output_error_kernel": (rows, vector, rows, rows, flat, codes, f, i, i, i),
        "sign_kernel": (rows, rows),
        "shift_kernel": (rows, rows, f, f),
        "column_sum_kernel": (rows, vector),
        "sgd_kernel": (vector, vector, vector, f, f, f, b),
        "adam_kernel": (vector,) * 4 + (f,) * 5,
        "manhattan_kernel": (vector, vector, vector, f, f, f, b),
        "dropout_kernel": (rows, f, i, i, i),
        "derivative_dropped_kernel": (rows, rows, i, f, i, i, i),
        "accumulate_kernel": (flat, codes, i, flat),
        "gather_rows_kernel": (rows, offsets, rows),
        "sign_feedback_kernel": (flat,) * 3 + (i,) * 6,
        "mirror_noise_kernel": (rows, i, i, i, f),
    }


def conv_kernel_signatures(dtype):
    """``{kernel name: argument types}`` of :mod:`fastfa.kernels.cuda_conv` for images of ``dtype``
    (``"float32"`` or ``"float64"``), as its launch helpers pass them."""
    from numba import types

    images, vector = types.Array(getattr(types, dtype), 4, "C"), types.Array(getattr(types, dtype), 1, "C")
    index, i = types.Array(types.int64, 4, "C"), types.int64
    return {
        "conv_forward_kernel": (images, images, vector, i, i, images),
        "conv_backward_input_kernel": (images, images, i, i, images),
        "conv_weight_grad_kernel": (images, images, i, i, images, vector),
        "maxpool_forward_kernel": (images, i, i, images, index),
        "maxpool_backward_kernel": (images, index, images),
        "avgpool_forward_kernel": (images, i, i, images),
        "avgpool_backward_kernel": (images, i, i, images),
    }


def norm_kernel_signatures():
    """``{kernel name: argument types}`` of :mod:`fastfa.kernels.cuda_batch_norm` (float32, as the
    CUDA layer engine launches them: ``m x C x S`` blocks and per-channel vectors)."""
    from numba import types

    blocks, vector, i = types.Array(types.float32, 3, "C"), types.Array(types.float32, 1, "C"), types.int64
    return {
        "normalise_kernel": (blocks, blocks) + (vector,) * 4 + (i,),
        "normalise_backward_kernel": (blocks, blocks, vector, vector),
        "norm_gradients_kernel": (vector,) * 3,
    }


#: Compiled plugins whose device twins are compiled into the plugin kernels
#: (:mod:`fastfa.kernels.cuda_plugins`): the examples' Kolen-Pollack and Direct Kolen-Pollack.
PLUGIN_FILES = ("examples/compiled_kp.py", "examples/fastfa-dkp/src/fastfa_dkp/__init__.py")


def plugin_kernels():
    """``{label: (kernel, argument types)}``: the plugin kernels around each example plugin's device
    twins, with the types :class:`fastfa.cuda_engine.CudaEngine` launches them with."""
    from numba import types

    from fastfa.kernels import cuda_plugins
    from fastfa.rules import load_plugin_file

    rows, i, f = types.Array(types.float32, 2, "C"), types.int64, types.float64
    root = Path(__file__).resolve().parents[1]
    jobs = {}
    for path in PLUGIN_FILES:
        (rule,) = load_plugin_file(root / path)
        jobs[f"signal_kernel ({rule.name})"] = (
            cuda_plugins.signal_kernel(rule.hidden_signal_cuda),
            (i,) + (rows,) * 7,
        )
        jobs[f"feedback_kernel ({rule.name})"] = (
            cuda_plugins.feedback_kernel(rule.feedback_step_cuda),
            (i,) * 4 + (f,) * 2 + (rows,) * 5,
        )
    return jobs


def fused_configurations():
    """``{label: (signal, dynamics, adam, output activation, loss)}``: configurations of the
    fused kernel that between them take every branch of its signals, feedback dynamics,
    optimisers and outputs."""
    from fastfa.kernels import codes as c

    signal, dynamics, act = c.SIGNALS, c.DYNAMICS, c.OUTPUT_ACTIVATIONS
    ce, se = c.CROSS_ENTROPY, c.SQUARED_ERROR
    return {
        "fa, sgd, softmax": (signal["layerwise"], dynamics["fixed"], False, act["softmax"], ce),
        "bp, adam, logistic": (signal["backprop"], dynamics["fixed"], True, act["logistic"], ce),
        "kp, adam": (signal["layerwise"], dynamics["kolen-pollack"], True, act["softmax"], ce),
        "brsf, identity, squared error": (
            signal["layerwise"],
            dynamics["sign-redraw"],
            False,
            act["identity"],
            se,
        ),
        "wm, tanh, squared error": (signal["layerwise"], dynamics["mirror"], False, act["tanh"], se),
        "dfa": (signal["direct"], dynamics["fixed"], False, act["softmax"], ce),
        "sdfa": (signal["direct-sign"], dynamics["fixed"], False, act["softmax"], ce),
        "drtp": (signal["target"], dynamics["fixed"], False, act["softmax"], ce),
        "shallow": (signal["none"], dynamics["fixed"], False, act["softmax"], ce),
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cc = tuple(int(p) for p in (argv[0] if argv else "9.0").split("."))
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    # device functions ask the current device for its compute capability; there is none here
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    from fastfa.kernels import cuda as kernels
    from fastfa.kernels import cuda_conv

    fused = {
        f"fused_chunk_kernel ({label})": kernels.fused_chunk_kernel(*config)
        for label, config in fused_configurations().items()
    }
    signatures = kernel_signatures()
    jobs = [(name, fused[name], signatures["fused_chunk_kernel"]) for name in fused]
    jobs += [
        (name, getattr(kernels, name), sig)
        for name, sig in signatures.items()
        if name != "fused_chunk_kernel"
    ]
    for dtype in ("float32",):  # the dtype the CUDA engine trains in (the simulator tests cover float64)
        jobs += [
            (f"{name} ({dtype})", getattr(cuda_conv, name), sig)
            for name, sig in conv_kernel_signatures(dtype).items()
        ]
    from fastfa.kernels import cuda_batch_norm

    jobs += [(name, getattr(cuda_batch_norm, name), sig) for name, sig in norm_kernel_signatures().items()]
    jobs += [(name, kernel, sig) for name, (kernel, sig) in plugin_kernels().items()]
    for name, kernel, signature in jobs:
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
        except Exception as error:  # report which kernel, then stop
            print(f"{name}: FAILED: {type(error).__name__}: {error}")
            return 1
        print(f"{name}: {len(ptx.splitlines())} lines of PTX for sm_{cc[0]}{cc[1]}")
        if len(argv) > 1:  # a folder to keep the PTX in (for ptxas -v)
            Path(argv[1], f"{name.replace(' ', '_')}.ptx").write_text(ptx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
