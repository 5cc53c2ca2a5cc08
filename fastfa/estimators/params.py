"""The estimators' parameters: constructor, scikit-learn's parameter contract, checks.

:class:`_MLPParams` holds what concerns the parameters alone: ``__init__`` with
scikit-learn's MLP names (plus ``rule=``, ``layers=`` and ``image_shape=``), ``get_params``/``set_params``,
``repr`` listing the changed ones, their validation at ``fit`` (a ValueError
naming the parameter) and their translation into a :class:`fastfa.config.TrainConfig`
or, for a warm start, into the settings that follow changed parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from fastfa.config import DTYPES, TrainConfig
from fastfa.estimators.checks import _boolean, _choice, _is_int, _positive_int, _real, _shape
from fastfa.kernels import codes
from fastfa.layers import PRESETS, layers_text, parse_layers
from fastfa.network import check_init
from fastfa.optim import SCHEDULES
from fastfa.rules import Rule, available_rules, get_rule

SOLVERS = ("sgd", "adam")
_DEFAULT_HIDDEN = (100,)


class _MLPParams:
    """Parameter handling shared by the two estimators (base of :class:`_BaseMLP`)."""

    def __init__(
        self,
        hidden_layer_sizes=_DEFAULT_HIDDEN,
        activation="tanh",
        *,
        layers=None,
        image_shape=None,
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
        self.layers = layers
        self.image_shape = image_shape
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
        signature = inspect.signature(_MLPParams.__init__)
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
        defaults = inspect.signature(_MLPParams.__init__).parameters
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
        layers = self._check_layers(hidden)
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
            "layers": layers,
            "image_shape": _shape("image_shape", self.image_shape),
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

    def _check_layers(self, hidden):
        """The parsed ``layers`` (None when not given), ``hidden`` the checked ``hidden_layer_sizes``.

        Raises ValueError (one line) for a list that does not parse, and when a
        non-default ``hidden_layer_sizes`` is given too.
        """
        layers = self.layers
        if layers is None:
            return None
        if not isinstance(layers, str):
            raise ValueError(
                "layers must be None, a layer list such as 'conv:6:3,maxpool:2,dense:32' or a preset "
                f"name ({', '.join(PRESETS)}), got {layers!r}"
            )
        if hidden != _DEFAULT_HIDDEN:
            raise ValueError(
                f"give the hidden layers once: hidden_layer_sizes={self.hidden_layer_sizes!r} and "
                f"layers={layers!r} are both set; write dense layers into layers as dense:N"
            )
        return parse_layers(layers)  # LayerError, a ValueError with a one-line message

    @staticmethod
    def _batch(p, n_samples):
        return min(200, n_samples) if p["batch_size"] == "auto" else int(p["batch_size"])

    def _config(self, p, n_samples, seed, image_shape):
        """A :class:`TrainConfig` from checked parameters ``p``, the drawn ``seed`` and the
        ``(C, H, W)`` of the samples (None for flat rows)."""
        batch = self._batch(p, n_samples)
        return TrainConfig(
            hidden=p["hidden"],
            layers=layers_text(p["layers"]) if p["layers"] else "",
            image_shape=image_shape or (),
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
