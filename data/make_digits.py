"""Regenerate the bundled default dataset ``fastfa/data/digits.h5``.

Run from anywhere in the source tree::

    python data/make_digits.py

It rebuilds the file from ``data/digits.csv.gz`` with
:func:`fastfa.datasets.write_digits`: inputs as uint8 with ``x_scale = 1/16``
and a fixed 30% test split drawn with ``numpy.random.default_rng(0)``. The same
is available as ``fastfa data digits --csv data/digits.csv.gz -o OUT.h5``.
"""

from pathlib import Path

from fastfa.datasets import open_dataset, write_digits

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "digits.csv.gz"
TARGET = HERE.parent / "fastfa" / "data" / "digits.h5"


def main():
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    write_digits(TARGET, csv=SOURCE, overwrite=True)
    with open_dataset(TARGET) as ds:
        print(f"wrote {TARGET}: {ds.describe()}")


if __name__ == "__main__":
    main()
