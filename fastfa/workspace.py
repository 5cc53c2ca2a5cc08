"""Scratch buffers of a trainer's compiled passes, and the kernels' thread setting.

A :class:`Workspace` holds the activations, signals and batch rows of up to ``capacity`` rows
(for layer tables also the max-pool indices, conv scratch and the markers that leave unused code
out of the compile); it is allocated once per trainer and batch size, never per call.
"""

from __future__ import annotations

import numba
import numpy as np

from fastfa.kernels import codes


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

    def layer_buffers(self):
        """The buffers every :mod:`fastfa.kernels.layers` pass takes, in its argument order
        (:meth:`fastfa.layers.Table.buffers`, with this workspace's activations and signals)."""
        return self._layer_buffers
