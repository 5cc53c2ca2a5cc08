"""Per-feature standardisation kept with the model: ``x' = (x - mean) / std``.

The statistics come from the training rows only (never the validation or test rows),
in one streaming pass over chunks (:func:`feature_stats`, Chan et al.'s pairwise update
of mean and sum of squares in float64), so a split larger than memory works. They are
stored in the run file and applied wherever the model sees inputs: training, ``--resume``,
``fastfa evaluate``, ``predict`` and ``export`` (:meth:`fastfa.train.Trainer.prepare`).

``--standardize auto`` (the default) standardises float inputs -- tabular data, whose
features often differ in scale by orders of magnitude -- and leaves ``uint8`` inputs stored
with ``x_scale`` (images such as MNIST) exactly as before. A feature with zero variance
gets ``std = 1`` (it is only centred), as scikit-learn's ``StandardScaler`` does.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 65536
UNSCALED_RATIO = 100.0  # spread of feature scales above which unstandardised inputs draw a warning
UNSCALED_SIZE = 100.0  # a feature whose |mean| + std exceeds this looks unscaled too


def wants_standardization(setting, x_dtype):
    """Whether ``setting`` (``auto``, ``on``, ``off``) standardises inputs stored as ``x_dtype``."""
    if setting == "auto":
        return np.dtype(x_dtype) != np.uint8
    return setting == "on"


def feature_stats(split, chunk_rows=CHUNK_ROWS):
    """Mean and standard deviation (population, float64) of every feature of ``split``.

    One pass over the rows in chunks; chunk statistics merge by Chan, Golub and LeVeque's
    (1979) update, so the result does not suffer from the cancellation of a one-pass
    sum of squares. Zero deviations are returned as 1.
    """
    n = 0
    mean = np.zeros(split.n_features)
    m2 = np.zeros(split.n_features)
    for start in range(0, split.n_rows, chunk_rows):
        x, _ = split.read(start, min(start + chunk_rows, split.n_rows), dtype="float64")
        k = len(x)
        if not k:
            continue
        chunk_mean = x.mean(axis=0)
        chunk_m2 = ((x - chunk_mean) ** 2).sum(axis=0)
        delta = chunk_mean - mean
        total = n + k
        mean = mean + delta * (k / total)
        m2 = m2 + chunk_m2 + delta**2 * (n * k / total)
        n = total
    std = np.sqrt(m2 / max(n, 1))
    std[~(std > 0)] = 1.0
    return mean, std


def unscaled_warning(x):
    """A one-line warning when the columns of ``x`` look unscaled, else ``None``."""
    if not len(x):
        return None
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    size = np.abs(x.mean(axis=0)) + std
    varying = std[std > 0]
    ratio = varying.max() / varying.min() if varying.size else 1.0
    if ratio > UNSCALED_RATIO or size.max() > UNSCALED_SIZE:
        return (
            f"features look unscaled (standard deviations from {varying.min() if varying.size else 0:.3g} "
            f"to {std.max():.3g}) and standardisation is off; --standardize on usually trains better"
        )
    return None


def apply(x, mean, std, dtype):
    """``(x - mean) / std`` in ``dtype`` (a new array)."""
    dtype = np.dtype(dtype)
    out = np.subtract(x, mean.astype(dtype), dtype=dtype)
    out /= std.astype(dtype)
    return out
