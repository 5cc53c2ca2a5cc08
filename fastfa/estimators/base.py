"""The estimators' shared base: fitted attributes, training loop and inference.

:class:`_BaseMLP` trains through :class:`fastfa.train.Trainer`: ``fit`` and
``partial_fit`` check the input, set the fitted state, run the epochs with
scikit-learn's loss (plus its L2 term) and stopping rule, early stopping on a
validation split included, and predict in float64. The task-specific parts --
target encoding, validation score, ``predict`` and ``score`` -- are the
subclasses'.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fastfa.estimators.checks import _as_float_samples, _feature_names, _image_shape, _random_seed
from fastfa.estimators.compat import _compat
from fastfa.estimators.params import _MLPParams
from fastfa.estimators.split import validation_split
from fastfa.train import Trainer


class _BaseMLP(_MLPParams):
    """Training loop, fitted attributes and inference of the two estimators (parameters: _MLPParams)."""

    _task = None
    _estimator_type = None

    # ---------------------------------------------------------------- fitted

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_trainer")

    def _check_fitted(self):
        if not hasattr(self, "_trainer"):
            raise _compat("NotFittedError")(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _check_feature_names(self, X):
        """Compare the column names of ``X`` with those seen in ``fit`` (scikit-learn's rules)."""
        fitted = getattr(self, "feature_names_in_", None)
        names = _feature_names(X)
        name = type(self).__name__
        if fitted is None and names is None:
            return None
        if fitted is None:
            warnings.warn(f"X has feature names, but {name} was fitted without feature names", stacklevel=4)
            return None
        if names is None:
            warnings.warn(
                f"X does not have valid feature names, but {name} was fitted with feature names", stacklevel=4
            )
            return None
        if len(fitted) == len(names) and np.all(fitted == names):
            return names
        message = "The feature names should match those that were passed during fit.\n"
        unexpected = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))

        def listing(items):
            lines = [f"- {item}\n" for item in items[:5]]
            return "".join(lines) + ("- ...\n" if len(items) > 5 else "")

        if unexpected:
            message += "Feature names unseen at fit time:\n" + listing(unexpected)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + listing(missing)
        if not unexpected and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)

    def _check_features(self, x, sample_shape):
        """Compare rows ``x`` (samples of ``sample_shape`` as passed) with those seen in ``fit``.

        Images must have the fitted ``image_shape_`` (``(H, W)`` standing for
        ``(1, H, W)``); flat rows, the fitted number of features.
        """
        fitted = getattr(self, "image_shape_", None)  # None in pickles from before images
        if len(sample_shape) > 1 and _image_shape(sample_shape) != fitted:
            expected = f"images of shape {fitted}" if fitted else f"rows of shape ({self.n_features_in_},)"
            raise ValueError(
                f"X has samples of shape {tuple(sample_shape)}, but {type(self).__name__} was fitted on "
                f"{expected}; pass samples of that shape or flat rows of {self.n_features_in_} features"
            )
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _fit_image_shape(self, p, x, sample_shape):
        """``(C, H, W)`` of the samples of a first fit, or None for flat rows of a dense network.

        Images bring their shape; flat rows take the ``image_shape`` parameter.
        Raises ValueError (one line) when the two disagree, when the shape does
        not hold the rows' features, or when conv or pooling layers get no shape.
        """
        given, passed = p["image_shape"], _image_shape(sample_shape)
        if passed is not None and given is not None and passed != given:
            raise ValueError(
                f"X has images of shape {tuple(sample_shape)}, but image_shape={self.image_shape!r}; "
                "leave image_shape at None for image arrays, or make the two agree"
            )
        shape = passed or given
        if shape is None and any(layer.spatial for layer in p["layers"] or ()):
            raise ValueError(
                f"layers={self.layers!r} need images: pass X of shape (n_samples, H, W) or "
                f"(n_samples, C, H, W), or set image_shape=(C, H, W) for the {x.shape[1]} features of flat X"
            )
        if shape is not None and math.prod(shape) != x.shape[1]:
            raise ValueError(
                f"image_shape={self.image_shape!r} has {math.prod(shape)} values, "
                f"but X has {x.shape[1]} features"
            )
        return shape

    @property
    def coefs_(self):
        """Weights of each layer that has some (live views, in ``dtype``).

        A dense layer's is a matrix ``W_l`` of shape ``(n_l, n_{l+1})``; a
        convolution's, a 4-D kernel of shape ``(C_out, C_in, k, k)``.
        """
        self._check_fitted()
        return self._trainer.weights

    @property
    def intercepts_(self):
        """Bias vectors, one per entry of ``coefs_`` (live views, in ``dtype``).

        Length ``n_{l+1}`` for a dense layer, ``C_out`` (one per channel) for a convolution.
        """
        self._check_fitted()
        return self._trainer.biases

    @property
    def feedback_(self):
        """Feedback of the rule; empty for rules without feedback of their own (bp, shallow).

        Dense networks: one matrix ``B`` per hidden layer, shape ``(n_src, n_l)``,
        ``n_src`` the width of the layer above (layerwise rules: fa, usf, frsf,
        brsf) or of the output (direct rules: dfa). With ``layers``, layerwise
        rules have one per layer with weights above the first -- ``(n_out, n_in)``
        for a dense layer, a kernel of its weights' shape ``(C_out, C_in, k, k)``
        for a convolution -- and direct rules one ``(n_outputs, size_l)`` per
        hidden layer with weights, ``size_l`` its flattened output.
        """
        self._check_fitted()
        return self._trainer.feedback_matrices

    @property
    def n_layers_(self):
        """Number of layers, input and output included (scikit-learn's convention).

        With ``layers``, pooling layers count too (a flatten does not: it moves no
        data), so there can be more than ``len(coefs_) + 1``.
        """
        self._check_fitted()
        return len(self._trainer.arch.sizes)

    @property
    def n_outputs_(self):
        self._check_fitted()
        return self._trainer.arch.sizes[-1]

    @property
    def out_activation_(self):
        self._check_fitted()
        return self._trainer.arch.output_activation

    # --------------------------------------------------------------- training

    def _n_outputs(self, y, attrs):
        raise NotImplementedError

    def _encode_targets(self, y, *, first_call, classes, n_rows):
        """Checked, encoded targets and the fitted attributes a first fit sets."""
        raise NotImplementedError

    def _fit(self, x, y, *, incremental, classes=None):
        p = self._validate_params()
        early = p["early_stopping"]
        if incremental and early:
            raise ValueError(
                "partial_fit does not support early_stopping=True (as in scikit-learn); "
                "set early_stopping=False or use fit"
            )
        reuse = hasattr(self, "_trainer") and (incremental or p["warm_start"])
        names = self._check_feature_names(x) if reuse else _feature_names(x)
        x, sample_shape = _as_float_samples(x)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        if reuse:
            self._check_features(x, sample_shape)
        else:
            image_shape = self._fit_image_shape(p, x, sample_shape)
        y_enc, attrs = self._encode_targets(y, first_call=not reuse, classes=classes, n_rows=len(x))
        seed = None if reuse else _random_seed(self.random_state)
        x_train, y_train, x_val, y_val = x, y_enc, None, None
        if early:
            # an int random_state gives the same split on every fit (warm starts too), as in scikit-learn
            split_seed = seed if seed is not None else _random_seed(self.random_state)
            labels = y_enc if self._task == "classification" else None
            train, val = validation_split(len(x), p["validation_fraction"], split_seed, labels)
            x_train, y_train, x_val, y_val = x[train], y_enc[train], x[val], y_enc[val]
        if not reuse:
            config = self._config(p, len(x_train), seed, image_shape)
            trainer = Trainer(config, x.shape[1], self._n_outputs(y_enc, attrs), self._task)
            trainer.use_device(p["device"])
            if trainer.arch.is_dense and trainer.device == "cpu":  # the first fit: a compile helper
                from fastfa import first_run

                first_run.start_if_cold(str(trainer.dtype))
            # set the fitted state only once everything has been checked
            for key, value in attrs.items():
                setattr(self, key, value)
            self._trainer = trainer
            self.n_features_in_ = x.shape[1]
            self.image_shape_ = image_shape
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self.loss_curve_ = []
            self.loss_ = None
            self.n_iter_ = 0
            self.t_ = 0
            self._no_improvement = 0
        else:
            self._trainer.config = self._trainer.config.replace(**self._live_settings(p))
            if not incremental:
                self._no_improvement = 0
        if early:
            # a warm start carries on from the earlier fits' best score and parameters (scikit-learn)
            if not reuse or not isinstance(getattr(self, "validation_scores_", None), list):
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self._best_params = self._trainer.params.copy()
            self.best_loss_ = None
        else:
            if not reuse or getattr(self, "best_loss_", None) is None:
                self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.__dict__.pop("_best_params", None)
        trainer = self._trainer
        epochs = 1 if incremental else p["max_iter"]
        converged = False
        rows = trainer.training_rows(x_train, y_train)  # converted (and on cuda copied) once
        n_rows = len(x_train)
        n_batches = -(-n_rows // trainer.config.batch_size)
        per_output = self.n_outputs_ if self._task == "regression" else 1
        alpha = p["alpha"]
        squares = self._squared_weights() if alpha else 0.0
        for _ in range(epochs):
            loss, _error = trainer.train_epoch_on(rows)
            if not np.isfinite(loss):
                raise ValueError(
                    f"training diverged (loss {loss} at epoch {self.n_iter_ + 1}); "
                    "lower learning_rate_init or the rule's feedback_scale"
                )
            loss /= per_output  # scikit-learn's squared loss averages over the outputs
            if alpha:
                # scikit-learn adds 0.5 alpha ||W_b||^2 for each batch b (weights before its update),
                # divided by the epoch's rows; the norms between the epoch's ends are interpolated
                after = self._squared_weights()
                total = n_batches * squares + 0.5 * (n_batches - 1) * (after - squares)
                loss += 0.5 * alpha * total / n_rows
                squares = after
            self.n_iter_ += 1
            self.t_ += n_rows
            self.loss_ = float(loss)
            self.loss_curve_.append(float(loss))
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            score = self._validation_score(x_val, y_val) if early else None
            if self.verbose and early:
                print(f"Validation score: {score:f}")
            stalled = self._stalled(loss, score, p["tol"], p["n_iter_no_change"])
            if incremental:
                break
            if stalled:
                converged = True
                if self.verbose:
                    what = "Validation score" if early else "Training loss"
                    print(
                        f"{what} did not improve more than tol={p['tol']} for "
                        f"{p['n_iter_no_change']} consecutive epochs. Stopping."
                    )
                break
        if early:
            trainer.params[...] = self._best_params  # the best validation epoch's weights and biases
        if not incremental and not converged:
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({epochs}) reached and the "
                "optimization hasn't converged yet.",
                _compat("ConvergenceWarning"),
                stacklevel=3,
            )
        return self

    def _squared_weights(self):
        """``sum ||W_l||^2`` over ``coefs_`` (no biases), in float64.

        Summed by numpy, not by a BLAS dot: OpenBLAS would wake its threads for it, and they spin
        for a while after the call, into the next epoch's compiled kernels, where they competed
        with the kernels' own threads (an epoch of MLPClassifier's defaults took 1.5x as long).
        """
        total = 0.0
        for w in self._trainer.weights:
            total += float(np.square(w, dtype=np.float64).sum())
        return total

    def _validation_score(self, x, y):
        """The score (accuracy or R^2) on held-out rows with encoded targets ``y``."""
        raise NotImplementedError

    def _stalled(self, loss, score, tol, n_iter_no_change):
        """scikit-learn's stopping rule: no improvement by ``tol`` for ``n_iter_no_change`` epochs.

        Without early stopping (``score`` None) the training loss must fall below
        ``best_loss_ - tol``; with it, the validation ``score`` must rise to
        ``best_validation_score_ + tol``. A new best score saves the parameters.
        """
        if score is None:
            if loss > self.best_loss_ - tol:
                self._no_improvement += 1
            else:
                self._no_improvement = 0
            self.best_loss_ = min(self.best_loss_, float(loss))
        else:
            self.validation_scores_.append(score)
            # comparisons as scikit-learn's, also for a NaN score
            if score < self.best_validation_score_ + tol:
                self._no_improvement += 1
            else:
                self._no_improvement = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params[...] = self._trainer.params
        return self._no_improvement > n_iter_no_change

    def fit(self, X, y):
        """Train on ``(X, y)`` for up to ``max_iter`` epochs; returns ``self``.

        With ``warm_start=True`` and a fitted estimator, training continues
        from the current weights (``n_iter_`` keeps counting).
        """
        return self._fit(X, y, incremental=False)

    # -------------------------------------------------------------- inference

    def _forward(self, X):
        """Network outputs for ``X``, computed in float64.

        The parameters (float32 or float64) are promoted exactly, so each row's
        output is independent of the other rows up to float64 rounding.
        """
        self._check_fitted()
        self._check_feature_names(X)
        x, sample_shape = _as_float_samples(X)
        self._check_features(x, sample_shape)
        return self._trainer.predict_outputs(x, dtype=np.float64)
