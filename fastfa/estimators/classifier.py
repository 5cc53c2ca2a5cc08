"""scikit-learn compatible :class:`MLPClassifier`.

Class labels encoded as indices of ``classes_`` (``partial_fit`` with
``classes=``), a softmax output, accuracy as score and validation score,
``predict_proba`` and scikit-learn's tags for a single-output classifier.
"""

from __future__ import annotations

import warnings

import numpy as np

from fastfa.estimators.base import _BaseMLP
from fastfa.estimators.checks import _check_length, _sample_weight
from fastfa.estimators.compat import _compat


class MLPClassifier(_BaseMLP):
    """Multi-layer perceptron classifier trained by a rule of the feedback-alignment family.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Width of each hidden layer (``()`` for none: a softmax regression).
    activation : {"tanh", "logistic", "relu", "identity"}, default "tanh"
    layers : str or None, default None
        The hidden layers as a layer list (:mod:`fastfa.layers`) instead of
        ``hidden_layer_sizes``: comma-separated ``conv:C:K[:S[:P]]``,
        ``maxpool:K[:S]``, ``avgpool:K[:S]``, ``gap``, ``flatten``, ``dense:N``,
        e.g. ``"conv:6:3,maxpool:2,dense:32"``, or a preset name
        (``"lenet-mnist"``, ``"lenet-cifar"``); the dense output layer is added.
        Conv and pooling layers need images (see ``image_shape``); a list of
        dense layers only trains exactly as the same ``hidden_layer_sizes``.
        Giving a non-default ``hidden_layer_sizes`` too is a ValueError.
    image_shape : tuple of int or None, default None
        ``(C, H, W)``, or ``(H, W)`` for one channel, of the samples when ``X``
        is passed flat, ``(n_samples, C * H * W)`` (C order). Images passed as
        ``(n_samples, H, W)`` (one channel) or ``(n_samples, C, H, W)`` bring
        their own shape.
    rule : str or fastfa.Rule, default "fa"
        Learning rule (``fastfa.available_rules()``): bp, fa, dfa, usf, frsf,
        brsf, shallow, or one from a plugin.
    rule_options : dict, optional
        Options of the rule, e.g. ``{"feedback_scale": 0.5}``.
    solver : {"sgd", "adam"}, default "sgd"
    alpha : float, default 1e-4
        L2 penalty; as in scikit-learn, ``0.5 * alpha * ||W||^2`` divided by the batch size
        (see "Differences from scikit-learn" for a batch shorter than ``batch_size``).
    batch_size : int or "auto", default 32
        ``"auto"`` is ``min(200, n_samples)`` (training rows, with early stopping).
    learning_rate : {"constant", "step", "cosine"}, default "constant"
        Per-epoch schedule; ``step`` multiplies by ``learning_rate_gamma`` every
        ``learning_rate_step`` epochs, ``cosine`` anneals to 0 over ``max_iter``.
    learning_rate_init : float, default 0.01
    learning_rate_step : int, default 10
    learning_rate_gamma : float, default 0.1
    max_iter : int, default 200
        Epochs (passes over the data).
    shuffle : bool, default True
    random_state : int, RandomState or None
        Seeds initial weights, feedback matrices, shuffling and the validation
        split; equal seeds give bitwise equal models.
    tol, n_iter_no_change :
        Stop when the training loss has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs -- with ``early_stopping``, when
        the validation score has not improved by ``tol`` for that many epochs.
        (scikit-learn's rule: stop once more than ``n_iter_no_change`` epochs
        in a row fall short of the best by ``tol``.)
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the rows of ``fit`` (stratified by
        class for the classifier) and stop on their score: accuracy for the
        classifier, R^2 for the regressor. When training ends, the weights and
        biases are those of the epoch with the best validation score; the
        feedback matrices and the optimiser state (momentum, Adam's moments)
        stay as trained, so a warm start continues from the best weights with
        the last epoch's momentum and feedback. Not with ``partial_fit``
        (ValueError, as scikit-learn).
    validation_fraction : float in (0, 1), default 0.1
        Share of the rows held out when ``early_stopping``:
        ``ceil(validation_fraction * n_samples)`` rows, at least 2, leaving at
        least one training row. The split is drawn from ``random_state`` (the
        same split on every fit for an int), not scikit-learn's rows.
    verbose, warm_start : bool
        With ``warm_start``, ``fit`` continues from the current weights; the
        network, rule, solver, batch size and dtype stay those of the first fit.
    momentum : float in [0, 1), default 0.9
    nesterovs_momentum : bool, default True
    beta_1, beta_2, epsilon : float
        Adam's settings.
    init : str or float, default "uniform"
        Weight initialiser: uniform (+-1/sqrt(fan_in)), glorot, he, zeros, or a
        number ``s`` for U[-s, s].
    dtype : {"float32", "float64"}, default "float32"
        Precision of training (predictions are computed in float64).
    device : {"cpu", "cuda"}, default "cpu"
        Where the training batches run; "cuda" needs an NVIDIA GPU and a rule,
        optimiser and output the CUDA engine supports (:mod:`fastfa.cuda_engine`).

    Attributes
    ----------
    classes_, coefs_, intercepts_, feedback_, loss_, loss_curve_, best_loss_,
    n_iter_, t_, n_features_in_, feature_names_in_ (fitted on a data frame with string
    column names), n_layers_, n_outputs_, out_activation_
    coefs_, intercepts_ : list of ndarray
        Weights and biases of each layer that has some: ``(n_in, n_out)`` and
        ``(n_out,)`` for a dense layer, a kernel ``(C_out, C_in, k, k)`` and
        ``(C_out,)`` for a convolution (live views, in ``dtype``).
    n_features_in_ : int
        Features of a flat row; ``C * H * W`` for images.
    image_shape_ : tuple of int or None
        ``(C, H, W)`` of the samples seen in the first ``fit`` (from image ``X``
        or ``image_shape``); None for flat rows without ``image_shape``.
    loss_, loss_curve_ :
        Mean training loss of the last / each epoch, each batch measured before
        its own update, plus scikit-learn's L2 term (see below).
    best_loss_ : float or None
        Lowest ``loss_curve_`` entry; None with ``early_stopping`` (as scikit-learn).
    validation_scores_ : list of float or None
        Validation score after each epoch (``len == n_iter_``) with
        ``early_stopping``, else None.
    best_validation_score_ : float or None
        Best of ``validation_scores_``; None without ``early_stopping``.

    Notes
    -----
    Output layer: softmax with cross-entropy (two outputs for binary problems).

    ``X`` may be ``(n_samples, n_features)``, ``(n_samples, H, W)`` or
    ``(n_samples, C, H, W)``; images are flattened in C order, so ``n_features_in_``
    is ``C * H * W``. After ``fit``, images must have the fitted ``image_shape_``
    (``(H, W)`` and ``(1, H, W)`` are the same); flat rows of ``n_features_in_``
    features are accepted too. Dense networks take images as well (flattened).

    No input scaling is done: like scikit-learn's MLP, the network sees ``X`` as
    given, and SGD on unscaled features (e.g. pixel values 0-255 or features of
    very different ranges) trains badly or diverges. Scale in a pipeline::

        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,)))
        model.fit(X_train, y_train).score(X_test, y_test)

    Differences from scikit-learn
    -----------------------------
    - The loss: ``loss_`` is the mean data loss plus
      ``0.5 * alpha * sum_b ||W_b||^2 / n_samples``, summed over the epoch's
      batches ``b`` with ``W_b`` the weights (``coefs_``, no biases) before
      batch ``b``'s update, as scikit-learn computes it. fastfa knows the
      weights only at the ends of an epoch: the squared norm before each batch
      is interpolated linearly between them. Exact when an epoch is one batch
      (``batch_size >= n_samples``); measured against scikit-learn from equal
      weights (120 rows, 2 outputs, batches of 8, 10 epochs, plain SGD,
      float64), the relative difference of ``loss_`` was at most 4.1e-7 at
      ``alpha=1e-4``, 2.3e-4 at ``alpha=0.1`` and 4.2e-3 at ``alpha=1`` with
      ``learning_rate_init=0.05``.
      The stopping rule on the training loss (``tol``) sees this loss.
    - A batch shorter than ``batch_size`` (the last one of an epoch, or the only
      one when ``batch_size`` exceeds the number of rows; scikit-learn clips
      ``batch_size`` to it) is decayed by ``alpha / batch_size`` like the
      others, where scikit-learn uses ``alpha / rows_in_batch``: on such a
      batch of ``m`` rows fastfa's weights shrink by ``learning_rate * alpha *
      (1/m - 1/batch_size) * W`` less. Measured (6 rows, ``batch_size=4``,
      ``alpha=0.1``, ``learning_rate_init=0.1``, plain SGD, rule bp, float64,
      equal initial weights): after one epoch the coefficients differ from
      scikit-learn's by 2.5e-3 of their largest magnitude (1.4e-3 absolute);
      intercepts and full batches agree to rounding (1e-16).
    - ``early_stopping``: scikit-learn's semantics (rule, attributes, best
      weights restored, at least 2 validation rows, stratified for classifiers,
      ``partial_fit`` refused), fastfa's own seeded split; the feedback matrices
      and optimiser state are not rolled back with the weights.
    - No ``lbfgs`` solver, no ``adaptive``/``invscaling`` learning rates
      (``step`` and ``cosine`` instead), no ``sample_weight`` in ``fit``.
    """

    _task = "classification"
    _estimator_type = "classifier"

    def _n_outputs(self, y, attrs):
        return len(attrs.get("classes_", getattr(self, "classes_", ())))

    def _encode_targets(self, y, *, first_call, classes=None, n_rows):
        y = self._check_labels(y, n_rows)
        labels = self._unique(y, "y")
        attrs = {}
        if first_call:
            if classes is not None:
                known = self._unique(self._check_classes(classes), "classes")
                unseen = np.setdiff1d(labels, known)
                if unseen.size:
                    raise ValueError(
                        f"y has labels {unseen.tolist()} that are not in classes {known.tolist()}"
                    )
            else:
                known = labels
            attrs["classes_"] = known
        else:
            known = self.classes_
            if classes is not None and not np.array_equal(
                self._unique(self._check_classes(classes), "classes"), known
            ):
                raise ValueError(
                    f"classes={np.asarray(classes).tolist()} differs from the classes of the first call "
                    f"({known.tolist()}); pass the same classes to every partial_fit"
                )
            unseen = np.setdiff1d(labels, known)
            if unseen.size:
                raise ValueError(
                    f"y has labels {unseen.tolist()} not seen in the first fit (classes {known.tolist()}); "
                    "pass every class with classes= on the first partial_fit, or refit"
                )
        return np.searchsorted(known, y), attrs

    @staticmethod
    def _unique(values, name):
        try:
            return np.unique(values)
        except TypeError:
            raise ValueError(
                f"Mix of label input types (string and number) in {name}; use labels of one type"
            ) from None

    @staticmethod
    def _check_classes(classes):
        classes = np.asarray(classes)
        if classes.ndim != 1 or classes.size == 0:
            raise ValueError(f"classes must be a non-empty 1d array of labels, got shape {classes.shape}")
        return classes

    @staticmethod
    def _check_labels(y, n_rows):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                "to (n_samples,), for example using ravel().",
                _compat("DataConversionWarning"),
                stacklevel=5,
            )
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(
                f"y should be a 1d array of class labels, got an array of shape {y.shape}; "
                "multi-output classification is not supported"
            )
        _check_length(y, n_rows)
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)):
                raise ValueError("Input y contains NaN or infinity; class labels must be finite")
            if np.any(y != np.round(y)):
                raise ValueError(
                    "Unknown label type: continuous. Class labels must be integers or strings; "
                    "use MLPRegressor for continuous targets"
                )
        elif y.dtype.kind not in "iubUSO":
            raise ValueError(f"Unknown label type: {y.dtype}. Class labels must be integers or strings")
        return y

    def partial_fit(self, X, y, classes=None):
        """One epoch on ``(X, y)``; ``classes`` lists every label and is required on the first call."""
        if not hasattr(self, "_trainer") and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit (every label that y can contain)"
            )
        return self._fit(X, y, incremental=True, classes=classes)

    def _validation_score(self, x, y):
        """Accuracy on held-out rows (``y``: class indices), as :meth:`score`."""
        out = self._trainer.predict_outputs(x, dtype=np.float64)
        return float(np.mean(np.argmax(out, axis=1) == y))

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``; columns follow ``classes_``."""
        return self._forward(X)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba` (float64 probabilities: no underflow above 1e-308)."""
        with np.errstate(divide="ignore"):
            return np.log(self._forward(X))

    def predict(self, X):
        """Most probable class of each sample."""
        proba = self.predict_proba(X)  # first: NotFittedError before classes_ is looked up
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``(X, y)`` (optionally weighted)."""
        pred = self.predict(X)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y should be a 1d array of class labels, got an array of shape {y.shape}")
        _check_length(y, len(pred))
        correct = (pred == y).astype(np.float64)
        return float(np.average(correct, weights=_sample_weight(sample_weight, len(pred))))

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": False, "requires_y": True, "multioutput": False}

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True, single_output=True, multi_output=False),
            classifier_tags=ClassifierTags(multi_class=True, multi_label=False),
            input_tags=InputTags(two_d_array=True, allow_nan=False, sparse=False),
        )
