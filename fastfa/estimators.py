"""scikit-learn compatible estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They follow scikit-learn's estimator contract (``get_params``/``set_params``,
``fit``, ``partial_fit``, ``predict``, ``score``, fitted attributes ending in
``_``) and its MLP's parameter names where the meaning is the same, plus
``rule=`` -- without importing scikit-learn. Both train through
:class:`fastfa.train.Trainer`, the engine the command line uses.

Differences from scikit-learn's MLP: the default activation is ``tanh``, the
default solver ``sgd`` and the default ``batch_size`` 32 (the settings of the
feedback-alignment papers); ``learning_rate`` schedules are ``constant``,
``step`` and ``cosine``; ``lbfgs`` is not offered (it needs true gradients).
"""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np

from fastfa.config import TrainConfig
from fastfa.train import Trainer


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit`` (same bases as scikit-learn's)."""


class ConvergenceWarning(UserWarning):
    """Training stopped at ``max_iter`` before the loss settled."""


class DataConversionWarning(UserWarning):
    """Input data were converted (e.g. a column-vector ``y`` was flattened)."""


def _is_sparse(x):
    return hasattr(x, "tocsr") or type(x).__module__.startswith("scipy.sparse")


def _as_float_matrix(x, name="X"):
    """``x`` as a finite float64 2-D array, or a ValueError/TypeError saying what is wrong."""
    if x is None:
        raise ValueError(f"{name} is None; pass an array of shape (n_samples, n_features)")
    if _is_sparse(x):
        raise TypeError(f"{name} is a sparse matrix; fastfa needs dense input (use {name}.toarray())")
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise ValueError("Complex data not supported")
    x = np.asarray(x, dtype=np.float64)  # object arrays of non-numbers raise TypeError here
    if x.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {x.ndim}D array instead; reshape your data with "
            "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} has 0 sample(s) (shape={x.shape}); at least 1 is required")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={x.shape}); at least 1 is required")
    if not np.all(np.isfinite(x)):
        kind = "NaN" if np.isnan(x).any() else "infinity"
        raise ValueError(f"Input {name} contains {kind}; remove or impute non-finite values")
    return x


def _random_seed(random_state):
    """An int seed from scikit-learn's ``random_state`` conventions."""
    if random_state is None:
        return int(np.random.randint(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy random state, got {random_state!r}")


class _BaseMLP:
    """Shared parameter handling and training loop of the two estimators."""

    _task = None
    _estimator_type = None

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="tanh",
        *,
        rule="fa",
        rule_options=None,
        solver="sgd",
        alpha=0.0001,
        batch_size=32,
        learning_rate="constant",
        learning_rate_init=0.01,
        learning_rate_step=10,
        learning_rate_gamma=0.1,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        init="uniform",
        dtype="float32",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.rule = rule
        self.rule_options = rule_options
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.learning_rate_step = learning_rate_step
        self.learning_rate_gamma = learning_rate_gamma
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.init = init
        self.dtype = dtype

    # ------------------------------------------------------------ parameters

    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(_BaseMLP.__init__)
        return sorted(p for p in signature.parameters if p != "self")

    def get_params(self, deep=True):
        """Parameters of this estimator, as a dict (scikit-learn contract)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters by name; returns ``self``. Values are checked at ``fit``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"invalid parameter {key!r} for {type(self).__name__}; valid parameters: {', '.join(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self):
        defaults = inspect.signature(_BaseMLP.__init__).parameters
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults[name].default
            same = value is default or (
                type(value) is type(default) and not isinstance(value, np.ndarray) and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _config(self, n_samples):
        """Validate the parameters and turn them into a :class:`TrainConfig`."""
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"solver must be 'sgd' or 'adam', got {self.solver!r}")
        batch = self.batch_size
        if batch == "auto":
            batch = min(200, n_samples)
        if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
            raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
        for name in ("tol",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        n_iter_no_change = self.n_iter_no_change
        if isinstance(n_iter_no_change, bool) or not isinstance(n_iter_no_change, numbers.Integral) or (
            n_iter_no_change < 1
        ):
            raise ValueError(f"n_iter_no_change must be a positive integer, got {n_iter_no_change!r}")
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral):
            hidden = (hidden,)
        if hidden is None or isinstance(hidden, str):
            raise ValueError(f"hidden_layer_sizes must be a tuple of positive integers, got {hidden!r}")
        return TrainConfig(
            hidden=tuple(hidden),
            rule=self.rule,
            rule_options=dict(self.rule_options or {}),
            activation=self.activation,
            init=self.init,
            optimizer=self.solver,
            lr=self.learning_rate_init,
            momentum=self.momentum,
            nesterov=self.nesterovs_momentum,
            weight_decay=float(alpha) / int(batch),
            beta1=self.beta_1,
            beta2=self.beta_2,
            epsilon=self.epsilon,
            schedule=self.learning_rate,
            step_size=self.learning_rate_step,
            gamma=self.learning_rate_gamma,
            batch_size=int(batch),
            epochs=self.max_iter,
            seed=_random_seed(self.random_state),
            shuffle=self.shuffle,
            dtype=self.dtype,
        )

    # ---------------------------------------------------------------- fitted

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_trainer")

    def _check_fitted(self):
        if not hasattr(self, "_trainer"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _check_features(self, x):
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    @property
    def coefs_(self):
        """Weight matrices ``W_l``, shape ``(n_l, n_{l+1})`` (live views)."""
        self._check_fitted()
        return self._trainer.weights

    @property
    def intercepts_(self):
        """Bias vectors ``b_l`` (live views)."""
        self._check_fitted()
        return self._trainer.biases

    @property
    def feedback_(self):
        """Feedback matrices ``B`` of the rule, one per hidden layer, shape ``(n_src, n_l)``.

        Empty for rules without feedback matrices of their own (bp, shallow).
        """
        self._check_fitted()
        return self._trainer.feedback_matrices

    @property
    def n_layers_(self):
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

    def _n_outputs(self, y):
        raise NotImplementedError

    def _encode_targets(self, y, first_call, classes=None):
        raise NotImplementedError

    def _fit(self, x, y, *, incremental, classes=None):
        x = _as_float_matrix(x)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        reuse = hasattr(self, "_trainer") and (incremental or self.warm_start)
        if reuse:
            self._check_features(x)
        y_enc = self._encode_targets(y, first_call=not reuse, classes=classes, n_rows=len(x))
        if not reuse:
            config = self._config(len(x))
            self._trainer = Trainer(config, x.shape[1], self._n_outputs(y_enc), self._task)
            self.n_features_in_ = x.shape[1]
            self.loss_curve_ = []
            self.n_iter_ = 0
            self.t_ = 0
            self.best_loss_ = np.inf
            self._no_improvement = 0
        else:
            self._trainer.config = self._trainer.config.replace(**self._live_settings(len(x)))
        epochs = 1 if incremental else self._check_max_iter()
        for _ in range(epochs):
            loss, _error = self._trainer.train_epoch(x, y_enc)
            if not np.isfinite(loss):
                raise ValueError(
                    f"training diverged (loss {loss} at epoch {self.n_iter_ + 1}); "
                    "lower learning_rate_init or change the rule's feedback_scale"
                )
            self.n_iter_ += 1
            self.t_ += len(x)
            self.loss_curve_.append(float(loss))
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if incremental:
                break
            if self._stalled(loss):
                if self.verbose:
                    print(f"Training loss did not improve more than tol={self.tol} for "
                          f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                break
        else:
            if not incremental:
                warnings.warn(
                    f"{type(self).__name__}: maximum iterations ({epochs}) reached and the "
                    "optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        return self

    def _check_max_iter(self):
        max_iter = self.max_iter
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        return int(max_iter)

    def _live_settings(self, n_samples):
        """Settings a warm start or partial_fit picks up from changed parameters."""
        config = self._config(n_samples)
        keep = ("lr", "momentum", "nesterov", "weight_decay", "schedule", "step_size", "gamma", "epochs")
        return {k: getattr(config, k) for k in keep}

    def _stalled(self, loss):
        """scikit-learn's stopping rule: no improvement by ``tol`` for ``n_iter_no_change`` epochs."""
        if loss > self.best_loss_ - self.tol:
            self._no_improvement += 1
        else:
            self._no_improvement = 0
        self.best_loss_ = min(self.best_loss_, loss)
        return self._no_improvement > self.n_iter_no_change

    def fit(self, X, y):
        """Train on ``(X, y)`` for up to ``max_iter`` epochs; returns ``self``."""
        return self._fit(X, y, incremental=False)

    def _outputs(self, X):
        self._check_fitted()
        x = _as_float_matrix(X)
        self._check_features(x)
        return self._trainer.predict_outputs(x).astype(np.float64)

    # ------------------------------------------------------- scikit-learn tags

    def _more_tags(self):
        return {"allow_nan": False, "requires_y": True}


class MLPClassifier(_BaseMLP):
    """Multi-layer perceptron classifier trained by a rule of the feedback-alignment family.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Width of each hidden layer.
    activation : {"tanh", "logistic", "relu", "identity"}, default "tanh"
    rule : str or fastfa.Rule, default "fa"
        Learning rule (``fastfa.available_rules()``): bp, fa, dfa, usf, frsf,
        brsf, shallow, or one from a plugin.
    rule_options : dict, optional
        Options of the rule, e.g. ``{"feedback_scale": 0.5}``.
    solver : {"sgd", "adam"}, default "sgd"
    alpha : float, default 1e-4
        L2 penalty; as in scikit-learn, ``0.5 * alpha * ||W||^2`` divided by the batch size.
    batch_size : int or "auto", default 32
        ``"auto"`` is ``min(200, n_samples)``.
    learning_rate : {"constant", "step", "cosine"}, default "constant"
        Per-epoch schedule; ``step`` multiplies by ``learning_rate_gamma`` every
        ``learning_rate_step`` epochs, ``cosine`` anneals to 0 over ``max_iter``.
    learning_rate_init : float, default 0.01
    max_iter : int, default 200
        Epochs (passes over the data).
    shuffle : bool, default True
    random_state : int, RandomState or None
        Seeds initial weights, feedback matrices and shuffling; equal seeds give
        bitwise equal models.
    tol, n_iter_no_change :
        Stop when the training loss has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs.
    verbose, warm_start : bool
    momentum : float, default 0.9
    nesterovs_momentum : bool, default True
    beta_1, beta_2, epsilon : float
        Adam's settings.
    init : str or float, default "uniform"
        Weight initialiser: uniform (+-1/sqrt(fan_in)), glorot, he, zeros, or a
        number ``s`` for U[-s, s].
    dtype : {"float32", "float64"}, default "float32"

    Attributes
    ----------
    classes_, coefs_, intercepts_, feedback_, loss_curve_, n_iter_, t_,
    n_features_in_, n_layers_, n_outputs_, out_activation_

    Notes
    -----
    Output layer: softmax with cross-entropy (two outputs for binary problems).
    """

    _task = "classification"
    _estimator_type = "classifier"

    def _n_outputs(self, y):
        return len(self.classes_)

    def _encode_targets(self, y, *, first_call, classes=None, n_rows):
        y = self._check_labels(y, n_rows)
        if first_call:
            if classes is not None:
                self.classes_ = np.unique(np.asarray(classes))
                unseen = np.setdiff1d(np.unique(y), self.classes_)
                if unseen.size:
                    raise ValueError(f"y has labels {unseen.tolist()} that are not in classes {self.classes_.tolist()}")
            else:
                self.classes_ = np.unique(y)
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(
                f"y has labels {unseen.tolist()} not seen in the first fit (classes {self.classes_.tolist()}); "
                "pass classes= on the first partial_fit or refit"
            )
        return np.searchsorted(self.classes_, y)

    @staticmethod
    def _check_labels(y, n_rows):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                "to (n_samples,), for example using ravel().",
                DataConversionWarning,
                stacklevel=4,
            )
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y should be a 1d array of class labels, got an array of shape {y.shape}")
        if len(y) != n_rows:
            raise ValueError(f"X has {n_rows} samples but y has {len(y)}; they must match")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)):
                raise ValueError("Input y contains NaN or infinity; class labels must be finite")
            if np.any(y != np.round(y)):
                raise ValueError("Unknown label type: continuous. Class labels must be integers or strings")
        elif y.dtype.kind not in "iubUSO":
            raise ValueError(f"Unknown label type: {y.dtype}. Class labels must be integers or strings")
        return y

    def partial_fit(self, X, y, classes=None):
        """One epoch on ``(X, y)``; ``classes`` lists every label and is required on the first call."""
        if not hasattr(self, "_trainer") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``; columns follow ``classes_``."""
        return self._outputs(X)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class of each sample."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``(X, y)`` (optionally weighted)."""
        correct = (self.predict(X) == np.asarray(y).reshape(-1)).astype(np.float64)
        return float(np.average(correct, weights=sample_weight))

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(),
        )


class MLPRegressor(_BaseMLP):
    """Multi-layer perceptron regressor trained by a rule of the feedback-alignment family.

    Parameters are those of :class:`MLPClassifier`. The output layer is linear
    and the loss is the squared error ``0.5 ||y - t||^2``. ``y`` may have one
    or several target columns.

    Attributes
    ----------
    coefs_, intercepts_, feedback_, loss_curve_, n_iter_, t_, n_features_in_,
    n_layers_, n_outputs_, out_activation_
    """

    _task = "regression"
    _estimator_type = "regressor"

    def _n_outputs(self, y):
        return y.shape[1]

    def _encode_targets(self, y, *, first_call, classes=None, n_rows):
        y = np.asarray(y)
        if y.dtype.kind not in "iufb":
            raise ValueError(f"regression targets must be numbers, got dtype {y.dtype}")
        y = y.astype(np.float64)
        if first_call:
            self._y_ndim = y.ndim
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-d or 2-d, got shape {y.shape}")
        if len(y) != n_rows:
            raise ValueError(f"X has {n_rows} samples but y has {len(y)}; they must match")
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity; targets must be finite")
        y = y.reshape(n_rows, -1)
        if not first_call and y.shape[1] != self._trainer.arch.sizes[-1]:
            raise ValueError(f"y has {y.shape[1]} target columns, the model was fitted with {self.n_outputs_}")
        return y

    def partial_fit(self, X, y):
        """One epoch on ``(X, y)``, starting from the current weights when fitted."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets, shape ``(n_samples,)`` for one target or ``(n_samples, n_targets)``."""
        out = self._outputs(X)
        return out.ravel() if self._y_ndim == 1 else out

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2, averaged uniformly over targets."""
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        pred = self.predict(X).reshape(len(y), -1)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        resid = np.average((y - pred) ** 2, axis=0, weights=w)
        total = np.average((y - np.average(y, axis=0, weights=w)) ** 2, axis=0, weights=w)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(total > 0, 1.0 - resid / np.where(total > 0, total, 1.0), np.where(resid > 0, 0.0, 1.0))
        return float(np.mean(r2))

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, multi_output=True, single_output=True),
            regressor_tags=RegressorTags(),
            input_tags=InputTags(),
        )
