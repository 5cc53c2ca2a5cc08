"""Checks of the estimators' input and parameters.

Input: ``X`` as finite float64 rows (images flattened), data-frame column names, sample
weights, the length of ``y`` and scikit-learn's ``random_state`` conventions.
Parameters: positive integers, bounded reals, booleans and choices, each raising
a ValueError that names the parameter.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

# ------------------------------------------------------------ input checking


def _is_sparse(x):
    return hasattr(x, "tocsr") or type(x).__module__.startswith("scipy.sparse")


def _as_float_samples(x, name="X"):
    """``x`` as finite float rows (float32 kept, anything else float64) and the shape of one sample.

    Parameters
    ----------
    x : array-like
        ``(n_samples, n_features)``, or images ``(n_samples, H, W)`` or
        ``(n_samples, C, H, W)``.
    name : str
        The argument's name in error messages.

    Returns
    -------
    rows : ndarray
        float32 or float64 ``(n_samples, n_features)``; images flattened in C order.
    sample_shape : tuple of int
        ``x.shape[1:]`` as given.

    Raises
    ------
    ValueError or TypeError
        Saying what is wrong (sparse, complex, non-numeric, wrong number of
        dimensions, empty, not finite).
    """
    if x is None:
        raise ValueError(f"{name} is None; pass an array of shape (n_samples, n_features)")
    if _is_sparse(x):
        raise TypeError(f"{name} is a sparse matrix; fastfa needs dense input (use {name}.toarray())")
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise ValueError(f"Complex data not supported in {name}; pass real numbers")
    if x.dtype not in (np.float32, np.float64):  # float32 stays: the float32 engine takes it as is
        x = np.asarray(x, dtype=np.float64)  # object arrays of non-numbers raise TypeError here
    if x.ndim == 1:
        raise ValueError(
            f"Expected a 2D array for {name}, got a 1D array of shape {x.shape} instead. Reshape your "
            f"data either using {name}.reshape(-1, 1) if it has a single feature or "
            f"{name}.reshape(1, -1) if it contains a single sample."
        )
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"Expected a 2D array for {name} of shape (n_samples, n_features), or images of shape "
            f"(n_samples, H, W) or (n_samples, C, H, W); got a {x.ndim}D array of shape {x.shape} instead"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={x.shape}) while a minimum of 1 is required.")
    sample_shape = x.shape[1:]
    x = x.reshape(x.shape[0], math.prod(sample_shape))
    if x.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={x.shape}) while a minimum of 1 is required.")
    if not np.all(np.isfinite(x)):
        kind = "NaN" if np.isnan(x).any() else "infinity"
        raise ValueError(f"Input {name} contains {kind}; remove or impute the non-finite values")
    return x, sample_shape


def _image_shape(sample_shape):
    """``(C, H, W)`` of a sample of shape ``(H, W)`` (one channel) or ``(C, H, W)``; None for a flat row."""
    if len(sample_shape) == 1:
        return None
    return (1, *sample_shape) if len(sample_shape) == 2 else tuple(sample_shape)


def _feature_names(x):
    """Column names of a data frame (anything with ``columns``) when all are strings, else None."""
    if isinstance(x, np.ndarray) or not hasattr(x, "columns"):
        return None
    try:
        names = np.asarray(list(x.columns), dtype=object)
    except TypeError:
        return None
    if names.ndim != 1 or len(names) == 0:
        return None
    types = sorted({type(v).__qualname__ for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            f"Feature names are only supported if all input features have string names, but your input "
            f"has {types} as feature name / column name types; convert them all to strings "
            "(X.columns = X.columns.astype(str)) or drop the column names"
        )
    return names if types == ["str"] else None


def _check_length(y, n_rows):
    if len(y) != n_rows:
        raise ValueError(
            f"X and y have inconsistent numbers of samples: X has {n_rows} rows, y has {len(y)}; "
            "they must match"
        )


def _sample_weight(sample_weight, n_rows):
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.size == 1 and np.ndim(sample_weight) == 0:
        w = np.full(n_rows, float(w[0]))
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight must have one entry per sample ({n_rows}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def _random_seed(random_state):
    """An int seed from scikit-learn's ``random_state`` conventions."""
    if random_state is None:
        # numpy's global RandomState, as scikit-learn: np.random.seed() makes such fits repeatable
        return int(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy random state, got {random_state!r}")


# ----------------------------------------------------------- parameter checks


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(name, value):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _real(name, value, *, low, low_open=False, high=None, high_open=True):
    ok = _is_real(value)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        if high is not None:
            what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low == 0:
            what = "a positive number" if low_open else "a non-negative number"
        else:
            what = f"a number {'>' if low_open else '>='} {low:g}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def _boolean(name, value):
    if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def _choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def _shape(name, value):
    """``(C, H, W)`` from None or a sequence of 2 (one channel) or 3 positive integers."""
    if value is None:
        return None
    try:
        shape = tuple(value) if not isinstance(value, (str, bytes)) else ()
    except TypeError:
        shape = ()
    if len(shape) not in (2, 3) or not all(_is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"{name} must be None, (H, W) or (C, H, W) with positive integers, got {value!r}")
    return _image_shape(tuple(int(s) for s in shape))
