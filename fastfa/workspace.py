"""Scratch buffers of a trainer's compiled passes, and the kernels' thread setting.

A :class:`Workspace` holds the activations, signals and batch rows of up to ``capacity`` rows
(for layer tables also the max-pool indices, conv scratch and the markers that leave unused code
out of the compile); it is allocated once per trainer and batch size, never per call.
"""

from __future__ import annotations

import numba
import numpy as np

from fastfa.kernels import codes


def can_be_sparse(x):
    """Whether the batches of the rows ``x`` may take the first layer's sparse-input path: when
    ``x`` as a whole is at most :data:`~fastfa.kernels.base.SPARSE_DENSITY` non-zero (MNIST's
    pixels: about 19%).

    Each batch then still chooses by its own density. Rows of denser data take BLAS even where a
    batch happens to be sparse (a few rows of the bundled digits, 51% non-zero, at batch 1): a
    choice between two ways of computing one product, which changes only rounding, made once per
    call so that numba compiles the sparse path only for data that uses it.
    """
    from fastfa.kernels.base import SPARSE_DENSITY

    x = np.asarray(x)
    return x.size > 0 and np.count_nonzero(x) <= SPARSE_DENSITY * x.size


def sparse_marker(x):
    """What the CPU kernels take as ``sparse`` for the rows ``x``: None when they are not sparse
    data (:func:`can_be_sparse`), so that numba leaves the sparse-input path out of the compile
    (a first run on dense data compiles several seconds less), else an empty array."""
    return np.zeros(0, dtype=np.int8) if can_be_sparse(x) else None


def with_threads(icfg, threads):
    """A copy of the kernels' integer configuration that lets them use ``threads`` threads."""
    icfg = icfg.copy()
    icfg[codes.I_THREADS] = threads
    return icfg


class Workspace:
    """Activation, delta and batch buffers for up to ``capacity`` rows.

    For a :class:`~fastfa.network.LayerNetwork` also the max-pool indices, a zero vector and
    the conv kernels' scratch for as many threads as numba may use
    (:meth:`fastfa.layers.Table.buffers`).
    """

    def __init__(self, arch, capacity, dtype):
        sizes = arch.sizes
        width = sum(sizes[1:])
        self.capacity = capacity
        self.hidden = np.zeros(capacity * width, dtype=dtype)
        self.deltas = np.zeros(capacity * width, dtype=dtype)
        self.x = np.zeros(capacity * sizes[0], dtype=dtype)
        self.t = np.zeros(capacity * sizes[-1], dtype=dtype)
        #: per input, the step up to which the first layer's weight decay has been applied
        #: (the dense engine's deferred decay, :func:`fastfa.kernels.optimisers.defers_decay`)
        self.decayed = np.zeros(sizes[0], dtype=np.int64)
        if not arch.is_dense:
            buffers = arch.table.buffers(capacity, dtype, threads=numba.config.NUMBA_NUM_THREADS)
            self.scratch = buffers["workspace"]
            self._layer_buffers = (self.hidden, self.deltas, *list(buffers.values())[2:])
            if arch.has_norm:  # batch norm: normalised values and per-batch statistics
                self.normed = np.zeros(capacity * width, dtype=dtype)
                self.norm_scratch = np.zeros(arch.table.n_norm, dtype=dtype)

    def norm(self, arch, training):
        """What the :mod:`fastfa.kernels.layers` passes take as ``norm``: None without batch norm,
        else ``(scratch, normed values, 1 in training or 0 in evaluation)``."""
        if arch.is_dense or not arch.has_norm:
            return None
        return self.norm_scratch, self.normed, int(training)

    def layer_buffers(self, sparse):
        """The buffers every :mod:`fastfa.kernels.layers` pass takes, in its argument order
        (:meth:`fastfa.layers.Table.buffers`, with this workspace's activations and signals), for
        rows whose :func:`sparse_marker` is ``sparse``: the table's own ``sparse`` marker (None
        unless the first layer is dense) becomes None also for rows that are not sparse data."""
        *buffers, first_dense, ops = self._layer_buffers
        return (*buffers, None if first_dense is None else sparse, ops)
