"""Validation rows held out of a training split, and the views that read either part.

``fastfa train --valid-fraction F`` holds out ``round(F * n)`` of the ``n`` training rows,
drawn without replacement by a generator keyed by the run's seed alone (:func:`holdout_rows`),
so a resumed run, ``fastfa evaluate`` and every run of a sweep with that seed see the same
rows; the run file also stores the row numbers themselves. Model selection -- the best
epoch, early stopping, any setting a user compares -- then looks at these rows, and the
test split is touched once, for the selected model (docs/selection.md).

:class:`RowSubset` reads a sorted subset of a split's rows with the split's own
interface, streaming: rows ``start:stop`` of the subset come from one contiguous read of
the underlying split (``(stop - start) / (1 - F)`` rows on average for the training part),
so a split larger than memory trains with bounded memory as before.
"""

from __future__ import annotations

import numpy as np

from fastfa.datasets import _Rows

HOLDOUT_KEY = 0x76616C6964  # "valid": keeps the holdout's draws apart from the run's generator


def holdout_rows(n_rows, fraction, seed):
    """Sorted row numbers (int64) of the ``round(fraction * n_rows)`` validation rows.

    Raises ``ValueError`` when the fraction leaves no validation row or no training row.
    """
    n_rows = int(n_rows)
    k = int(round(fraction * n_rows))
    if not 0 < fraction < 1:
        raise ValueError(f"--valid-fraction must lie strictly between 0 and 1, got {fraction:g}")
    if k < 1:
        raise ValueError(
            f"--valid-fraction {fraction:g} of {n_rows} training rows holds out no row; use a larger fraction"
        )
    if k >= n_rows:
        raise ValueError(f"--valid-fraction {fraction:g} of {n_rows} training rows leaves no training row")
    rng = np.random.default_rng([HOLDOUT_KEY, int(seed)])
    return np.sort(rng.choice(n_rows, size=k, replace=False)).astype(np.int64)


def remaining_rows(n_rows, held_out):
    """Sorted row numbers of ``0 .. n_rows - 1`` that are not in ``held_out``."""
    keep = np.ones(int(n_rows), dtype=bool)
    keep[held_out] = False
    return np.flatnonzero(keep).astype(np.int64)


class RowSubset(_Rows):
    """The rows ``rows`` (sorted, unique) of ``split``, read like a split of their own.

    Parameters
    ----------
    split : Split or ArraySplit
    rows : ndarray of int64
        Row numbers in ``split``, increasing.
    name : str
        The subset's name (``"train"`` or ``"valid"``).
    """

    def __init__(self, split, rows, name):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= split.n_rows or np.any(np.diff(rows) <= 0)):
            raise ValueError(f"validation rows do not fit split '{split.name}' of {split.n_rows} rows")
        self.split, self.rows, self.name = split, rows, name
        self.n_rows, self.n_features, self.x_dtype = len(rows), split.n_features, split.x_dtype

    def __repr__(self):
        return f"<fastfa RowSubset {self.name!r}: {self.n_rows} of {self.split.n_rows} rows>"

    def _read(self, start, stop, dtype):
        wanted = self.rows[start:stop]
        if not wanted.size:
            return self.split._read(0, 0, dtype)
        first = int(wanted[0])
        x, y = self.split._read(first, int(wanted[-1]) + 1, dtype)
        if len(x) == len(wanted):  # a contiguous run of rows: no copy
            return x, y
        local = wanted - first
        return x[local], y[local]

    def in_memory(self, dtype="float32"):
        """The subset loaded into memory (:class:`~fastfa.datasets.ArraySplit`)."""
        from fastfa.datasets import ArraySplit

        x, y = self.load(dtype)
        return ArraySplit(self.name, x, y)


def run_splits(ds, valid_rows=None, train_rows=0):
    """The splits of dataset ``ds`` as a run sees them, by name, in the order train, valid, test.

    With ``valid_rows`` (held out of a training split of ``train_rows`` rows) the training
    split is divided into ``train`` (the rest) and ``valid``; otherwise the file's own splits.
    Raises ``ValueError`` when the file's training split is not the one the rows were drawn from,
    or when it has a ``valid`` split of its own as well.
    """
    if valid_rows is None:
        return {name: ds.split(name) for name in ds.splits}
    base = ds.split("train")
    if base.n_rows != train_rows:
        raise ValueError(
            f"{ds.path}: its training split has {base.n_rows} rows, but the run's validation rows were "
            f"drawn from {train_rows}; is this the dataset the run was trained on?"
        )
    if "valid" in ds.splits:
        raise ValueError(
            f"{ds.path}: has a 'valid' split of its own; a run holding out --valid-fraction of the "
            "training rows cannot use it (drop --valid-fraction to validate on it)"
        )
    splits = {
        "train": RowSubset(base, remaining_rows(base.n_rows, valid_rows), "train"),
        "valid": RowSubset(base, valid_rows, "valid"),
    }
    splits.update({name: ds.split(name) for name in ds.splits if name != "train"})
    return splits
