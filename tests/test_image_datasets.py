"""Tests of image datasets: ``x`` stored N x H x W or N x C x H x W, read back as flat rows."""

import json
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from fastfa.cli import main
from fastfa.datasets import DatasetError, convert_mnist, convert_npz, open_dataset, write_dataset
from tests.test_cli_data import assert_one_line_error
from tests.test_datasets import expect_error, fake_mnist, raw_file

# ---------------------------------------------------------------- helpers


def images(n, shape, dtype=np.float32, seed=0):
    """``n`` images of ``shape`` whose first value holds the row number, so rows can be traced."""
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, (n, *shape)).astype(np.uint8)
    x = rng.standard_normal((n, *shape)).astype(dtype)
    x.reshape(n, -1)[:, 0] = np.arange(n)
    return x


def image_splits(shape, n_train=23, n_test=9, dtype=np.float32, k=3):
    rng = np.random.default_rng(1)
    return {
        "train": (images(n_train, shape, dtype, seed=2), rng.integers(0, k, n_train)),
        "test": (images(n_test, shape, dtype, seed=3), rng.integers(0, k, n_test)),
    }


def write(path, splits, **kwargs):
    kwargs = {"name": "img", "task": "classification", **kwargs}
    if any(x.dtype == np.uint8 for x, _ in splits.values()):
        kwargs.setdefault("x_scale", 1 / 255)
    return write_dataset(path, splits, **kwargs)


def flat(x):
    return x.reshape(len(x), -1)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="fastfa", catch_exceptions=False)


def stored(path):
    """The stored shapes of ``x`` and the root attribute ``image_shape`` (or None)."""
    with h5py.File(path, "r") as f:
        shapes = {s: f[s]["x"].shape for s in ("train", "valid", "test") if s in f}
        attr = f.attrs.get("image_shape")
        return shapes, None if attr is None else attr.tolist()


def only_files(directory, *names):
    assert sorted(os.listdir(directory)) == sorted(names)


# ------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("shape", "image_shape"),
    [((5, 4), (1, 5, 4)), ((3, 5, 4), (3, 5, 4)), ((1, 6, 6), (1, 6, 6))],
)
def test_images_round_trip_as_flat_rows(tmp_path, shape, image_shape):
    splits = image_splits(shape)
    path = write(tmp_path / "i.h5", splits)
    shapes, attr = stored(path)
    assert shapes == {s: (len(x), *shape) for s, (x, _) in splits.items()} and attr == list(image_shape)
    with open_dataset(path) as ds:
        assert ds.image_shape == image_shape and all(type(d) is int for d in ds.image_shape)
        assert ds.n_features == int(np.prod(shape))
        for name, (x, y) in splits.items():
            split = ds.split(name)
            assert split.n_features == ds.n_features
            got_x, got_y = split.load()
            np.testing.assert_array_equal(got_x, flat(x))
            np.testing.assert_array_equal(got_y, y)
            np.testing.assert_array_equal(split.read(3, 7)[0], flat(x)[3:7])
            assert split.read(4, 4)[0].shape == (0, ds.n_features)
            np.testing.assert_array_equal(split.read_raw()[0], flat(x))
            np.testing.assert_array_equal(split.in_memory().read(2, 5)[0], flat(x)[2:5])
            assert split.load("float64")[0].dtype == np.float64
        assert f"{ds.n_features} features ({'x'.join(map(str, image_shape))} images)" in ds.describe()


@pytest.mark.parametrize("rows_per_chunk", [1, 4, 7, 100])
def test_image_chunks_are_flat_rows(tmp_path, rows_per_chunk):
    splits = image_splits((2, 3, 3), n_train=30)
    path = write(tmp_path / "c.h5", splits)
    x = flat(splits["train"][0])
    with open_dataset(path) as ds:
        split = ds.split("train")
        chunks = list(split.iter_chunks(rows_per_chunk))
        assert all(c.shape[1] == 18 and len(c) <= rows_per_chunk for c, _ in chunks)
        np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]), x)
        shuffled = np.concatenate([c for c, _ in split.iter_chunks(rows_per_chunk, rng=5)])
        assert sorted(shuffled[:, 0].tolist()) == list(range(30))
        np.testing.assert_array_equal(shuffled, x[shuffled[:, 0].astype(int)])


def test_uint8_images_scaled_and_raw(tmp_path):
    splits = image_splits((1, 4, 4), dtype=np.uint8)
    path = write(tmp_path / "u.h5", splits, x_scale=1 / 255)
    with open_dataset(path) as ds:
        x, _ = ds.split("test").load()
        np.testing.assert_allclose(x, flat(splits["test"][0]) / 255, rtol=1e-6)
        raw, _ = ds.split("test").read_raw()
        assert raw.dtype == np.uint8 and raw.shape == (9, 16)
        np.testing.assert_array_equal(raw, flat(splits["test"][0]))


def test_image_storage_chunks_are_whole_consecutive_rows(tmp_path):
    splits = image_splits((3, 8, 8), n_train=500)
    path = write(tmp_path / "s.h5", splits)
    with h5py.File(path, "r") as f:
        chunks = f["train"]["x"].chunks
    assert chunks[1:] == (3, 8, 8) and 1 < chunks[0] <= 500


def test_regression_images_with_valid_split(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        name: (images(n, (2, 3, 4), np.float64, seed=n), rng.standard_normal((n, 2)))
        for name, n in (("train", 12), ("valid", 5), ("test", 6))
    }
    path = write(tmp_path / "r.h5", splits, task="regression")
    with open_dataset(path) as ds:
        assert ds.splits == ("train", "valid", "test") and ds.image_shape == (2, 3, 4)
        x, y = ds.split("valid").load("float64")
        np.testing.assert_array_equal(x, flat(splits["valid"][0]))
        np.testing.assert_allclose(y, splits["valid"][1])


def test_flat_rows_may_declare_an_image_shape(tmp_path):
    splits = image_splits((12,))
    path = write(tmp_path / "f.h5", splits, image_shape=(3, 2, 2))
    assert stored(path) == ({"train": (23, 12), "test": (9, 12)}, [3, 2, 2])
    with open_dataset(path) as ds:
        assert ds.image_shape == (3, 2, 2) and ds.n_features == 12
        np.testing.assert_array_equal(ds.split("train").load()[0], splits["train"][0])
    path = write(tmp_path / "g.h5", splits, image_shape=np.array([3, 4]))  # (H, W): one channel
    assert stored(path)[1] == [1, 3, 4]
    path = write(tmp_path / "h.h5", image_splits((1, 3, 4)), image_shape=[1, 3, 4])  # agrees with x
    assert stored(path)[1] == [1, 3, 4]


def test_old_flat_files_have_no_image_shape(tmp_path):
    path = raw_file(tmp_path / "old.h5")  # written as before: 2-D x, no attribute
    with open_dataset(path) as ds:
        assert ds.image_shape is None and ds.n_features == 3
        assert "images" not in ds.describe()
    path = write(tmp_path / "new.h5", image_splits((6,)))
    assert stored(path)[1] is None
    with open_dataset(path) as ds:
        assert ds.image_shape is None


# --------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("train_x", "fragment"),
    [
        (np.zeros(4, np.float32), "train/x is not 2-D, 3-D or 4-D (shape (4,))"),
        (np.zeros((4, 1, 2, 2, 2), np.float32), "train/x is not 2-D, 3-D or 4-D (shape (4, 1, 2, 2, 2))"),
        (np.zeros((4, 0, 3), np.float32), "train/x has a zero-sized image dimension (shape (4, 0, 3))"),
        (np.zeros((4, 1, 3, 0), np.float32), "train/x has a zero-sized image dimension"),
    ],
)
def test_writer_refuses_bad_image_arrays(tmp_path, train_x, fragment):
    splits = {"train": (train_x, np.zeros(4, int)), "test": (np.zeros((2, 1, 2, 2), np.float32), [0, 1])}
    with pytest.raises(DatasetError) as info:
        write(tmp_path / "b.h5", splits)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(tmp_path / "b.h5") in str(info.value)
    only_files(tmp_path)


@pytest.mark.parametrize(
    ("test_shape", "fragment"),
    [
        ((2, 8), "splits have different image shapes (train 1x4x4, test 2x8)"),
        ((4, 4), "splits have different image shapes (train 1x4x4, test 4x4)"),
        ((16,), "splits have different image shapes (train 1x4x4, test 16)"),
        ((1, 3, 3), "splits have different numbers of features (train 16, test 9)"),
    ],
)
def test_writer_refuses_splits_of_different_shapes(tmp_path, test_shape, fragment):
    splits = {"train": (images(5, (1, 4, 4)), np.zeros(5, int)), "test": (images(2, test_shape), [0, 1])}
    with pytest.raises(DatasetError, match=r"^.*b\.h5: ") as info:
        write(tmp_path / "b.h5", splits)
    assert fragment in str(info.value)
    only_files(tmp_path)


@pytest.mark.parametrize(
    ("shape", "image_shape", "fragment"),
    [
        ((12,), (1, 2, 2), "image_shape 1x2x2 holds 4 values, but x has 12 per row"),
        ((12,), (1, 1, 2, 6), "image_shape must be 3 positive integers (C, H, W), got (1, 1, 2, 6)"),
        ((12,), (3, -2, -2), "image_shape must be 3 positive integers"),
        ((12,), (3.0, 2.0, 2.0), "image_shape must be 3 positive integers"),
        ((12,), "3x2x2", "image_shape must be 3 positive integers"),
        ((3, 2, 2), (1, 3, 4), "image_shape 1x3x4 disagrees with x's images of 3x2x2"),
    ],
)
def test_writer_refuses_bad_image_shape_argument(tmp_path, shape, image_shape, fragment):
    with pytest.raises(DatasetError) as info:
        write(tmp_path / "b.h5", image_splits(shape), image_shape=image_shape)
    assert fragment in str(info.value) and str(tmp_path / "b.h5") in str(info.value)
    only_files(tmp_path)


def x_file(path, train_x, test_x, **attrs):
    """A file written with h5py directly, holding the given inputs."""
    splits = {"train": (train_x, np.zeros(len(train_x), int)), "test": (test_x, np.zeros(len(test_x), int))}
    return raw_file(path, splits, **attrs)


@pytest.mark.parametrize(
    ("train_shape", "test_shape", "attrs", "fragment"),
    [
        ((3, 1, 2, 2, 2), (2, 1, 2, 2, 2), {}, "train/x is not 2-D, 3-D or 4-D"),
        ((3, 2, 0), (2, 2, 0), {}, "train/x has a zero-sized image dimension"),
        ((3, 1, 4, 4), (2, 1, 2, 8), {}, "splits have different image shapes (train 1x4x4, test 1x2x8)"),
        ((3, 16), (2, 4, 4), {}, "splits have different image shapes (train 16, test 4x4)"),
        ((3, 16), (2, 16), {"image_shape": [1, 4, 2]}, "attribute 'image_shape' 1x4x2 holds 8 values"),
        ((3, 16), (2, 16), {"image_shape": [0, 4, 4]}, "attribute 'image_shape' must be 3 positive"),
        ((3, 16), (2, 16), {"image_shape": [1, 1, 4, 4]}, "attribute 'image_shape' must be 3 positive"),
        ((3, 16), (2, 16), {"image_shape": [1.0, 4.0, 4.0]}, "attribute 'image_shape' must be 3 positive"),
        ((3, 16), (2, 16), {"image_shape": "1x4x4"}, "attribute 'image_shape' must be 3 positive"),
        ((3, 16), (2, 16), {"image_shape": 16}, "attribute 'image_shape' must be 3 positive"),
        ((3, 1, 4, 4), (2, 1, 4, 4), {"image_shape": [1, 2, 8]}, "1x2x8 disagrees with x's images of 1x4x4"),
    ],
)
def test_reader_refuses_bad_image_files(tmp_path, train_shape, test_shape, attrs, fragment):
    path = x_file(
        tmp_path / "b.h5", np.zeros(train_shape, np.float32), np.zeros(test_shape, np.float32), **attrs
    )
    expect_error(path, fragment)


def test_reader_accepts_good_image_attributes(tmp_path):
    x = np.arange(3 * 16, dtype=np.float32).reshape(3, 16)
    for attr, expected in (
        ([2, 2, 4], (2, 2, 4)),
        ([4, 4], (1, 4, 4)),
        (np.array([1, 4, 4], np.uint8), (1, 4, 4)),
    ):
        path = x_file(tmp_path / "a.h5", x, x[:2], image_shape=attr)
        with open_dataset(path) as ds:
            assert ds.image_shape == expected
            np.testing.assert_array_equal(ds.split("train").load()[0], x)
    path = x_file(tmp_path / "n.h5", x.reshape(3, 4, 4), x[:2].reshape(2, 4, 4), image_shape=[1, 4, 4])
    with open_dataset(path) as ds:
        assert ds.image_shape == (1, 4, 4)
        np.testing.assert_array_equal(ds.split("train").read_raw()[0], x)


# -------------------------------------------------------------------- mnist


def test_mnist_flat_is_unchanged(tmp_path):
    raw = fake_mnist(tmp_path / "m", rows=4, cols=3)
    out = convert_mnist(tmp_path / "m", tmp_path / "m.h5")
    assert stored(out) == ({"train": (12, 12), "test": (5, 12)}, [4, 3])  # flat rows, (H, W) as before
    with open_dataset(out) as ds:
        assert ds.image_shape == (1, 4, 3)
        np.testing.assert_array_equal(ds.split("train").read_raw()[0], flat(raw["train"][0]))


def test_mnist_images(tmp_path):
    raw = fake_mnist(tmp_path / "m", rows=4, cols=3)
    out = convert_mnist(tmp_path / "m", tmp_path / "m.h5", images=True)
    assert stored(out) == ({"train": (12, 1, 4, 3), "test": (5, 1, 4, 3)}, [1, 4, 3])
    with open_dataset(out) as ds:
        assert ds.image_shape == (1, 4, 3) and ds.x_scale == pytest.approx(1 / 255)
        for split, key in (("train", "train"), ("test", "t10k")):
            x, y = ds.split(split).read_raw()
            assert x.dtype == np.uint8
            np.testing.assert_array_equal(x, flat(raw[key][0]))
            np.testing.assert_array_equal(y, raw[key][1])


@pytest.mark.parametrize("images", [True, False])  # --pad implies --images
def test_mnist_pad_32(tmp_path, images):
    raw = fake_mnist(tmp_path / "m", n_train=6, n_test=3, rows=28, cols=28)
    out = convert_mnist(tmp_path / "m", tmp_path / "m.h5", images=images, pad=32)
    assert stored(out) == ({"train": (6, 1, 32, 32), "test": (3, 1, 32, 32)}, [1, 32, 32])
    with h5py.File(out, "r") as f:
        x = f["test"]["x"][()]
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], raw["t10k"][0])
    border = x.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    with open_dataset(out) as ds:
        assert ds.n_features == 1024
        got, _ = ds.split("test").load()
        np.testing.assert_allclose(got, flat(x) / 255, rtol=1e-6)


@pytest.mark.parametrize(
    ("pad", "fragment"),
    [
        (3, "pad 3 is smaller than the 4x3 images"),
        (5, "pad 5 cannot centre the 4x3 images (the padding must be even)"),
        (6, "pad 6 cannot centre the 4x3 images"),
        (4.5, "pad must be an integer image size, got 4.5"),
        (True, "pad must be an integer image size"),
    ],
)
def test_mnist_bad_pad(tmp_path, pad, fragment):
    fake_mnist(tmp_path / "m", rows=4, cols=3)
    with pytest.raises(DatasetError) as info:
        convert_mnist(tmp_path / "m", tmp_path / "m.h5", pad=pad)
    assert fragment in str(info.value) and str(tmp_path / "m") in str(info.value)
    assert not (tmp_path / "m.h5").exists()
    only_files(tmp_path, "m")


def test_mnist_pad_to_own_size_and_uneven_images(tmp_path):
    fake_mnist(tmp_path / "m", rows=4, cols=2)
    out = convert_mnist(tmp_path / "m", tmp_path / "a.h5", pad=4)  # pads the width only
    assert stored(out)[1] == [1, 4, 4]
    with h5py.File(out, "r") as f:
        x = f["train"]["x"][()]
    assert not x[..., 0].any() and not x[..., 3].any()


# ---------------------------------------------------------------------- npz


def test_npz_keeps_images(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "a.npz"
    x_train, x_test = images(20, (3, 4, 4), np.uint8), images(6, (3, 4, 4), np.uint8, seed=1)
    np.savez(
        src, x_train=x_train, y_train=rng.integers(0, 3, 20), x_test=x_test, y_test=rng.integers(0, 3, 6)
    )
    out = convert_npz(src, tmp_path / "a.h5")
    assert stored(out) == ({"train": (20, 3, 4, 4), "test": (6, 3, 4, 4)}, [3, 4, 4])
    with open_dataset(out) as ds:
        assert ds.image_shape == (3, 4, 4) and ds.x_scale == pytest.approx(1 / 255)
        np.testing.assert_array_equal(ds.split("test").read_raw()[0], flat(x_test))
    np.savez(
        src,
        x_train=np.zeros((5, 4, 4), np.float64),
        y_train=np.arange(5),
        x_test=np.ones((2, 4, 4)),
        y_test=[0, 1],
    )
    out = convert_npz(src, tmp_path / "b.h5")
    assert stored(out) == ({"train": (5, 4, 4), "test": (2, 4, 4)}, [1, 4, 4])


@pytest.mark.parametrize("shape", [(5,), (5, 1, 2, 2, 2)])
def test_npz_refuses_other_dimensions(tmp_path, shape):
    src = tmp_path / "a.npz"
    np.savez(src, x_train=np.zeros(shape), y_train=np.arange(5), x_test=np.zeros((2, 8)), y_test=[0, 1])
    with pytest.raises(DatasetError) as info:
        convert_npz(src, tmp_path / "a.h5")
    assert "'x_train' must be N x D rows or N x H x W / N x C x H x W images" in str(info.value)
    assert f"got shape {shape}" in str(info.value)
    only_files(tmp_path, "a.npz")


# ---------------------------------------------------------------------- CLI


def test_cli_mnist_images_and_pad(tmp_path):
    fake_mnist(tmp_path / "m", n_train=6, n_test=3, rows=28, cols=28)
    result = cli("data", "mnist", tmp_path / "m", "-o", tmp_path / "i.h5", "--images")
    assert result.exit_code == 0, result.output
    assert "784 features (1x28x28 images), uint8" in result.output
    result = cli("data", "mnist", tmp_path / "m", "-o", tmp_path / "p.h5", "--pad", 32)
    assert result.exit_code == 0, result.output
    assert "1024 features (1x32x32 images)" in result.output and "train 6, test 3 rows" in result.output
    assert stored(tmp_path / "p.h5")[0]["train"] == (6, 1, 32, 32)
    result = cli("data", "mnist", tmp_path / "m", "-o", tmp_path / "f.h5")
    assert stored(tmp_path / "f.h5") == ({"train": (6, 784), "test": (3, 784)}, [28, 28])
    help_text = cli("data", "mnist", "--help").output
    assert "--images" in help_text and "--pad SIZE" in help_text and "--pad 32" in help_text


@pytest.mark.parametrize(
    ("pad", "fragment"), [(27, "pad 27 is smaller than the 28x28 images"), (31, "pad 31 cannot centre")]
)
def test_cli_mnist_bad_pad_is_one_line(tmp_path, pad, fragment):
    fake_mnist(tmp_path / "m", n_train=6, n_test=3, rows=28, cols=28)
    result = cli("data", "mnist", tmp_path / "m", "-o", tmp_path / "p.h5", "--pad", pad, "--images")
    assert_one_line_error(result, fragment)
    only_files(tmp_path, "m")
    result = cli("data", "mnist", tmp_path / "m", "-o", tmp_path / "p.h5", "--pad", "wide")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_cli_npz_bad_images_is_one_line(tmp_path):
    src = tmp_path / "a.npz"
    np.savez(
        src, x_train=np.zeros((5, 2, 0)), y_train=np.arange(5), x_test=np.zeros((2, 2, 0)), y_test=[0, 1]
    )
    assert_one_line_error(cli("data", "npz", src, "-o", tmp_path / "a.h5"), "zero-sized image dimension")
    only_files(tmp_path, "a.npz")


def test_info_shows_the_image_shape(tmp_path):
    path = write(tmp_path / "i.h5", image_splits((1, 32, 32), dtype=np.uint8))
    result = cli("info", path)
    assert result.exit_code == 0, result.output
    assert "  images    1x32x32\n" in result.output and "features  1024" in result.output
    desc = json.loads(cli("info", path, "--json").output)
    assert desc["image_shape"] == [1, 32, 32] and desc["n_features"] == 1024
    flat_file = write(tmp_path / "f.h5", image_splits((6,)))
    assert "images" not in cli("info", flat_file).output
    assert "image_shape" not in json.loads(cli("info", flat_file, "--json").output)
