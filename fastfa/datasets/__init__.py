"""HDF5 datasets: open, validate, stream in chunks; write atomically; converters.

The file format (the contract users touch)
------------------------------------------
An HDF5 dataset file holds groups ``train`` and ``test`` (optionally ``valid``),
each with two datasets:

``x``
    Inputs, ``float32``, ``float64`` or ``uint8``: ``N x D`` rows, or images
    ``N x H x W`` (one channel) or ``N x C x H x W``. Every split has the same
    row shape. Readers always return rows ``N x D`` (images flattened in C
    order, ``D = C * H * W``), so models that take flat rows read image files
    unchanged.
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
``image_shape``
    ``(C, H, W)``, three positive integers with ``C * H * W = D``: the image
    shape of the inputs (:attr:`Dataset.image_shape`). The writer stores it
    whenever ``x`` holds images; a flat file may carry it to declare its rows
    images. Optional (flat files without it have ``image_shape = None``);
    fastfa's flat MNIST files hold ``(H, W)``, read as one channel.

Files larger than memory are streamed in chunks of contiguous rows with
:meth:`Split.iter_chunks`; :func:`open_dataset` checks the structure and the
attributes without reading the data, and every chunk is checked as it is read.
Problems raise :class:`DatasetError` with one line naming the file.

The package's modules
---------------------
:mod:`~fastfa.datasets.schema`
    The format's constants, :class:`DatasetError` and the checks of arrays and attributes.
:mod:`~fastfa.datasets.reader`
    :func:`open_dataset`, :class:`Dataset`, :class:`Split`, :class:`ArraySplit`,
    :func:`default_dataset_path`.
:mod:`~fastfa.datasets.writer`
    :func:`write_dataset` (atomic) and the checks the converters share.
:mod:`~fastfa.datasets.mnist`
    :func:`read_idx` and :func:`convert_mnist` (IDX files: MNIST, Fashion-MNIST).
:mod:`~fastfa.datasets.cifar`
    :func:`convert_cifar` (CIFAR-10 and CIFAR-100, the Python batches).
:mod:`~fastfa.datasets.csvfile`
    :func:`convert_csv` (delimited text).
:mod:`~fastfa.datasets.npz`
    :func:`convert_npz` (numpy archives).
:mod:`~fastfa.datasets.digits`
    :func:`write_digits` (the bundled default dataset).
:mod:`~fastfa.datasets.teacher`
    :func:`make_teacher` and :func:`teacher_outputs` (synthetic regression tasks).

Everything is imported from ``fastfa.datasets``; the submodules are where the
code lives. To replace a helper in a test, patch it in the module that defines
and calls it (``fastfa.datasets.writer._write_split``), not here.
"""

from __future__ import annotations

# The names imported ``X as X`` stay importable from here as they were before the
# package was split: the format's constants, and ``_Rows``, the base class of the
# splits (for other row sources). Rebinding one here changes nothing in the
# modules that use it.
from fastfa.datasets.cifar import convert_cifar
from fastfa.datasets.csvfile import convert_csv
from fastfa.datasets.digits import DIGITS_SEED as DIGITS_SEED
from fastfa.datasets.digits import DIGITS_SOURCE as DIGITS_SOURCE
from fastfa.datasets.digits import DIGITS_TEST_FRACTION as DIGITS_TEST_FRACTION
from fastfa.datasets.digits import write_digits
from fastfa.datasets.mnist import FASHION_MNIST_SOURCE as FASHION_MNIST_SOURCE
from fastfa.datasets.mnist import IDX_IMAGES_MAGIC as IDX_IMAGES_MAGIC
from fastfa.datasets.mnist import IDX_LABELS_MAGIC as IDX_LABELS_MAGIC
from fastfa.datasets.mnist import MNIST_FILES as MNIST_FILES
from fastfa.datasets.mnist import MNIST_SOURCE as MNIST_SOURCE
from fastfa.datasets.mnist import convert_mnist, read_idx
from fastfa.datasets.npz import convert_npz
from fastfa.datasets.reader import CACHE_BYTES as CACHE_BYTES
from fastfa.datasets.reader import DIGITS_FILE as DIGITS_FILE
from fastfa.datasets.reader import HDF5_SIGNATURE as HDF5_SIGNATURE
from fastfa.datasets.reader import Dataset, Split, default_dataset_path, open_dataset
from fastfa.datasets.rows import ArraySplit
from fastfa.datasets.rows import _Rows as _Rows
from fastfa.datasets.schema import FORMAT_VERSION as FORMAT_VERSION
from fastfa.datasets.schema import OUT_DTYPES as OUT_DTYPES
from fastfa.datasets.schema import REQUIRED_SPLITS as REQUIRED_SPLITS
from fastfa.datasets.schema import SPLITS as SPLITS
from fastfa.datasets.schema import TASKS as TASKS
from fastfa.datasets.schema import X_DTYPES as X_DTYPES
from fastfa.datasets.schema import X_NDIMS as X_NDIMS
from fastfa.datasets.schema import DatasetError
from fastfa.datasets.teacher import TEACHER_HIDDEN as TEACHER_HIDDEN
from fastfa.datasets.teacher import TEACHER_INPUTS as TEACHER_INPUTS
from fastfa.datasets.teacher import TEACHER_OUTPUTS as TEACHER_OUTPUTS
from fastfa.datasets.teacher import make_teacher, teacher_outputs
from fastfa.datasets.writer import CHUNK_BYTES as CHUNK_BYTES
from fastfa.datasets.writer import write_dataset

__all__ = [
    "DatasetError",
    "Dataset",
    "Split",
    "ArraySplit",
    "open_dataset",
    "write_dataset",
    "default_dataset_path",
    "read_idx",
    "convert_mnist",
    "convert_cifar",
    "convert_csv",
    "convert_npz",
    "write_digits",
    "make_teacher",
    "teacher_outputs",
]
