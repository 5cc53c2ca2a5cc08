"""scikit-learn compatible exceptions and warnings of the estimators.

fastfa's own :class:`NotFittedError`, :class:`ConvergenceWarning` and
:class:`DataConversionWarning`, and :func:`_compat`, which -- when scikit-learn
is already imported -- gives a subclass that is also scikit-learn's class of the
same name, so code catching or filtering scikit-learn's classes works unchanged.
scikit-learn is never imported here; :func:`_rebuild` unpickles such combined
exceptions (re-exported as ``fastfa.estimators._rebuild`` for older pickles).
"""

from __future__ import annotations

import sys


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
