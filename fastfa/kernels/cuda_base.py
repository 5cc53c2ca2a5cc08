"""Launch helpers and constants shared by the CUDA kernel modules (the twin of :mod:`fastfa.kernels.base`).

:func:`available` says whether a GPU or the simulator is there; :func:`launch_1d` runs an
elementwise kernel with one thread per item in blocks of :data:`THREADS`; ``_lesser`` and
``_greater`` are ``min`` and ``max`` for device code (the builtins do not compile for integers
on numba's CUDA target). :data:`TILE` is the side of the tiled products' blocks.

Set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported to run the kernels on the CPU
simulator (slow: tiny shapes only).
"""

from __future__ import annotations

from numba import config, cuda

#: Threads per block side of the GEMM (TILE x TILE threads, two TILE x TILE tiles); small under
#: the simulator, which runs every thread as a Python thread.
TILE = 4 if config.ENABLE_CUDASIM else 16
#: Row length of the fused kernel's shared tiles: one padding column spreads a tile's columns
#: over the memory banks (a shape must be a constant, so it is spelled out here).
TILE_ROW = TILE + 1
#: Threads per block of the elementwise kernels; small under the simulator, which starts a Python
#: thread for each (and for the idle ones of a block covering a handful of entries).
THREADS = 16 if config.ENABLE_CUDASIM else 128


def available():
    """Whether numba can run CUDA kernels here (a GPU with a driver, or the simulator)."""
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver install raises instead of answering
        return False


@cuda.jit(device=True, inline=True)
def _lesser(a, b):
    """``min(a, b)`` (the builtin does not compile for integers on numba's CUDA target)."""
    return a if a < b else b


@cuda.jit(device=True, inline=True)
def _greater(a, b):
    """``max(a, b)``."""
    return a if a > b else b


def launch_1d(kernel, n, *args, stream=0):
    """Launch an elementwise ``kernel`` with one thread for each of ``n`` items."""
    blocks = max(1, (n + THREADS - 1) // THREADS)
    kernel[blocks, THREADS, stream](*args)
