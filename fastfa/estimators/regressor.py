"""scikit-learn compatible :class:`MLPRegressor`.

Numeric targets of one or several columns (``predict`` returns the shape ``y``
had), a linear output, R^2 averaged over targets as score and validation score,
and scikit-learn's tags for a multi-output regressor.
"""

from __future__ import annotations

import numpy as np

from fastfa.estimators.base import _BaseMLP
from fastfa.estimators.checks import _check_length, _sample_weight


def _r2(y, pred, w=None):
    """Coefficient of determination of 2-d ``pred`` for ``y``, averaged uniformly over columns.

    A constant column scores 1 when predicted exactly, else 0 (scikit-learn's convention).
    """
    resid = np.average((y - pred) ** 2, axis=0, weights=w)
    total = np.average((y - np.average(y, axis=0, weights=w)) ** 2, axis=0, weights=w)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1.0 - resid / np.where(total > 0, total, 1.0), np.where(resid > 0, 0.0, 1.0))
    return float(np.mean(r2))


class MLPRegressor(_BaseMLP):
    """Multi-layer perceptron regressor trained by a rule of the feedback-alignment family.

    Parameters are those of :class:`MLPClassifier` (``layers`` and image
    inputs included); with ``early_stopping``
    the validation score is R^2. The output layer is linear and the loss, as
    scikit-learn's, is the squared error averaged over rows and outputs,
    ``((y - t) ** 2).mean() / 2``, plus the L2 term (trained on the gradient of
    ``0.5 ||y - t||^2`` per row, as scikit-learn). ``y`` may have one or several
    target columns; :meth:`predict` returns the shape ``y`` had (1-d for a 1-d ``y``).

    No input (or target) scaling is done: put a ``StandardScaler`` in front,
    ``make_pipeline(StandardScaler(), MLPRegressor(...))``; targets far from
    unit scale call for a smaller ``learning_rate_init`` (or scikit-learn's
    ``TransformedTargetRegressor``).

    Attributes
    ----------
    coefs_, intercepts_, feedback_, loss_, loss_curve_, best_loss_, n_iter_,
    t_, n_features_in_, feature_names_in_, image_shape_, n_layers_, n_outputs_,
    out_activation_, validation_scores_, best_validation_score_ (as :class:`MLPClassifier`)

    Differences from scikit-learn
    -----------------------------
    Those of :class:`MLPClassifier`: the L2 term of ``loss_`` interpolated within
    an epoch of several batches, the decay of a batch shorter than
    ``batch_size``, fastfa's own validation split.
    """

    _task = "regression"
    _estimator_type = "regressor"

    def _n_outputs(self, y, attrs):
        return y.shape[1]

    def _encode_targets(self, y, *, first_call, classes=None, n_rows):
        if y is None:
            raise ValueError("y is None; pass the regression targets")
        y = np.asarray(y)
        if y.dtype.kind == "O":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    "Unknown label type: y has dtype object with entries that are not numbers; "
                    "regression targets must be numbers"
                ) from None
        if y.dtype.kind not in "iufb":
            raise ValueError(f"regression targets y must be numbers, got dtype {y.dtype}")
        y = y.astype(np.float64)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-d (one target) or 2-d (n_samples, n_targets), got shape {y.shape}")
        _check_length(y, n_rows)
        if y.ndim == 2 and y.shape[1] == 0:
            raise ValueError(f"y has 0 target columns (shape={y.shape}); at least 1 is required")
        if not np.all(np.isfinite(y)):
            kind = "NaN" if np.isnan(y).any() else "infinity"
            raise ValueError(f"Input y contains {kind}; targets must be finite")
        attrs = {"_y_ndim": y.ndim} if first_call else {}
        y = y.reshape(n_rows, -1)
        if not first_call and y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y.shape[1]} target columns, the model was fitted with {self.n_outputs_}"
            )
        return y, attrs

    def partial_fit(self, X, y):
        """One epoch on ``(X, y)``, starting from the current weights when fitted."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets, shape ``(n_samples,)`` for a 1-d ``y``, else ``(n_samples, n_targets)``."""
        out = self._forward(X)
        return out.ravel() if self._y_ndim == 1 else out

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2, averaged uniformly over targets."""
        pred = self.predict(X)
        n = len(pred)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-d or 2-d, got shape {y.shape}")
        _check_length(y, n)
        y = y.reshape(n, -1)
        pred = pred.reshape(n, -1)
        if y.shape != pred.shape:
            raise ValueError(f"y has {y.shape[1]} target columns, the model predicts {pred.shape[1]}")
        return _r2(y, pred, _sample_weight(sample_weight, n))

    def _validation_score(self, x, y):
        """R^2 on held-out rows (``y``: 2-d targets), as :meth:`score`; NaN for non-finite predictions."""
        pred = self._trainer.predict_outputs(x, dtype=np.float64)
        if not np.all(np.isfinite(pred)):
            return float("nan")
        return _r2(y, pred)

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": False, "requires_y": True, "multioutput": True}

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, multi_output=True, single_output=True),
            regressor_tags=RegressorTags(),
            input_tags=InputTags(two_d_array=True, allow_nan=False, sparse=False),
        )
