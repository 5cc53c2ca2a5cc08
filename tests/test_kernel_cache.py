"""fastfa.kernel_cache: whether a run is about to compile its kernels (the first-run notice)."""

from __future__ import annotations

import numpy as np

from fastfa import kernel_cache
from tests.conftest import make_data, make_trainer


def test_a_trained_dtype_is_cached(rng):
    tr = make_trainer((7, 13, 5), "fa", "float64")
    x, y = make_data(rng, 20, (7, 13, 5))
    tr.train_epoch(x, y)
    assert kernel_cache.is_cached(tr)


def test_an_empty_index_means_a_compile(monkeypatch):
    class Index:
        def _load_index(self):
            return {}

    class Cache:
        _cache_file = Index()

    class Kernel:
        _cache = Cache()

    tr = make_trainer((7, 13, 5), "fa", "float32")
    monkeypatch.setattr(kernel_cache, "epoch_kernel", lambda trainer: Kernel())
    assert not kernel_cache.is_cached(tr)
    monkeypatch.setattr(kernel_cache, "epoch_kernel", lambda trainer: object())  # numba moved: say nothing
    assert kernel_cache.is_cached(tr)
    assert np.dtype(tr.dtype) == np.float32
