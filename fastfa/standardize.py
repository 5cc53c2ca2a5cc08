"""Per-feature standardisation kept with the model: ``x' = (x - mean) / std``.

The statistics come from the training rows only (never the validation or test rows),
in one streaming pass over chunks (:func:`feature_stats`, Chan et al.'s pairwise update
of mean and sum of squares in float64), so a split larger than memory works. They are
stored in the run file and applied wherever the model sees inputs: training, ``--resume``,
``fastfa evaluate``, ``predict`` and ``export`` (:meth:`fastfa.train.Trainer.prepare`).

``--standardize auto`` (the default) standardises float inputs -- tabular data, whose
features often differ in scale by orders of magnitude -- and leaves ``uint8`` inputs stored
with ``x_scale`` (images such as MNIST) exactly as before. ``--standardize channel``
standardises images the way the image literature does, with one mean and deviation per
channel over every pixel (:func:`channel_stats`). A feature with zero variance
gets ``std = 1`` (it is only centred), as scikit-learn's ``StandardScaler`` does.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 65536
UNSCALED_RATIO = 100.0  # spread of feature scales above which unstandardised inputs draw a warning
UNSCALED_SIZE = 100.0  # a feature whose |mean| + std exceeds this looks unscaled too


def wants_standardization(setting, x_dtype):
    """Whether ``setting`` (``auto``, ``on``, ``channel``, ``off``) standardises inputs stored as
    ``x_dtype``."""
    if setting == "auto":
        return np.dtype(x_dtype) != np.uint8
    return setting in ("on", "channel")


def feature_stats(split, chunk_rows=CHUNK_ROWS):
    """Mean and standard deviation (population, float64) of every feature of ``split``.

    One pass over the rows in chunks; chunk statistics merge by Chan, Golub and LeVeque's
    (1979) update, so the result does not suffer from the cancellation of a one-pass
    sum of squares. Zero deviations are returned as 1.
    """
    mean, var = _moments(split, chunk_rows)
    return mean, _unit_if_zero(np.sqrt(var))


def channel_stats(split, channels, chunk_rows=CHUNK_ROWS):
    """Mean and standard deviation of each channel of image rows (``C x H x W`` flattened, so
    channel ``c`` holds features ``c*H*W ... (c+1)*H*W - 1``), repeated for every feature of the
    channel, so that :func:`apply` standardises each channel with one pair of numbers.

    What the image literature calls normalising with the dataset's per-channel mean and
    deviation (torchvision's ``Normalize``; BioTorch's MNIST uses 0.1307 and 0.3081). Computed
    from :func:`feature_stats`' per-feature moments by the law of total variance, so over every
    pixel of every training row. One channel makes it a single mean and deviation for all
    features. A channel with zero deviation gets 1.
    """
    mean, var = _moments(split, chunk_rows)
    if mean.size % channels:
        raise ValueError(f"{mean.size} features do not split into {channels} channels")
    mean, var = mean.reshape(channels, -1), var.reshape(channels, -1)
    channel_mean = mean.mean(axis=1)
    channel_var = (var + (mean - channel_mean[:, None]) ** 2).mean(axis=1)
    per_channel = mean.shape[1]
    return np.repeat(channel_mean, per_channel), np.repeat(_unit_if_zero(np.sqrt(channel_var)), per_channel)


def _unit_if_zero(std):
    std[~(std > 0)] = 1.0
    return std


def _moments(split, chunk_rows):
    """Mean and population variance of every feature of ``split`` (float64, one streaming pass)."""
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
    return mean, m2 / max(n, 1)


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
