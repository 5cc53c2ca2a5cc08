"""Whether a trainer's compiled kernels are already in numba's on-disk cache.

The first run after installing (or upgrading) fastfa compiles its kernels, which takes tens
of seconds before the first epoch; later runs load them from ``__pycache__`` in about a
second. The shell says so when it is about to compile (``fastfa train`` prints one line),
so that a silent first epoch is not mistaken for a hang.

The check reads the cache index of the trainer's epoch kernel (dense engine or layer-table
engine), which numba invalidates when the kernel's source file changes; an index without
an entry for the trainer's float dtype means a compile is coming. Anything unexpected
(numba internals moved, an unreadable cache) counts as cached: the notice is a courtesy
and must never stop a run.
"""

from __future__ import annotations

NOTICE = "compiling kernels (first run only, typically under a minute; later runs load them)"


def epoch_kernel(trainer):
    """The compiled epoch loop ``trainer`` trains with on the CPU."""
    if trainer.arch.is_dense:
        from fastfa.kernels import cpu

        return cpu.train_epoch
    from fastfa.kernels import layer_epoch

    return layer_epoch.train_epoch_layers


#: Where the epoch kernels of both engines take ``(magnitude, learning, grads)``, each None where
#: a run cannot use it (:meth:`fastfa.train.Trainer.optional_buffers`)
OPTIONAL_ARGS = slice(7, 10)
#: Where the dense engine's epoch kernel takes a compiled plugin's hidden signal and feedback step
#: (None for the built-in rules, :mod:`fastfa.compiled_rules`), and where the layer engine's does
PLUGIN_ARGS = slice(11, 13)
LAYER_PLUGIN_ARGS = slice(14, 16)
#: Where the epoch kernels take the layers' dropout keep probabilities (None without), dense and layer
DROPOUT_ARG = 13
LAYER_DROPOUT_ARG = 16
#: Where the layer engine's epoch kernel takes the batch-norm buffers (None without batch norm)
LAYER_NORM_ARG = 17


def none_pattern(trainer):
    """``{argument position: whether it is None}`` for the trainer's epoch kernel: the pattern that
    decides which specialisation a run compiles (or loads)."""
    pattern = dict(
        zip(range(OPTIONAL_ARGS.start, OPTIONAL_ARGS.stop), (a is None for a in trainer.optional_buffers()))
    )
    where = PLUGIN_ARGS if trainer.arch.is_dense else LAYER_PLUGIN_ARGS
    plugins = (trainer.plugin_signal is None, trainer.plugin_feedback_step is None)
    pattern.update(zip(range(where.start, where.stop), plugins))
    pattern[DROPOUT_ARG if trainer.arch.is_dense else LAYER_DROPOUT_ARG] = trainer.dropout is None
    if not trainer.arch.is_dense:
        pattern[LAYER_NORM_ARG] = not trainer.arch.has_norm
    return pattern


def has_entries(dispatcher, dtype):
    """Whether ``dispatcher``'s cache index holds any compilation for arrays of ``dtype`` (a
    cheaper, coarser :func:`is_cached` for before a trainer exists); True when in doubt."""
    try:
        index = dispatcher._cache._cache_file._load_index()
        return any(str(dtype) in str(key[0]) for key in index)
    except Exception:  # noqa: BLE001 (numba internals: when in doubt, assume cached)
        return True


def is_cached(trainer):
    """True unless the trainer's epoch kernel has no cached compilation for its dtype and for the
    pattern of None among its optional arguments (each pattern compiles on its own)."""
    try:
        index = epoch_kernel(trainer)._cache._cache_file._load_index()
        dtype = str(trainer.dtype)
        pattern = none_pattern(trainer)
        return any(
            dtype in str(key[0][0]) and all((str(key[0][i]) == "none") == none for i, none in pattern.items())
            for key in index
        )
    except Exception:  # noqa: BLE001 (numba internals: when in doubt, say nothing)
        return True
