"""Writing dataset files atomically (:func:`write_dataset`), and the checks every converter shares."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastfa.datasets.reader import open_dataset
from fastfa.datasets.schema import (
    FORMAT_VERSION,
    REQUIRED_SPLITS,
    SPLITS,
    TASKS,
    DatasetError,
    _check_finite,
    _check_labels,
    _check_same_rows,
    _check_shapes,
    _check_x_dtype,
    _check_y_dtype,
    _fail,
    _image_shape,
    _positive_float,
    _positive_int,
)
from fastfa.files import (
    FileSafetyError,
    atomic_path,
    check_output,
    check_regular,
    hdf5_in_memory,
    write_problem,
)

CHUNK_BYTES = 1 << 18  # target size of one HDF5 storage chunk (256 KiB)


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
    _check_same_rows(path, {s: a[0].shape for s, a in arrays.items()})
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


def _check_conversion(path, out, overwrite, task, inputs=()):
    """The checks every table converter starts with: the output target and the task name."""
    out = _check_target(out, overwrite, inputs=(path, *inputs))
    if task not in TASKS:
        _fail(path, f"task must be 'classification' or 'regression', got {task!r}")
    return out


def _check_target(out, overwrite, inputs=()):
    """Refuse an existing output unless ``overwrite``, one that is not a regular file or is one of
    the converter's ``inputs`` (:func:`fastfa.files.check_output`); check its directory exists."""
    out = Path(out)
    if out.is_dir():
        _fail(out, "is a directory; give a file name for the output")
    try:
        check_output(out, inputs=inputs)
    except FileSafetyError as exc:
        raise DatasetError(str(exc)) from None
    if out.exists() and not overwrite:
        _fail(out, "already exists; use --overwrite (overwrite=True in Python) to replace it")
    if not out.parent.is_dir():
        _fail(out, f"directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        _fail(out, f"directory {out.parent} is not writable")
    return out


def _strip_suffixes(path):
    name = Path(path).name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".npz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "dataset"


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
    image_shape=None,
):
    """Write a fastfa dataset file atomically.

    The file is written under a temporary name in the same directory and moved
    into place with :func:`os.replace`, so readers never see a half-written
    file; on any error the temporary file is removed and an existing file at
    ``path`` is left as it was. Arrays are stored gzip-compressed in chunks of
    consecutive rows (whole images), which suits streaming with
    :meth:`Split.iter_chunks`.

    Parameters
    ----------
    path : str or os.PathLike
    splits : dict
        ``{"train": (x, y), "test": (x, y)}``, optionally ``"valid"`` too.
        ``x`` is float32, float64 or uint8: ``N x D`` rows, or images ``N x H x W``
        (one channel) or ``N x C x H x W``, stored as given, every split with
        the same row shape; ``y`` holds ``N`` integer labels (classification;
        float labels with integer values are accepted) or ``N`` / ``N x K``
        targets (regression).
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
    image_shape : sequence of int, optional
        ``(C, H, W)`` (or ``(H, W)``, one channel) of the images that flat
        ``N x D`` rows hold, ``C * H * W == D``; for images ``x`` it may be
        given only as their shape. Stored as the root attribute
        ``image_shape``, which images ``x`` always get.

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
    image_shape = _image_shape(path, arrays["train"][0].shape, image_shape, what="image_shape")
    attrs = {"name": name, "task": task, "x_scale": x_scale, "source": str(source)}
    if task == "classification":
        attrs["n_classes"] = n_classes
        label_type = np.min_scalar_type(n_classes - 1)  # uint8 for up to 256 classes
        arrays = {s: (x, y.astype(label_type)) for s, (x, y) in arrays.items()}
    attrs["format_version"] = FORMAT_VERSION
    if image_shape is not None:
        attrs["image_shape"] = np.asarray(image_shape, dtype=np.int64)
    for key, value in (extra_attrs or {}).items():
        _check_attribute(path, key, value)
    try:
        with atomic_path(path) as tmp:
            with hdf5_in_memory(tmp) as f:
                f.attrs.update(attrs)
                _write_extras(f, extra_groups, extra_attrs)
                for split, (x, y) in arrays.items():
                    _write_split(f, split, x, y)
            open_dataset(tmp).close()
    except OSError as exc:  # the temporary file is gone (atomic_path); say why in one line
        if isinstance(exc, FileSafetyError):
            raise
        _fail(path, f"cannot write ({write_problem(exc)}); nothing was written")
    return path


#: Entries an HDF5 attribute list holds at most (attributes are stored in one 64 KiB header
#: message; a variable-length string takes 16 bytes of it).
MAX_ATTRIBUTE_ITEMS = 4000


def _check_attribute(path, key, value):
    """Refuse a root attribute too big for HDF5 (``classes`` of a CSV with thousands of names)."""
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) > MAX_ATTRIBUTE_ITEMS:
        what = "class names" if key == "classes" else f"entries in attribute {key!r}"
        hint = "; number the classes 0..K-1 instead" if key == "classes" else ""
        _fail(path, f"{len(value):,} {what}: more than the {MAX_ATTRIBUTE_ITEMS:,} fastfa can store{hint}")


def check_input_file(path):
    """Raise :class:`DatasetError` when ``path`` exists and is not a regular file (a FIFO would
    block the converter, a device never end)."""
    try:
        check_regular(path)
    except FileSafetyError as exc:
        raise DatasetError(str(exc)) from None
