"""Delimited text files (CSV, TSV, whitespace; optionally gzip-compressed): :func:`convert_csv`."""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from fastfa.datasets.schema import _fail
from fastfa.datasets.writer import (
    _check_attribute,
    _check_conversion,
    _strip_suffixes,
    check_input_file,
    write_dataset,
)
from fastfa.limits import check_memory, memory_budget, read_bounded

HEADER_NAMES_SHOWN = 20  # header names listed when a label column's name matches none


_texts = {}  # path -> its whole text, while convert_csv reads it (read once: a pipe, a gzip stream)


def _open_text(path):
    """The text of ``path`` (gzip-compressed or not): from memory while :func:`convert_csv` holds it
    (:func:`_holding`), else streamed from the file."""
    if str(path) in _texts:
        return io.StringIO(_texts[str(path)], newline="")
    check_input_file(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


@contextlib.contextmanager
def gzip_errors(path, prefix=""):
    """Turn a truncated, invalid or damaged gzip stream read in the block into one line naming ``path``
    (``prefix`` starts what it says of it)."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile) as exc:
        truncated = isinstance(exc, EOFError)
        problem = "truncated gzip file (it ends mid-stream)" if truncated else "not a valid gzip file"
        _fail(path, prefix + problem)
    except zlib.error:
        _fail(path, prefix + "corrupt gzip data (the compressed stream is damaged)")


def _read_text(path):
    """The whole text of ``path``, read once, decompressed block by block and refused past a third
    of the memory budget (:func:`fastfa.limits.read_bounded`: a gzip bomb stops there)."""
    check_input_file(path)
    with gzip_errors(path), open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if raw.read(2) == b"\x1f\x8b" else raw
        raw.seek(0)
        data = read_bounded(stream, path, memory_budget() // 3)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail(path, f"not UTF-8 text (byte {exc.start} cannot be decoded)")


@contextlib.contextmanager
def _holding(*paths):
    """Read each of ``paths`` (``None`` skipped) once into memory for the block (:func:`_open_text`)."""
    try:
        for path in paths:
            if path is not None:
                _texts[str(path)] = _read_text(path)
        yield
    finally:
        for path in paths:
            _texts.pop(str(path), None)


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


def _column_list(label_column):
    """``label_column`` as a list: one index or name, or several."""
    if isinstance(label_column, str) or np.ndim(label_column) == 0:
        return [label_column]
    return list(label_column)


def _has_header(fields, columns):
    """Guess whether the first line (``fields``) is a header, the label columns given as names.

    It is when it holds one of the names or a field that is not a number.
    """
    names = {c for c in columns if isinstance(c, str)}
    return any(f in names for f in fields) or not all(_is_number(f) for f in fields)


def _named_column(path, name, fields, header, guessed):
    """The index of the header field equal to ``name`` (after the quotes and spaces around it)."""
    if not header:
        why = (
            "its first line holds only numbers (use --header, header=True in Python, if it names the columns)"
            if guessed
            else "--no-header (header=False in Python) was given"
        )
        _fail(path, f"label column {name!r} is a name, but the file has no header row: {why}")
    matches = [i for i, field in enumerate(fields) if field == name]
    if len(matches) > 1:
        at = ", ".join(map(str, matches))
        _fail(path, f"label column {name!r} names several header columns (indices {at}); give one index")
    if not matches:
        shown = ", ".join(repr(f) for f in fields[:HEADER_NAMES_SHOWN])
        more = f" and {len(fields) - HEADER_NAMES_SHOWN} more" if len(fields) > HEADER_NAMES_SHOWN else ""
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _fail(path, f"no column named {name!r} in the header, which has {shown}{more}{hint}")
    return matches[0]


def _label_columns(path, columns, fields, header, task, guessed=False):
    """Resolve label columns, given as (possibly negative) indices or header names, to indices."""
    n_columns = len(fields)
    if task == "classification" and len(columns) != 1:
        _fail(path, "classification takes exactly one label column")
    resolved = []
    for column in columns:
        if isinstance(column, str):
            resolved.append(_named_column(path, column, fields, header, guessed))
            continue
        try:
            c = int(column)
        except (TypeError, ValueError):
            _fail(path, f"label column must be an index or a header name, got {column!r}")
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
    columns = _column_list(label_column)
    guessed = header is None
    if guessed and any(isinstance(c, str) for c in columns):
        header = _has_header(fields, columns)
    labels = _label_columns(path, columns, fields, header, task, guessed)
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
    if str(path) in _texts:  # the parsed table, its float32 copy and the splits: about 3 x 8 bytes a value
        rows, columns = _texts[str(path)].count("\n") + 1, len(labels) + len(features)
        check_memory(24 * rows * columns, f"{path}: {rows:,} rows x {columns:,} columns")
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
    label_column : int, str, or sequence of them
        Column of the class label: an index (negative counts from the end) or
        the column's name in the header row, matched exactly (after the quotes
        and spaces around the field); for regression one or more target
        columns. A name needs a header; with ``header=None`` the first line is
        taken as one when it holds a name or a field that is not a number.
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
    out = _check_conversion(path, out, overwrite, task, inputs=(test_file,))
    with _holding(path, test_file):
        return _convert_csv(path, out, label_column, header, delimiter, test_file, test_fraction, seed, task,
                            x_scale, n_classes, name, source, overwrite)  # fmt: skip


def _convert_csv(path, out, label_column, header, delimiter, test_file, test_fraction, seed, task, x_scale,
                 n_classes, name, source, overwrite):  # fmt: skip
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
            _check_attribute(path, "classes", extra["classes"])
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
