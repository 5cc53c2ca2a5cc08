"""Compile options, work-splitting thresholds and helpers shared by every CPU kernel module.

The conventions of the CPU engine are in :mod:`fastfa.kernels.cpu`.
"""

from numba import njit

#: Compile options of every kernel: cached on disk, and numpy's error model (a float
#: division by zero gives inf or nan instead of raising), without which the branch
#: numba inserts before each division keeps the loops from being vectorised.
kernel = njit(cache=True, error_model="numpy")
#: The same, for the kernels that split their work over threads.
parallel_kernel = njit(cache=True, error_model="numpy", parallel=True)
#: The same, for the engine's drivers with one or two callers in compiled code: numba types them
#: inside their callers instead of building a module of their own, where LLVM would optimise and
#: generate everything they call once more (a first run compiles several seconds less; called from
#: Python they compile as any kernel). Not for small helpers called from many places: inlining
#: those everywhere made the first run's compile three times longer.
inlined_kernel = njit(cache=True, error_model="numpy", inline="always")

#: A batch whose inputs are at most this fraction non-zero takes the sparse
#: first-layer path. ``python -m benchmarks.sparsity`` on the 2-core development
#: machine (784 x 1000 layer): the sparse path breaks even near 0.6 of the inputs
#: non-zero at batch 32, 0.38 at batch 128 and 0.32 at batch 1024.
SPARSE_DENSITY = 0.3
GEMM_GRAIN = 1 << 18  # multiply-adds that make a thread's share of a product worth it
PASS_GRAIN = 1 << 14  # elements that make a thread's share of an elementwise pass worth it

LOG_CLIP = 1e-12  # probabilities are clipped here when the loss is reported


@kernel
def flush_subnormal(v, tiny):
    """``v``, or zero where ``|v| < tiny`` (``tiny``: the dtype's smallest normal number).

    NaN stays NaN, so divergence is still seen. See the module notes on subnormals.
    """
    return v if abs(v) >= tiny else v - v


# ------------------------------------------------------------------------- threads


@kernel
def split(part, parts, n):
    """Bounds ``[lo, hi)`` of part ``part`` when ``n`` items are cut into ``parts`` near-equal parts."""
    return part * n // parts, (part + 1) * n // parts


@kernel
def parts_for(threads, work, grain, items):
    """Threads worth using: one per ``grain`` of work, at most ``threads`` and ``items``."""
    return max(1, min(threads, work // grain, items))
