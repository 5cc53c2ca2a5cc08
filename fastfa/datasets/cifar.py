"""CIFAR-10 and CIFAR-100 in their Python distribution (:func:`convert_cifar`).

Krizhevsky's archives ``cifar-10-python.tar.gz`` and ``cifar-100-python.tar.gz`` hold pickled
batches: dictionaries with ``data`` (``N x 3072`` uint8, each row the red, green and blue
32 x 32 planes in turn, i.e. one ``3 x 32 x 32`` image in C order) and the labels (``labels``
for CIFAR-10; ``fine_labels`` and ``coarse_labels`` for CIFAR-100), plus a ``meta`` batch with
the class names. They were pickled by Python 2 (keys are bytes).

A pickle can run any code it names, so batches are read with :class:`_BatchUnpickler`, which
builds numpy arrays and nothing else. Archive members are read in memory (nothing is
extracted to disk), each after its declared size has been checked against the memory budget
(:func:`fastfa.limits.check_memory`).
"""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from fastfa.datasets.schema import _fail
from fastfa.datasets.writer import _check_target, check_input_file, write_dataset
from fastfa.limits import check_memory

CIFAR_SOURCE = (
    "{name} (A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009; "
    "https://www.cs.toronto.edu/~kriz/cifar.html), converted from the Python batches by fastfa."
)
#: Per variant: the archive's folder, the training and test batches, the metadata batch, and
#: per label kind the labels' key, the class names' key and the number of classes.
LAYOUTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
        "meta": "batches.meta",
        "labels": {"fine": (b"labels", b"label_names", 10)},
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ("train",),
        "test": ("test",),
        "meta": "meta",
        "labels": {
            "fine": (b"fine_labels", b"fine_label_names", 100),
            "coarse": (b"coarse_labels", b"coarse_label_names", 20),
        },
    },
}
IMAGE_SHAPE = (3, 32, 32)
#: The most bytes one pickled batch may hold (a real one is about 31 MiB for 10,000 images, 155
#: MiB for CIFAR-100's 50,000): anything larger is not a CIFAR batch.
BATCH_BYTES = 512 * 2**20


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays (as CIFAR's batches hold them) and refuses every
    other global a pickle may name (``_codecs.encode``, which only turns text into bytes, is
    how a batch pickled again by Python 3 holds its bytes)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2 (a batch pickled again)
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch does not")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
            except ImportError:  # numpy 1
                pass
        return getattr(importlib.import_module(module), name)


def _load_batch(where, data):
    """The dictionary pickled in ``data`` (bytes of the batch ``where``), or one-line failure."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        _fail(where, f"is not a CIFAR batch, or is truncated ({detail})")
    if not isinstance(batch, dict):
        _fail(where, f"is not a CIFAR batch (it holds a {type(batch).__name__}, not a dictionary)")
    return batch


class _Source:
    """The batches of a CIFAR archive (``.tar.gz``) or of its extracted folder, by name."""

    def __init__(self, path, folder):
        self.path = Path(path)
        self.folder = folder
        if self.path.is_dir():
            inner = self.path / folder
            self.root = inner if inner.is_dir() else self.path
            self.archive = None
        elif self.path.exists():
            check_input_file(self.path)  # a FIFO or a device would block or never end
            try:
                self.archive = tarfile.open(self.path, "r:*")
                self.members = {m.name: m for m in self.archive.getmembers()}
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                detail = " ".join(str(exc).split()) or type(exc).__name__
                _fail(self.path, f"is neither a CIFAR archive (.tar.gz) nor its extracted folder ({detail})")
        else:
            _fail(self.path, "does not exist")

    def inputs(self, names):
        """The files the batches are read from (for the output-is-not-an-input check)."""
        if self.archive is not None:
            return [self.path]
        return [self.root / name for name in names]

    def read(self, name):
        """The bytes of batch ``name``; one line naming it when it is missing or too large."""
        if self.archive is None:
            where = self.root / name
            if not where.exists():
                _fail(self.root, f"has no {name} (a CIFAR folder holds {self.folder}'s batches)")
            check_input_file(where)
            size = where.stat().st_size
            self._check_size(where, size)
            return where.read_bytes()
        member = self.members.get(f"{self.folder}/{name}")
        if member is None or not member.isfile():
            _fail(self.path, f"has no {self.folder}/{name}: not a complete CIFAR archive")
        self._check_size(f"{self.path}: {member.name}", member.size)
        try:
            return self.archive.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            _fail(self.path, f"{member.name} cannot be read: the archive is truncated or corrupt ({detail})")

    @staticmethod
    def _check_size(where, size):
        if size > BATCH_BYTES:
            _fail(where, f"holds {size:,} bytes, more than any CIFAR batch ({BATCH_BYTES:,})")
        check_memory(size, f"{where} ({size:,} bytes)")

    def close(self):
        if self.archive is not None:
            self.archive.close()


def _images_and_labels(where, batch, label_key, n_classes):
    """``(x, y)`` of one batch: ``N x 3 x 32 x 32`` uint8 images and ``N`` int64 labels."""
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or labels is None:
        _fail(where, f"is not a CIFAR batch (no b'data' array or no {label_key!r})")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        _fail(where, f"data is {data.dtype} {data.shape}, not N x 3072 uint8 (3 x 32 x 32 images)")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        _fail(where, f"{label_key!r} are not integer labels")
    if y.shape != (len(data),):
        _fail(where, f"has {len(data)} images but {y.size} labels")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        _fail(where, f"has labels outside 0..{n_classes - 1}")
    return data.reshape(len(data), *IMAGE_SHAPE), y


def _class_names(where, meta, names_key, n_classes):
    names = meta.get(names_key)
    if not isinstance(names, list) or len(names) != n_classes:
        _fail(where, f"has no list of {n_classes} class names under {names_key!r}")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def convert_cifar(path, out, *, variant="cifar10", labels="fine", name=None, source=None, overwrite=False):
    """Convert CIFAR-10 or CIFAR-100 (the Python version) to a dataset file of images.

    ``path`` is the archive as distributed (``cifar-10-python.tar.gz``,
    ``cifar-100-python.tar.gz``) or the folder it extracts to (or the folder holding that one).
    Every batch must be there (CIFAR-10: ``data_batch_1`` to ``data_batch_5``, ``test_batch``
    and ``batches.meta``; CIFAR-100: ``train``, ``test`` and ``meta``); each is checked for its
    layout (``N x 3072`` uint8 data, ``N`` labels within the classes) and the training batches
    for equal counts (a real CIFAR-10 batch holds 10,000 images).

    Images are stored as uint8 ``N x 3 x 32 x 32`` with ``x_scale = 1/255`` and the class names
    in the root attribute ``classes``.

    Parameters
    ----------
    path, out : str or os.PathLike
    variant : {"cifar10", "cifar100"}
    labels : {"fine", "coarse"}
        CIFAR-100's 100 fine classes or 20 superclasses (CIFAR-10 has only ``"fine"``).
    name, source : str, optional
        Default: the variant's name and a citation.
    overwrite : bool

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    layout = LAYOUTS[variant]
    if labels not in layout["labels"]:
        raise ValueError(f"{variant} has {' and '.join(layout['labels'])} labels, not {labels!r}")
    label_key, names_key, n_classes = layout["labels"][labels]
    batches = (*layout["train"], *layout["test"], layout["meta"])
    source_files = _Source(path, layout["folder"])
    try:
        out = _check_target(out, overwrite, inputs=source_files.inputs(batches))
        splits, counts = {}, []
        for split in ("train", "test"):
            parts = []
            for batch_name in layout[split]:
                where = f"{path}: {batch_name}"
                parts.append(_images_and_labels(where, _load_batch(where, source_files.read(batch_name)),
                                                label_key, n_classes))  # fmt: skip
                if split == "train":
                    counts.append(len(parts[-1][0]))
            splits[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        if len(set(counts)) > 1:
            _fail(path, f"training batches hold {counts} images: one is truncated")
        meta_where = f"{path}: {layout['meta']}"
        classes = _class_names(
            meta_where, _load_batch(meta_where, source_files.read(layout["meta"])), names_key, n_classes
        )
    finally:
        source_files.close()
    title = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[variant]
    return write_dataset(
        out,
        splits,
        name=name or (variant if labels == "fine" else f"{variant}-{labels}"),
        task="classification",
        n_classes=n_classes,
        x_scale=1 / 255,
        source=source if source is not None else CIFAR_SOURCE.format(name=title),
        overwrite=overwrite,
        extra_attrs={"classes": classes},
    )
