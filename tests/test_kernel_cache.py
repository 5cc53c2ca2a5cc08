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


def test_another_pattern_of_optional_buffers_means_a_compile(rng, monkeypatch):
    """An index holding fa with plain SGD (no gradient buffer) says nothing of fa with Adam (one)."""
    from fastfa.kernels import cpu

    x, y = make_data(rng, 20, (7, 13, 5))
    sgd = make_trainer((7, 13, 5), "fa", "float64")
    sgd.train_epoch(x, y)
    adam = make_trainer((7, 13, 5), "fa", "float64", optimizer="adam")
    assert sgd.optional_buffers()[2] is None and adam.optional_buffers()[2] is not None
    sgd_signature = next(  # this trainer's: float64, None for the optional buffers, plugins and dropout
        sig for sig in cpu.train_epoch.signatures
        if "float64" in str(sig[0]) and all(str(t) == "none" for t in sig[kernel_cache.OPTIONAL_ARGS])
        and all(str(t) == "none" for t in sig[kernel_cache.PLUGIN_ARGS])
        and str(sig[kernel_cache.DROPOUT_ARG]) == "none"
    )  # fmt: skip

    class Index:
        def _load_index(self):
            return {(sgd_signature, "target", "hashes"): "file"}

    class Cache:
        _cache_file = Index()

    class Kernel:
        _cache = Cache()

    monkeypatch.setattr(kernel_cache, "epoch_kernel", lambda trainer: Kernel())
    assert kernel_cache.is_cached(sgd)
    assert not kernel_cache.is_cached(adam)
    # nor of a compiled plugin rule with fa's settings (the loop takes its functions)
    from tests.test_compiled_rules import fa_signal, plugin_rule

    plugin = make_trainer((7, 13, 5), plugin_rule("fa-compiled", "layerwise", fa_signal), "float64")
    assert plugin.optional_buffers()[2] is None
    assert not kernel_cache.is_cached(plugin)


def test_the_argument_positions_name_the_epoch_kernels_parameters():
    """OPTIONAL_ARGS and the plugin positions point at the parameters they mean in both engines."""
    import inspect

    from fastfa.kernels import cpu, layer_epoch

    dense = list(inspect.signature(cpu.train_epoch.py_func).parameters)
    table = list(inspect.signature(layer_epoch.train_epoch_layers.py_func).parameters)
    for names in (dense, table):
        assert names[kernel_cache.OPTIONAL_ARGS] == ["magnitude", "learning", "grads"]
    assert dense[kernel_cache.PLUGIN_ARGS] == ["plugin", "feedback_plugin"]
    assert dense[kernel_cache.DROPOUT_ARG] == table[kernel_cache.LAYER_DROPOUT_ARG] == "dropout"
    assert table[kernel_cache.LAYER_PLUGIN_ARGS] == ["plugin", "feedback_plugin"]
    assert table[kernel_cache.LAYER_NORM_ARG] == "norm"
