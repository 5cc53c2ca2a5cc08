"""numpy ``.npz`` archives: :func:`convert_npz`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fastfa.datasets.schema import (
    SPLITS,
    X_DTYPES,
    X_NDIMS,
    DatasetError,
    _fail,
    _is_integer_dtype,
    _is_number_dtype,
    _show,
)
from fastfa.datasets.writer import _check_conversion, _strip_suffixes, check_input_file, write_dataset
from fastfa.limits import check_memory, format_bytes


def _one_hot_to_labels(path, key, y):
    """Class labels from a one-hot ``N x K`` matrix (each row one 1, the rest 0)."""
    if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
        _fail(path, f"'{key}' is 2-D but not one-hot; classification wants one integer label per row")
    return np.argmax(y, axis=1).astype(np.int64)


def _npz_x(path, key, x):
    """Inputs to store: ``N x D`` rows or ``N x H x W`` / ``N x C x H x W`` images, as a kept dtype."""
    if x.ndim not in X_NDIMS:
        _fail(
            path,
            f"'{key}' must be N x D rows or N x H x W / N x C x H x W images, got shape {x.shape}",
        )
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


def _member_header(member):
    """``(shape, dtype)`` from an ``.npy`` member's header, or ``None`` when numpy should judge it."""
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        return None
    shape, _fortran, dtype = readers[version](member)
    return shape, dtype


def _check_member_sizes(path):
    """Check every member's declared shape against the bytes it holds and the memory it needs,
    before numpy allocates anything (a header may claim terabytes; deflated zeros inflate a
    thousandfold)."""
    import zipfile

    total, biggest = 0, None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    found = _member_header(member)
                    offset = member.tell()
                if found is None or found[1].hasobject:
                    continue
                shape, dtype = found
                key, declared = info.filename[:-4], math.prod(shape) * dtype.itemsize
                if declared > info.file_size - offset:
                    _fail(path, f"'{key}' declares shape {shape} ({format_bytes(declared)}) but holds "
                                f"{format_bytes(max(info.file_size - offset, 0))}")  # fmt: skip
                total += declared
                if biggest is None or declared > biggest[1]:
                    biggest = (key, declared, shape)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, DatasetError):
            raise
        return  # numpy.load says what is wrong
    if biggest is not None:  # the arrays, and the copies conversion makes
        check_memory(2 * total, f"{path}: '{biggest[0]}' of shape {biggest[2]} and the other arrays")


def _read_npz(path):
    """All arrays of an ``.npz`` archive (a zip of ``.npy`` files), refusing pickled objects."""
    check_input_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        _fail(path, "not an .npz archive (numpy.savez writes one)")
    _check_member_sizes(path)
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
    Inputs are ``N x D`` rows, or images ``N x H x W`` (one channel) or
    ``N x C x H x W``, stored as given with their shape recorded (readers
    return flat rows); uint8, float32 and float64 inputs are kept, other
    numbers become float32. Classification labels may be integers, integer-valued floats or
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
