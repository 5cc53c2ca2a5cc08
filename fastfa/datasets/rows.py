"""What every split of a dataset offers, and the split held in memory.

:class:`_Rows` gives reading, chunking and block shuffling on top of a split's
``_read(start, stop, dtype)``; :class:`~fastfa.datasets.reader.Split` reads from the file,
:class:`ArraySplit` holds the rows in memory.
"""

from __future__ import annotations

import numpy as np

from fastfa.datasets.schema import _check_dtype_arg


class _Rows:
    """What every split offers on top of ``_read(start, stop, dtype)``: reading, chunking, shuffling."""

    name: str
    n_rows: int
    n_features: int

    def __len__(self):
        return self.n_rows

    def _read(self, start, stop, dtype):  # pragma: no cover - overridden
        raise NotImplementedError

    def read(self, start, stop, dtype="float32"):
        """Rows ``start:stop`` as ``(x, y)``, converted like :meth:`load` and checked.

        One contiguous read; ``0 <= start <= stop <= n_rows``.
        """
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.n_rows:
            raise ValueError(
                f"rows {start}:{stop} out of range for split '{self.name}' of {self.n_rows} rows"
            )
        return self._read(start, stop, _check_dtype_arg(dtype))

    def load(self, dtype="float32"):
        """Read the whole split into memory, checked.

        Parameters
        ----------
        dtype : {"float32", "float64"}
            Type of the returned inputs (and regression targets).

        Returns
        -------
        x : ndarray, shape (n_rows, n_features)
            ``uint8`` inputs multiplied by ``x_scale``.
        y : ndarray
            int64 labels, shape ``(n_rows,)``, or targets, shape ``(n_rows, K)``.
        """
        return self._read(0, self.n_rows, _check_dtype_arg(dtype))

    def _read_ranges(self, ranges, dtype):
        """Concatenate the rows of several contiguous ``(start, stop)`` ranges."""
        parts = [self._read(start, stop, dtype) for start, stop in ranges]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def iter_chunks(self, rows_per_chunk, rng=None, dtype="float32"):
        """Stream the split as ``(x, y)`` chunks of at most ``rows_per_chunk`` rows.

        Memory stays bounded by one chunk whatever the file's size. Each chunk
        is converted like :meth:`load` and checked as it is read (finite
        inputs, labels in ``0 .. n_classes - 1``), so a bad value raises
        :class:`DatasetError` when its chunk is reached.

        Parameters
        ----------
        rows_per_chunk : int
            Rows per chunk (the last one may be shorter).
        rng : numpy.random.Generator, int or None
            ``None`` reads the rows in file order. Otherwise the chunks are
            shuffled as blocks: the file is treated as a ring of rows, cut at a
            random offset into chunks of ``rows_per_chunk`` consecutive rows,
            the chunks are visited in a random order, and each chunk's rows
            are returned in a random order. Every HDF5 read is a contiguous row
            range (a chunk that wraps round the end of the file is two reads).
            This is a *block* shuffle: rows of one chunk stay together in an
            epoch, though the random offset changes the company they keep from
            one epoch to the next; with one chunk it is a full shuffle. The
            training engine also shuffles within each chunk. An int is a seed
            for ``numpy.random.default_rng``.
        dtype : {"float32", "float64"}

        Yields
        ------
        x : ndarray, shape (rows, n_features)
        y : ndarray
            int64 labels, or float targets of shape ``(rows, K)``.
        """
        rows_per_chunk = int(rows_per_chunk)
        if rows_per_chunk < 1:
            raise ValueError(f"rows_per_chunk must be >= 1, got {rows_per_chunk}")
        dtype = _check_dtype_arg(dtype)
        if rng is not None and not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return self._chunks(rows_per_chunk, rng, dtype)

    def _chunks(self, rows_per_chunk, rng, dtype):
        for ranges in self.chunk_ranges(rows_per_chunk, rng):
            x, y = self._read_ranges(ranges, dtype)
            if rng is not None:
                order = rng.permutation(len(x))
                x, y = x[order], y[order]
            yield x, y

    def chunk_ranges(self, rows_per_chunk, rng=None):
        """The contiguous row ranges :meth:`iter_chunks` reads, chunk by chunk.

        Returns a list with one entry per chunk, each a list of one or two
        ``(start, stop)`` ranges, in visiting order (see :meth:`iter_chunks`).
        """
        n = self.n_rows
        n_chunks = -(-n // rows_per_chunk)
        offset = 0 if rng is None or n_chunks == 1 else int(rng.integers(n))
        order = range(n_chunks) if rng is None else rng.permutation(n_chunks)
        chunks = []
        for k in order:
            start = offset + int(k) * rows_per_chunk
            stop = min(start + rows_per_chunk, offset + n)
            if stop <= n:
                chunks.append([(start, stop)])
            elif start >= n:
                chunks.append([(start - n, stop - n)])
            else:
                chunks.append([(start, n), (0, stop - n)])
        return chunks


class ArraySplit(_Rows):
    """A split held in memory, with the reading interface of :class:`Split`.

    Made by :meth:`Split.in_memory`. :meth:`read` returns views into the
    arrays when the requested dtype matches (do not modify them); the data
    were checked when loaded.

    Parameters
    ----------
    name : str
    x : ndarray, shape (n_rows, n_features), float32 or float64
    y : ndarray
        int64 labels or float targets ``(n_rows, K)``.
    """

    def __init__(self, name, x, y):
        self.name = name
        self.x, self.y = x, y
        self.n_rows, self.n_features = x.shape
        self.x_dtype = x.dtype

    def __repr__(self):
        return f"<fastfa ArraySplit {self.name!r}: {self.n_rows} rows x {self.n_features} features in memory>"

    def _read(self, start, stop, dtype):
        x, y = self.x[start:stop], self.y[start:stop]
        if y.dtype.kind == "f":
            y = y.astype(dtype, copy=False)
        return x.astype(dtype, copy=False), y
