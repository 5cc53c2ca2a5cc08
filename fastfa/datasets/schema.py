"""The dataset format's constants, :class:`DatasetError`, and the checks of arrays and attributes.

The format itself is described in :mod:`fastfa.datasets`. Every check raises
:class:`DatasetError` with one line naming the file; the reader and the writer
share them, so a file that is written is one that can be read.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

TASKS = ("classification", "regression")
SPLITS = ("train", "valid", "test")
REQUIRED_SPLITS = ("train", "test")
X_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))
OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FORMAT_VERSION = 1
X_NDIMS = (2, 3, 4)  # x is N x D, N x H x W or N x C x H x W


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
    """``x`` is 2-D (rows) or 3-D / 4-D (images), non-empty; ``y`` has one label (or target row) per row."""
    if len(x_shape) not in X_NDIMS:
        _fail(
            path,
            f"{where}/x is not 2-D, 3-D or 4-D (shape {tuple(x_shape)}); "
            "expected N x D, N x H x W or N x C x H x W",
        )
    if task == "classification" and len(y_shape) != 1:
        _fail(path, f"{where}/y must be 1-D class labels, got shape {tuple(y_shape)}")
    if task == "regression" and len(y_shape) not in (1, 2):
        _fail(path, f"{where}/y must be 1-D or 2-D regression targets, got shape {tuple(y_shape)}")
    if x_shape[0] != y_shape[0]:
        _fail(path, f"{where}: x and y lengths differ (x has {x_shape[0]} rows, y has {y_shape[0]})")
    if x_shape[0] == 0:
        _fail(path, f"split '{where}' is empty")
    if len(x_shape) == 2 and x_shape[1] == 0:
        _fail(path, f"{where}/x has no columns")
    if 0 in x_shape[1:]:
        _fail(path, f"{where}/x has a zero-sized image dimension (shape {tuple(x_shape)})")
    if len(y_shape) == 2 and y_shape[1] == 0:
        _fail(path, f"{where}/y has no columns")


def _shape_text(shape):
    """A shape written ``1x28x28`` (one dimension: just the number)."""
    return "x".join(str(int(d)) for d in shape)


def _n_features(x_shape):
    """The values in one row of an ``x`` of shape ``x_shape``: ``D``, or ``C * H * W`` for images."""
    return int(np.prod(x_shape[1:], dtype=np.int64))


def _chw(dims):
    """Image dimensions ``(H, W)`` (one channel) or ``(C, H, W)`` as a tuple ``(C, H, W)`` of ints."""
    return tuple(int(d) for d in (1,) * (3 - len(dims)) + tuple(dims))


def _stored_image_shape(x_shape):
    """``(C, H, W)`` of an ``x`` stored as images (``N x H x W`` has one channel); ``None`` when flat."""
    return None if len(x_shape) == 2 else _chw(x_shape[1:])


def _check_same_rows(path, x_shapes):
    """Every split's ``x`` has the same row shape; ``x_shapes`` maps split names to ``x`` shapes."""
    if len({_n_features(shape) for shape in x_shapes.values()}) > 1:
        detail = ", ".join(f"{s} {_n_features(shape)}" for s, shape in x_shapes.items())
        _fail(path, f"splits have different numbers of features ({detail})")
    if len({tuple(shape[1:]) for shape in x_shapes.values()}) > 1:
        detail = ", ".join(f"{s} {_shape_text(shape[1:])}" for s, shape in x_shapes.items())
        _fail(path, f"splits have different image shapes ({detail})")


def _image_shape(path, x_shape, given=None, what="attribute 'image_shape'"):
    """The image shape ``(C, H, W)`` of rows of ``x``, or ``None`` for flat rows that declare none.

    Parameters
    ----------
    path : str or os.PathLike
        Named in the error message.
    x_shape : tuple of int
        The shape of a split's ``x`` (every split has the same row shape).
    given : array_like, optional
        The attribute ``image_shape`` (or :func:`write_dataset`'s argument):
        3 positive integers ``(C, H, W)`` -- or 2, ``(H, W)``, one channel, as
        fastfa's flat MNIST files carry -- holding one row's values, and
        equal to the stored shape when ``x`` is stored as images.
    what : str
        What ``given`` is called in the error message.

    Returns
    -------
    tuple of int or None
    """
    stored = _stored_image_shape(x_shape)
    if given is None:
        return stored
    shape = np.asarray(given)
    if shape.ndim != 1 or len(shape) not in (2, 3) or not _is_integer_dtype(shape.dtype) or np.any(shape < 1):
        _fail(path, f"{what} must be 3 positive integers (C, H, W), got {_show(given)}")
    shape = _chw(shape)
    n_features = _n_features(x_shape)
    if math.prod(shape) != n_features:
        _fail(
            path,
            f"{what} {_shape_text(shape)} holds {math.prod(shape)} values, but x has {n_features} per row",
        )
    if stored is not None and shape != stored:
        _fail(path, f"{what} {_shape_text(shape)} disagrees with x's images of {_shape_text(stored)}")
    return shape


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
