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
``early_stopping`` holds out ``validation_fraction`` of the rows (stratified
for the classifier) and stops on the validation score, with scikit-learn's
rule and attributes; the split is fastfa's own (seeded by ``random_state``),
not scikit-learn's rows. ``loss_`` and ``loss_curve_`` follow scikit-learn's
formula (mean over outputs for regression, plus the L2 term), with the L2 term
interpolated within an epoch of several batches. The L2 decay of a batch
shorter than ``batch_size`` differs slightly. The estimators do not scale their
input: put a ``StandardScaler`` in front. The class docstrings list the details
under "Differences from scikit-learn".

Training runs in ``dtype`` (float32 by default); predictions are computed in
float64 from the trained parameters, so a row's prediction does not depend on
which other rows are predicted with it (float32 matrix products differ in the
last bits with the number of rows).

When scikit-learn is already imported, the exceptions and warnings raised here
are also instances of scikit-learn's classes of the same name
(``sklearn.exceptions.NotFittedError``, ``ConvergenceWarning``,
``DataConversionWarning``), so code that catches or filters those works
unchanged; fastfa itself never imports scikit-learn (except lazily inside
``__sklearn_tags__``, which only scikit-learn calls).
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import warnings
from collections.abc import Mapping

import numpy as np

from fastfa.config import DTYPES, TrainConfig
from fastfa.kernels import codes
from fastfa.network import check_init
from fastfa.optim import SCHEDULES
from fastfa.rules import Rule, available_rules, get_rule
from fastfa.train import Trainer

SOLVERS = ("sgd", "adam")


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit`` (same bases as scikit-learn's)."""


class ConvergenceWarning(UserWarning):
    """Training stopped at ``max_iter`` before the loss settled."""


class DataConversionWarning(UserWarning):
    """Input data were converted (e.g. a column-vector ``y`` was flattened)."""


# ------------------------------------------------------- scikit-learn's classes

_OURS = {
    "NotFittedError": NotFittedError,
    "ConvergenceWarning": ConvergenceWarning,
    "DataConversionWarning": DataConversionWarning,
}
_COMBINED = {}


def _rebuild(name, args):
    """Unpickle an exception raised as :func:`_compat` ``(name)``."""
    return _compat(name)(*args)


def _compat(name):
    """fastfa's class ``name``, or -- when scikit-learn is already imported -- a
    subclass of it that is also scikit-learn's class of the same name.

    scikit-learn is looked up in ``sys.modules`` only, never imported: whoever
    catches ``sklearn.exceptions.NotFittedError`` has imported it already.
    """
    ours = _OURS[name]
    module = sys.modules.get("sklearn.exceptions")
    theirs = getattr(module, name, None) if module is not None else None
    if not isinstance(theirs, type) or issubclass(ours, theirs):
        return ours
    combined = _COMBINED.get(name)
    if combined is None or not issubclass(combined, theirs):
        namespace = {"__module__": __name__, "__doc__": ours.__doc__, "__qualname__": name}
        if issubclass(ours, BaseException):
            namespace["__reduce__"] = lambda self: (_rebuild, (name, self.args))
        try:
            combined = type(name, (ours, theirs), namespace)
        except TypeError:  # incompatible layouts in some future scikit-learn: ours alone
            return ours
        _COMBINED[name] = combined
    return combined


# ------------------------------------------------------------ input checking


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
        raise ValueError(f"Complex data not supported in {name}; pass real numbers")
    x = np.asarray(x, dtype=np.float64)  # object arrays of non-numbers raise TypeError here
    if x.ndim == 1:
        raise ValueError(
            f"Expected a 2D array for {name}, got a 1D array of shape {x.shape} instead. Reshape your "
            f"data either using {name}.reshape(-1, 1) if it has a single feature or "
            f"{name}.reshape(1, -1) if it contains a single sample."
        )
    if x.ndim != 2:
        raise ValueError(
            f"Expected a 2D array for {name} of shape (n_samples, n_features), got a {x.ndim}D array "
            f"of shape {x.shape} instead"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={x.shape}) while a minimum of 1 is required.")
    if x.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={x.shape}) while a minimum of 1 is required.")
    if not np.all(np.isfinite(x)):
        kind = "NaN" if np.isnan(x).any() else "infinity"
        raise ValueError(f"Input {name} contains {kind}; remove or impute the non-finite values")
    return x


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


def _r2(y, pred, w=None):
    """Coefficient of determination of 2-d ``pred`` for ``y``, averaged uniformly over columns.

    A constant column scores 1 when predicted exactly, else 0 (scikit-learn's convention).
    """
    resid = np.average((y - pred) ** 2, axis=0, weights=w)
    total = np.average((y - np.average(y, axis=0, weights=w)) ** 2, axis=0, weights=w)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1.0 - resid / np.where(total > 0, total, 1.0), np.where(resid > 0, 0.0, 1.0))
    return float(np.mean(r2))


# --------------------------------------------------------- validation split

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
        early_stopping=False,
        validation_fraction=0.1,
        init="uniform",
        dtype="float32",
        device="cpu",
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.init = init
        self.dtype = dtype
        self.device = device

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
        for key in params:
            if key not in valid:
                raise ValueError(
                    f"invalid parameter {key!r} for {type(self).__name__}; "
                    f"valid parameters: {', '.join(valid)}"
                )
        for key, value in params.items():
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

    def _validate_params(self):
        """Check every parameter; return the checked values (ValueError naming the parameter)."""
        hidden = self.hidden_layer_sizes
        if _is_int(hidden):
            hidden = (hidden,)
        try:
            hidden = tuple(hidden) if not isinstance(hidden, (str, bytes)) else None
        except TypeError:
            hidden = None
        if hidden is None or not all(_is_int(h) and h >= 1 for h in hidden):
            raise ValueError(
                f"hidden_layer_sizes must be a positive integer or a sequence of positive integers, "
                f"got {self.hidden_layer_sizes!r}"
            )
        rule = self.rule
        if not isinstance(rule, (str, Rule)):
            raise ValueError(
                f"rule must be a rule name or a fastfa.Rule, got {rule!r}; known rules: "
                f"{', '.join(sorted(available_rules()))}"
            )
        rule = get_rule(rule)  # ValueError listing the known rules
        options = self.rule_options
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"rule_options must be a dict or None, got {options!r}")
        rule.resolve_options(options)  # ValueError naming the unknown option
        batch = self.batch_size
        if not (isinstance(batch, str) and batch == "auto") and not (_is_int(batch) and batch >= 1):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch!r}")
        dtype = self.dtype
        try:
            dtype = np.dtype(dtype).name if dtype is not None else None
        except TypeError:
            dtype = None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {self.dtype!r}")
        random_state = self.random_state
        generators = (np.random.RandomState, np.random.Generator)
        ok_state = random_state is None or isinstance(random_state, generators)
        if not ok_state and not (_is_int(random_state) and 0 <= random_state < 2**32):
            raise ValueError(
                "random_state must be None, an integer in [0, 2**32) or a numpy random state, "
                f"got {random_state!r}"
            )
        try:
            init = check_init(self.init)
        except ValueError as exc:
            raise ValueError(f"init: {exc}") from None
        early_stopping = _boolean("early_stopping", self.early_stopping)
        # scikit-learn accepts [0, 1) and fails in its split for 0 with early stopping
        fraction = _real("validation_fraction", self.validation_fraction, low=0, high=1)
        if early_stopping and fraction == 0:
            raise ValueError(
                "validation_fraction must be a number in (0, 1) when early_stopping is True, got 0.0"
            )
        return {
            "hidden": hidden,
            "activation": _choice("activation", self.activation, tuple(codes.ACTIVATIONS)),
            "rule": self.rule,
            "rule_options": dict(options or {}),
            "solver": _choice("solver", self.solver, SOLVERS),
            "alpha": _real("alpha", self.alpha, low=0),
            "batch_size": batch,
            "learning_rate": _choice("learning_rate", self.learning_rate, SCHEDULES),
            "learning_rate_init": _real("learning_rate_init", self.learning_rate_init, low=0, low_open=True),
            "learning_rate_step": _positive_int("learning_rate_step", self.learning_rate_step),
            "learning_rate_gamma": _real(
                "learning_rate_gamma", self.learning_rate_gamma, low=0, low_open=True
            ),
            "max_iter": _positive_int("max_iter", self.max_iter),
            "shuffle": _boolean("shuffle", self.shuffle),
            "tol": _real("tol", self.tol, low=0),
            "warm_start": _boolean("warm_start", self.warm_start),
            "momentum": _real("momentum", self.momentum, low=0, high=1),
            "nesterovs_momentum": _boolean("nesterovs_momentum", self.nesterovs_momentum),
            "beta_1": _real("beta_1", self.beta_1, low=0, high=1),
            "beta_2": _real("beta_2", self.beta_2, low=0, high=1),
            "epsilon": _real("epsilon", self.epsilon, low=0, low_open=True),
            "n_iter_no_change": _positive_int("n_iter_no_change", self.n_iter_no_change),
            "early_stopping": early_stopping,
            "validation_fraction": fraction,
            "init": init,
            "dtype": dtype,
            "device": _choice("device", self.device, ("cpu", "cuda")),
        }

    @staticmethod
    def _batch(p, n_samples):
        return min(200, n_samples) if p["batch_size"] == "auto" else int(p["batch_size"])

    def _config(self, p, n_samples, seed):
        """A :class:`TrainConfig` from checked parameters ``p`` and the drawn ``seed``."""
        batch = self._batch(p, n_samples)
        return TrainConfig(
            hidden=p["hidden"],
            rule=p["rule"],
            rule_options=p["rule_options"],
            activation=p["activation"],
            init=p["init"],
            optimizer=p["solver"],
            lr=p["learning_rate_init"],
            momentum=p["momentum"],
            nesterov=p["nesterovs_momentum"],
            weight_decay=p["alpha"] / batch,
            beta1=p["beta_1"],
            beta2=p["beta_2"],
            epsilon=p["epsilon"],
            schedule=p["learning_rate"],
            step_size=p["learning_rate_step"],
            gamma=p["learning_rate_gamma"],
            batch_size=batch,
            epochs=p["max_iter"],
            seed=seed,
            shuffle=p["shuffle"],
            dtype=p["dtype"],
        )

    def _live_settings(self, p):
        """Settings a warm start or ``partial_fit`` takes from changed parameters.

        The network, rule, solver, batch size, dtype and seed stay those of the
        first fit; learning rate, its schedule, momentum, Adam's constants,
        ``alpha`` and ``max_iter`` (the schedule's horizon) follow the parameters.
        """
        return {
            "lr": p["learning_rate_init"],
            "momentum": p["momentum"],
            "weight_decay": p["alpha"] / self._trainer.config.batch_size,
            "beta1": p["beta_1"],
            "beta2": p["beta_2"],
            "epsilon": p["epsilon"],
            "schedule": p["learning_rate"],
            "step_size": p["learning_rate_step"],
            "gamma": p["learning_rate_gamma"],
            "epochs": p["max_iter"],
        }

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

    def _check_features(self, x):
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    @property
    def coefs_(self):
        """Weight matrices ``W_l``, shape ``(n_l, n_{l+1})`` (live views, in ``dtype``)."""
        self._check_fitted()
        return self._trainer.weights

    @property
    def intercepts_(self):
        """Bias vectors ``b_l``, length ``n_{l+1}`` (live views, in ``dtype``)."""
        self._check_fitted()
        return self._trainer.biases

    @property
    def feedback_(self):
        """Feedback matrices ``B`` of the rule, one per hidden layer, shape ``(n_src, n_l)``.

        ``n_src`` is the width of the layer above (layerwise rules: fa, usf,
        frsf, brsf) or of the output (direct rules: dfa). Empty for rules
        without feedback matrices of their own (bp, shallow).
        """
        self._check_fitted()
        return self._trainer.feedback_matrices

    @property
    def n_layers_(self):
        """Number of layers, input and output included (scikit-learn's convention)."""
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
        x = _as_float_matrix(x)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        if reuse:
            self._check_features(x)
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
            config = self._config(p, len(x_train), seed)
            trainer = Trainer(config, x.shape[1], self._n_outputs(y_enc, attrs), self._task)
            trainer.use_device(p["device"])
            # set the fitted state only once everything has been checked
            for key, value in attrs.items():
                setattr(self, key, value)
            self._trainer = trainer
            self.n_features_in_ = x.shape[1]
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
        """``sum ||W_l||^2`` over ``coefs_`` (no biases), in float64."""
        total = 0.0
        for w in self._trainer.weights:
            flat = w.astype(np.float64, copy=False).ravel()
            total += float(np.dot(flat, flat))
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
        x = _as_float_matrix(X)
        self._check_features(x)
        return self._trainer.predict_outputs(x, dtype=np.float64)


class MLPClassifier(_BaseMLP):
    """Multi-layer perceptron classifier trained by a rule of the feedback-alignment family.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Width of each hidden layer (``()`` for none: a softmax regression).
    activation : {"tanh", "logistic", "relu", "identity"}, default "tanh"
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


class MLPRegressor(_BaseMLP):
    """Multi-layer perceptron regressor trained by a rule of the feedback-alignment family.

    Parameters are those of :class:`MLPClassifier`; with ``early_stopping``
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
    t_, n_features_in_, feature_names_in_, n_layers_, n_outputs_, out_activation_,
    validation_scores_, best_validation_score_ (as :class:`MLPClassifier`)

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
