"""Training configuration: one validated record shared by the CLI, the estimators and run files."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace

from fastfa.kernels import codes
from fastfa.layers import dense_layers, dense_sizes, layers_text, parse_layers, with_batch_norm
from fastfa.network import check_init
from fastfa.optim import SCHEDULES

DTYPES = ("float32", "float64")
STANDARDIZE = ("auto", "on", "channel", "off")
MAX_SEED = 2**63 - 1  # seeds travel through int64 (the kernels' configuration)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _number(name, value, *, low, high=None, low_open=False, high_open=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        lo = f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be a number {lo}{hi}, got {value!r}")
    return value


def _milestones(value, schedule):
    """Milestones as a tuple of increasing positive ints; required by the multistep schedule."""
    items = (value,) if isinstance(value, numbers.Integral) else tuple(value or ())
    ints = [_positive_int("milestone", m) for m in items]
    if any(b <= a for a, b in zip(ints, ints[1:])):
        raise ValueError(f"milestones must be increasing epochs, got {','.join(map(str, ints))}")
    if schedule == "multistep" and not ints:
        raise ValueError("the multistep schedule needs milestones, e.g. 50,75")
    return tuple(ints)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (apart from the data).

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer sizes, e.g. ``(1000,)``; may be empty (a single layer).
    rule : str
        Name of a registered learning rule (``fastfa rules`` lists them).
    rule_options : dict
        Options of that rule (``feedback_scale``, ...).
    activation : str
        Hidden nonlinearity: tanh, logistic, relu or identity.
    output_activation, loss : str or None
        ``None`` picks the task's default: softmax + cross_entropy for
        classification, identity + squared_error for regression.
    init : str or float
        Weight initialiser (:func:`fastfa.network.init_matrix`).
    optimizer : str
        ``sgd`` (with ``momentum``, ``nesterov``), ``adam`` (``beta1``,
        ``beta2``, ``epsilon``), or ``manhattan``: Batch Manhattan (Liao, Leibo and
        Poggio 2016), SGD on the sign of each entry of the batch gradient, with
        ``momentum`` and ``nesterov`` as for SGD and the weight decay added after the
        sign (``v <- mu v + sign(g) + decay w``, ``w <- w - lr v``).
    lr : float
        Initial learning rate; ``schedule`` (constant, step, multistep, cosine) with
        ``step_size``, ``milestones``, ``gamma`` and ``lr_min`` changes it per epoch
        (:func:`fastfa.optim.learning_rate`).
    milestones : tuple of int
        Increasing 1-based epochs after which ``multistep`` multiplies the rate by ``gamma``.
    weight_decay : float
        L2 penalty ``0.5 * weight_decay * ||W||^2`` per update (weights only).
    batch_size, epochs, seed : int
    shuffle : bool
        Reshuffle the training rows every epoch.
    dtype : str
        ``float32`` (default) or ``float64``.
    valid_fraction : float
        Fraction of the training rows held out for validation (0: none, unless the
        dataset has a ``valid`` split); the rows are drawn from ``seed``
        (:mod:`fastfa.validation`).
    early_stopping : int
        Stop after this many epochs without a better validation figure (0: never).
    standardize : {"auto", "on", "channel", "off"}
        Per-feature standardisation with statistics of the training rows, kept with the
        model (:mod:`fastfa.standardize`); ``auto`` standardises float inputs and leaves
        ``uint8`` inputs with ``x_scale`` (images) as they are; ``channel`` uses one mean and
        deviation per image channel (one for all features without an image shape).
    layers : str
        The hidden layers as a layer list or preset name (:mod:`fastfa.layers`), e.g.
        ``"conv:6:5,maxpool:2,dense:84"``; empty for a dense network of ``hidden``. Stored in
        canonical form; a list of dense layers only is stored as ``hidden`` instead, so it
        trains exactly as ``--hidden`` does.
    image_shape : tuple of int
        ``(C, H, W)`` of the inputs, needed by conv and pooling layers and by augmentation;
        empty otherwise.
    crop_padding : int
        Training-time augmentation (:mod:`fastfa.augment`): pad every training image with this
        many zero pixels on each side and crop a window of its size at a random offset
        (0: no crops).
    flip : bool
        Training-time augmentation: mirror half of the training images left to right.
    dropout : tuple of float
        Dropout rates of the hidden layers' outputs in training (:mod:`fastfa.kernels.dropout`;
        Srivastava et al. 2014): one rate for every hidden layer, or one per hidden layer
        (on a layer list, per layer with weights below the output); empty for none.
    batch_norm : bool
        Batch normalisation (:mod:`fastfa.kernels.batch_norm`; Ioffe and Szegedy 2015) on every
        hidden layer with weights: the shorthand for ``+bn`` on each of them, which ``layers``
        then holds (a dense network becomes the layer list of its ``hidden`` sizes).
    """

    hidden: tuple = (100,)
    rule: str = "fa"
    rule_options: dict = field(default_factory=dict)
    activation: str = "tanh"
    output_activation: str | None = None
    loss: str | None = None
    init: str | float = "uniform"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.1
    lr_min: float = 0.0
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    shuffle: bool = True
    dtype: str = "float32"
    milestones: tuple = ()
    valid_fraction: float = 0.0
    early_stopping: int = 0
    standardize: str = "auto"
    layers: str = ""
    image_shape: tuple = ()
    crop_padding: int = 0
    flip: bool = False
    dropout: tuple = ()
    batch_norm: bool = False

    def __post_init__(self):
        hidden = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else tuple(self.hidden)
        object.__setattr__(self, "hidden", tuple(_positive_int("hidden layer size", h) for h in hidden))
        self._check_layers()
        object.__setattr__(self, "rule_options", dict(self.rule_options or {}))
        if self.activation not in codes.ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(codes.ACTIVATIONS)}"
            )
        object.__setattr__(self, "init", check_init(self.init))
        if self.optimizer not in codes.OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(codes.OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if (
            isinstance(self.crop_padding, bool)
            or not isinstance(self.crop_padding, numbers.Integral)
            or (self.crop_padding < 0)
        ):
            raise ValueError(f"crop padding must be a whole number of pixels >= 0, got {self.crop_padding!r}")
        rates = tuple(self.dropout or ())
        for rate in rates:
            if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
                raise ValueError(f"a dropout rate must lie in [0, 1), got {rate!r}")
        object.__setattr__(self, "dropout", tuple(float(r) for r in rates))
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be one of {', '.join(STANDARDIZE)}, got {self.standardize!r}")
        object.__setattr__(self, "milestones", _milestones(self.milestones, self.schedule))
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        checks = {
            "lr": _number("learning rate", self.lr, low=0, low_open=True),
            "momentum": _number("momentum", self.momentum, low=0, high=1),
            "weight_decay": _number("weight decay", self.weight_decay, low=0),
            "beta1": _number("beta1", self.beta1, low=0, high=1),
            "beta2": _number("beta2", self.beta2, low=0, high=1),
            "epsilon": _number("epsilon", self.epsilon, low=0, low_open=True),
            "gamma": _number("gamma", self.gamma, low=0, low_open=True),
            "lr_min": _number("lr_min", self.lr_min, low=0),
            "batch_size": _positive_int("batch size", self.batch_size),
            "epochs": _positive_int("epochs", self.epochs),
            "step_size": _positive_int("step size", self.step_size),
            "valid_fraction": _number("valid fraction", self.valid_fraction, low=0, high=1),
        }
        patience = self.early_stopping
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"early stopping must be a non-negative number of epochs, got {patience!r}")
        checks["early_stopping"] = int(patience)
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to 2**63-1 ({MAX_SEED}), got {self.seed!r}")
        checks["seed"] = int(self.seed)
        checks["nesterov"] = bool(self.nesterov)
        checks["shuffle"] = bool(self.shuffle)
        for name, value in checks.items():
            object.__setattr__(self, name, value)

    def _check_layers(self):
        """Canonical ``layers`` (dense-only lists become ``hidden``) and a valid ``image_shape``."""
        if not isinstance(self.layers, str):
            raise ValueError(
                f"layers must be a layer list such as conv:6:5,maxpool:2,dense:84, got {self.layers!r}"
            )
        shape = tuple(self.image_shape or ())
        if shape and (
            len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape)
        ):
            raise ValueError(
                f"image shape must be three positive integers (C, H, W), got {self.image_shape!r}"
            )
        object.__setattr__(self, "image_shape", tuple(int(s) for s in shape))
        object.__setattr__(self, "batch_norm", bool(self.batch_norm))
        if self.batch_norm:
            layers = parse_layers(self.layers) if self.layers else dense_layers(self.hidden)
            object.__setattr__(self, "layers", layers_text(with_batch_norm(layers)))
        if not self.layers:
            return
        layers = parse_layers(self.layers)  # LayerError is a ValueError with a one-line message
        sizes = dense_sizes(layers)
        if sizes is not None:
            object.__setattr__(self, "hidden", sizes)
            object.__setattr__(self, "layers", "")
        else:
            object.__setattr__(self, "hidden", ())
            object.__setattr__(self, "layers", layers_text(layers))

    @property
    def augments(self):
        """Whether training images are augmented (random crops or flips, :mod:`fastfa.augment`)."""
        return self.crop_padding > 0 or self.flip

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_json(self):
        """The configuration as a JSON string (for run files)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Inverse of :meth:`to_json`; unknown keys are an error."""
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**data)
