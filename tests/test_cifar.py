"""CIFAR-10 / CIFAR-100 (Python batches) and Fashion-MNIST converters, on small archives built here
in the real formats (no data set is downloaded in CI)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from fastfa.cli import main
from fastfa.datasets import DatasetError, convert_cifar, open_dataset
from tests.test_cli_data import assert_one_line_error
from tests.test_datasets import fake_mnist

PER_BATCH = 6  # images per training batch (a real CIFAR-10 batch holds 10,000)


def py2_pickle(obj):
    """``obj`` pickled as Krizhevsky's Python 2 numpy did: protocol 2, numpy's arrays rebuilt by
    ``numpy.core.multiarray._reconstruct`` (numpy 2 writes ``numpy._core``)."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def cifar_batches(variant, seed=0, per_batch=PER_BATCH, n_test=4):
    """``{batch name: pickled bytes}`` of a small archive of ``variant`` in the real layout, and
    the images and labels they hold per split."""
    rng = np.random.default_rng(seed)
    held = {}

    def batch(n, **labels):
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        drawn = {key: [int(v) for v in rng.integers(0, k, n)] for key, k in labels.items()}
        record = {b"batch_label": b"a batch", b"data": data, b"filenames": [b"x.png"] * n}
        record.update({key.encode(): value for key, value in drawn.items()})
        return record

    if variant == "cifar10":
        train = {f"data_batch_{i}": batch(per_batch, labels=10) for i in range(1, 6)}
        test = {"test_batch": batch(n_test, labels=10)}
        meta = {"batches.meta": {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}}
        key = b"labels"
    else:
        train = {"train": batch(per_batch * 5, fine_labels=100, coarse_labels=20)}
        test = {"test": batch(n_test, fine_labels=100, coarse_labels=20)}
        meta = {
            "meta": {
                b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
            }
        }
        key = b"fine_labels"
    for split, batches in (("train", train), ("test", test)):
        held[split] = (
            np.concatenate([b[b"data"] for b in batches.values()]).reshape(-1, 3, 32, 32),
            np.concatenate([b[key] for b in batches.values()]),
        )
    files = {name: py2_pickle(b) for name, b in {**train, **test, **meta}.items()}
    return files, held


FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def write_archive(path, variant, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{FOLDERS[variant]}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(root, variant, files):
    folder = root / FOLDERS[variant]
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="fastfa", catch_exceptions=False)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("form", ["archive", "folder", "parent"])
def test_cifar_round_trip(tmp_path, variant, form):
    files, held = cifar_batches(variant)
    if form == "archive":
        source = write_archive(tmp_path / f"{variant}.tar.gz", variant, files)
    else:
        folder = write_folder(tmp_path / "data", variant, files)
        source = folder if form == "folder" else folder.parent
    result = cli("data", variant, source, "-o", tmp_path / "out.h5")
    assert result.exit_code == 0, result.output
    assert f"{5 * PER_BATCH}" in result.output
    with open_dataset(tmp_path / "out.h5") as ds:
        assert ds.image_shape == (3, 32, 32) and ds.n_classes == (10 if variant == "cifar10" else 100)
        assert ds.name == variant
        for split in ("train", "test"):
            x, y = held[split]
            got_x, got_y = ds[split].load()
            np.testing.assert_array_equal(got_y, y)
            np.testing.assert_allclose(got_x, x.reshape(len(x), -1) / 255.0, rtol=1e-6)
    import h5py

    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["train/x"].dtype == np.uint8 and f["train/x"].shape == (5 * PER_BATCH, 3, 32, 32)
        classes = list(f.attrs["classes"])
    assert len(classes) == (10 if variant == "cifar10" else 100) and classes[0] in ("class0", "fine0")


def test_cifar100_coarse_labels(tmp_path):
    files, _ = cifar_batches("cifar100")
    source = write_archive(tmp_path / "c.tar.gz", "cifar100", files)
    out = convert_cifar(source, tmp_path / "c20.h5", variant="cifar100", labels="coarse")
    coarse = pickle.loads(files["train"], encoding="bytes")[b"coarse_labels"]
    with open_dataset(out) as ds:
        assert ds.n_classes == 20 and ds.name == "cifar100-coarse"
        np.testing.assert_array_equal(ds["train"].load()[1], coarse)


def broken(variant, change):
    """The files of a small archive with ``change(files)`` applied."""
    files, _ = cifar_batches(variant)
    change(files)
    return files


def _replace(name, record_change=None, data=None):
    def change(files):
        if data is not None:
            files[name] = data
            return
        record = pickle.loads(files[name], encoding="bytes")
        record_change(record)
        files[name] = py2_pickle(record)

    return change


class Evil:
    """Unpickling this would run ``os.system``."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


BAD_ARCHIVES = {
    "missing batch": (lambda files: files.pop("data_batch_3"), "data_batch_3"),
    "truncated batch": (
        lambda files: files.__setitem__("data_batch_2", files["data_batch_2"][:500]),
        "truncated",
    ),
    "shorter batch": (
        _replace(
            "data_batch_4",
            lambda r: (r.__setitem__(b"data", r[b"data"][:3]), r.__setitem__(b"labels", r[b"labels"][:3])),
        ),  # fmt: skip
        "one is truncated",
    ),
    "labels and images disagree": (_replace("data_batch_1", lambda r: r[b"labels"].pop()), "labels"),
    "label out of range": (_replace("test_batch", lambda r: r[b"labels"].__setitem__(0, 10)), "0..9"),
    "wrong row length": (
        _replace("data_batch_5", lambda r: r.__setitem__(b"data", r[b"data"][:, :100].copy())),
        "N x 3072 uint8",
    ),
    "not a dictionary": (_replace("data_batch_1", data=py2_pickle([1, 2, 3])), "not a dictionary"),
    "no data key": (_replace("data_batch_1", lambda r: r.pop(b"data")), "no b'data'"),
    "a pickle that runs code": (
        _replace("data_batch_1", data=pickle.dumps(Evil(), protocol=2)),
        "posix.system",
    ),
    "no class names": (_replace("batches.meta", lambda r: r.pop(b"label_names")), "class names"),
}


@pytest.mark.parametrize("case", BAD_ARCHIVES, ids=list(BAD_ARCHIVES))
def test_bad_cifar_archives_are_one_line_and_leave_nothing(tmp_path, case, capfd):
    change, fragment = BAD_ARCHIVES[case]
    source = write_archive(tmp_path / "c.tar.gz", "cifar10", broken("cifar10", change))
    result = cli("data", "cifar10", source, "-o", tmp_path / "out.h5")
    assert_one_line_error(result, fragment if case != "a pickle that runs code" else "CIFAR batch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz"]
    assert "pwned" not in capfd.readouterr().out


def test_cifar_inputs_that_are_not_archives(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(cli("data", "cifar10", tmp_path / "notes.txt", "-o", tmp_path / "o.h5"), "neither")
    truncated = tmp_path / "cut.tar.gz"
    files, _ = cifar_batches("cifar10")
    data = write_archive(tmp_path / "full.tar.gz", "cifar10", files).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = cli("data", "cifar10", truncated, "-o", tmp_path / "o.h5")
    assert_one_line_error(result, "cut.tar.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("data", "cifar10", empty, "-o", tmp_path / "o.h5"), "has no data_batch_1")
    assert not (tmp_path / "o.h5").exists()
    # CIFAR-10's archive given to cifar100, and the output being the input
    assert_one_line_error(
        cli("data", "cifar100", tmp_path / "full.tar.gz", "-o", tmp_path / "o.h5"), "has no"
    )
    result = cli("data", "cifar10", tmp_path / "full.tar.gz", "-o", tmp_path / "full.tar.gz", "--overwrite")
    assert_one_line_error(result, "input")
    with pytest.raises(ValueError, match="cifar10 has fine labels, not 'coarse'"):
        convert_cifar(tmp_path / "full.tar.gz", tmp_path / "o.h5", variant="cifar10", labels="coarse")
    with pytest.raises(DatasetError):
        convert_cifar(tmp_path / "missing.tar.gz", tmp_path / "o.h5")


def test_fashion_mnist_converts_as_mnist_with_its_own_name_and_licence(tmp_path):
    data = fake_mnist(tmp_path / "fashion")
    result = cli("data", "fashion-mnist", tmp_path / "fashion", "-o", tmp_path / "f.h5", "--images")
    assert result.exit_code == 0, result.output
    with open_dataset(tmp_path / "f.h5") as ds:
        assert ds.name == "fashion-mnist" and "Fashion-MNIST" in ds.source and "MIT" in ds.source
        assert ds.image_shape == (1, 4, 3)
        np.testing.assert_array_equal(ds["train"].load()[1], data["train"][1])
    assert_one_line_error(cli("data", "fashion-mnist", tmp_path, "-o", tmp_path / "g.h5"), "train-images")
