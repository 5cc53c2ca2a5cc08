"""Learning rules as data, and the registry that finds them.

Every rule of the family trains the output layer with its true gradient and
differs only in the signal a hidden layer receives (DESIGN.md section 1):

- ``signal``: where it comes from -- ``backprop`` (``delta_{l+1} W_{l+1}^T``),
  ``layerwise`` (``delta_{l+1} B_{l+1}``), ``direct`` (output error ``e D_l``),
  ``direct-sign`` (``sign(e) D_l``), ``target`` (``-t D_l``, the target projected
  directly) or ``none``;
- ``init_feedback``: how its feedback matrix is drawn;
- ``dynamics``: whether that matrix changes during training -- ``fixed``,
  ``sign`` (``B = |B0| * sign(W^T)`` before each batch), ``sign-redraw``
  (the same with magnitudes redrawn every batch), ``kolen-pollack`` (``B``
  receives ``W^T``'s update, and both decay) or ``mirror`` (``B`` learns ``W^T``
  from noise injected into its layer);
- ``after_batch``: an optional Python hook run after every update, for
  feedback that learns in ways the compiled dynamics do not cover
  (Kolen-Pollack, weight mirrors). A rule with a hook trains batch by batch
  from Python; everything else runs whole epochs in compiled code.

Rules arrive through the entry-point group ``fastfa.rules``; the built-in ones
(package ``fastfa_plugins``, folder ``plugins/``) are registered the same way a
third-party distribution registers its own::

    [project.entry-points."fastfa.rules"]
    myrule = "mypackage.myrule:rule"

where ``rule`` is a :class:`Rule`. A plugin that fails to import or is not a
``Rule`` produces a :class:`PluginWarning` and is skipped; the other rules keep
working.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from fastfa.kernels import codes
from fastfa.network import check_init, init_matrix

ENTRY_POINT_GROUP = "fastfa.rules"
#: Signals that travel through feedback matrices of the rule's own.
FEEDBACK_SIGNALS = ("layerwise", "direct", "direct-sign", "target")
#: Signals whose feedback carries the output error or target straight to every hidden layer.
DIRECT_SIGNALS = ("direct", "direct-sign", "target")


class PluginWarning(UserWarning):
    """A rule plugin could not be loaded, or clashes with another one."""


class PluginError(ValueError):
    """A rule plugin's code raised; the message is one line naming the rule, the plugin and the hook."""


def guard_plugin(rule, origin):
    """``rule`` with the exceptions of its plugin code (``init_feedback``, ``after_batch``) turned
    into :class:`PluginError`: one line naming the rule, ``origin`` (its file or entry point),
    the hook and what it raised."""

    def guarded(hook, func):
        if func is None or getattr(func, "_fastfa_guarded", False):
            return func

        @functools.wraps(func)
        def call(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except PluginError:
                raise
            except Exception as exc:
                what = " ".join(str(exc).split())
                raise PluginError(
                    f"rule {rule.name!r} (plugin {origin}): {hook} raised {type(exc).__name__}"
                    + (f": {what}" if what else "")
                ) from None

        call._fastfa_guarded = True
        return call

    init_feedback = guarded("init_feedback", rule.init_feedback)
    after_batch = guarded("after_batch", rule.after_batch)
    if init_feedback is rule.init_feedback and after_batch is rule.after_batch:
        return rule  # nothing to guard: the registry keeps the plugin's own object
    return dataclasses.replace(rule, init_feedback=init_feedback, after_batch=after_batch)


@dataclass(frozen=True)
class Rule:
    """A learning rule of the feedback-alignment family.

    Parameters
    ----------
    name : str
        Registry name (what ``rule=`` and ``--rule`` take).
    summary : str
        One line for ``fastfa rules``.
    reference : str
        The paper, short form.
    signal : str
        ``backprop``, ``layerwise``, ``direct``, ``target`` or ``none``.
    init_feedback : callable, optional
        ``init_feedback(rng, shape, *, fan_in, fan_out, init, options)``
        returning a float array of ``shape = (n_src, n_l)``: the matrix ``B``
        that carries a signal of width ``n_src`` to hidden layer ``l`` (paper
        orientation). ``fan_in``/``fan_out`` are those of the forward matrix it
        stands in for (``W_{l+1}`` for layerwise rules; ``(n_l, n_out)`` for
        direct ones), ``init`` the network's weight initialiser. Required for
        every signal but ``backprop`` and ``none``.
    dynamics : str
        ``fixed``, ``sign`` or ``sign-redraw`` (layerwise rules only for the
        latter two).
    options : mapping
        Option names and default values; a value given by a user is converted
        to the default's type.
    devices : tuple of str
        Engines the rule runs on.
    after_batch : callable, optional
        ``after_batch(trainer)`` called after every update.
    hidden_signal : callable, optional
        A compiled hidden-layer signal that replaces the built-in one of ``signal`` (which then
        only chooses the layout of the feedback matrices): numba code the epoch loop calls for
        every hidden layer, contract in :mod:`fastfa.compiled_rules`. Dense networks on the CPU.
    feedback_step : callable, optional
        Compiled learning of the rule's feedback matrices, called for every hidden layer before
        and after each update (:mod:`fastfa.compiled_rules`). Needs a ``signal`` with feedback.
    hidden_signal_cuda, feedback_step_cuda : callable, optional
        Their twins for ``--device cuda``: numba CUDA device functions
        (``@cuda.jit(device=True)``) that compute one entry each (:mod:`fastfa.compiled_rules`).
        A rule with compiled code runs on cuda (``"cuda"`` in ``devices``) only when every one
        of its compiled functions has its twin.
    """

    name: str
    summary: str
    reference: str
    signal: str
    init_feedback: Callable | None = None
    dynamics: str = "fixed"
    options: Mapping = field(default_factory=dict)
    devices: tuple = ("cpu",)
    after_batch: Callable | None = None
    hidden_signal: Callable | None = None
    feedback_step: Callable | None = None
    hidden_signal_cuda: Callable | None = None
    feedback_step_cuda: Callable | None = None

    def __post_init__(self):
        if self.signal not in codes.SIGNALS:
            raise ValueError(f"rule {self.name!r}: unknown signal {self.signal!r}")
        if self.dynamics not in codes.DYNAMICS:
            raise ValueError(f"rule {self.name!r}: unknown dynamics {self.dynamics!r}")
        if self.dynamics != "fixed" and self.signal != "layerwise":
            raise ValueError(f"rule {self.name!r}: {self.dynamics!r} dynamics need a layerwise signal")
        for hook in ("hidden_signal", "feedback_step"):
            if getattr(self, hook) is None:
                continue
            if not callable(getattr(self, hook)):
                raise ValueError(f"rule {self.name!r}: {hook} must be a function")
            if "cuda" in self.devices and getattr(self, f"{hook}_cuda") is None:
                raise ValueError(f"rule {self.name!r}: its compiled {hook} has no CUDA twin ({hook}_cuda)")
        for hook in ("hidden_signal", "feedback_step"):
            if getattr(self, f"{hook}_cuda") is not None and getattr(self, hook) is None:
                raise ValueError(f"rule {self.name!r}: {hook}_cuda is the twin of a {hook}, which it lacks")
        if self.hidden_signal is not None and self.signal == "none":
            raise ValueError(f"rule {self.name!r}: a hidden_signal needs a signal other than 'none'")
        if self.feedback_step is not None and self.signal not in FEEDBACK_SIGNALS:
            raise ValueError(f"rule {self.name!r}: a feedback_step needs a signal with feedback matrices")
        needs_feedback = self.signal in FEEDBACK_SIGNALS
        if needs_feedback and self.init_feedback is None:
            raise ValueError(f"rule {self.name!r}: a {self.signal!r} signal needs init_feedback")
        object.__setattr__(self, "options", dict(self.options))

    @property
    def has_feedback(self):
        """Whether the rule keeps feedback matrices of its own."""
        return self.signal in FEEDBACK_SIGNALS

    def resolve_options(self, given=None):
        """Defaults updated by ``given``, each converted to its default's type.

        Raises ``ValueError`` for an unknown option or a value of the wrong kind.
        """
        resolved = dict(self.options)
        for key, value in (given or {}).items():
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise ValueError(f"rule {self.name!r} has no option {key!r} (options: {known})")
            resolved[key] = _convert_option(self.name, key, value, self.options[key])
        return resolved


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _convert_option(rule, key, value, default):
    """``value`` converted to the type of ``default`` (text from the command line included)."""
    kind = type(default)
    bad = ValueError(f"rule {rule!r}: option {key}={value!r} must be a {kind.__name__}")
    if isinstance(default, (list, tuple)):  # "1,2,3" or one value; items take the first default's type
        if isinstance(value, str):
            items = [item for item in value.split(",") if item.strip()]
        else:
            items = list(value) if isinstance(value, (list, tuple)) else [value]
        if default and isinstance(default[0], (str, bool, int, float)):
            items = [_convert_option(rule, key, item, default[0]) for item in items]
        return kind(items)
    if not isinstance(default, (str, bool, int, float)):  # a dict, None, an object: as given only
        if isinstance(value, kind):
            return value
        raise ValueError(f"rule {rule!r}: option {key} takes a {kind.__name__}, not {value!r}")
    if isinstance(default, str):
        return str(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise bad
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad from None
    if isinstance(default, int):
        if not number.is_integer():
            raise bad
        return int(number)
    return kind(number)


# -------------------------------------------------------------- shared initialisers

#: Options of every rule that draws its feedback with :func:`random_feedback`.
RANDOM_FEEDBACK_OPTIONS = {"feedback_init": "same", "feedback_scale": 1.0}


def random_feedback(rng, shape, *, fan_in, fan_out, init, options):
    """Fixed random feedback: ``B ~ scheme(fan_in, fan_out) * feedback_scale``.

    The scheme is the rule option ``feedback_init``: ``"same"`` (default) uses
    the network's own weight initialiser (``"uniform"`` when that is
    ``"zeros"``, which would give no feedback at all); otherwise one of
    :data:`fastfa.network.INIT_SCHEMES` or a number ``s`` for U[-s, s].
    """
    scheme = options.get("feedback_init", "same")
    if scheme == "same":
        scheme = "uniform" if init == "zeros" else init
    else:
        try:
            scheme = check_init(float(scheme))
        except ValueError:
            scheme = check_init(scheme)
    if scheme == "zeros":
        raise ValueError("feedback_init='zeros' gives no feedback; choose a random scheme")
    return init_matrix(rng, shape, scheme, fan_in, fan_out) * float(options.get("feedback_scale", 1.0))


# ------------------------------------------------------------------------ registry

_entry_point_rules: dict | None = None
_runtime_rules: dict = {}


def _is_builtin(entry_point):
    dist = getattr(entry_point, "dist", None)
    return dist is not None and dist.name == "fastfa"


def _load_entry_points():
    rules = {}
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (not _is_builtin(ep), ep.name))
    for ep in found:
        try:
            rule = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            warnings.warn(
                f"fastfa: rule plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        if not isinstance(rule, Rule):
            warnings.warn(
                f"fastfa: rule plugin {ep.name!r} ({ep.value}) is a {type(rule).__name__}, not a fastfa.Rule",
                PluginWarning,
                stacklevel=3,
            )
            continue
        if rule.name in rules:
            warnings.warn(
                f"fastfa: rule {rule.name!r} from {ep.value} duplicates one already registered; ignored",
                PluginWarning,
                stacklevel=3,
            )
            continue
        rules[rule.name] = rule if _is_builtin(ep) else guard_plugin(rule, ep.value)
    return rules


def available_rules():
    """All registered rules by name (entry points loaded once, on first use)."""
    global _entry_point_rules
    if _entry_point_rules is None:
        _entry_point_rules = _load_entry_points()
    return {**_entry_point_rules, **_runtime_rules}


def get_rule(rule):
    """The :class:`Rule` for a name (a ``Rule`` passes through).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(rule, Rule):
        return rule
    rules = available_rules()
    if rule not in rules:
        known = ", ".join(sorted(rules)) or "none (is fastfa installed? try `pip install -e .`)"
        raise ValueError(f"unknown rule {rule!r}; known rules: {known}")
    return rules[rule]


def register_rule(rule, *, replace=False):
    """Register a :class:`Rule` at run time (for rules defined in a script)."""
    if not isinstance(rule, Rule):
        raise TypeError(f"expected a fastfa.Rule, got {type(rule).__name__}")
    if rule.name in available_rules() and not replace:
        raise ValueError(f"rule {rule.name!r} is already registered (pass replace=True)")
    _runtime_rules[rule.name] = rule
    return rule


def load_plugin_file(path):
    """Import the one-file rule plugin at ``path`` and register every :class:`Rule` it defines.

    For ``fastfa train --plugin rule.py``: a rule without packaging. Returns the
    rules registered. Raises ``ValueError`` (one line) when the file is missing,
    fails to import, or defines no ``Rule`` at module level.
    """
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such plugin file")
    # a name stable across processes (not hash(), which Python salts per process): numba's cache
    # of a compiled plugin's code refers to its module by name when a later run loads it
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    module_name = f"fastfa_plugin_file_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ValueError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from None
    rules = [value for value in vars(module).values() if isinstance(value, Rule)]
    if not rules:
        raise ValueError(f"{path}: defines no fastfa Rule (expected e.g. `rule = Rule(...)` at module level)")
    rules = [guard_plugin(rule, path) for rule in rules]
    for rule in rules:
        register_rule(rule, replace=rule.name in _runtime_rules)
    return rules
