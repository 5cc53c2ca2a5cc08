"""Compile every CUDA kernel of fastfa to PTX without a GPU: ``python -m tests.ptx_compile [CC]``.

The simulator runs kernels as Python, so it accepts code that numba's CUDA compiler rejects
(a builtin ``min`` on integers, a shared-array shape that is not a constant). This script
types and compiles each kernel with the argument types :mod:`fastfa.cuda_engine` launches it
with, for compute capability CC (default 9.0, Hopper). It needs libNVVM, found through
``CUDA_HOME`` (the ``nvidia-cuda-nvcc-cu12`` wheel has it), and must run without
``NUMBA_ENABLE_CUDASIM``. Prints one line per kernel; exits 1 on the first failure.
"""

from __future__ import annotations

import sys
import types as pytypes


def kernel_signatures():
    """``{kernel name: argument types}`` as the engine launches them."""
    from numba import types

    flat, rows = types.float32[::1], types.Array(types.float32, 2, "C")
    vector = types.Array(types.float32, 1, "C")
    offsets, codes = types.int64[::1], types.int32[::1]
    f, i, b = types.float64, types.int64, types.boolean
    # x .. partial; sizes .. h_off; acts, loss_rows, error_rows; batch, signal, first;
    # lr, mu, decay; nesterov, dynamics; second, adam, beta1, beta2, eps, step
    fused = (flat,) * 8 + (offsets,) * 5 + (codes, flat, codes) + (i,) * 3 + (f,) * 3 + (i,) * 2
    fused += (flat, i, f, f, f, i, flat, i, i, i, i)  # ... magnitude, seed, out_act, loss, classification
    fused += (f, f, f)  # mirror_lr, mirror_decay, mirror_half_width
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
        "accumulate_kernel": (flat, codes, i, flat),
        "gather_rows_kernel": (rows, offsets, rows),
        "sign_feedback_kernel": (flat,) * 3 + (i,) * 6,
        "mirror_noise_kernel": (rows, i, i, i, f),
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cc = tuple(int(p) for p in (argv[0] if argv else "9.0").split("."))
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    # device functions ask the current device for its compute capability; there is none here
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    from fastfa.kernels import cuda as kernels

    for name, signature in kernel_signatures().items():
        try:
            ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, signature, cc=cc)
        except Exception as error:  # report which kernel, then stop
            print(f"{name}: FAILED: {type(error).__name__}: {error}")
            return 1
        print(f"{name}: {len(ptx.splitlines())} lines of PTX for sm_{cc[0]}{cc[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
