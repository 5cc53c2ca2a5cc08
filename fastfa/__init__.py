"""fastfa: fast feedback alignment and its relatives, compiled with numba.

Learning rules that train deep networks without weight transport -- feedback
alignment (Lillicrap et al. 2016), direct feedback alignment (Nøkland 2016),
sign-concordant feedback (Liao et al. 2016) -- next to backprop, on one
compiled engine.

>>> from fastfa import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(100,), rule="fa").fit(X, y)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from fastfa.config import TrainConfig
from fastfa.estimators import MLPClassifier, MLPRegressor
from fastfa.loading import load
from fastfa.rules import PluginWarning, Rule, available_rules, get_rule, register_rule
from fastfa.train import Trainer

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "PluginWarning",
    "Rule",
    "TrainConfig",
    "Trainer",
    "__version__",
    "available_rules",
    "get_rule",
    "load",
    "register_rule",
]
