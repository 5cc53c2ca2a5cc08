"""scikit-learn compatible estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They follow scikit-learn's estimator contract (``get_params``/``set_params``,
``fit``, ``partial_fit``, ``predict``, ``score``, fitted attributes ending in
``_``) and its MLP's parameter names where the meaning is the same, plus
``rule=`` and ``layers=`` (conv and pooling layers over images ``(n_samples,
C, H, W)``) -- without importing scikit-learn. Both train through
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

from fastfa.estimators.classifier import MLPClassifier
from fastfa.estimators.compat import ConvergenceWarning, DataConversionWarning, NotFittedError

# pickles of the scikit-learn compatible exceptions written before the split name fastfa.estimators._rebuild
from fastfa.estimators.compat import _rebuild as _rebuild
from fastfa.estimators.params import SOLVERS
from fastfa.estimators.regressor import MLPRegressor
from fastfa.estimators.split import validation_split

__all__ = [
    "SOLVERS",
    "ConvergenceWarning",
    "DataConversionWarning",
    "MLPClassifier",
    "MLPRegressor",
    "NotFittedError",
    "validation_split",
]
