"""Tests of fastfa.datasets: the HDF5 format, its validation, streaming, writing and converters."""

import gzip
import os
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastfa import datasets
from fastfa.datasets import (
    DatasetError,
    convert_csv,
    convert_mnist,
    convert_npz,
    default_dataset_path,
    make_teacher,
    open_dataset,
    read_idx,
    write_dataset,
    write_digits,
    writer,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers


def raw_file(path, splits=None, **attrs):
    """Write an HDF5 file with h5py directly (no checks), to build bad files."""
    rng = np.random.default_rng(0)
    if splits is None:
        splits = {
            "train": (rng.standard_normal((20, 3)).astype(np.float32), rng.integers(0, 4, 20)),
            "test": (rng.standard_normal((7, 3)).astype(np.float32), rng.integers(0, 4, 7)),
        }
    base = {"name": "toy", "task": "classification", "n_classes": 4, "x_scale": 1.0, "source": "test"}
    base.update(attrs)
    with h5py.File(path, "w") as f:
        for key, value in base.items():
            if value is not None:
                f.attrs[key] = value
        for split, content in splits.items():
            group = f.create_group(split)
            for key, value in zip(("x", "y"), content, strict=True):
                if value is not None:
                    group.create_dataset(key, data=value)
    return path


def toy_classification(n_train=103, n_test=31, d=5, k=3, x_dtype=np.float32, seed=0):
    """Arrays whose first column holds the row number, so rows can be traced."""
    rng = np.random.default_rng(seed)

    def make(n, offset):
        if x_dtype == np.uint8:
            x = rng.integers(0, 256, (n, d)).astype(np.uint8)
        else:
            x = rng.standard_normal((n, d)).astype(x_dtype)
            x[:, 0] = np.arange(offset, offset + n)
        return x, rng.integers(0, k, n)

    return {"train": make(n_train, 0), "test": make(n_test, 0)}


def expect_error(path, *fragments):
    """open_dataset + full validation must raise one line containing the file name and fragments."""
    with pytest.raises(DatasetError) as info:
        with open_dataset(path) as ds:
            ds.validate(rows_per_chunk=4)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def write_idx(path, magic, array, compress):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def fake_mnist(directory, n_train=12, n_test=5, compress=True, rows=4, cols=3):
    rng = np.random.default_rng(1)
    directory.mkdir(exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, rows, cols)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte", 0x803, images, compress)
        write_idx(directory / f"{split}-labels-idx1-ubyte", 0x801, labels, compress)
        data[split] = (images, labels)
    return data


# ------------------------------------------------------------- round trips


def test_round_trip_float_classification(tmp_path):
    splits = toy_classification()
    out = write_dataset(tmp_path / "toy.h5", splits, name="toy", task="classification", source="made up")
    with open_dataset(out) as ds:
        assert (ds.name, ds.task, ds.n_classes, ds.n_features, ds.n_outputs) == (
            "toy",
            "classification",
            3,
            5,
            3,
        )
        assert ds.x_scale == 1.0 and ds.source == "made up" and ds.splits == ("train", "test")
        for name in ("train", "test"):
            x, y = ds.split(name).load()
            assert x.dtype == np.float32 and y.dtype == np.int64
            np.testing.assert_array_equal(x, splits[name][0])
            np.testing.assert_array_equal(y, splits[name][1])
        x64, _ = ds.split("train").load(dtype="float64")
        assert x64.dtype == np.float64
        assert "toy" in ds.describe() and "train 103" in ds.describe()
    assert ds.closed


def test_round_trip_regression_with_valid_split(tmp_path):
    rng = np.random.default_rng(2)
    splits = {
        s: (rng.standard_normal((n, 4)), rng.standard_normal((n, 2)))
        for s, n in (("train", 30), ("valid", 9), ("test", 11))
    }
    out = write_dataset(tmp_path / "reg.h5", splits, name="reg", task="regression")
    with open_dataset(out) as ds:
        assert ds.task == "regression" and ds.n_classes is None and ds.n_outputs == 2
        assert ds.splits == ("train", "valid", "test")
        x, y = ds["valid"].load(dtype="float64")
        np.testing.assert_array_equal(x, splits["valid"][0])
        np.testing.assert_array_equal(y, splits["valid"][1])
        assert "valid" in ds and len(ds["test"]) == 11


def test_regression_1d_targets_read_as_one_column(tmp_path):
    x = np.ones((6, 2), np.float32)
    out = write_dataset(
        tmp_path / "r.h5",
        {"train": (x, np.arange(6.0)), "test": (x, np.arange(6.0))},
        name="r",
        task="regression",
    )
    with open_dataset(out) as ds:
        assert ds.n_outputs == 1
        assert ds.split("train").load()[1].shape == (6, 1)


def test_uint8_scaled_when_read(tmp_path):
    splits = toy_classification(x_dtype=np.uint8)
    out = write_dataset(tmp_path / "u8.h5", splits, name="u8", task="classification", x_scale=1 / 255)
    with open_dataset(out) as ds:
        split = ds.split("train")
        assert split.x_dtype == np.uint8
        x, _ = split.load()
        np.testing.assert_allclose(x, splits["train"][0] / 255.0, rtol=1e-6)
        chunks = np.concatenate([c for c, _ in split.iter_chunks(10)])
        np.testing.assert_array_equal(chunks, x)
        raw_x, _ = split.read_raw()
        np.testing.assert_array_equal(raw_x, splits["train"][0])


def test_uint8_needs_x_scale(tmp_path):
    splits = toy_classification(x_dtype=np.uint8)
    with pytest.raises(DatasetError, match="x_scale"):
        write_dataset(tmp_path / "u8.h5", splits, name="u8", task="classification")
    raw_file(tmp_path / "noscale.h5", {s: (x, y) for s, (x, y) in splits.items()}, n_classes=3, x_scale=None)
    expect_error(tmp_path / "noscale.h5", "missing attribute 'x_scale'")


def test_labels_stored_compactly_and_read_as_int64(tmp_path):
    out = write_dataset(tmp_path / "t.h5", toy_classification(), name="t", task="classification")
    with h5py.File(out) as f:
        assert f["train/y"].dtype == np.uint8
        assert f["train/x"].compression == "gzip" and f["train/x"].chunks is not None
    with open_dataset(out) as ds:
        assert ds.split("train").load()[1].dtype == np.int64


def test_float_labels_with_integer_values_accepted_by_writer(tmp_path):
    x = np.zeros((4, 2), np.float32)
    out = write_dataset(
        tmp_path / "f.h5",
        {"train": (x, [0.0, 1.0, 2.0, 1.0]), "test": (x, [1.0, 0, 0, 2])},
        name="f",
        task="classification",
    )
    with open_dataset(out) as ds:
        assert ds.n_classes == 3
    with pytest.raises(DatasetError, match="integers"):
        write_dataset(
            tmp_path / "g.h5",
            {"train": (x, [0.5, 1, 2, 1]), "test": (x, [1, 0, 0, 2])},
            name="g",
            task="classification",
        )


# ------------------------------------------------------------- validation


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello, this is not HDF5\n")
    expect_error(path, "not an HDF5 file")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    expect_error(empty, "not an HDF5 file")


def test_missing_file_and_directory(tmp_path):
    expect_error(tmp_path / "nope.h5", "no such file")
    with pytest.raises(DatasetError, match="directory"):
        open_dataset(tmp_path)


def test_truncated_file(tmp_path):
    path = write_dataset(tmp_path / "t.h5", toy_classification(n_train=2000), name="t", task="classification")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, f"truncated HDF5 file ({len(data) // 2} of {len(data)} bytes)")


def test_missing_group(tmp_path):
    path = raw_file(tmp_path / "g.h5", {"train": toy_classification()["train"]}, n_classes=3)
    expect_error(path, "missing group 'test'")


def test_missing_dataset(tmp_path):
    x = np.zeros((5, 2), np.float32)
    path = raw_file(tmp_path / "d.h5", {"train": (x, None), "test": (x, np.zeros(5, int))})
    expect_error(path, "missing dataset 'train/y'")


def test_x_not_2d(tmp_path):
    path = raw_file(
        tmp_path / "x.h5",
        {
            "train": (np.zeros(5, np.float32), np.zeros(5, int)),
            "test": (np.zeros((5, 1), np.float32), np.zeros(5, int)),
        },
    )
    expect_error(path, "train/x is not 2-D")


def test_length_mismatch(tmp_path):
    path = raw_file(
        tmp_path / "l.h5",
        {
            "train": (np.zeros((5, 2), np.float32), np.zeros(4, int)),
            "test": (np.zeros((5, 2), np.float32), np.zeros(5, int)),
        },
    )
    expect_error(path, "x and y lengths differ", "5", "4")


def test_empty_split(tmp_path):
    path = raw_file(
        tmp_path / "e.h5",
        {
            "train": (np.zeros((5, 2), np.float32), np.zeros(5, int)),
            "test": (np.zeros((0, 2), np.float32), np.zeros(0, int)),
        },
    )
    expect_error(path, "split 'test' is empty")


def test_bad_x_dtype(tmp_path):
    path = raw_file(
        tmp_path / "b.h5",
        {
            "train": (np.zeros((5, 2), np.int32), np.zeros(5, int)),
            "test": (np.zeros((5, 2), np.int32), np.zeros(5, int)),
        },
    )
    expect_error(path, "train/x has dtype int32")


def test_feature_mismatch_between_splits(tmp_path):
    path = raw_file(
        tmp_path / "f.h5",
        {
            "train": (np.zeros((5, 2), np.float32), np.zeros(5, int)),
            "test": (np.zeros((5, 3), np.float32), np.zeros(5, int)),
        },
    )
    expect_error(path, "different numbers of features")


def test_nan_and_inf_reported_with_split_and_row(tmp_path):
    splits = toy_classification()
    splits["test"][0][17, 2] = np.nan
    path = raw_file(tmp_path / "n.h5", splits, n_classes=3)
    expect_error(path, "NaN or inf in x of split 'test' at row 17")
    splits = toy_classification()
    splits["train"][0][40, 1] = np.inf
    path = raw_file(tmp_path / "i.h5", splits, n_classes=3)
    with open_dataset(path) as ds:  # opening is cheap and does not read values
        with pytest.raises(DatasetError, match="split 'train' at row 40"):
            list(ds.split("train").iter_chunks(16))
        with pytest.raises(DatasetError, match="row 40"):
            ds.split("train").load()


def test_regression_target_nan(tmp_path):
    x = np.zeros((5, 2), np.float32)
    y = np.zeros((5, 2))
    y[3, 1] = np.nan
    path = raw_file(tmp_path / "r.h5", {"train": (x, y), "test": (x, np.zeros((5, 2)))}, task="regression")
    expect_error(path, "NaN or inf in y of split 'train' at row 3")


def test_label_out_of_range(tmp_path):
    splits = toy_classification()
    splits["train"][1][55] = 3
    path = raw_file(tmp_path / "o.h5", splits, n_classes=3)
    expect_error(path, "label 3 out of range 0..2 in split 'train' at row 55")


def test_negative_label(tmp_path):
    splits = toy_classification()
    splits["test"][1][4] = -1
    path = raw_file(tmp_path / "neg.h5", splits, n_classes=3)
    expect_error(path, "negative label -1 in split 'test' at row 4")


def test_float_labels_rejected(tmp_path):
    x = np.zeros((5, 2), np.float32)
    path = raw_file(tmp_path / "fl.h5", {"train": (x, np.full(5, 0.5)), "test": (x, np.zeros(5, int))})
    expect_error(path, "train/y has non-integer dtype float64")


def test_classification_labels_must_be_1d(tmp_path):
    x = np.zeros((5, 2), np.float32)
    path = raw_file(tmp_path / "2d.h5", {"train": (x, np.zeros((5, 2), int)), "test": (x, np.zeros(5, int))})
    expect_error(path, "train/y must be 1-D")


@pytest.mark.parametrize(
    ("attrs", "fragment"),
    [
        ({"task": None}, "missing attribute 'task'"),
        ({"task": "clustering"}, "attribute 'task' must be"),
        ({"n_classes": None}, "missing attribute 'n_classes'"),
        ({"n_classes": 0}, "attribute 'n_classes' must be a positive integer"),
        ({"n_classes": "ten"}, "attribute 'n_classes' must be a positive integer"),
        ({"n_classes": 2.5}, "attribute 'n_classes' must be a positive integer"),
        ({"x_scale": -1.0}, "attribute 'x_scale' must be a finite number > 0"),
        ({"x_scale": np.nan}, "attribute 'x_scale'"),
        ({"x_scale": "big"}, "attribute 'x_scale'"),
        ({"name": 3}, "attribute 'name' must be a string"),
    ],
)
def test_bad_attributes(tmp_path, attrs, fragment):
    path = raw_file(tmp_path / "a.h5", **attrs)
    expect_error(path, fragment)


def test_optional_attributes_default(tmp_path):
    path = raw_file(tmp_path / "plain.h5", name=None, source=None, x_scale=None)
    with open_dataset(path) as ds:
        assert ds.name == "plain" and ds.source == "" and ds.x_scale == 1.0


def test_unknown_split_and_closed(tmp_path):
    path = write_dataset(tmp_path / "t.h5", toy_classification(), name="t", task="classification")
    ds = open_dataset(path)
    with pytest.raises(DatasetError, match="no split 'valid'"):
        ds.split("valid")
    split = ds.split("train")
    ds.close()
    ds.close()
    assert "closed" in repr(ds)
    with pytest.raises(DatasetError, match="closed"):
        split.load()


# --------------------------------------------------------------- streaming


def rows_of(chunks):
    return np.concatenate([x[:, 0] for x, _ in chunks]).astype(np.int64)


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 16, 103, 500])
def test_iter_chunks_in_order(tmp_path, rows_per_chunk):
    splits = toy_classification()
    path = write_dataset(tmp_path / "s.h5", splits, name="s", task="classification")
    with open_dataset(path) as ds:
        chunks = list(ds.split("train").iter_chunks(rows_per_chunk))
    assert all(len(x) <= rows_per_chunk for x, _ in chunks)
    assert len(chunks) == -(-103 // rows_per_chunk)
    np.testing.assert_array_equal(rows_of(chunks), np.arange(103))
    np.testing.assert_array_equal(np.concatenate([y for _, y in chunks]), splits["train"][1])


@pytest.mark.parametrize("rows_per_chunk", [1, 10, 16, 103, 500])
def test_iter_chunks_shuffled_covers_every_row_once(tmp_path, rows_per_chunk):
    splits = toy_classification()
    path = write_dataset(tmp_path / "s.h5", splits, name="s", task="classification")
    with open_dataset(path) as ds:
        split = ds.split("train")
        chunks = list(split.iter_chunks(rows_per_chunk, rng=np.random.default_rng(5)))
        again = list(split.iter_chunks(rows_per_chunk, rng=np.random.default_rng(5)))
        other = list(split.iter_chunks(rows_per_chunk, rng=np.random.default_rng(6)))
    rows = rows_of(chunks)
    np.testing.assert_array_equal(np.sort(rows), np.arange(103))
    assert len(chunks) == -(-103 // rows_per_chunk)
    assert all(len(x) <= rows_per_chunk for x, _ in chunks)
    # labels travel with their rows
    np.testing.assert_array_equal(np.concatenate([y for _, y in chunks]), splits["train"][1][rows])
    np.testing.assert_array_equal(rows_of(again), rows)  # same seed, same order
    if rows_per_chunk > 1:
        assert not np.array_equal(rows, np.arange(103))
        assert not np.array_equal(rows_of(other), rows)


def test_chunk_ranges_are_contiguous_and_partition_the_rows(tmp_path):
    path = write_dataset(tmp_path / "s.h5", toy_classification(), name="s", task="classification")
    with open_dataset(path) as ds:
        split = ds.split("train")
        for seed in range(10):
            chunks = split.chunk_ranges(10, np.random.default_rng(seed))
            covered = []
            for ranges in chunks:
                assert 1 <= len(ranges) <= 2
                for start, stop in ranges:
                    assert 0 <= start < stop <= 103
                    covered.extend(range(start, stop))
            assert sorted(covered) == list(range(103))
            # a block shuffle: rows inside a chunk are consecutive in the ring of rows
            for ranges in chunks:
                rows = [r for start, stop in ranges for r in range(start, stop)]
                assert all((b - a) % 103 == 1 for a, b in zip(rows[:-1], rows[1:], strict=True))


def test_iter_chunks_int_seed_and_bad_arguments(tmp_path):
    path = write_dataset(tmp_path / "s.h5", toy_classification(), name="s", task="classification")
    with open_dataset(path) as ds:
        split = ds.split("train")
        a = rows_of(split.iter_chunks(8, rng=3))
        b = rows_of(split.iter_chunks(8, rng=np.random.default_rng(3)))
        np.testing.assert_array_equal(a, b)
        with pytest.raises(ValueError, match="rows_per_chunk"):
            split.iter_chunks(0)
        with pytest.raises(ValueError, match="float32 or float64"):
            split.iter_chunks(8, dtype="int32")
        assert next(split.iter_chunks(8, dtype="float64"))[0].dtype == np.float64


def test_read_rows_and_in_memory_match_the_file(tmp_path):
    splits = toy_classification(x_dtype=np.uint8)
    path = write_dataset(tmp_path / "u.h5", splits, name="u", task="classification", x_scale=0.5)
    with open_dataset(path) as ds:
        split = ds.split("train")
        memory = split.in_memory()
        assert isinstance(memory, datasets.ArraySplit) and memory.n_rows == split.n_rows == len(memory)
        for start, stop in ((0, 10), (17, 103), (50, 50)):
            for a, b in zip(split.read(start, stop), memory.read(start, stop), strict=True):
                np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(split.read(3, 5)[0], splits["train"][0][3:5] * 0.5)
        assert memory.read(0, 4, dtype="float64")[0].dtype == np.float64
        streamed = list(split.iter_chunks(16, rng=7))
        remembered = list(memory.iter_chunks(16, rng=7))
        for (xa, ya), (xb, yb) in zip(streamed, remembered, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
        with pytest.raises(ValueError, match="out of range"):
            split.read(100, 104)
        with pytest.raises(ValueError, match="out of range"):
            memory.read(5, 4)


def test_read_checks_values(tmp_path):
    splits = toy_classification()
    splits["train"][1][9] = 7
    path = raw_file(tmp_path / "bad.h5", splits, n_classes=3)
    with open_dataset(path) as ds:
        ds.split("train").read(0, 9)
        with pytest.raises(DatasetError, match="label 7 out of range 0..2 in split 'train' at row 9"):
            ds.split("train").read(5, 20)
        with pytest.raises(DatasetError, match="row 9"):
            ds.split("train").in_memory()


def test_regression_chunks(tmp_path):
    path = make_teacher("linear", tmp_path / "lin.h5", n_train=50, n_test=10, seed=1)
    with open_dataset(path) as ds:
        chunks = list(ds.split("train").iter_chunks(16, rng=0))
    assert [len(x) for x, _ in chunks].count(16) == 3
    assert all(y.shape[1] == 10 and y.dtype == np.float32 for _, y in chunks)


# ------------------------------------------------------------------ writing


def test_refuses_to_overwrite(tmp_path):
    path = write_dataset(tmp_path / "t.h5", toy_classification(), name="t", task="classification")
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="already exists"):
        write_dataset(path, toy_classification(seed=1), name="t", task="classification")
    assert path.read_bytes() == before
    write_dataset(path, toy_classification(seed=1), name="t2", task="classification", overwrite=True)
    with open_dataset(path) as ds:
        assert ds.name == "t2"


class Boom(RuntimeError):
    pass


def test_failing_write_leaves_nothing(tmp_path, monkeypatch):
    original = writer._write_split

    def failing(f, name, x, y):
        original(f, name, x, y)
        if name == "test":
            raise Boom("disk on fire")

    monkeypatch.setattr(writer, "_write_split", failing)
    with pytest.raises(Boom):
        write_dataset(tmp_path / "t.h5", toy_classification(), name="t", task="classification")
    assert list(tmp_path.iterdir()) == []


def test_failing_overwrite_keeps_old_file(tmp_path, monkeypatch):
    path = write_dataset(tmp_path / "t.h5", toy_classification(), name="t", task="classification")
    before = path.read_bytes()

    def failing(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_split", failing)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(path, toy_classification(seed=3), name="t", task="classification", overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda s: s.pop("test"), "missing split 'test'"),
        (lambda s: s.update(extra=s["train"]), "unknown split 'extra'"),
        (lambda s: s.update(train=(s["train"][0][:, :2], s["train"][1])), "different numbers of features"),
        (lambda s: s.update(train=(s["train"][0], s["train"][1][:-1])), "lengths differ"),
        (lambda s: s["train"][0].__setitem__((3, 3), np.nan), "NaN or inf in x of split 'train' at row 3"),
        (lambda s: s["test"][1].__setitem__(2, -2), "negative label -2 in split 'test' at row 2"),
        (lambda s: s.update(test=(s["test"][0].astype(np.int16), s["test"][1])), "test/x has dtype int16"),
    ],
)
def test_writer_validates(tmp_path, change, fragment):
    splits = toy_classification()
    change(splits)
    with pytest.raises(DatasetError, match=fragment.replace("(", r"\(")) as info:
        write_dataset(tmp_path / "bad.h5", splits, name="bad", task="classification")
    assert str(tmp_path / "bad.h5") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_writer_checks_n_classes_and_task(tmp_path):
    with pytest.raises(DatasetError, match="label 2 out of range 0..1"):
        write_dataset(tmp_path / "a.h5", toy_classification(), name="a", task="classification", n_classes=2)
    with pytest.raises(DatasetError, match="task must be"):
        write_dataset(tmp_path / "a.h5", toy_classification(), name="a", task="ranking")
    with pytest.raises(DatasetError, match="does not exist"):
        write_dataset(tmp_path / "no" / "a.h5", toy_classification(), name="a", task="classification")


# ---------------------------------------------------------------- the digits


def test_default_dataset():
    path = default_dataset_path()
    assert path.name == "digits.h5" and path.parent.name == "data"
    with open_dataset(path) as ds:
        assert (ds.name, ds.task, ds.n_classes, ds.n_features) == ("digits", "classification", 10, 64)
        assert (ds.split("train").n_rows, ds.split("test").n_rows) == (1258, 539)
        assert "Alpaydin" in ds.source and "CC BY 4.0" in ds.source
        assert ds.split("train").x_dtype == np.uint8 and ds.x_scale == 1 / 16
        x, y = ds.split("train").load()
        assert x.min() == 0.0 and x.max() == 1.0 and set(np.unique(y)) == set(range(10))
        ds.validate()
    assert path.stat().st_size < 200_000


def test_write_digits_copies_bundled(tmp_path):
    out = write_digits(tmp_path / "d.h5")
    with open_dataset(out) as a, open_dataset(default_dataset_path()) as b:
        assert a.describe() == b.describe() and a.source == b.source
        for s in ("train", "test"):
            for u, v in zip(a.split(s).read_raw(), b.split(s).read_raw(), strict=True):
                np.testing.assert_array_equal(u, v)


@pytest.mark.skipif(not (REPO / "data" / "digits.csv.gz").exists(), reason="source tree's data/ not present")
def test_bundled_digits_regenerates_from_recipe(tmp_path):
    out = write_digits(tmp_path / "d.h5", csv=REPO / "data" / "digits.csv.gz")
    assert out.read_bytes() == default_dataset_path().read_bytes()


# --------------------------------------------------------------------- mnist


@pytest.mark.parametrize("compress", [True, False])
def test_convert_mnist_synthetic(tmp_path, compress):
    raw = fake_mnist(tmp_path / "m", compress=compress)
    out = convert_mnist(tmp_path / "m", tmp_path / "m.h5")
    with open_dataset(out) as ds:
        assert ds.n_features == 12 and ds.n_classes == 10 and ds.x_scale == pytest.approx(1 / 255)
        for split, key in (("train", "train"), ("test", "t10k")):
            x, y = ds.split(split).read_raw()
            np.testing.assert_array_equal(x, raw[key][0].reshape(len(x), -1))
            np.testing.assert_array_equal(y, raw[key][1])
        assert "MNIST" in ds.source


def test_convert_mnist_wrong_magic(tmp_path):
    fake_mnist(tmp_path / "m")
    labels = np.zeros(12, np.uint8)
    write_idx(tmp_path / "m" / "train-labels-idx1-ubyte", 0x803, labels, True)
    with pytest.raises(DatasetError, match="bad IDX magic number 0x00000803, expected 0x00000801") as info:
        convert_mnist(tmp_path / "m", tmp_path / "m.h5")
    assert "train-labels-idx1-ubyte.gz" in str(info.value)
    assert not (tmp_path / "m.h5").exists()


def test_convert_mnist_count_mismatch(tmp_path):
    fake_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte", 0x801, np.zeros(4, np.uint8), True)
    with pytest.raises(DatasetError, match="has 5 images but t10k-labels-idx1-ubyte.gz has 4 labels"):
        convert_mnist(tmp_path / "m", tmp_path / "m.h5")


def test_convert_mnist_truncated_and_missing(tmp_path):
    fake_mnist(tmp_path / "m", compress=False)
    path = tmp_path / "m" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetError, match="IDX data truncated"):
        convert_mnist(tmp_path / "m", tmp_path / "m.h5")
    path.unlink()
    with pytest.raises(DatasetError, match="missing MNIST file train-images-idx3-ubyte"):
        convert_mnist(tmp_path / "m", tmp_path / "m.h5")
    bad_gz = tmp_path / "m" / "train-images-idx3-ubyte.gz"
    bad_gz.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="cannot read"):
        convert_mnist(tmp_path / "m", tmp_path / "m.h5")


def test_read_idx_header_checks(tmp_path):
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="too short"):
        read_idx(path, 0x801)
    path.write_bytes(struct.pack(">ii", 0x803, 2))
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(path, 0x803)


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared MNIST files not present")
def test_convert_real_mnist(tmp_path):
    out = convert_mnist(SHARED_DATA / "mnist", tmp_path / "mnist.h5")
    with open_dataset(out) as ds:
        assert (ds.split("train").n_rows, ds.split("test").n_rows, ds.n_features) == (60000, 10000, 784)
        x, y = ds.split("test").load()
        assert abs(float(x.mean()) - 0.1325) < 0.01  # test-set pixel mean
        assert np.bincount(y).tolist()[:2] == [980, 1135]
        n = sum(len(c) for c, _ in ds.split("train").iter_chunks(8192, rng=0))
        assert n == 60000


# ----------------------------------------------------------------------- csv


def write_csv(path, rows, header=None, compress=False):
    text = "".join(",".join(map(str, r)) + "\n" for r in ([header] if header else []) + rows)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def csv_rows(n=50, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        [round(float(v), 4) for v in rng.standard_normal(d)] + [int(rng.integers(0, 3))] for _ in range(n)
    ]


@pytest.mark.parametrize("compress", [False, True])
def test_convert_csv_fraction_split(tmp_path, compress):
    rows = csv_rows()
    src = write_csv(tmp_path / "toy.csv", rows, header=["a", "b", "c", "label"], compress=compress)
    out = convert_csv(src, tmp_path / "toy.h5", test_fraction=0.2, seed=1)
    with open_dataset(out) as ds:
        assert ds.name == "toy" and ds.n_features == 3 and ds.n_classes == 3
        xtr, ytr = ds.split("train").load(dtype="float64")
        xte, yte = ds.split("test").load(dtype="float64")
    assert (len(xtr), len(xte)) == (40, 10)
    table = np.array(rows)
    order = np.random.default_rng(1).permutation(50)
    np.testing.assert_allclose(xte, table[order[:10], :3], rtol=1e-6)
    np.testing.assert_array_equal(ytr, table[order[10:], 3])


def test_convert_csv_test_file_label_first_no_header(tmp_path):
    train = write_csv(tmp_path / "tr.csv", [[r[-1], *r[:-1]] for r in csv_rows(20)])
    test = write_csv(tmp_path / "te.csv", [[r[-1], *r[:-1]] for r in csv_rows(8, seed=1)])
    out = convert_csv(train, tmp_path / "o.h5", label_column=0, test_file=test)
    with open_dataset(out) as ds:
        assert (ds.split("train").n_rows, ds.split("test").n_rows, ds.n_features) == (20, 8, 3)


def test_convert_csv_string_labels(tmp_path):
    rows = [[1.0, 2.0, "setosa"], [1.5, 2.5, "virginica"], [0.5, 1.0, "setosa"], [2.0, 0.1, "versicolor"]] * 5
    out = convert_csv(write_csv(tmp_path / "iris.csv", rows), tmp_path / "iris.h5", test_fraction=0.25)
    with open_dataset(out) as ds:
        assert ds.classes == ("setosa", "versicolor", "virginica") and ds.n_classes == 3


def test_convert_csv_regression_and_uint8(tmp_path):
    rows = [[i % 256, (3 * i) % 256, i * 0.5, -i * 0.25] for i in range(40)]
    src = write_csv(tmp_path / "r.csv", rows)
    out = convert_csv(src, tmp_path / "r.h5", label_column=[-2, -1], task="regression", x_scale=1 / 255)
    with open_dataset(out) as ds:
        assert ds.task == "regression" and ds.n_outputs == 2 and ds.split("train").x_dtype == np.uint8
    bad = write_csv(tmp_path / "bad.csv", [[300, 1, 0.5], [1, 2, 0.1]] * 5)
    with pytest.raises(DatasetError, match="not an integer in 0..255"):
        convert_csv(bad, tmp_path / "bad.h5", x_scale=1 / 255, task="regression")


@pytest.mark.parametrize(
    ("rows", "kwargs", "fragment"),
    [
        ([[1, 2, 0], [3, "", 1]] * 3, {}, "line 2, column 2: '' is not a number"),
        ([[1, 2, 0], [3, "x", 1]] * 3, {}, "line 2, column 2: 'x' is not a number"),
        ([[1, 2, 0], [3, 4, 1.5]] * 3, {}, "label 1.5 on line 2 is not a non-negative integer"),
        ([[1, 2, 0], [3, 4, -1]] * 3, {}, "label -1 on line 2"),
        ([[1, 2, 0], [3, 4]] * 3, {}, "line 2 has 2 fields, expected 3"),
        ([[1, 2, 0]] * 6, {"label_column": 5}, "label column 5 out of range for 3 columns"),
        ([[1, 2, 0]] * 6, {"test_fraction": 0.01}, "leaves an empty split"),
        ([[1, 2, 0], [3, "nan", 1]] * 3, {}, "NaN or inf feature value on line 2"),
    ],
)
def test_convert_csv_errors(tmp_path, rows, kwargs, fragment):
    src = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DatasetError, match=fragment.replace(".", r"\.")) as info:
        convert_csv(src, tmp_path / "bad.h5", **kwargs)
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "bad.h5").exists()


def test_convert_csv_label_column_by_name(tmp_path):
    rows = [[r[-1], *r[:-1]] for r in csv_rows(30)]  # the label first
    src = write_csv(tmp_path / "toy.csv", rows, header=['"kind"', "a", "b", "c"])
    for header in (None, True):
        out = convert_csv(src, tmp_path / "n.h5", label_column="kind", header=header, overwrite=True)
        by_index = convert_csv(src, tmp_path / "i.h5", label_column=0, overwrite=True)
        with open_dataset(out) as ds, open_dataset(by_index) as expected:
            assert ds.n_features == 3 and ds.n_classes == 3
            for split in ("train", "test"):
                for got, want in zip(ds.split(split).load(), expected.split(split).load(), strict=True):
                    np.testing.assert_array_equal(got, want)
    test = write_csv(tmp_path / "te.csv", rows[:8], header=["kind", "a", "b", "c"])
    out = convert_csv(src, tmp_path / "t.h5", label_column=["kind"], test_file=test)
    with open_dataset(out) as ds:
        assert (ds.split("train").n_rows, ds.split("test").n_rows) == (30, 8)


def test_convert_csv_regression_targets_by_name_and_index(tmp_path):
    rows = [[i * 0.5, i % 7, i * 0.25, -i * 1.0] for i in range(40)]
    src = write_csv(tmp_path / "r.csv", rows, header=["x1", "x2", "y1", "y2"])
    for columns in (["y1", "y2"], ["y1", -1], [2, "y2"], [-2, -1]):
        out = convert_csv(src, tmp_path / "r.h5", label_column=columns, task="regression", overwrite=True)
        with open_dataset(out) as ds:
            x, y = ds.split("train").load("float64")
        assert ds.n_features == 2 and ds.n_outputs == 2
        np.testing.assert_allclose(y, x[:, :1] * np.array([[0.5, -2.0]]))


@pytest.mark.parametrize(
    ("header_row", "rows", "kwargs", "fragment"),
    [
        (
            ["a", "b", "label"],
            csv_rows(10, d=2),
            {"label_column": "Label"},
            "no column named 'Label' in the header, which has 'a', 'b', 'label'; did you mean 'label'?",
        ),
        (
            None,
            csv_rows(10, d=2),
            {"label_column": "label"},
            "label column 'label' is a name, but the file has no header row: "
            "its first line holds only numbers",
        ),
        (
            ["a", "b", "label"],
            csv_rows(10, d=2),
            {"label_column": "label", "header": False},
            "label column 'label' is a name, but the file has no header row: --no-header",
        ),
        (
            ["a", "y", "y"],
            csv_rows(10, d=2),
            {"label_column": "y"},
            "label column 'y' names several header columns (indices 1, 2); give one index",
        ),
        (
            ["a", "b", "label"],
            csv_rows(10, d=2),
            {"label_column": ["label", -1], "task": "regression"},
            "bad label columns ['label', -1] for 3 columns",
        ),
        (["a", "b", "label"], csv_rows(10, d=2), {"label_column": 1.5j}, "an index or a header name"),
    ],
)
def test_convert_csv_label_name_errors(tmp_path, header_row, rows, kwargs, fragment):
    src = write_csv(tmp_path / "bad.csv", rows, header=header_row)
    with pytest.raises(DatasetError) as info:
        convert_csv(src, tmp_path / "bad.h5", **kwargs)
    message = str(info.value)
    assert fragment in message and message.startswith(str(src)) and "\n" not in message
    assert not (tmp_path / "bad.h5").exists()


def test_convert_csv_label_name_lists_at_most_twenty_names(tmp_path):
    src = write_csv(tmp_path / "wide.csv", [list(range(30))] * 6, header=[f"f{i}" for i in range(30)])
    with pytest.raises(DatasetError, match=r"'f19' and 10 more$"):
        convert_csv(src, tmp_path / "w.h5", label_column="label")


def test_convert_csv_empty(tmp_path):
    (tmp_path / "e.csv").write_text("\n")
    with pytest.raises(DatasetError, match="is empty"):
        convert_csv(tmp_path / "e.csv", tmp_path / "e.h5")


# ----------------------------------------------------------------------- npz


def test_convert_npz(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "a.npz"
    np.savez(
        src,
        x_train=rng.integers(0, 256, (30, 4, 4), dtype=np.uint8),
        y_train=rng.integers(0, 5, 30),
        x_test=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8),
        y_test=np.eye(5)[rng.integers(0, 5, 10)],
        x_valid=rng.integers(0, 256, (6, 4, 4), dtype=np.uint8),
        y_valid=np.arange(6.0) % 5,
    )
    out = convert_npz(src, tmp_path / "a.h5")
    with open_dataset(out) as ds:
        assert ds.splits == ("train", "valid", "test") and ds.n_features == 16 and ds.n_classes == 5
        assert ds.x_scale == pytest.approx(1 / 255) and ds.name == "a"


def test_convert_npz_errors(tmp_path):
    src = tmp_path / "b.npz"
    np.savez(src, x_train=np.zeros((3, 2)), y_train=np.zeros(3), x_test=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match="missing array 'y_test'"):
        convert_npz(src, tmp_path / "b.h5")
    np.savez(src, x_train=np.zeros((3, 2)), y_train=[0, -1, 0], x_test=np.zeros((3, 2)), y_test=[0, 1, 0])
    with pytest.raises(DatasetError, match="negative label -1 at row 1"):
        convert_npz(src, tmp_path / "b.h5")
    np.savez(src, x_train=np.zeros((3, 2)), y_train=[0, 1.5, 0], x_test=np.zeros((3, 2)), y_test=[0, 1, 0])
    with pytest.raises(DatasetError, match="non-integer label"):
        convert_npz(src, tmp_path / "b.h5")
    (tmp_path / "c.npz").write_text("garbage")
    with pytest.raises(DatasetError, match="not an .npz archive"):
        convert_npz(tmp_path / "c.npz", tmp_path / "c.h5")
    np.savez(
        src, x_train=np.array([{"a": 1}], dtype=object), y_train=[0], x_test=np.zeros((1, 2)), y_test=[0]
    )
    with pytest.raises(DatasetError, match="pickled"):
        convert_npz(src, tmp_path / "b.h5")


# ------------------------------------------------------------------- teacher


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_make_teacher(tmp_path, kind):
    out = make_teacher(kind, tmp_path / "t.h5", n_train=200, n_test=50, seed=4)
    with open_dataset(out) as ds:
        assert (ds.task, ds.n_features, ds.n_outputs) == ("regression", 30, 10)
        x, y = ds.split("train").load(dtype="float64")
    with h5py.File(out) as f:
        params = {k: f["teacher"][k][()] for k in f["teacher"]}
        assert f["teacher"].attrs["kind"] == kind and f["teacher"].attrs["seed"] == 4
    if kind == "linear":
        assert params["T"].shape == (10, 30) and np.abs(params["T"]).max() <= 1
    else:
        assert [params[f"W{i}"].shape for i in (1, 2, 3)] == [(30, 20), (20, 10), (10, 10)]
    np.testing.assert_allclose(y, datasets.teacher_outputs(kind, params, x), rtol=1e-5, atol=1e-5)
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.1
    again = make_teacher(kind, tmp_path / "u.h5", n_train=200, n_test=50, seed=4)
    assert again.read_bytes() == out.read_bytes()
    with pytest.raises(DatasetError, match="teacher kind"):
        make_teacher("cubic", tmp_path / "v.h5")


def test_no_stray_temp_files(tmp_path):
    make_teacher("linear", tmp_path / "t.h5", n_train=10, n_test=5)
    write_digits(tmp_path / "d.h5")
    assert sorted(os.listdir(tmp_path)) == ["d.h5", "t.h5"]
