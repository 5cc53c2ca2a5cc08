"""fastfa.threads: the kernels' threads on a busy machine.

With other processes keeping cores busy, the kernels run their parts on fewer threads, but the
work is split as on an idle machine, so every result is bit for bit the same whatever the load.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastfa import threads
from tests.conftest import make_data, make_trainer


def test_busy_elsewhere_reads_the_machine():
    busy = threads.busy_elsewhere()
    assert isinstance(busy, int) and busy >= 0
    assert 1 <= threads.free_cores() <= (threads.os.cpu_count() or 1)


def test_a_busy_core_runs_the_same_parts_on_fewer_threads(monkeypatch):
    if numba.get_num_threads() < 2 or not threads.blas_controls():
        pytest.skip("needs two numba threads and OpenBLAS")
    configured = numba.get_num_threads()
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    with threads.kernel_threads() as parts:
        assert parts == configured  # the split does not change
        assert numba.get_num_threads() == 1  # the threads that run it do
    assert numba.get_num_threads() == configured


def test_results_do_not_depend_on_the_load(monkeypatch, rng):
    """An epoch split over two parts gives the same bits on two threads and on one."""
    if numba.get_num_threads() < 2 or not threads.blas_controls():
        pytest.skip("needs two numba threads and OpenBLAS")
    sizes = (200, 400, 10)  # big enough that the products and passes split (kernels.base grains)
    x, y = make_data(rng, 256, sizes)
    runs = []
    for free in (2, 1):
        monkeypatch.setattr(threads, "free_cores", lambda free=free: free)
        tr = make_trainer(sizes, "fa", "float32", batch_size=64, seed=4, lr=0.05)
        tr.train_epoch(x, y)
        runs.append(tr.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
