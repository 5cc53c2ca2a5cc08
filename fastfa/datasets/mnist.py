"""MNIST-style IDX files (:func:`read_idx`) and their converter (:func:`convert_mnist`)."""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np

from fastfa.datasets.csvfile import gzip_errors
from fastfa.datasets.schema import _fail
from fastfa.datasets.writer import _check_target, check_input_file, write_dataset
from fastfa.limits import check_memory, format_bytes

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
FASHION_MNIST_SOURCE = (
    "Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, Zalando Research, 2017; "
    "https://github.com/zalandoresearch/fashion-mnist), converted from the IDX files by fastfa. "
    "License: MIT."
)


def _open_maybe_gzip(path):
    """Open ``path`` for binary reading, decompressing when it starts with the gzip magic bytes."""
    check_input_file(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path, magic):
    """Read an IDX file (gzip or raw) with the expected ``magic`` number.

    IDX: a big-endian int32 magic (``0x00000800 + n_dims`` for unsigned bytes),
    then one big-endian int32 per dimension, then the raw bytes. The header is read first: the
    dimensions are checked against the bytes a raw file holds and against the memory budget
    (:func:`fastfa.limits.check_memory`) before the data is read, and a gzip stream is never
    inflated past the bytes they declare (a gzip bomb stops there).

    Returns
    -------
    ndarray of uint8, shape given by the header.
    """
    try:
        with gzip_errors(path, "cannot read: "), _open_maybe_gzip(path) as f:
            return _read_idx(path, f, magic, compressed=isinstance(f, gzip.GzipFile))
    except OSError as exc:
        _fail(path, f"cannot read ({' '.join(str(exc).split())})")


def _read_idx(path, f, magic, compressed):
    head = f.read(4)
    if len(head) < 4:
        _fail(path, f"too short for an IDX file ({len(head)} bytes)")
    (found,) = struct.unpack(">i", head)
    if found != magic:
        _fail(path, f"bad IDX magic number 0x{found & 0xFFFFFFFF:08x}, expected 0x{magic:08x}")
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    raw_dims = f.read(4 * n_dims)
    if len(raw_dims) < 4 * n_dims:
        _fail(path, f"truncated IDX header ({4 + len(raw_dims)} bytes, expected {header})")
    dims = struct.unpack(f">{n_dims}i", raw_dims)
    if any(d < 0 for d in dims) or (n_dims > 1 and 0 in dims[1:]):
        _fail(path, f"bad IDX dimensions {dims}")
    expected = math.prod(dims)
    if not compressed:  # the bytes present are known before anything is read
        _check_idx_bytes(path, os.path.getsize(path) - header, expected, dims)
    shape = "x".join(str(d) for d in dims)
    check_memory(2 * expected, f"{path}: IDX dimensions {shape} ({format_bytes(expected)})")  # and a copy
    data = f.read(expected + 1)
    _check_idx_bytes(path, len(data), expected, dims)
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _check_idx_bytes(path, found_bytes, expected, dims):
    if found_bytes < expected:
        _fail(path, f"IDX data truncated: {found_bytes} bytes, expected {expected} for dimensions {dims}")
    if found_bytes > expected:
        _fail(path, f"IDX data has trailing bytes: more than the {expected} expected for dimensions {dims}")


def _find_idx(directory, base):
    for candidate in (base + ".gz", base):
        path = Path(directory) / candidate
        if path.exists():
            check_input_file(path)
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
    return images, labels


def _check_pad(directory, pad, image_shape):
    """``pad`` must be an integer size that the ``(H, W)`` images fit in, centred."""
    height, width = image_shape
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)):
        _fail(directory, f"pad must be an integer image size, got {pad!r}")
    if pad < max(height, width):
        _fail(directory, f"pad {pad} is smaller than the {height}x{width} images")
    if (pad - height) % 2 or (pad - width) % 2:
        _fail(directory, f"pad {pad} cannot centre the {height}x{width} images (the padding must be even)")


def _as_images(images, pad):
    """``N x H x W`` images as ``N x 1 x pad x pad``: zero-padded, centred, like torchvision's ``Pad``."""
    if pad is not None:
        top, left = (pad - images.shape[1]) // 2, (pad - images.shape[2]) // 2
        images = np.pad(images, ((0, 0), (top, top), (left, left)))
    return images[:, np.newaxis]


def convert_mnist(
    directory, out, *, name="mnist", source=MNIST_SOURCE, overwrite=False, images=False, pad=None
):
    """Convert the four MNIST IDX files in ``directory`` to a dataset file.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzip
    compressed (``.gz``, preferred) or raw. Checks the magic numbers
    (``0x00000803`` images, ``0x00000801`` labels), the sizes, and that images and
    labels agree in number. Works for any data set in the same format
    (Fashion-MNIST, KMNIST) -- pass ``name`` and ``source``.

    Inputs are stored as uint8 with ``x_scale = 1/255``: flat rows
    ``N x rows*cols`` (784 for MNIST; the attribute ``image_shape`` holds
    ``(rows, cols)``), or with ``images`` as ``N x 1 x rows x cols`` for
    convolutional networks. ``n_classes`` is ``max(10, largest label + 1)``.
    Readers return flat rows either way.

    Parameters
    ----------
    directory, out : str or os.PathLike
    name, source : str
    overwrite : bool
    images : bool
        Store ``N x 1 x rows x cols`` images instead of flat rows.
    pad : int, optional
        Zero-pad every image to ``pad x pad``, centred (``32`` for MNIST: two
        pixels each side, as torchvision's ``Pad(2)`` does for LeNet); implies
        ``images``. It must be at least the image size, and the padding even.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    inputs = [
        Path(directory) / f"{name}{gz}"
        for pair in MNIST_FILES.values()
        for name in pair
        for gz in (".gz", "")
    ]
    out = _check_target(out, overwrite, inputs=inputs)
    if not Path(directory).is_dir():
        _fail(directory, "is not a directory")
    x_train, y_train = _mnist_split(directory, "train")
    x_test, y_test = _mnist_split(directory, "test")
    image_shape = x_train.shape[1:]
    if image_shape != x_test.shape[1:]:
        _fail(directory, f"train images are {image_shape} but test images are {x_test.shape[1:]}")
    if pad is not None:
        _check_pad(directory, pad, image_shape)
    if images or pad is not None:
        x_train, x_test, extra_attrs = _as_images(x_train, pad), _as_images(x_test, pad), None
    else:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
        extra_attrs = {"image_shape": np.asarray(image_shape, dtype=np.int64)}
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
        extra_attrs=extra_attrs,
    )
