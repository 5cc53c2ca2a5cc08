"""What a dataset or run file may hold: only data stored in the file itself, in the sizes it declares.

Links out of the file, soft links, external raw storage and virtual datasets are refused
(a soft link may lead to another split, or round in a loop), and so is a dataset that declares
far more rows than it stores (a sparse "bomb"). Used by :mod:`fastfa.datasets.reader` for every
split and by :mod:`fastfa.runs` for a whole run file (:func:`check_contained`).
"""

from __future__ import annotations

import h5py

from fastfa.datasets.schema import _fail

#: A dataset declaring more than this many bytes must store at least 1/:data:`MAX_RATIO` of them:
#: more than any compression filter achieves, so the rest were never written (a sparse "bomb").
DECLARED_BYTES = 64 << 20
MAX_RATIO = 2000


def _link(path, group, key, prefix=""):
    """The link ``key`` of ``group`` (``None`` when missing), refusing links out of the file and soft
    links (a soft link may lead anywhere in the file, to another split, or round in a loop)."""
    link = group.get(key, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        _fail(path, f"'{prefix}{key}' is an external link to {link.filename}; fastfa reads only data the "
                    "file holds itself")  # fmt: skip
    if isinstance(link, h5py.SoftLink):
        _fail(path, f"'{prefix}{key}' is a soft link to {link.path}; fastfa reads only groups and datasets "
                    "stored under their own names")  # fmt: skip
    return link


def check_contained(path, group, prefix="", seen=None):
    """Refuse anything in ``group`` (an open HDF5 file: a run file), at any depth, that reads data
    from elsewhere: external or soft links (:func:`_link`), external raw storage and virtual datasets
    (:func:`_check_stored`). Raises :class:`DatasetError`."""
    seen = set() if seen is None else seen
    for key in group:
        _link(path, group, key, prefix)
        item = group[key]
        if hash(item.id) in seen:  # a group hard-linked twice (or into itself) is walked once
            continue
        seen.add(hash(item.id))
        if isinstance(item, h5py.Group):
            check_contained(path, item, f"{prefix}{key}/", seen)
        elif isinstance(item, h5py.Dataset):
            _check_stored(path, f"{prefix}{key}", item)


def _check_stored(path, where, dataset):
    """Refuse data kept in other files (external raw storage, virtual datasets) and sizes the file
    cannot hold (:data:`DECLARED_BYTES`, :data:`MAX_RATIO`)."""
    from fastfa.limits import format_bytes

    if dataset.is_virtual or dataset.external:
        kind = "a virtual dataset" if dataset.is_virtual else "stored in external files"
        _fail(path, f"'{where}' is {kind}; fastfa reads only data the file holds itself")
    declared = dataset.size * dataset.dtype.itemsize
    if declared > DECLARED_BYTES:
        stored = dataset.id.get_storage_size()
        if stored * MAX_RATIO < declared:
            _fail(path, f"'{where}' declares {dataset.shape[0]} rows ({format_bytes(declared)}) but the file "
                        f"stores {format_bytes(stored)} of them; most were never written")  # fmt: skip
