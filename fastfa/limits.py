"""Sizes taken from files and flags, checked against what they imply before anything is allocated.

A file or a flag may declare any size: ``n_classes = 1e9`` in a 10 KB dataset, a batch of 1e12
rows, an ``.npz`` member whose header claims terabytes, a gzip stream that inflates a thousandfold.
Every such size goes through one of these checks first, and a size that does not fit becomes one
line naming the file or flag, the size and what it implies:

- **Memory** (:func:`check_memory`): what an allocation needs against :func:`memory_budget`, the
  memory one fastfa command plans for -- the machine's RAM, or less when the process's address
  space is limited (``ulimit -v``), or ``FASTFA_MAX_MEMORY`` (``512M``, ``4G``, bytes) when set.
- **Models** (:func:`model_bytes`, :func:`check_model`): parameters, gradients, optimiser state,
  feedback, the best epoch's copy and the batch buffers of a network, from its sizes alone.
- **Streams** (:func:`read_bounded`): compressed input is read block by block and refused as soon
  as it inflates past the budget (a gzip or zip bomb never gets further).
- **Grids** (:data:`MAX_GRID_POINTS`): a sweep's grid is counted, not expanded, first.

A ``MemoryError`` that gets past all of these still ends as one line (``fastfa.cli``).
"""

from __future__ import annotations

import math
import os
import re

try:
    import resource
except ImportError:  # pragma: no cover (Windows)
    resource = None

#: Points a sweep grid may have (each is a training run).
MAX_GRID_POINTS = 100_000
#: Bytes read at a time from a compressed stream.
BLOCK_BYTES = 1 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class LimitError(ValueError):
    """A size from a file or a flag does not fit; the message is one line naming it."""


def format_bytes(n):
    """``1536`` -> ``"1.5 KiB"``."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def parse_bytes(text):
    """``"512M"``, ``"4G"``, ``"1e9"`` -> bytes; ``ValueError`` for anything else."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"FASTFA_MAX_MEMORY={text!r}: expected a size such as 512M or 4G")
    try:
        value = float(match[1]) * _UNITS[match[2].upper()]
    except ValueError:
        raise ValueError(f"FASTFA_MAX_MEMORY={text!r}: expected a size such as 512M or 4G") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"FASTFA_MAX_MEMORY={text!r}: expected a positive size")
    return int(value)


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def _address_space_left():
    """Bytes the address-space limit (``RLIMIT_AS``) leaves this process, or ``None``."""
    if resource is None:  # pragma: no cover
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return max(soft - used, 0)


def memory_budget():
    """Bytes one fastfa command may plan to allocate (see the module notes)."""
    given = os.environ.get("FASTFA_MAX_MEMORY")
    if given:
        return parse_bytes(given)
    candidates = [n for n in (_physical_memory(), _address_space_left()) if n is not None]
    return min(candidates) if candidates else 1 << 62


def check_memory(need, what):
    """Raise :class:`LimitError` when ``need`` bytes exceed :func:`memory_budget`.

    ``what`` names the file or flag and the size (``"--batch-size 1000000000000"``); the message
    adds what it needs and what there is.
    """
    budget = memory_budget()
    if need > budget:
        raise LimitError(
            f"{what} needs {format_bytes(need)} of memory, more than the {format_bytes(budget)} "
            "available (FASTFA_MAX_MEMORY sets that limit)"
        )


def model_bytes(sizes, n_params, batch_size, dtype_size, n_feedback=None):
    """Bytes a network of layer ``sizes`` with ``n_params`` parameters takes to train.

    Returns ``(model, batch)``: parameters, gradients, two optimiser buffers, the best epoch's
    copy and feedback matrices (``n_feedback``, default as many as the parameters); and the
    activation, delta and input buffers of one batch of ``batch_size`` rows (twice: training
    and evaluation).
    """
    n_feedback = n_params if n_feedback is None else n_feedback
    model = (5 * n_params + 2 * n_feedback) * dtype_size
    width = sum(sizes[1:])
    batch = 2 * batch_size * (2 * width + sizes[0] + sizes[-1]) * max(dtype_size, 8)
    return model, batch


def dense_params(sizes):
    """Parameters of a dense network of layer ``sizes`` (weights and biases)."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + sum(sizes[1:])


def check_model(sizes, batch_size, dtype_size, what, n_params=None):
    """Refuse a network whose training needs more memory than there is.

    ``what`` names where the sizes come from (a dataset's ``n_classes``, a run file, ``--hidden``);
    the message adds the network and, when the batch buffers dominate, the batch size.
    """
    sizes = [int(s) for s in sizes]
    n_params = dense_params(sizes) if n_params is None else int(n_params)
    model, batch = model_bytes(sizes, n_params, int(batch_size), dtype_size)
    shape = "-".join(str(s) for s in sizes)
    if batch > model:
        what = f"{what}: batch size {batch_size} (--batch-size) with a {shape} network"
    else:
        what = f"{what}: a {shape} network ({n_params:,} parameters)"
    check_memory(model + batch, what)


def read_bounded(stream, what, limit=None):
    """All of binary ``stream`` (a file, or a decompressing one), refused past ``limit`` bytes
    (default :func:`memory_budget`) without reading further."""
    limit = memory_budget() if limit is None else limit
    parts, total = [], 0
    while True:
        block = stream.read(BLOCK_BYTES)
        if not block:
            return b"".join(parts)
        total += len(block)
        if total > limit:
            raise LimitError(
                f"{what}: holds more than {format_bytes(limit)} (uncompressed), more than the memory "
                "available to read it (FASTFA_MAX_MEMORY sets that limit)"
            )
        parts.append(block)


def check_config(config, n_inputs, n_outputs, what):
    """Refuse a :class:`~fastfa.config.TrainConfig` whose network on ``n_inputs`` inputs and
    ``n_outputs`` outputs needs more memory than there is (:func:`check_model`), before any of it
    is allocated. ``what`` names where the sizes come from."""
    import numpy as np

    dtype_size = np.dtype(config.dtype).itemsize
    if not config.layers:
        check_model((n_inputs, *config.hidden, n_outputs), config.batch_size, dtype_size, what)
        return
    from fastfa.network import LayerNetwork
    from fastfa.rules import get_rule

    out_act = config.output_activation or "softmax"
    loss = config.loss or "cross_entropy"
    check_model((n_inputs, n_outputs), config.batch_size, dtype_size, what)  # before planning the layers
    arch = LayerNetwork(config.layers, config.image_shape, n_inputs, n_outputs, config.activation, out_act,
                        loss, get_rule(config.rule).signal)  # fmt: skip
    check_model(arch.sizes, config.batch_size, dtype_size, what, n_params=arch.n_params)
