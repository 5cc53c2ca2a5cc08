"""The seeded training/validation split of ``early_stopping``.

:func:`validation_split` holds out ``ceil(validation_fraction * n_samples)``
rows, stratified by class when labels are given (class shares rounded by
:func:`_largest_remainder`, as scikit-learn's ``_approximate_mode``), from a
random stream kept apart from the trainer's.
"""

from __future__ import annotations

import math

import numpy as np

_SPLIT_STREAM = 0x5E1D  # keeps the split's random stream apart from the trainer's (same seed)


def _largest_remainder(counts, n_draws, rng):
    """Integer shares of ``n_draws`` proportional to ``counts`` (ties broken at random).

    The floor of each exact share, plus one for the largest remainders until the
    shares add up to ``n_draws`` (scikit-learn's ``_approximate_mode``).
    """
    exact = counts * (n_draws / counts.sum())
    shares = np.floor(exact).astype(np.int64)
    missing = int(n_draws - shares.sum())
    if missing > 0:
        order = np.lexsort((rng.random(len(counts)), -(exact - shares)))
        shares[order[:missing]] += 1
    return shares


def validation_split(n_samples, validation_fraction, seed, labels=None):
    """Row indices ``(train, validation)`` of a seeded random split, each sorted.

    ``ceil(validation_fraction * n_samples)`` rows are held out, as scikit-learn's
    ``train_test_split(test_size=validation_fraction)``. With ``labels`` (class
    indices) the split is stratified: every class keeps its share of the rows on
    both sides, up to rounding (each class needs at least 2 rows, and each side
    at least as many rows as there are classes, as scikit-learn's stratified
    split demands).
    Equal ``seed`` s give equal splits. Raises ValueError, naming
    ``validation_fraction``, when a side would be too small for early stopping:
    no training row, or fewer than 2 validation rows (scikit-learn's limit).
    """
    n_val = math.ceil(validation_fraction * n_samples)
    n_train = n_samples - n_val
    if n_train < 1:
        raise ValueError(
            f"early stopping: validation_fraction={validation_fraction} holds out {n_val} of "
            f"{n_samples} samples and leaves no training sample; lower validation_fraction"
        )
    if n_val < 2:
        raise ValueError(
            f"early stopping: the validation set is too small ({n_val} of {n_samples} samples with "
            f"validation_fraction={validation_fraction}; at least 2 are needed). Increase "
            "validation_fraction or the size of your dataset."
        )
    rng = np.random.default_rng([int(seed), _SPLIT_STREAM])
    if labels is None:
        order = rng.permutation(n_samples)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            "early stopping: the least populated class in y has only 1 member, which is too few for a "
            "stratified validation split (at least 2 per class are needed); pass more samples of "
            "every class or set early_stopping=False"
        )
    for side, size in (("training", n_train), ("validation", n_val)):
        if size < len(classes):
            raise ValueError(
                f"early stopping: validation_fraction={validation_fraction} gives a {side} set of "
                f"{size} samples, fewer than the {len(classes)} classes; a stratified split needs "
                "at least as many samples as classes on each side (change validation_fraction)"
            )
    train_shares = _largest_remainder(counts, n_train, rng)
    train, val = [], []
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        train.append(members[: train_shares[k]])
        val.append(members[train_shares[k] :])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
