"""The bundled digits dataset (``fastfa/data/digits.h5``): :func:`write_digits` copies or rebuilds it."""

from __future__ import annotations

from fastfa.datasets.csvfile import convert_csv
from fastfa.datasets.reader import default_dataset_path, open_dataset
from fastfa.datasets.writer import _check_target, write_dataset

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.3
DIGITS_SOURCE = (
    "UCI Machine Learning Repository: Optical Recognition of Handwritten Digits, test set "
    "(optdigits.tes; 1797 8x8 images, 17 grey levels 0..16), E. Alpaydin and C. Kaynak, 1998, "
    "https://doi.org/10.24432/C50P49. License: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). "
    "Converted by fastfa: x stored as uint8 with x_scale = 1/16; fixed 30% test split "
    "(numpy default_rng(0) permutation)."
)


def write_digits(out, *, csv=None, overwrite=False):
    """Write the digits dataset (the bundled default) to ``out``.

    Without ``csv`` the bundled file (:func:`default_dataset_path`) is copied.
    With ``csv`` -- the UCI optdigits test set as 1797 rows of 64 integer
    features 0..16 then the label, e.g. ``data/digits.csv.gz`` in the source
    tree -- the dataset is rebuilt: inputs as uint8 with ``x_scale = 1/16``,
    a fixed 30% test split from ``numpy.random.default_rng(0)``. This is how
    the bundled ``fastfa/data/digits.h5`` is made (``data/make_digits.py``).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    _check_target(out, overwrite, inputs=(csv,))
    if csv is not None:
        return convert_csv(
            csv,
            out,
            label_column=-1,
            header=False,
            delimiter=",",
            test_fraction=DIGITS_TEST_FRACTION,
            seed=DIGITS_SEED,
            x_scale=1 / 16,
            n_classes=10,
            name="digits",
            source=DIGITS_SOURCE,
            overwrite=overwrite,
        )
    with open_dataset(default_dataset_path()) as ds:
        splits = {s: ds.split(s).read_raw() for s in ds.splits}
        meta = dict(name=ds.name, task=ds.task, n_classes=ds.n_classes, x_scale=ds.x_scale, source=ds.source)
        extra = {k: v for k, v in ds._file.attrs.items() if k in ("split_seed", "test_fraction")}
    return write_dataset(out, splits, overwrite=overwrite, extra_attrs=extra, **meta)
