"""Training on a dataset: epochs of shuffled chunks, evaluation, alignment, checkpoints.

Rows reach the engine in chunks of contiguous rows (``chunk_rows``, rounded to
a multiple of the batch size), so a dataset larger than memory trains with
bounded memory (by default a chunk holds 128 MiB of inputs: 42,799 rows of
784 float32 features). Shuffling is a block shuffle: each epoch draws a seed
from the run's generator; from it, the chunk order and a permutation of the
rows inside each chunk. With one chunk this is a full shuffle. Reading from
memory (``--in-memory``) or streaming from the file gives the same batches and
the same result.

Inside a chunk, rows go to the compiled engine in slices of ``SLICE_ROWS``
(``SLICE_ROWS_CUDA`` on a GPU, where each call also moves the parameters to the
device and back, and where the chunk itself stays on the device from one epoch to
the next while the split fits: :meth:`fastfa.train.Trainer.read_chunk`; both rounded
to a multiple of the batch size, so the batches are the same as in one call);
between slices the loop reports progress and checks whether to stop. Because
every draw of an epoch derives from its seed, a run stopped between two slices
can be checkpointed and resumed bit for bit: :class:`Progress` records the
epoch seed, the position and the partial sums.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fastfa.metrics import alignment

CHUNK_BYTES = 128 * 2**20  # float inputs read per chunk (the block-shuffle unit)
SLICE_ROWS = 4096
SLICE_ROWS_CUDA = 65536
PROBE_ROWS = 256


@dataclass
class Progress:
    """Where a run stands inside its current epoch (all zero at an epoch boundary)."""

    epoch_seed: int = -1
    chunks_done: int = 0
    chunk_rows_done: int = 0
    loss_sum: float = 0.0
    error_sum: float = 0.0
    rows_done: int = 0
    seconds: float = 0.0

    def to_attrs(self):
        return dict(self.__dict__)

    @classmethod
    def from_attrs(cls, attrs):
        return cls(**{k: type(v)(attrs[k]) for k, v in cls().__dict__.items() if k in attrs})


class Interrupted(Exception):
    """Training stopped between two chunks because ``should_stop()`` said so."""


def default_chunk_rows(n_features, dtype):
    """Rows per chunk so that a chunk's inputs take :data:`CHUNK_BYTES`."""
    return max(1, CHUNK_BYTES // (max(n_features, 1) * np.dtype(dtype).itemsize))


def chunk_bounds(n_rows, chunk_rows, batch_size):
    """``[(start, stop), ...]`` covering ``n_rows``; chunk sizes are multiples of the batch size."""
    step = max(batch_size, (chunk_rows // batch_size) * batch_size)
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def evaluate_split(trainer, split, chunk_rows=None):
    """Mean loss and error rate of ``trainer`` on a whole split, read chunk by chunk."""
    loss = errors = 0.0
    n = split.n_rows
    chunk_rows = chunk_rows or default_chunk_rows(trainer.arch.sizes[0], trainer.dtype)
    for start, stop in chunk_bounds(n, chunk_rows, 1):
        x = y = None  # free the previous chunk before reading the next one
        x, y = split.read(start, stop, dtype=trainer.dtype)
        chunk_loss, chunk_error = trainer.evaluate(x, y)
        loss += chunk_loss * (stop - start)
        errors += chunk_error * (stop - start)
    return loss / max(n, 1), errors / max(n, 1)


def rows_per_slice(batch, device="cpu"):
    """Rows per call of the engine: ``SLICE_ROWS`` (``SLICE_ROWS_CUDA`` on ``"cuda"``) rounded
    down to whole batches, at least one batch."""
    rows = SLICE_ROWS_CUDA if device == "cuda" else SLICE_ROWS
    return max(batch, rows // batch * batch)


def train_epoch(trainer, split, progress, *, chunk_rows=None, should_stop=None, report=None):
    """Train one epoch over ``split``, resuming from ``progress``; returns it, finished.

    ``report(rows_done, loss_sum)`` is called after every slice. Raises
    :class:`Interrupted` between slices when ``should_stop()`` is true;
    ``progress`` then describes exactly the state the trainer is in.
    """
    batch = trainer.config.batch_size
    chunk_rows = chunk_rows or default_chunk_rows(trainer.arch.sizes[0], trainer.dtype)
    bounds = chunk_bounds(split.n_rows, chunk_rows, batch)
    slice_rows = rows_per_slice(batch, trainer.device)
    if progress.epoch_seed < 0:
        progress.epoch_seed = int(trainer.rng.integers(2**63 - 1))
    epoch_rng = np.random.default_rng(progress.epoch_seed)
    shuffle = trainer.config.shuffle
    chunk_order = epoch_rng.permutation(len(bounds)) if shuffle else np.arange(len(bounds))
    started = time.perf_counter()
    try:
        for k, index in enumerate(chunk_order):
            start, stop = bounds[index]
            order = epoch_rng.permutation(stop - start) if shuffle else np.arange(stop - start)
            if k < progress.chunks_done:
                continue  # replaying a resumed epoch: the draw above keeps the generator in step
            x = labels = targets = None  # free the previous chunk before reading the next one
            x, labels, targets = trainer.read_chunk(split, start, stop)
            while progress.chunk_rows_done < len(order):
                if should_stop is not None and should_stop():
                    raise Interrupted
                lo = progress.chunk_rows_done
                hi = min(lo + slice_rows, len(order))
                loss, errors = trainer.train_rows(x, labels, targets, order[lo:hi])
                progress.chunk_rows_done = hi
                progress.loss_sum += loss
                progress.error_sum += errors
                progress.rows_done += hi - lo
                if report is not None:
                    report(progress.rows_done, progress.loss_sum)
            progress.chunks_done = k + 1
            progress.chunk_rows_done = 0
    finally:
        progress.seconds += time.perf_counter() - started
    trainer.epoch += 1
    return progress


def epoch_record(trainer, progress, splits=(), probe=None):
    """The history entry of a finished epoch: losses, errors, alignment, seconds, lr.

    ``splits`` are the splits evaluated after the epoch (validation, or test for a run
    that records test curves): each adds ``<name>_loss`` and ``<name>_error``.
    """
    n = max(progress.rows_done, 1)
    record = {
        "epoch": trainer.epoch,
        "lr": trainer.learning_rate(trainer.epoch - 1),
        "train_loss": progress.loss_sum / n,
        "train_error": progress.error_sum / n,
        "seconds": progress.seconds,
    }
    return _add_evaluation(record, trainer, splits, probe)


def initial_record(trainer, train_split, splits=(), probe=None):
    """A history entry for epoch 0, the untrained network: losses and errors over whole splits, alignment."""
    record = {"epoch": 0, "lr": trainer.learning_rate(0), "seconds": 0.0}
    record["train_loss"], record["train_error"] = evaluate_split(trainer, train_split)
    return _add_evaluation(record, trainer, splits, probe)


def _add_evaluation(record, trainer, splits, probe):
    """``record`` with each split's loss and error and the probe batch's alignment metrics."""
    for split in splits:
        record[f"{split.name}_loss"], record[f"{split.name}_error"] = evaluate_split(trainer, split)
    if probe is not None and trainer.arch.n_layers > 1:
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's angles are NaN, quietly
            metrics = alignment(trainer, *probe)
        for key in ("update_angle", "feedback_angle", "norm_ratio"):
            record[key] = [m[key] for m in metrics]
    return record


def probe_batch(trainer, split, rows=PROBE_ROWS):
    """The fixed probe batch for alignment metrics: the first ``rows`` rows of ``split``."""
    return split.read(0, min(rows, split.n_rows), dtype=trainer.dtype)
