"""Reading dataset files: :func:`open_dataset`, :class:`Dataset` and its splits.

:class:`Split` reads rows from the file; :class:`~fastfa.datasets.rows.ArraySplit` holds them
in memory; both get reading, chunking and block shuffling from
:class:`~fastfa.datasets.rows._Rows`.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from fastfa.datasets.containment import _check_stored, _link
from fastfa.datasets.rows import ArraySplit, _Rows
from fastfa.datasets.schema import (
    REQUIRED_SPLITS,
    SPLITS,
    DatasetError,
    _check_finite,
    _check_labels,
    _check_same_rows,
    _check_shapes,
    _check_x_dtype,
    _check_y_dtype,
    _fail,
    _image_shape,
    _n_features,
    _read_attrs,
    _shape_text,
    _text,
)
from fastfa.files import FileSafetyError, check_regular

CACHE_BYTES = 1 << 24  # HDF5 chunk cache per open file (16 MiB)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DIGITS_FILE = "digits.h5"  # the bundled default, in fastfa/data


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
        check_regular(path)
    except FileSafetyError as exc:
        raise DatasetError(str(exc)) from None
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


class _SplitInfo(NamedTuple):
    """What :func:`_split_info` learns of a split without reading its data."""

    n_rows: int
    n_features: int  # values per row: D, or C * H * W for images
    n_outputs: int | None  # regression targets; None for classification
    x_dtype: np.dtype
    x_shape: tuple  # as stored: N x D, N x H x W or N x C x H x W


def _split_info(path, f, name, task):
    """Check one split's structure (no data read); return its :class:`_SplitInfo`."""
    if _link(path, f, name) is None:
        _fail(path, f"missing group '{name}'")
    group = f[name]
    if not isinstance(group, h5py.Group):
        _fail(path, f"'{name}' is not a group")
    for key in ("x", "y"):
        if _link(path, group, key, f"{name}/") is None:
            _fail(path, f"missing dataset '{name}/{key}'")
        if not isinstance(group[key], h5py.Dataset):
            _fail(path, f"'{name}/{key}' is not a dataset")
        _check_stored(path, f"{name}/{key}", group[key])
    x, y = group["x"], group["y"]
    _check_x_dtype(path, name, x.dtype)
    _check_y_dtype(path, name, y.dtype, task)
    _check_shapes(path, name, x.shape, y.shape, task)
    n_outputs = None if task == "classification" else (y.shape[1] if y.ndim == 2 else 1)
    return _SplitInfo(x.shape[0], _n_features(x.shape), n_outputs, x.dtype, x.shape)


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
        Values in one row of ``x``: its columns, or ``C * H * W`` for images
        (every reader returns rows flattened in C order).
    image_shape : tuple of int or None
        ``(C, H, W)`` when the inputs are images (``x`` stored ``N x C x H x W``
        or ``N x H x W``, or flat with the attribute ``image_shape``); ``None``
        for flat inputs.
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
        _check_same_rows(label, {name: info.x_shape for name, info in self._info.items()})
        self._image_shape = _image_shape(label, self._info["train"].x_shape, f.attrs.get("image_shape"))
        if task == "regression":
            outputs = {info.n_outputs for info in self._info.values()}
            if len(outputs) > 1:
                detail = ", ".join(f"{n} {i.n_outputs}" for n, i in self._info.items())
                _fail(label, f"splits have different numbers of targets ({detail})")
        if self._attrs["x_scale"] is None and any(i.x_dtype == np.uint8 for i in self._info.values()):
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
        return next(iter(self._info.values())).n_features

    @property
    def image_shape(self):
        return self._image_shape

    @property
    def n_outputs(self):
        if self.task == "classification":
            return self.n_classes
        return next(iter(self._info.values())).n_outputs

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
        """One line: name, task, outputs, features (and image shape), input type and split sizes."""
        if self.task == "classification":
            outputs = f"{self.n_classes} classes"
        else:
            outputs = f"{self.n_outputs} target{'s' if self.n_outputs != 1 else ''}"
        dtype = self._info["train"].x_dtype
        scale = f" x_scale={self.x_scale:.6g}" if dtype == np.uint8 else ""
        images = f" ({_shape_text(self.image_shape)} images)" if self.image_shape else ""
        sizes = ", ".join(f"{name} {info.n_rows}" for name, info in self._info.items())
        features = f"{self.n_features} features{images}"
        return f"{self.name} ({self.task}, {outputs}, {features}, {dtype}{scale}): {sizes} rows"

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
        info = dataset._info[name]
        self.n_rows, self.n_features, self.x_dtype = info.n_rows, info.n_features, info.x_dtype

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
        x = self._convert_x(self._flat(raw_x), dtype)
        if raw_x.dtype != np.uint8:  # scaled uint8 is always finite
            _check_finite(label, self.name, "x", x, start)
        if ds.task == "classification":
            _check_labels(label, self.name, raw_y, ds.n_classes, start)
            y = raw_y.astype(np.int64, copy=False)
        else:
            y = raw_y.astype(dtype, copy=False).reshape(len(raw_y), -1)
            _check_finite(label, self.name, "y", y, start)
        return x, y

    def _flat(self, raw_x):
        """Stored rows of ``x`` (images too) as ``rows x n_features``, flattened in C order (a view)."""
        return raw_x.reshape(len(raw_x), self.n_features)

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
        """The stored arrays (uint8 inputs unscaled, images flattened to rows), after checking them."""
        self.validate()
        group = self.dataset._group(self.name)
        return self._flat(group["x"][()]), group["y"][()]

    def validate(self, rows_per_chunk=65536):
        """Read the split once in file order, checking every value. Returns ``self``."""
        dtype = np.dtype(np.float64 if self.x_dtype == np.float64 else np.float32)
        for _ in self._chunks(int(rows_per_chunk), None, dtype):
            pass
        return self


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
