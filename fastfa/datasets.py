"""HDF5 datasets: open, validate, stream in chunks; write atomically; converters.

The file format (the contract users touch)
------------------------------------------
An HDF5 dataset file holds groups ``train`` and ``test`` (optionally ``valid``),
each with two datasets:

``x``
    ``N x D`` inputs, ``float32``, ``float64`` or ``uint8``.
``y``
    ``N`` integer class labels ``0 .. n_classes - 1`` (classification), or
    ``N x K`` float targets (regression; a 1-D ``y`` is read as ``K = 1``).

Root attributes describe the file:

``name``
    Short name of the dataset (defaults to the file's stem when absent).
``task``
    ``"classification"`` or ``"regression"`` (required).
``n_classes``
    Number of classes (required for classification).
``x_scale``
    Positive multiplier applied to ``uint8`` inputs when they are read, e.g.
    ``1/255`` (required when any ``x`` is ``uint8``; ignored for float inputs).
``source``
    Provenance and license text (defaults to ``""``).

Files larger than memory are streamed in chunks of contiguous rows with
:meth:`Split.iter_chunks`; :func:`open_dataset` checks the structure and the
attributes without reading the data, and every chunk is checked as it is read.
Problems raise :class:`DatasetError` with one line naming the file.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import math
import os
import re
import struct
import uuid
from pathlib import Path

import h5py
import numpy as np

__all__ = [
    "DatasetError",
    "Dataset",
    "Split",
    "ArraySplit",
    "open_dataset",
    "write_dataset",
    "default_dataset_path",
    "convert_mnist",
    "convert_csv",
    "convert_npz",
    "write_digits",
    "make_teacher",
]

TASKS = ("classification", "regression")
SPLITS = ("train", "valid", "test")
REQUIRED_SPLITS = ("train", "test")
X_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))
OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 18  # target size of one HDF5 storage chunk (256 KiB)
CACHE_BYTES = 1 << 24  # HDF5 chunk cache per open file (16 MiB)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
MNIST_SOURCE = (
    "MNIST handwritten digits (Y. LeCun, C. Cortes, C. J. C. Burges), converted from the original "
    "IDX files by fastfa. License: CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/)."
)

DIGITS_FILE = "digits.h5"
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.3
DIGITS_SOURCE = (
    "UCI Machine Learning Repository: Optical Recognition of Handwritten Digits, test set "
    "(optdigits.tes; 1797 8x8 images, 17 grey levels 0..16), E. Alpaydin and C. Kaynak, 1998, "
    "https://doi.org/10.24432/C50P49. License: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). "
    "Converted by fastfa: x stored as uint8 with x_scale = 1/16; fixed 30% test split "
    "(numpy default_rng(0) permutation)."
)

TEACHER_INPUTS = 30
TEACHER_OUTPUTS = 10
TEACHER_HIDDEN = (20, 10)


class DatasetError(ValueError):
    """A dataset file or converter input is unusable; the message is one line naming the file."""


def _show(value):
    """``repr`` of a value as a user wrote it (numpy scalars and arrays as plain Python)."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return repr(value)


def _fail(path, problem):
    """Raise :class:`DatasetError` with the message ``"<path>: <problem>"``."""
    raise DatasetError(f"{path}: {problem}")


# --------------------------------------------------------------------- checks


def _is_integer_dtype(dtype):
    return np.issubdtype(dtype, np.integer) and dtype != np.bool_


def _is_number_dtype(dtype):
    return _is_integer_dtype(dtype) or np.issubdtype(dtype, np.floating)


def _check_x_dtype(path, where, dtype):
    """``x`` must be float32, float64 or uint8."""
    if np.dtype(dtype) not in X_DTYPES:
        _fail(path, f"{where}/x has dtype {np.dtype(dtype)}; expected float32, float64 or uint8")


def _check_y_dtype(path, where, dtype, task):
    """Class labels must be integers; regression targets numbers."""
    dtype = np.dtype(dtype)
    if task == "classification" and not _is_integer_dtype(dtype):
        kind = "non-integer" if _is_number_dtype(dtype) else "non-numeric"
        _fail(path, f"{where}/y has {kind} dtype {dtype}; classification labels must be integers")
    if task == "regression" and not _is_number_dtype(dtype):
        _fail(path, f"{where}/y has dtype {dtype}; regression targets must be numbers")


def _check_shapes(path, where, x_shape, y_shape, task):
    """``x`` is 2-D and non-empty; ``y`` has one label (or one target row) per row of ``x``."""
    if len(x_shape) != 2:
        _fail(path, f"{where}/x is not 2-D (shape {tuple(x_shape)})")
    if task == "classification" and len(y_shape) != 1:
        _fail(path, f"{where}/y must be 1-D class labels, got shape {tuple(y_shape)}")
    if task == "regression" and len(y_shape) not in (1, 2):
        _fail(path, f"{where}/y must be 1-D or 2-D regression targets, got shape {tuple(y_shape)}")
    if x_shape[0] != y_shape[0]:
        _fail(path, f"{where}: x and y lengths differ (x has {x_shape[0]} rows, y has {y_shape[0]})")
    if x_shape[0] == 0:
        _fail(path, f"split '{where}' is empty")
    if x_shape[1] == 0:
        _fail(path, f"{where}/x has no columns")
    if len(y_shape) == 2 and y_shape[1] == 0:
        _fail(path, f"{where}/y has no columns")


def _check_finite(path, where, name, values, first_row):
    """Raise on the first row of ``values`` holding NaN or inf (rows numbered from ``first_row``)."""
    if values.dtype.kind != "f" or values.size == 0:
        return
    if np.isfinite(values.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(values)
    if not bad.any():  # the sum overflowed, the values are fine
        return
    rows = bad.reshape(len(values), -1).any(axis=1)
    row = first_row + int(np.argmax(rows))
    _fail(path, f"NaN or inf in {name} of split '{where}' at row {row}")


def _check_labels(path, where, labels, n_classes, first_row):
    """Labels must lie in ``0 .. n_classes - 1``; report the first bad one and its row."""
    if labels.size == 0:
        return
    low, high = labels.min(), labels.max()
    if low >= 0 and high < n_classes:
        return
    bad = (labels < 0) | (labels >= n_classes)
    index = int(np.argmax(bad))
    value, row = int(labels[index]), first_row + index
    if value < 0:
        _fail(path, f"negative label {value} in split '{where}' at row {row}")
    _fail(path, f"label {value} out of range 0..{n_classes - 1} in split '{where}' at row {row}")


def _check_dtype_arg(dtype):
    """The float type asked of a reader: float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dtype not in OUT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


# ----------------------------------------------------------------- attributes


def _text(value):
    """An HDF5 string attribute as ``str`` (h5py may give bytes or numpy strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    if isinstance(value, (str, np.str_)):
        return str(value)
    return None


def _read_attrs(path, attrs):
    """Validate and return the root attributes as a plain dict."""
    task = _text(attrs.get("task"))
    if "task" not in attrs:
        _fail(path, "missing attribute 'task' (classification or regression)")
    if task not in TASKS:
        _fail(path, f"attribute 'task' must be 'classification' or 'regression', got {_show(attrs['task'])}")
    name = attrs.get("name", Path(path).stem)
    if _text(name) is None:
        _fail(path, f"attribute 'name' must be a string, got {_show(name)}")
    source = attrs.get("source", "")
    if _text(source) is None:
        _fail(path, f"attribute 'source' must be a string, got {_show(source)}")
    n_classes = None
    if task == "classification":
        if "n_classes" not in attrs:
            _fail(path, "missing attribute 'n_classes' (required for classification)")
        n_classes = _positive_int(path, "n_classes", attrs["n_classes"])
    x_scale = None
    if "x_scale" in attrs:
        x_scale = _positive_float(path, "x_scale", attrs["x_scale"])
    return {
        "name": _text(name),
        "task": task,
        "n_classes": n_classes,
        "x_scale": x_scale,
        "source": _text(source),
    }


def _scalar(value):
    value = np.asarray(value)
    return value[()] if value.shape == () else (value.reshape(-1)[0] if value.size == 1 else None)


def _positive_int(path, key, value):
    """An attribute that must be an integer >= 1."""
    v = _scalar(value)
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        ok = True
    if not ok or int(v) < 1:
        _fail(path, f"attribute '{key}' must be a positive integer, got {_show(value)}")
    return int(v)


def _positive_float(path, key, value):
    """An attribute that must be a finite number > 0."""
    v = _scalar(value)
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    if not ok or not math.isfinite(float(v)) or float(v) <= 0:
        _fail(path, f"attribute '{key}' must be a finite number > 0, got {_show(value)}")
    return float(v)


# ------------------------------------------------------------------- opening


def _has_hdf5_signature(path):
    """Whether the HDF5 signature sits at offset 0, 512, 1024, ... (after a user block)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _open_h5(path):
    """Open ``path`` read-only, turning every failure into a one-line :class:`DatasetError`."""
    if not os.path.exists(path):
        _fail(path, "no such file")
    if os.path.isdir(path):
        _fail(path, "is a directory, not an HDF5 file")
    try:
        if not _has_hdf5_signature(path):
            _fail(path, "not an HDF5 file")
        return h5py.File(path, "r", rdcc_nbytes=CACHE_BYTES)
    except OSError as exc:
        message = " ".join(str(exc).split())
        sizes = re.search(r"\beof = (\d+).*stored_eof = (\d+)", message)
        if sizes:
            _fail(path, f"truncated HDF5 file ({sizes[1]} of {sizes[2]} bytes)")
        if "truncated" in message.lower():
            _fail(path, f"truncated HDF5 file ({message})")
        _fail(path, f"cannot read HDF5 file ({message})")


def _split_info(path, f, name, task):
    """Check one split's structure (no data read); return ``(n_rows, n_features, n_outputs, x_dtype)``."""
    if name not in f:
        _fail(path, f"missing group '{name}'")
    group = f[name]
    if not isinstance(group, h5py.Group):
        _fail(path, f"'{name}' is not a group")
    for key in ("x", "y"):
        if key not in group:
            _fail(path, f"missing dataset '{name}/{key}'")
        if not isinstance(group[key], h5py.Dataset):
            _fail(path, f"'{name}/{key}' is not a dataset")
    x, y = group["x"], group["y"]
    _check_x_dtype(path, name, x.dtype)
    _check_y_dtype(path, name, y.dtype, task)
    _check_shapes(path, name, x.shape, y.shape, task)
    n_outputs = None if task == "classification" else (y.shape[1] if y.ndim == 2 else 1)
    return x.shape[0], x.shape[1], n_outputs, x.dtype


def open_dataset(path):
    """Open a fastfa HDF5 dataset file and check its structure and attributes.

    Only metadata is read: shapes, dtypes and attributes. The values (finite
    inputs, labels in range) are checked chunk by chunk as they are read, or
    all at once by :meth:`Dataset.validate`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` file.

    Returns
    -------
    Dataset
        Open for reading; close it, or use it as a context manager.

    Raises
    ------
    DatasetError
        One line naming the file and the problem: not HDF5, truncated, missing
        group or dataset, bad shape, dtype or attribute, empty split.

    Examples
    --------
    >>> with open_dataset(default_dataset_path()) as ds:  # doctest: +SKIP
    ...     for x, y in ds.split("train").iter_chunks(512):
    ...         pass
    """
    return Dataset(path)


class Dataset:
    """An open fastfa dataset file. Create it with :func:`open_dataset`.

    Attributes
    ----------
    path : pathlib.Path
    name, task, source : str
    n_classes : int or None
        ``None`` for regression.
    n_features : int
        Columns of ``x``.
    n_outputs : int
        ``n_classes`` for classification, ``K`` targets for regression.
    x_scale : float
        Multiplier applied to ``uint8`` inputs (1.0 when the file has none).
    splits : tuple of str
        The splits present, in the order train, valid, test.
    classes : tuple of str or None
        Class names, when the file stores them (attribute ``classes``).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._label = str(path)
        self._file = _open_h5(self._label)
        try:
            self._load_metadata()
        except BaseException:
            self._file.close()
            raise

    def _load_metadata(self):
        f, label = self._file, self._label
        self._attrs = _read_attrs(label, f.attrs)
        task = self._attrs["task"]
        names = [s for s in SPLITS if s in f or s in REQUIRED_SPLITS]
        self._info = {name: _split_info(label, f, name, task) for name in names}
        features = {info[1] for info in self._info.values()}
        if len(features) > 1:
            detail = ", ".join(f"{n} {i[1]}" for n, i in self._info.items())
            _fail(label, f"splits have different numbers of features ({detail})")
        if task == "regression":
            outputs = {info[2] for info in self._info.values()}
            if len(outputs) > 1:
                detail = ", ".join(f"{n} {i[2]}" for n, i in self._info.items())
                _fail(label, f"splits have different numbers of targets ({detail})")
        if self._attrs["x_scale"] is None and any(i[3] == np.uint8 for i in self._info.values()):
            _fail(label, "missing attribute 'x_scale' (required when x is uint8)")
        classes = f.attrs.get("classes")
        self._classes = None if classes is None else tuple(_text(c) or str(c) for c in np.atleast_1d(classes))

    # -------------------------------------------------------------- metadata

    @property
    def name(self):
        return self._attrs["name"]

    @property
    def task(self):
        return self._attrs["task"]

    @property
    def n_classes(self):
        return self._attrs["n_classes"]

    @property
    def source(self):
        return self._attrs["source"]

    @property
    def x_scale(self):
        scale = self._attrs["x_scale"]
        return 1.0 if scale is None else scale

    @property
    def n_features(self):
        return next(iter(self._info.values()))[1]

    @property
    def n_outputs(self):
        if self.task == "classification":
            return self.n_classes
        return next(iter(self._info.values()))[2]

    @property
    def splits(self):
        return tuple(self._info)

    @property
    def classes(self):
        return self._classes

    @property
    def closed(self):
        return not self._file.id.valid

    def split(self, name):
        """The :class:`Split` called ``name`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if name not in self._info:
            _fail(self._label, f"no split '{name}' (it has {', '.join(self.splits)})")
        return Split(self, name)

    def __getitem__(self, name):
        return self.split(name)

    def __contains__(self, name):
        return name in self._info

    def describe(self):
        """One line: name, task, outputs, features, input type and split sizes."""
        if self.task == "classification":
            outputs = f"{self.n_classes} classes"
        else:
            outputs = f"{self.n_outputs} target{'s' if self.n_outputs != 1 else ''}"
        dtype = self._info["train"][3]
        scale = f" x_scale={self.x_scale:.6g}" if dtype == np.uint8 else ""
        sizes = ", ".join(f"{name} {info[0]}" for name, info in self._info.items())
        return (
            f"{self.name} ({self.task}, {outputs}, {self.n_features} features, {dtype}{scale}): {sizes} rows"
        )

    def validate(self, rows_per_chunk=65536):
        """Read every split once in chunks, checking finite inputs and labels in range.

        Returns ``self``; raises :class:`DatasetError` on the first bad value.
        """
        for name in self.splits:
            self.split(name).validate(rows_per_chunk)
        return self

    # ------------------------------------------------------------- lifetime

    def close(self):
        """Close the file (idempotent)."""
        if not self.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else self.describe()
        return f"<fastfa Dataset {self._label!r}: {state}>"

    def _group(self, name):
        if self.closed:
            _fail(self._label, "dataset is closed")
        return self._file[name]


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


class Split(_Rows):
    """One split (``train``, ``valid`` or ``test``) of an open :class:`Dataset`, read from the file.

    Attributes
    ----------
    name : str
    n_rows, n_features : int
    x_dtype : numpy.dtype
        The stored input type (``uint8`` inputs are scaled by ``x_scale`` when read).
    """

    def __init__(self, dataset, name):
        self.dataset = dataset
        self.name = name
        self.n_rows, self.n_features, _, self.x_dtype = dataset._info[name]

    def __repr__(self):
        return f"<fastfa Split {self.name!r}: {self.n_rows} rows x {self.n_features} features>"

    def _read(self, start, stop, dtype):
        """Rows ``start:stop`` (one contiguous HDF5 read each of x and y), converted and checked."""
        ds, label = self.dataset, self.dataset._label
        group = ds._group(self.name)
        try:
            raw_x, raw_y = group["x"][start:stop], group["y"][start:stop]
        except (OSError, RuntimeError, ValueError) as exc:
            message = " ".join(str(exc).split())
            _fail(label, f"cannot read rows {start}..{stop - 1} of split '{self.name}' ({message})")
        x = self._convert_x(raw_x, dtype)
        if raw_x.dtype != np.uint8:  # scaled uint8 is always finite
            _check_finite(label, self.name, "x", x, start)
        if ds.task == "classification":
            _check_labels(label, self.name, raw_y, ds.n_classes, start)
            y = raw_y.astype(np.int64, copy=False)
        else:
            y = raw_y.astype(dtype, copy=False).reshape(len(raw_y), -1)
            _check_finite(label, self.name, "y", y, start)
        return x, y

    def _convert_x(self, raw, dtype):
        if raw.dtype == np.uint8:
            return np.multiply(raw, dtype.type(self.dataset.x_scale), dtype=dtype)
        return raw.astype(dtype, copy=False)

    def in_memory(self, dtype="float32"):
        """Load the split (checked) and return it as an :class:`ArraySplit` with the same interface.

        For ``--in-memory`` training: the file is read once, and reading rows
        from the result gives exactly what reading them from the file gives.
        """
        x, y = self.load(dtype)
        return ArraySplit(self.name, x, y)

    def read_raw(self):
        """The stored arrays as they are in the file (uint8 inputs unscaled), after checking them."""
        self.validate()
        group = self.dataset._group(self.name)
        return group["x"][()], group["y"][()]

    def validate(self, rows_per_chunk=65536):
        """Read the split once in file order, checking every value. Returns ``self``."""
        dtype = np.dtype(np.float64 if self.x_dtype == np.float64 else np.float32)
        for _ in self._chunks(int(rows_per_chunk), None, dtype):
            pass
        return self


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


def default_dataset_path():
    """Path of the small dataset bundled with fastfa (``fastfa/data/digits.h5``).

    The UCI optical handwritten digits test set (Alpaydin & Kaynak 1998,
    CC BY 4.0): 1797 8x8 images, 10 classes, a fixed 30% test split. It is
    what ``fastfa train`` uses when no dataset is named.
    """
    resource = importlib.resources.files("fastfa").joinpath("data").joinpath(DIGITS_FILE)
    path = Path(str(resource))
    if not path.is_file():
        raise DatasetError(f"{path}: the bundled default dataset is missing; reinstall fastfa")
    return path


# -------------------------------------------------------------------- writing


def _as_array(path, where, key, value):
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        _fail(path, f"{where}/{key} is not an array ({exc})")


def _prepare_split(path, where, x, y, task):
    """Check one split given to :func:`write_dataset`; return ``(x, y)`` ready to store."""
    x, y = _as_array(path, where, "x", x), _as_array(path, where, "y", y)
    _check_x_dtype(path, where, x.dtype)
    if task == "classification" and y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)):
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)
    _check_y_dtype(path, where, y.dtype, task)
    _check_shapes(path, where, x.shape, y.shape, task)
    _check_finite(path, where, "x", x, 0)
    if task == "regression":
        y = y.reshape(len(y), -1)
        if y.dtype.kind != "f":
            y = y.astype(np.float64)
        _check_finite(path, where, "y", y, 0)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _check_writer_args(path, arrays, task, n_classes, x_scale, name):
    """Validate :func:`write_dataset`'s metadata against the arrays; return ``(n_classes, x_scale)``."""
    if task not in TASKS:
        _fail(path, f"task must be 'classification' or 'regression', got {task!r}")
    if not isinstance(name, str) or not name:
        _fail(path, f"name must be a non-empty string, got {name!r}")
    if len({a[0].shape[1] for a in arrays.values()}) > 1:
        detail = ", ".join(f"{s} {a[0].shape[1]}" for s, a in arrays.items())
        _fail(path, f"splits have different numbers of features ({detail})")
    if task == "regression" and len({a[1].shape[1] for a in arrays.values()}) > 1:
        detail = ", ".join(f"{s} {a[1].shape[1]}" for s, a in arrays.items())
        _fail(path, f"splits have different numbers of targets ({detail})")
    if task == "classification":
        if n_classes is None:
            n_classes = max(int(a[1].max()) for a in arrays.values()) + 1
        n_classes = _positive_int(path, "n_classes", n_classes)
        for split, (_, y) in arrays.items():
            _check_labels(path, split, y, n_classes, 0)
    if x_scale is None:
        if any(a[0].dtype == np.uint8 for a in arrays.values()):
            _fail(path, "x is uint8: give x_scale, the multiplier that maps it to model inputs (e.g. 1/255)")
        x_scale = 1.0
    return n_classes, _positive_float(path, "x_scale", x_scale)


def _storage_options(array):
    """gzip-compressed, row-chunked storage (about :data:`CHUNK_BYTES` per chunk) for streaming."""
    row_bytes = max(1, array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64)))
    rows = int(max(1, min(len(array), CHUNK_BYTES // row_bytes)))
    options = {"chunks": (rows, *array.shape[1:]), "compression": "gzip", "compression_opts": 4}
    if array.dtype.kind == "f" and array.itemsize > 1:
        options["shuffle"] = True
    return options


def _write_split(f, name, x, y):
    """Write one split's ``x`` and ``y`` into the open file ``f``."""
    group = f.create_group(name)
    for key, array in (("x", x), ("y", y)):
        group.create_dataset(key, data=array, track_times=False, **_storage_options(array))


def _write_extras(f, extra_groups, extra_attrs):
    for key, value in (extra_attrs or {}).items():
        f.attrs[key] = value
    for group_name, content in (extra_groups or {}).items():
        group = f.create_group(group_name)
        for key, value in content.items():
            if key == "attrs":
                for attr, attr_value in value.items():
                    group.attrs[attr] = attr_value
            else:
                group.create_dataset(key, data=np.asarray(value), track_times=False)


def _check_conversion(path, out, overwrite, task):
    """The checks every table converter starts with: the output target and the task name."""
    out = _check_target(out, overwrite)
    if task not in TASKS:
        _fail(path, f"task must be 'classification' or 'regression', got {task!r}")
    return out


def _check_target(out, overwrite):
    """Refuse an existing output unless ``overwrite``; check the output's directory exists."""
    out = Path(out)
    if out.is_dir():
        _fail(out, "is a directory; give a file name for the output")
    if out.exists() and not overwrite:
        _fail(out, "already exists; use --overwrite (overwrite=True in Python) to replace it")
    if not out.parent.is_dir():
        _fail(out, f"directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        _fail(out, f"directory {out.parent} is not writable")
    return out


def write_dataset(
    path,
    splits,
    *,
    name,
    task,
    n_classes=None,
    x_scale=None,
    source="",
    overwrite=False,
    extra_attrs=None,
    extra_groups=None,
):
    """Write a fastfa dataset file atomically.

    The file is written under a temporary name in the same directory and moved
    into place with :func:`os.replace`, so readers never see a half-written
    file; on any error the temporary file is removed and an existing file at
    ``path`` is left as it was. Arrays are stored gzip-compressed in chunks of
    consecutive rows, which suits streaming with :meth:`Split.iter_chunks`.

    Parameters
    ----------
    path : str or os.PathLike
    splits : dict
        ``{"train": (x, y), "test": (x, y)}``, optionally ``"valid"`` too.
        ``x`` is ``N x D`` float32, float64 or uint8; ``y`` holds ``N`` integer
        labels (classification; float labels with integer values are accepted)
        or ``N`` / ``N x K`` targets (regression).
    name : str
    task : {"classification", "regression"}
    n_classes : int, optional
        Defaults to the largest label + 1.
    x_scale : float, optional
        Required when any ``x`` is uint8 (e.g. ``1/255``); 1.0 otherwise.
    source : str
        Provenance and license.
    overwrite : bool
        Replace an existing file (refused otherwise).
    extra_attrs : dict, optional
        More root attributes.
    extra_groups : dict, optional
        ``{group: {dataset: array, "attrs": {attr: value}}}`` written alongside the splits.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    DatasetError
        Bad arrays or metadata, or ``path`` exists and ``overwrite`` is false.
    """
    path = _check_target(path, overwrite)
    if not isinstance(splits, dict):
        _fail(path, "splits must be a dict like {'train': (x, y), 'test': (x, y)}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        _fail(path, f"unknown split {unknown[0]!r} (splits are {', '.join(SPLITS)})")
    for required in REQUIRED_SPLITS:
        if required not in splits:
            _fail(path, f"missing split '{required}'")
    arrays = {s: _prepare_split(path, s, *splits[s], task) for s in SPLITS if s in splits}
    n_classes, x_scale = _check_writer_args(path, arrays, task, n_classes, x_scale, name)
    attrs = {"name": name, "task": task, "x_scale": x_scale, "source": str(source)}
    if task == "classification":
        attrs["n_classes"] = n_classes
        label_type = np.min_scalar_type(n_classes - 1)  # uint8 for up to 256 classes
        arrays = {s: (x, y.astype(label_type)) for s, (x, y) in arrays.items()}
    attrs["format_version"] = FORMAT_VERSION
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with h5py.File(tmp, "x") as f:
            f.attrs.update(attrs)
            _write_extras(f, extra_groups, extra_attrs)
            for split, (x, y) in arrays.items():
                _write_split(f, split, x, y)
        open_dataset(tmp).close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------- converters


def _open_maybe_gzip(path):
    """Open ``path`` for binary reading, decompressing when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _read_bytes(path):
    try:
        with _open_maybe_gzip(path) as f:
            return f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        _fail(path, f"cannot read ({' '.join(str(exc).split())})")


def read_idx(path, magic):
    """Read an IDX file (gzip or raw) with the expected ``magic`` number.

    IDX: a big-endian int32 magic (``0x00000800 + n_dims`` for unsigned bytes),
    then one big-endian int32 per dimension, then the raw bytes.

    Returns
    -------
    ndarray of uint8, shape given by the header.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        _fail(path, f"too short for an IDX file ({len(data)} bytes)")
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        _fail(path, f"bad IDX magic number 0x{found & 0xFFFFFFFF:08x}, expected 0x{magic:08x}")
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    if len(data) < header:
        _fail(path, f"truncated IDX header ({len(data)} bytes, expected {header})")
    dims = struct.unpack(f">{n_dims}i", data[4:header])
    if any(d < 0 for d in dims) or (n_dims > 1 and 0 in dims[1:]):
        _fail(path, f"bad IDX dimensions {dims}")
    expected = int(np.prod(dims, dtype=np.int64))
    found_bytes = len(data) - header
    if found_bytes != expected:
        what = "truncated" if found_bytes < expected else "has trailing bytes"
        _fail(path, f"IDX data {what}: {found_bytes} bytes, expected {expected} for dimensions {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(directory, base):
    for candidate in (base + ".gz", base):
        path = Path(directory) / candidate
        if path.is_file():
            return path
    _fail(directory, f"missing MNIST file {base}.gz (or {base})")


def _mnist_split(directory, split):
    images_base, labels_base = MNIST_FILES[split]
    images_path, labels_path = _find_idx(directory, images_base), _find_idx(directory, labels_base)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        _fail(
            directory,
            f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels",
        )
    if len(images) == 0:
        _fail(images_path, "holds no images")
    return images.reshape(len(images), -1), labels, images.shape[1:]


def convert_mnist(directory, out, *, name="mnist", source=MNIST_SOURCE, overwrite=False):
    """Convert the four MNIST IDX files in ``directory`` to a dataset file.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzip
    compressed (``.gz``, preferred) or raw. Checks the magic numbers
    (``0x00000803`` images, ``0x00000801`` labels), the sizes, and that images and
    labels agree in number. Works for any data set in the same format
    (Fashion-MNIST, KMNIST) -- pass ``name`` and ``source``.

    Inputs are stored as uint8, ``N x rows*cols`` (784 for MNIST), with
    ``x_scale = 1/255``; ``n_classes`` is ``max(10, largest label + 1)``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    out = _check_target(out, overwrite)
    if not Path(directory).is_dir():
        _fail(directory, "is not a directory")
    x_train, y_train, shape_train = _mnist_split(directory, "train")
    x_test, y_test, shape_test = _mnist_split(directory, "test")
    if shape_train != shape_test:
        _fail(directory, f"train images are {shape_train} but test images are {shape_test}")
    n_classes = max(10, int(max(y_train.max(), y_test.max())) + 1)
    return write_dataset(
        out,
        {"train": (x_train, y_train), "test": (x_test, y_test)},
        name=name,
        task="classification",
        n_classes=n_classes,
        x_scale=1 / 255,
        source=source,
        overwrite=overwrite,
        extra_attrs={"image_shape": np.asarray(shape_train, dtype=np.int64)},
    )


# csv


def _open_text(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(path):
    try:
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    return line.rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        _fail(path, f"cannot read ({' '.join(str(exc).split())})")
    _fail(path, "is empty")


def _sniff_delimiter(line):
    for candidate in (",", "\t", ";"):
        if candidate in line:
            return candidate
    return None  # runs of whitespace


def _fields(line, delimiter):
    return [f.strip().strip('"') for f in (line.split(delimiter) if delimiter else line.split())]


def _label_columns(path, label_column, n_columns, task):
    """Resolve (possibly negative) label column indices against ``n_columns``."""
    columns = [label_column] if np.ndim(label_column) == 0 else list(label_column)
    if task == "classification" and len(columns) != 1:
        _fail(path, "classification takes exactly one label column")
    resolved = []
    for column in columns:
        c = int(column)
        if not -n_columns <= c < n_columns:
            _fail(path, f"label column {c} out of range for {n_columns} columns")
        resolved.append(c % n_columns)
    if len(set(resolved)) != len(resolved) or len(resolved) >= n_columns:
        _fail(path, f"bad label columns {columns} for {n_columns} columns")
    return resolved


def _csv_layout(path, label_column, header, delimiter, task):
    """Work out delimiter, header, label and feature columns from the first line."""
    line = _first_line(path)
    if delimiter is None:
        delimiter = _sniff_delimiter(line)
    fields = _fields(line, delimiter)
    labels = _label_columns(path, label_column, len(fields), task)
    features = [c for c in range(len(fields)) if c not in labels]
    if header is None:  # a header has a non-numeric feature field (or target field)
        checked = features if task == "classification" else range(len(fields))
        header = any(not _is_number(fields[c]) for c in checked)
    return delimiter, bool(header), labels, features


def _loadtxt(path, delimiter, header, columns, dtype):
    try:
        with _open_text(path) as f:
            return np.loadtxt(
                f,
                delimiter=delimiter,
                skiprows=int(header),
                usecols=columns,
                dtype=dtype,
                ndmin=2,
                quotechar='"',
                comments=None,
                encoding=None,
            )
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        problem = _locate_csv_problem(path, delimiter, header, columns, dtype)
        _fail(path, problem or f"cannot parse ({' '.join(str(exc).split())})")


def _locate_csv_problem(path, delimiter, header, columns, dtype):
    """Find the first line with a wrong number of fields or a field that is not a number.

    Only called after parsing failed, to name the line (numbered from 1) and column.
    """
    try:
        with _open_text(path) as f:
            expected = None
            for number, line in enumerate(f, start=1):
                if number <= header or not line.strip():
                    continue
                fields = _fields(line.rstrip("\r\n"), delimiter)
                expected = len(fields) if expected is None else expected
                if len(fields) != expected:
                    return f"line {number} has {len(fields)} fields, expected {expected}"
                if dtype is str:
                    continue
                for column in columns:
                    if not _is_number(fields[column]):
                        return f"line {number}, column {column + 1}: {fields[column]!r} is not a number"
    except (OSError, EOFError, UnicodeDecodeError, IndexError):
        return None
    return None


def _read_csv(path, layout, task):
    """Read features (float64) and labels (strings or numbers) or targets from one CSV file.

    One pass when every field is a number; otherwise features and labels are
    parsed separately (text labels) or the first bad field is reported.
    """
    delimiter, header, labels, features = layout
    table = _loadtxt_numeric(path, delimiter, header)
    if table is not None and table.shape[1] == len(labels) + len(features):
        x, y = table[:, features], table[:, labels]
    else:
        x = _loadtxt(path, delimiter, header, features, np.float64)
        y = _loadtxt(path, delimiter, header, labels, np.float64 if task == "regression" else str)
    if len(x) == 0:
        _fail(path, "has no data rows")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        _fail(path, f"missing, NaN or inf feature value on line {int(np.argmax(bad)) + 1 + header}")
    if task == "regression":
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            _fail(path, f"missing, NaN or inf target on line {int(np.argmax(bad)) + 1 + header}")
        return x, y
    return x, y[:, 0]


def _loadtxt_numeric(path, delimiter, header):
    """The whole file as numbers in one pass, or None when some field is not a number.

    Integers are tried first: numpy parses them several times faster than floats.
    """
    for dtype in (np.int64, np.float64):
        try:
            with _open_text(path) as f:
                table = np.loadtxt(
                    f,
                    delimiter=delimiter,
                    skiprows=int(header),
                    dtype=dtype,
                    ndmin=2,
                    quotechar='"',
                    comments=None,
                    encoding=None,
                )
            return table.astype(np.float64, copy=False)
        except (ValueError, OverflowError, OSError, EOFError, UnicodeDecodeError):
            continue
    return None


def _numeric_labels(path, raw, header):
    """Labels (strings or floats) as non-negative int64, or None when some are not numbers."""
    try:
        values = raw.astype(np.float64)
    except ValueError:
        return None
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        text = raw[i] if raw.dtype.kind in "US" else format(float(raw[i]), "g")
        _fail(path, f"label {text} on line {i + 1 + header} is not a non-negative integer")
    return values.astype(np.int64)


def _encode_labels(parts):
    """Turn the label strings of each ``(path, raw, header)`` part into class indices.

    Numeric labels are used as given; otherwise the sorted distinct strings
    become classes ``0..K-1``. Returns ``(labels per part, class names or None)``.
    """
    numeric = [_numeric_labels(*part) for part in parts]
    if all(n is not None for n in numeric):
        return numeric, None
    classes = np.unique(np.concatenate([raw for _, raw, _ in parts]))
    return [np.searchsorted(classes, raw).astype(np.int64) for _, raw, _ in parts], classes


def _x_storage(path, x, x_scale):
    """float32 inputs, or uint8 when ``x_scale`` is given (values must be integers 0..255)."""
    if x_scale is None:
        return x.astype(np.float32)
    bad = (x < 0) | (x > 255) | (x != np.round(x))
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        _fail(path, f"x_scale given but row {row} has a value that is not an integer in 0..255")
    return x.astype(np.uint8)


def _random_split(path, n, test_fraction, seed):
    """Train and test row indices from a seeded permutation of ``n`` rows."""
    if not 0 < test_fraction < 1:
        _fail(path, f"test fraction must lie strictly between 0 and 1, got {test_fraction}")
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n_test >= n:
        _fail(path, f"a test fraction of {test_fraction} of {n} rows leaves an empty split")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def _strip_suffixes(path):
    name = Path(path).name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".npz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "dataset"


def convert_csv(
    path,
    out,
    *,
    label_column=-1,
    header=None,
    delimiter=None,
    test_file=None,
    test_fraction=0.2,
    seed=0,
    task="classification",
    x_scale=None,
    n_classes=None,
    name=None,
    source=None,
    overwrite=False,
):
    """Convert a delimited text file (optionally gzip-compressed) to a dataset file.

    Parameters
    ----------
    path : str or os.PathLike
        One row per line: features and the label (or targets).
    out : str or os.PathLike
    label_column : int or sequence of int
        Column of the class label (negative counts from the end); for
        regression one or more target columns.
    header : bool or None
        Whether the first line names the columns; ``None`` guesses: a header
        when a feature field of the first line is not a number.
    delimiter : str or None
        ``None`` takes the first of ``,``, tab, ``;`` found in the first line,
        else runs of whitespace.
    test_file : path, optional
        Test rows in a second file of the same layout. Without it a seeded
        random ``test_fraction`` of the rows becomes the test split.
    test_fraction : float
    seed : int
        Seed of the split's permutation (``numpy.random.default_rng``).
    task : {"classification", "regression"}
    x_scale : float, optional
        Store inputs as uint8 (they must be integers 0..255) with this
        multiplier; by default inputs are stored as float32.
    n_classes : int, optional
        Defaults to the largest label + 1. Numeric labels are used as given;
        non-numeric labels (``"setosa"``) become classes 0..K-1 in sorted order
        and their names are kept in the root attribute ``classes``.
    name, source : str, optional
        Default to the file's stem and ``"converted from <file name>"``.
    overwrite : bool

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    out = _check_conversion(path, out, overwrite, task)
    layout = _csv_layout(path, label_column, header, delimiter, task)
    train = _read_csv(path, layout, task)
    if test_file is not None:
        test_layout = _csv_layout(test_file, label_column, header, delimiter, task)
        if test_layout[3] != layout[3]:
            _fail(test_file, f"has {len(test_layout[3])} feature columns but {path} has {len(layout[3])}")
        test = _read_csv(test_file, test_layout, task)
    extra = {}
    if task == "classification":
        parts = [(path, train[1], layout[1])]
        if test_file is not None:
            parts.append((test_file, test[1], test_layout[1]))
        encoded, classes = _encode_labels(parts)
        train = (train[0], encoded[0])
        if test_file is not None:
            test = (test[0], encoded[1])
        if classes is not None:
            extra["classes"] = [str(c) for c in classes]
    x_all = _x_storage(path, train[0], x_scale)
    y_all = train[1] if task == "classification" else train[1].astype(np.float32)
    if test_file is None:
        tr, te = _random_split(path, len(x_all), test_fraction, seed)
        splits = {"train": (x_all[tr], y_all[tr]), "test": (x_all[te], y_all[te])}
        extra.update(split_seed=seed, test_fraction=test_fraction)
    else:
        y_test = test[1] if task == "classification" else test[1].astype(np.float32)
        splits = {"train": (x_all, y_all), "test": (_x_storage(test_file, test[0], x_scale), y_test)}
    return write_dataset(
        out,
        splits,
        name=name or _strip_suffixes(path),
        task=task,
        n_classes=n_classes,
        x_scale=x_scale,
        source=f"converted from {Path(path).name}" if source is None else source,
        overwrite=overwrite,
        extra_attrs=extra,
    )


# npz


def _one_hot_to_labels(path, key, y):
    """Class labels from a one-hot ``N x K`` matrix (each row one 1, the rest 0)."""
    if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
        _fail(path, f"'{key}' is 2-D but not one-hot; classification wants one integer label per row")
    return np.argmax(y, axis=1).astype(np.int64)


def _npz_x(path, key, x):
    x = x.reshape(len(x), -1) if x.ndim > 2 else x
    if x.ndim != 2:
        _fail(path, f"'{key}' must have one row per sample, got shape {x.shape}")
    if x.dtype in X_DTYPES:
        return x
    if not _is_number_dtype(x.dtype) and x.dtype != np.bool_:
        _fail(path, f"'{key}' has dtype {x.dtype}; expected numbers")
    return x.astype(np.float32)


def _npz_y(path, key, y, task):
    if task == "classification" and y.ndim == 2 and y.shape[1] > 1:
        return _one_hot_to_labels(path, key, y)
    if task == "classification" and y.ndim == 2:
        y = y[:, 0]
    if task == "classification" and y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            _fail(path, f"'{key}' has a non-integer label {_show(y[i])} at row {i}")
        y = y.astype(np.int64)
    if task == "classification" and y.size and _is_integer_dtype(y.dtype) and y.min() < 0:
        i = int(np.argmax(y < 0))
        _fail(path, f"'{key}' has a negative label {int(y[i])} at row {i}")
    return y


def _read_npz(path):
    """All arrays of an ``.npz`` archive (a zip of ``.npy`` files), refusing pickled objects."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        _fail(path, "not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, KeyError) as exc:
        message = " ".join(str(exc).split())
        if "pickle" in message:
            message = "it holds pickled Python objects, which fastfa does not load"
        _fail(path, f"cannot read as .npz ({message})")


def convert_npz(
    path,
    out,
    *,
    task="classification",
    n_classes=None,
    x_scale=None,
    name=None,
    source=None,
    overwrite=False,
):
    """Convert a numpy ``.npz`` archive to a dataset file.

    The archive holds arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``
    and optionally ``x_valid``, ``y_valid`` (as written by
    ``numpy.savez(path, x_train=..., ...)``; pickled objects are refused).
    Inputs with more than two dimensions (``N x 28 x 28``) are flattened to
    ``N x D``; uint8, float32 and float64 inputs are kept, other numbers become
    float32. Classification labels may be integers, integer-valued floats or
    one-hot rows.

    Parameters
    ----------
    path, out : str or os.PathLike
    task : {"classification", "regression"}
    n_classes : int, optional
        Defaults to the largest label + 1.
    x_scale : float, optional
        Multiplier for uint8 inputs; defaults to 1/255 for uint8 inputs.
    name, source : str, optional
        Default to the file's stem and ``"converted from <file name>"``.
    overwrite : bool

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    out = _check_conversion(path, out, overwrite, task)
    arrays = _read_npz(path)
    splits = {}
    for split in SPLITS:
        keys = (f"x_{split}", f"y_{split}")
        present = [k in arrays for k in keys]
        if not any(present) and split == "valid":
            continue
        if not all(present):
            missing = [k for k, p in zip(keys, present, strict=True) if not p]
            _fail(path, f"missing array '{missing[0]}' (it has {', '.join(sorted(arrays)) or 'no arrays'})")
        x = _npz_x(path, keys[0], arrays[keys[0]])
        splits[split] = (x, _npz_y(path, keys[1], arrays[keys[1]], task))
    if x_scale is None and any(s[0].dtype == np.uint8 for s in splits.values()):
        x_scale = 1 / 255
    return write_dataset(
        out,
        splits,
        name=name or _strip_suffixes(path),
        task=task,
        n_classes=n_classes,
        x_scale=x_scale,
        source=f"converted from {Path(path).name}" if source is None else source,
        overwrite=overwrite,
    )


# the bundled digits


def write_digits(out, *, csv=None, overwrite=False):
    """Write the digits dataset (the bundled default) to ``out``.

    Without ``csv`` the bundled file (:func:`default_dataset_path`) is copied.
    With ``csv`` -- the UCI optdigits test set as 1797 rows of 64 integer
    features 0..16 then the label, e.g. ``data/digits.csv.gz`` in the source
    tree -- the dataset is rebuilt: inputs as uint8 with ``x_scale = 1/16``,
    a fixed 30% test split from ``numpy.random.default_rng(0)``. This is how
    the bundled ``fastfa/data/digits.h5`` is made (``data/make_digits.py``).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    _check_target(out, overwrite)
    if csv is not None:
        return convert_csv(
            csv,
            out,
            label_column=-1,
            header=False,
            delimiter=",",
            test_fraction=DIGITS_TEST_FRACTION,
            seed=DIGITS_SEED,
            x_scale=1 / 16,
            n_classes=10,
            name="digits",
            source=DIGITS_SOURCE,
            overwrite=overwrite,
        )
    with open_dataset(default_dataset_path()) as ds:
        splits = {s: ds.split(s).read_raw() for s in ds.splits}
        meta = dict(name=ds.name, task=ds.task, n_classes=ds.n_classes, x_scale=ds.x_scale, source=ds.source)
        extra = {k: v for k, v in ds._file.attrs.items() if k in ("split_seed", "test_fraction")}
    return write_dataset(out, splits, overwrite=overwrite, extra_attrs=extra, **meta)


# teacher tasks


def _uniform(rng, shape, bound):
    return rng.uniform(-bound, bound, size=shape)


def _teacher_params(kind, rng):
    """The teacher's parameters as float64 arrays (drawn before any input)."""
    if kind == "linear":
        return {"T": _uniform(rng, (TEACHER_OUTPUTS, TEACHER_INPUTS), 1.0)}
    params, sizes = {}, (TEACHER_INPUTS, *TEACHER_HIDDEN, TEACHER_OUTPUTS)
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        params[f"W{layer}"] = _uniform(rng, (fan_in, fan_out), math.sqrt(3.0 / fan_in))
        params[f"b{layer}"] = np.zeros(fan_out)
    return params


def teacher_outputs(kind, params, x):
    """Targets of a teacher (see :func:`make_teacher`) for inputs ``x`` (rows), in float64."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "linear":
        return x @ params["T"].T
    h = x
    n_layers = len(TEACHER_HIDDEN) + 1
    for layer in range(1, n_layers + 1):
        h = h @ params[f"W{layer}"] + params[f"b{layer}"]
        if layer < n_layers:
            h = np.tanh(h)
    return h


def make_teacher(kind, out, n_train=10000, n_test=2000, seed=0, *, overwrite=False):
    """Write a synthetic teacher (regression) task of Lillicrap et al. (2016).

    Inputs ``x ~ N(0, I_30)``; targets ``y`` (10 per row) from a fixed random
    teacher:

    ``"linear"``
        ``y = T x`` with ``T ~ U[-1, 1]`` of shape ``10 x 30`` (row convention:
        ``y = x @ T.T``).
    ``"nonlinear"``
        A 30-20-10-10 network: ``h1 = tanh(x W1)``, ``h2 = tanh(h1 W2)``,
        ``y = h2 W3`` with ``W_l ~ U[-a, a]``, ``a = sqrt(3 / fan_in)`` (unit
        variance pre-activations, so the tanh units work in their nonlinear
        range) and zero biases.

    Everything comes from ``numpy.random.default_rng(seed)``: the teacher's
    parameters first, then the training inputs, then the test inputs. The
    parameters are saved in the group ``teacher`` (datasets ``T`` or
    ``W1, b1, W2, b2, W3, b3``; attributes ``kind``, ``seed``, ``formula``) so
    the task can be reproduced and inspected. ``x`` and ``y`` are float32;
    targets are computed from the stored (float32) inputs.

    Returns
    -------
    pathlib.Path
        ``out``.

    References
    ----------
    T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman. Random synaptic
    feedback weights support error backpropagation for deep learning.
    Nature Communications 7, 13276 (2016).
    """
    out = _check_target(out, overwrite)
    if kind not in ("linear", "nonlinear"):
        _fail(out, f"teacher kind must be 'linear' or 'nonlinear', got {kind!r}")
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if int(n) < 1:
            _fail(out, f"{label} must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    params = _teacher_params(kind, rng)
    splits = {}
    for split, n in (("train", int(n_train)), ("test", int(n_test))):
        x = rng.standard_normal((n, TEACHER_INPUTS)).astype(np.float32)
        splits[split] = (x, teacher_outputs(kind, params, x).astype(np.float32))
    formula = "y = x @ T.T" if kind == "linear" else "y = tanh(tanh(x @ W1 + b1) @ W2 + b2) @ W3 + b3"
    teacher = {**params, "attrs": {"kind": kind, "seed": int(seed), "formula": formula}}
    source = (
        f"synthetic {kind} teacher task (Lillicrap et al. 2016, Nature Communications 7:13276), "
        f"generated by fastfa with seed {int(seed)}"
    )
    return write_dataset(
        out,
        splits,
        name=f"teacher-{kind}",
        task="regression",
        source=source,
        overwrite=overwrite,
        extra_attrs={"seed": int(seed)},
        extra_groups={"teacher": teacher},
    )
