"""The scikit-learn compatible estimators: API contract, input checking, determinism.

Data are tiny (tens of rows, a few features) so the whole module runs in
seconds once the kernels are compiled; the kernels are shared by every rule,
so only the float32 and float64 specialisations get compiled.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from fastfa import MLPClassifier, MLPRegressor
from fastfa.estimators import ConvergenceWarning, DataConversionWarning, NotFittedError, validation_split

pytestmark = pytest.mark.filterwarnings("ignore::fastfa.estimators.ConvergenceWarning")

ESTIMATORS = [MLPClassifier, MLPRegressor]
SKLEARN_MLP_PARAMS = (
    "hidden_layer_sizes",
    "activation",
    "solver",
    "alpha",
    "batch_size",
    "learning_rate",
    "learning_rate_init",
    "max_iter",
    "momentum",
    "nesterovs_momentum",
    "random_state",
    "shuffle",
    "tol",
    "n_iter_no_change",
    "verbose",
    "warm_start",
    "beta_1",
    "beta_2",
    "epsilon",
)


def small(cls, **params):
    """An estimator small enough to fit in milliseconds."""
    defaults = {"hidden_layer_sizes": (8,), "max_iter": 15, "batch_size": 8, "random_state": 0}
    return cls(**{**defaults, **params})


@pytest.fixture(scope="module")
def blobs():
    """Three well separated classes in 3-d, 60 rows."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [2.5, 2.5, 0.0], [0.0, 2.5, 2.5]])
    y = rng.permutation(np.repeat([0, 1, 2], 20))
    X = centers[y] + rng.normal(scale=0.4, size=(60, 3))
    return X, y


@pytest.fixture(scope="module")
def linear():
    """A noiseless linear target of 3 features, 120 rows."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    return X, y


def data_for(cls, blobs, linear):
    return blobs if cls is MLPClassifier else linear


# ------------------------------------------------------------------ check_estimator


@pytest.mark.sklearn
@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_sklearn_check_estimator(cls):
    """Every check of scikit-learn's check_estimator passes, with the default parameters."""
    pytest.importorskip("sklearn", minversion="1.6")
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(cls(), on_fail=None)
    failed = [f"{r['check_name']}: {r['exception']!r}" for r in results if r["status"] == "failed"]
    assert not failed, "\n".join(failed)
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    # the checks that matter for an MLP actually ran (not skipped)
    must_pass = {
        "check_estimators_unfitted",
        "check_fit2d_predict1d",
        "check_methods_subset_invariance",
        "check_estimators_empty_data_messages",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_fit_idempotent",
        "check_n_features_in_after_fitting",
        "check_estimators_partial_fit_n_features",
        "check_dtype_object",
        "check_supervised_y_2d",
    }
    must_pass |= {"check_classifiers_train"} if cls is MLPClassifier else {"check_regressors_train"}
    assert must_pass <= passed, sorted(must_pass - passed)
    # only checks needing an optional package or switch may skip
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {
        "check_array_api_input",
        "check_classifier_data_not_an_array",
        "check_regressor_data_not_an_array",
    }


@pytest.mark.sklearn
def test_sklearn_exceptions_and_warnings_are_recognised(blobs):
    """With scikit-learn imported, fastfa's errors and warnings are also scikit-learn's."""
    pytest.importorskip("sklearn", minversion="1.6")
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
    from sklearn.exceptions import DataConversionWarning as SkDataConversionWarning
    from sklearn.exceptions import NotFittedError as SkNotFittedError

    X, y = blobs
    with pytest.raises(SkNotFittedError) as info:
        MLPClassifier().predict(X)
    assert isinstance(info.value, NotFittedError)
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, SkNotFittedError) and again.args == info.value.args
    with pytest.warns(SkConvergenceWarning):
        small(MLPClassifier, max_iter=1).fit(X, y)
    with pytest.warns(SkDataConversionWarning):
        small(MLPClassifier, max_iter=1).fit(X, y[:, None])
    assert is_classifier(MLPClassifier()) and is_regressor(MLPRegressor())
    est = small(MLPRegressor, rule="dfa", alpha=0.5)
    assert clone(est).get_params() == est.get_params()


def test_no_sklearn_import():
    """fastfa trains and predicts without importing scikit-learn."""
    code = textwrap.dedent(
        """
        import sys, warnings
        import numpy as np
        from fastfa import MLPClassifier, MLPRegressor
        warnings.simplefilter("ignore")
        X = np.random.default_rng(0).normal(size=(20, 3))
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, X[:, 0] > 0)
        clf.predict_proba(X); repr(clf); clf.get_params()
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, X[:, 1]).predict(X)
        try:
            MLPRegressor().predict(X)
        except ValueError:
            pass
        loaded = sorted(m for m in sys.modules if m == "sklearn" or m.startswith("sklearn."))
        assert not loaded, loaded
        print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


# ---------------------------------------------------------------------- parameters


def test_parameter_names_follow_sklearn():
    for cls in ESTIMATORS:
        params = cls().get_params()
        assert set(SKLEARN_MLP_PARAMS) <= set(params)
        assert "rule" in params and params["rule"] == "fa"


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_get_set_params_round_trip(cls):
    est = cls(hidden_layer_sizes=(7, 3), rule="dfa", alpha=0.25, learning_rate_init=0.05, random_state=4)
    params = est.get_params()
    assert params["hidden_layer_sizes"] == (7, 3) and params["rule"] == "dfa" and params["alpha"] == 0.25
    twin = cls(**params)
    assert twin.get_params() == params
    other = cls()
    assert other.set_params(**params) is other
    assert other.get_params() == params
    assert other.set_params() is other


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_set_params_rejects_unknown_names(cls):
    est = cls(alpha=0.5)
    with pytest.raises(ValueError, match=r"invalid parameter 'learning_rat' for " + cls.__name__):
        est.set_params(alpha=1.0, learning_rat=0.1)
    assert est.alpha == 0.5  # nothing set when one name is bad


def test_repr():
    assert repr(MLPClassifier()) == "MLPClassifier()"
    assert repr(MLPRegressor()) == "MLPRegressor()"
    est = MLPClassifier(hidden_layer_sizes=(5,), rule="dfa", learning_rate_init=0.1)
    assert repr(est) == "MLPClassifier(hidden_layer_sizes=(5,), learning_rate_init=0.1, rule='dfa')"
    assert repr(MLPRegressor(activation="relu")) == "MLPRegressor(activation='relu')"


def test_init_sets_parameters_only():
    est = MLPClassifier(rule="not-a-rule", alpha=-1)  # checked at fit, not here
    assert est.rule == "not-a-rule" and est.alpha == -1
    assert not hasattr(est, "classes_") and not hasattr(est, "coefs_")


# ----------------------------------------------------------------------- bad input

BAD_PARAMS = [
    ({"rule": "nope"}, r"unknown rule 'nope'; known rules: .*\bbp\b.*\bfa\b"),
    ({"rule": None}, r"rule must be a rule name.*known rules: .*\bdfa\b"),
    ({"rule_options": {"colour": 1}}, r"rule 'fa' has no option 'colour'"),
    ({"activation": "swish"}, r"unknown activation 'swish'; choose one of .*'tanh'"),
    ({"solver": "lbfgs"}, r"unknown solver 'lbfgs'; choose one of 'sgd', 'adam'"),
    ({"hidden_layer_sizes": (8, 0)}, r"hidden_layer_sizes must be .*positive integers, got \(8, 0\)"),
    ({"hidden_layer_sizes": -3}, r"hidden_layer_sizes must be a positive integer"),
    ({"hidden_layer_sizes": (4.5,)}, r"hidden_layer_sizes must be"),
    ({"learning_rate_init": 0.0}, r"learning_rate_init must be a positive number, got 0\.0"),
    ({"learning_rate_init": -0.1}, r"learning_rate_init must be a positive number"),
    ({"learning_rate_init": float("nan")}, r"learning_rate_init must be a positive number"),
    ({"batch_size": 0}, r"batch_size must be a positive integer or 'auto', got 0"),
    ({"batch_size": "big"}, r"batch_size must be a positive integer or 'auto'"),
    ({"max_iter": 0}, r"max_iter must be a positive integer, got 0"),
    ({"max_iter": 2.5}, r"max_iter must be a positive integer"),
    ({"alpha": -0.001}, r"alpha must be a non-negative number, got -0\.001"),
    ({"alpha": float("inf")}, r"alpha must be a non-negative number"),
    ({"momentum": 1.5}, r"momentum must be a number in \[0, 1\), got 1\.5"),
    ({"momentum": -0.1}, r"momentum must be a number in \[0, 1\)"),
    ({"momentum": "high"}, r"momentum must be a number in \[0, 1\)"),
    ({"learning_rate": "adaptive"}, r"unknown learning_rate 'adaptive'; choose one of 'constant'"),
    ({"tol": -1.0}, r"tol must be a non-negative number"),
    ({"n_iter_no_change": 0}, r"n_iter_no_change must be a positive integer"),
    ({"beta_1": 1.0}, r"beta_1 must be a number in \[0, 1\)"),
    ({"epsilon": 0.0}, r"epsilon must be a positive number"),
    ({"dtype": "float16"}, r"dtype must be one of 'float32', 'float64', got 'float16'"),
    ({"random_state": -1}, r"random_state must be None, an integer"),
    ({"random_state": "seed"}, r"random_state must be None, an integer"),
    ({"shuffle": "yes"}, r"shuffle must be True or False"),
    ({"init": "orthogonal"}, r"init: unknown init 'orthogonal'"),
    ({"early_stopping": "yes"}, r"early_stopping must be True or False"),
    ({"validation_fraction": 1.0}, r"validation_fraction must be a number in \[0, 1\), got 1\.0"),
    ({"validation_fraction": -0.1}, r"validation_fraction must be a number in \[0, 1\)"),
    ({"validation_fraction": "10%"}, r"validation_fraction must be a number in \[0, 1\)"),
    (
        {"early_stopping": True, "validation_fraction": 0.0},
        r"validation_fraction must be a number in \(0, 1\) when early_stopping is True",
    ),
    (
        {"early_stopping": True, "validation_fraction": 0.999},
        r"validation_fraction=0\.999 .*no training sample",
    ),
]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("params, match", BAD_PARAMS, ids=[str(p) for p, _ in BAD_PARAMS])
def test_bad_parameters_raise_value_error(cls, params, match, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    with pytest.raises(ValueError, match=match):
        small(cls, **params).fit(X, y)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_bad_parameters_checked_by_partial_fit(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    kwargs = {"classes": [0, 1, 2]} if cls is MLPClassifier else {}
    with pytest.raises(ValueError, match=r"unknown solver 'newton'"):
        small(cls, solver="newton").partial_fit(X, y, **kwargs)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_bad_data_in_fit(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    est = small(cls)
    with pytest.raises(ValueError, match=r"got a 1D array.*Reshape your data"):
        est.fit(X[:, 0], y)
    with pytest.raises(ValueError, match=r"Expected a 2D array for X.*got a 5D array"):
        est.fit(X[:, :, None, None, None], y)  # 3-D and 4-D X are images (tests/test_estimators_conv.py)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: X has \d+ rows, y has \d+"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(\d+, 0\)\)"):
        est.fit(X[:, :0], y)
    for value, word in ((np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")):
        bad = X.copy()
        bad[3, 1] = value
        with pytest.raises(ValueError, match=f"Input X contains {word}"):
            est.fit(bad, y)
    with pytest.raises(ValueError, match=r"requires y to be passed"):
        est.fit(X, None)
    with pytest.raises(ValueError, match=r"Complex data not supported"):
        est.fit(X + 1j, y)
    assert not hasattr(est, "n_features_in_")


def test_bad_targets():
    X = np.random.default_rng(2).normal(size=(10, 2))
    y = np.arange(10.0)
    for value, word in ((np.nan, "NaN"), (np.inf, "infinity")):
        bad = y.copy()
        bad[4] = value
        with pytest.raises(ValueError, match=f"Input y contains {word}"):
            small(MLPRegressor).fit(X, bad)
        with pytest.raises(ValueError, match="Input y contains NaN or infinity"):
            small(MLPClassifier).fit(X, bad)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        small(MLPClassifier).fit(X, y + 0.5)
    with pytest.raises(ValueError, match="regression targets y must be numbers"):
        small(MLPRegressor).fit(X, np.array(list("abcdefghij")))
    with pytest.raises(ValueError, match=r"y should be a 1d array of class labels"):
        small(MLPClassifier).fit(X, np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"y must be 1-d .* or 2-d"):
        small(MLPRegressor).fit(X, np.zeros((10, 2, 2)))
    with pytest.raises(ValueError, match=r"Mix of label input types"):
        small(MLPClassifier).fit(X, np.array([0, "a"] * 5, dtype=object))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_bad_data_in_predict(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    est = small(cls).fit(X, y)
    methods = [est.predict] + ([est.predict_proba, est.predict_log_proba] if cls is MLPClassifier else [])
    for method in methods:
        with pytest.raises(ValueError, match=f"X has 2 features, but {cls.__name__} is expecting 3 features"):
            method(X[:, :2])
        with pytest.raises(ValueError, match="Reshape your data"):
            method(X[0])
        bad = X.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="Input X contains NaN"):
            method(bad)
    with pytest.raises(ValueError, match=r"X and y have inconsistent numbers of samples"):
        est.score(X, y[:-1])
    with pytest.raises(ValueError, match=f"X has 4 features, but {cls.__name__} is expecting 3"):
        est.partial_fit(np.hstack([X, X[:, :1]]), y)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_not_fitted(cls, blobs):
    X, _ = blobs
    est = cls()
    methods = ["predict", "score"] + (["predict_proba", "predict_log_proba"] if cls is MLPClassifier else [])
    for name in methods:
        args = (X,) if name != "score" else (X, np.zeros(len(X)))
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
            getattr(est, name)(*args)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    for attr in ("coefs_", "intercepts_", "feedback_", "n_layers_", "n_outputs_"):
        assert not hasattr(est, attr)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_failed_refit_keeps_the_fitted_model(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    est = small(cls).fit(X, y)
    before = est.predict(X)
    with pytest.raises(ValueError, match="Input y contains"):
        est.fit(X, np.full(len(y), np.nan))
    with pytest.raises(ValueError, match="unknown rule"):
        est.set_params(rule="nope").fit(X, y)
    np.testing.assert_array_equal(est.predict(X), before)


# ------------------------------------------------------------------- fit and predict


def test_classifier_shapes_and_probabilities(blobs):
    X, y = blobs
    clf = small(MLPClassifier, max_iter=40).fit(X, y)
    assert clf.fit(X, y) is clf
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    pred = clf.predict(X)
    assert pred.shape == (60,) and set(pred) <= {0, 1, 2}
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 3) and proba.dtype == np.float64
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-10, atol=1e-12)
    assert clf.score(X, y) == pytest.approx(np.mean(pred == y))
    assert clf.score(X, y) > 0.9  # the blobs are separable
    assert [w.shape for w in clf.coefs_] == [(3, 8), (8, 3)]
    assert [b.shape for b in clf.intercepts_] == [(8,), (3,)]
    assert clf.n_features_in_ == 3 and clf.n_layers_ == 3 and clf.n_outputs_ == 3
    assert clf.out_activation_ == "softmax"
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_ == clf.loss_curve_[-1]
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_classifier_string_and_binary_labels(blobs):
    X, y = blobs
    names = np.array(["ant", "bee", "cat"])[y]
    clf = small(MLPClassifier).fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["ant", "bee", "cat"])
    assert set(clf.predict(X)) <= set(names)
    binary = small(MLPClassifier).fit(X, y == 1)
    assert binary.predict_proba(X).shape == (60, 2)
    assert binary.predict(X).dtype == bool


def test_classifier_column_vector_y_warns(blobs):
    X, y = blobs
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        clf = small(MLPClassifier, max_iter=2).fit(X, y[:, None])
    assert clf.predict(X).shape == (60,)


def test_convergence_warning_and_early_stop(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match=r"maximum iterations \(3\) reached"):
        small(MLPClassifier, max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = small(MLPClassifier, max_iter=500, tol=10.0, n_iter_no_change=2).fit(X, y)
    # epoch 1 sets the best loss; epochs 2-4 do not beat it by tol=10, and the
    # third such epoch is more than n_iter_no_change=2 (scikit-learn's rule)
    assert clf.n_iter_ == 4


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_regressor_learns_a_linear_target(rule, linear):
    X, y = linear
    reg = MLPRegressor(
        hidden_layer_sizes=(16,),
        rule=rule,
        max_iter=60,
        batch_size=8,
        learning_rate_init=0.02,
        random_state=0,
    ).fit(X, y)
    assert reg.score(X, y) > 0.9
    pred = reg.predict(X)
    assert pred.shape == (120,) and pred.dtype == np.float64
    resid = np.sum((y - pred) ** 2)
    assert reg.score(X, y) == pytest.approx(1 - resid / np.sum((y - y.mean()) ** 2))


def test_regressor_output_shapes(linear):
    X, y = linear
    two = np.column_stack([y, -y])
    reg = small(MLPRegressor).fit(X, two)
    assert reg.predict(X).shape == (120, 2) and reg.n_outputs_ == 2
    assert small(MLPRegressor).fit(X, y[:, None]).predict(X).shape == (120, 1)
    assert small(MLPRegressor).fit(X, y).predict(X[:1]).shape == (1,)
    assert small(MLPRegressor).fit(X, y.astype(object)).predict(X).shape == (120,)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predictions_do_not_depend_on_the_other_rows(dtype, linear):
    """Row by row and all at once agree to float64 precision, also for a float32 model."""
    X, y = linear
    reg = small(MLPRegressor, dtype=dtype).fit(X, 100 * y)
    full = reg.predict(X)
    rows = np.concatenate([reg.predict(row[None]) for row in X])
    np.testing.assert_allclose(rows, full, rtol=1e-12, atol=0)


# --------------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", ["fa", "dfa", "brsf"])
def test_same_seed_gives_bitwise_equal_models(rule, dtype, blobs):
    X, y = blobs

    def fit(seed):
        return small(MLPClassifier, rule=rule, dtype=dtype, random_state=seed, max_iter=5).fit(X, y)

    a, b, c = fit(3), fit(3), fit(4)
    arrays_a = a.coefs_ + a.intercepts_ + a.feedback_
    arrays_b = b.coefs_ + b.intercepts_ + b.feedback_
    assert len(arrays_a) == 5  # two weight matrices, two bias vectors, one feedback matrix
    for wa, wb in zip(arrays_a, arrays_b, strict=True):
        assert wa.dtype == np.dtype(dtype)
        assert wa.tobytes() == wb.tobytes()
    assert a.loss_curve_ == b.loss_curve_
    assert a.predict_proba(X).tobytes() == b.predict_proba(X).tobytes()
    assert a.coefs_[0].tobytes() != c.coefs_[0].tobytes()


def test_random_state_instances_are_reproducible(linear):
    X, y = linear
    a = small(MLPRegressor, random_state=np.random.RandomState(7)).fit(X, y)
    b = small(MLPRegressor, random_state=np.random.RandomState(7)).fit(X, y)
    assert a.coefs_[0].tobytes() == b.coefs_[0].tobytes()


# ------------------------------------------------------- partial_fit and warm_start


def test_classifier_partial_fit(blobs):
    X, y = blobs
    clf = small(MLPClassifier)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        clf.partial_fit(X, y)
    first = y < 2  # the first chunk lacks class 2
    assert clf.partial_fit(X[first], y[first], classes=[0, 1, 2]) is clf
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (60, 3)
    clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=np.array([2, 1, 0]))  # the same classes, in any order
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    with pytest.raises(ValueError, match=r"y has labels \[7\] not seen in the first fit"):
        clf.partial_fit(X[:2], np.array([0, 7]))
    with pytest.raises(ValueError, match=r"differs from the classes of the first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"y has labels \[5\] that are not in classes"):
        small(MLPClassifier).partial_fit(X[:2], np.array([0, 5]), classes=[0, 1])


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_partial_fit_epochs_equal_fit(cls, blobs, linear):
    """Three partial_fit calls on the same data are bitwise the same as fit(max_iter=3)."""
    X, y = data_for(cls, blobs, linear)
    kwargs = {"classes": np.unique(y)} if cls is MLPClassifier else {}
    full = small(cls, max_iter=3).fit(X, y)
    inc = small(cls, max_iter=3)
    for _ in range(3):
        inc.partial_fit(X, y, **kwargs)
        kwargs = {}
    assert inc.n_iter_ == 3 and inc.loss_curve_ == full.loss_curve_
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_warm_start_continues(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    warm = small(cls, max_iter=4, warm_start=True).fit(X, y)
    first = [w.copy() for w in warm.coefs_]
    warm.fit(X, y)
    assert warm.n_iter_ == 8 and len(warm.loss_curve_) == 8
    assert any(not np.array_equal(a, b) for a, b in zip(first, warm.coefs_, strict=True))
    cold = small(cls, max_iter=8).fit(X, y)  # 4 + 4 epochs are 8 epochs
    for a, b in zip(warm.coefs_, cold.coefs_, strict=True):
        assert a.tobytes() == b.tobytes()
    restart = small(cls, max_iter=4).fit(X, y)
    restart.fit(X, y)  # without warm_start, fit starts over
    assert restart.n_iter_ == 4
    for a, b in zip(restart.coefs_, first, strict=True):
        assert a.tobytes() == b.tobytes()


def test_warm_start_picks_up_learning_rate(linear):
    X, y = linear
    reg = small(MLPRegressor, max_iter=2, warm_start=True).fit(X, y)
    reg.set_params(learning_rate_init=0.123, alpha=0.5).fit(X, y)
    assert reg._trainer.config.lr == 0.123
    assert reg._trainer.config.weight_decay == 0.5 / 8


# -------------------------------------------------------------- fitted attributes


@pytest.mark.parametrize(
    "rule, shapes",
    [
        ("fa", [(4, 5), (3, 4)]),  # layerwise: B_l carries delta of layer l+1, shape (n_{l+1}, n_l)
        ("dfa", [(3, 5), (3, 4)]),  # direct: the output error (3 classes) to each hidden layer
        ("bp", []),
        ("shallow", []),
    ],
)
def test_feedback_shapes(rule, shapes, blobs):
    X, y = blobs
    clf = small(MLPClassifier, hidden_layer_sizes=(5, 4), rule=rule, max_iter=2).fit(X, y)
    assert [b.shape for b in clf.feedback_] == shapes
    if rule == "fa":  # B_l stands in for W_{l+1}^T
        assert [b.shape for b in clf.feedback_] == [w.T.shape for w in clf.coefs_[1:]]


def test_fixed_feedback_does_not_change(blobs):
    X, y = blobs
    clf = small(MLPClassifier, rule="fa", max_iter=1, warm_start=True).fit(X, y)
    before = [b.copy() for b in clf.feedback_]
    clf.fit(X, y)
    for a, b in zip(before, clf.feedback_, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pickle_round_trip(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    est = small(cls, rule="dfa").fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    assert again.get_params() == est.get_params()
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    if cls is MLPClassifier:
        assert again.predict_proba(X).tobytes() == est.predict_proba(X).tobytes()
    # the training state travels too: one more epoch stays bitwise equal
    est.partial_fit(X, y)
    again.partial_fit(X, y)
    for a, b in zip(est.coefs_, again.coefs_, strict=True):
        assert a.tobytes() == b.tobytes()


def test_not_fitted_error_pickles():
    try:
        MLPRegressor().predict([[1.0]])
    except NotFittedError as exc:
        again = pickle.loads(pickle.dumps(exc))
        assert isinstance(again, NotFittedError) and again.args == exc.args
    else:  # pragma: no cover
        pytest.fail("no NotFittedError")


class _Frame:
    """The least a data frame offers: ``columns`` and conversion to an array."""

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)


def test_feature_names(linear):
    X, y = linear
    frame = _Frame(X, ["a", "b", "c"])
    reg = small(MLPRegressor).fit(frame, y)
    np.testing.assert_array_equal(reg.feature_names_in_, ["a", "b", "c"])
    assert reg.feature_names_in_.dtype == object
    np.testing.assert_array_equal(reg.predict(frame), small(MLPRegressor).fit(X, y).predict(X))
    with pytest.raises(ValueError, match=r"Feature names must be in the same order"):
        reg.predict(_Frame(X[:, ::-1], ["c", "b", "a"]))
    with pytest.raises(ValueError, match=r"Feature names unseen at fit time:\n- d\n"):
        reg.predict(_Frame(X, ["a", "b", "d"]))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        reg.predict(X)
    reg.fit(X, y)  # refit without names forgets them
    assert not hasattr(reg, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but MLPRegressor was fitted without"):
        reg.predict(frame)


# ------------------------------------------------------------------- early stopping


def test_validation_split_semantics():
    """ceil(fraction * n) rows held out, disjoint and complete, seeded, stratified with labels."""
    train, val = validation_split(50, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(50))
    assert np.array_equal(train, np.sort(train)) and np.array_equal(val, np.sort(val))
    again = validation_split(50, 0.1, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert not np.array_equal(validation_split(50, 0.1, seed=4)[1], val)
    assert len(validation_split(7, 0.3, seed=0)[1]) == 3  # ceil(2.1), as train_test_split
    labels = np.repeat([0, 1, 2], [40, 20, 10])
    for seed in range(5):
        train, val = validation_split(70, 0.2, seed=seed, labels=labels)
        assert len(val) == 14 and not set(train) & set(val)
        np.testing.assert_array_equal(np.bincount(labels[val], minlength=3), [8, 4, 2])
    with pytest.raises(ValueError, match=r"validation set is too small \(1 of 10 samples"):
        validation_split(10, 0.1, seed=0)
    with pytest.raises(ValueError, match=r"validation_fraction=0\.95 .*leaves no training sample"):
        validation_split(10, 0.95, seed=0)
    with pytest.raises(ValueError, match=r"least populated class in y has only 1 member"):
        validation_split(10, 0.3, seed=0, labels=np.array([0] * 9 + [1]))
    with pytest.raises(ValueError, match=r"validation set of 2 samples, fewer than the 3 classes"):
        validation_split(12, 0.1, seed=0, labels=np.repeat([0, 1, 2], 4))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_early_stopping_attributes(cls, blobs, linear):
    X, y = data_for(cls, blobs, linear)
    plain = small(cls).fit(X, y)
    assert plain.validation_scores_ is None and plain.best_validation_score_ is None
    assert plain.best_loss_ == min(plain.loss_curve_)
    est = small(cls, early_stopping=True, max_iter=30).fit(X, y)
    assert est.best_loss_ is None
    assert len(est.validation_scores_) == est.n_iter_ == len(est.loss_curve_)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.t_ == est.n_iter_ * (len(X) - math.ceil(0.1 * len(X)))  # training rows only
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        kwargs = {"classes": [0, 1, 2]} if cls is MLPClassifier else {}
        small(cls, early_stopping=True).partial_fit(X, y, **kwargs)
    # a later fit without early stopping goes back to scikit-learn's attributes for that case
    est.set_params(early_stopping=False).fit(X, y)
    assert est.validation_scores_ is None and est.best_loss_ == min(est.loss_curve_)


def test_early_stopping_stops_when_the_validation_score_stalls(blobs):
    """Accuracy on the held-out blobs reaches 1 and stays: n_iter_no_change + 1 epochs later, it stops."""
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = small(
            MLPClassifier, early_stopping=True, validation_fraction=0.2, max_iter=500, learning_rate_init=0.1
        ).fit(X, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ < 500 and len(scores) == clf.n_iter_
    best = int(np.argmax(scores))  # first epoch with the best score
    assert scores[best] == clf.best_validation_score_ == 1.0
    assert clf.n_iter_ == best + 1 + clf.n_iter_no_change + 1  # scikit-learn's count
    # without early stopping the training loss keeps improving for longer
    assert small(MLPClassifier, max_iter=500, learning_rate_init=0.1).fit(X, y).n_iter_ > clf.n_iter_


@pytest.fixture(scope="module")
def noisy():
    """A linear target with noise, 120 rows: R^2 on held-out rows peaks and falls back."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.5, size=120)
    return X, y


def test_early_stopping_restores_the_best_epoch(noisy):
    X, y = noisy
    params = {"early_stopping": True, "learning_rate_init": 0.1, "max_iter": 300}
    reg = small(MLPRegressor, **params).fit(X, y)
    scores = np.array(reg.validation_scores_)
    best = int(np.argmax(scores))
    assert best < reg.n_iter_ - 1 and scores[-1] < scores[best]  # the case this test is about
    # training is deterministic: a fit that ends at the best epoch has the restored parameters
    short = small(MLPRegressor, **{**params, "max_iter": best + 1}).fit(X, y)
    assert short.validation_scores_ == reg.validation_scores_[: best + 1]
    for a, b in zip(reg.coefs_ + reg.intercepts_, short.coefs_ + short.intercepts_, strict=True):
        assert a.tobytes() == b.tobytes()
    # and they score best_validation_score_ on the held-out rows, which are fastfa's seeded split
    train, val = validation_split(len(X), 0.1, seed=0)
    assert reg.score(X[val], y[val]) == pytest.approx(reg.best_validation_score_, rel=1e-12)
    # the same fit without early stopping on the training rows alone reaches the last epoch's weights
    last = small(MLPRegressor, learning_rate_init=0.1, max_iter=reg.n_iter_).fit(X[train], y[train])
    assert last.score(X[val], y[val]) == pytest.approx(scores[-1], rel=1e-12)
    assert last.coefs_[0].tobytes() != reg.coefs_[0].tobytes()


def test_early_stopping_split_is_stratified_and_deterministic(blobs):
    X, y = blobs
    a = small(MLPClassifier, early_stopping=True, validation_fraction=0.25).fit(X, y)
    b = small(MLPClassifier, early_stopping=True, validation_fraction=0.25).fit(X, y)
    assert a.validation_scores_ == b.validation_scores_ and a.coefs_[0].tobytes() == b.coefs_[0].tobytes()
    train, val = validation_split(len(X), 0.25, seed=0, labels=y)
    assert len(val) == 15 and not set(train) & set(val)
    np.testing.assert_array_equal(np.bincount(y[val]), [5, 5, 5])
    # the estimator trained on exactly those rows: the same epochs without early stopping agree
    twin = small(MLPClassifier, max_iter=a.n_iter_).fit(X[train], y[train])
    assert twin.loss_curve_ == a.loss_curve_


def test_early_stopping_warm_start_continues(noisy):
    X, y = noisy
    reg = small(MLPRegressor, early_stopping=True, warm_start=True, max_iter=3).fit(X, y)
    first = list(reg.validation_scores_)
    reg.fit(X, y)
    assert reg.n_iter_ == 6 and reg.validation_scores_[:3] == first and len(reg.validation_scores_) == 6
    assert reg.best_validation_score_ == max(reg.validation_scores_)


# ------------------------------------------------------------------------------ loss


def _forward(coefs, intercepts, X):
    h = X
    for k, (w, b) in enumerate(zip(coefs, intercepts, strict=True)):
        h = h @ w + b
        if k < len(coefs) - 1:
            h = np.tanh(h)
    return h


def test_regression_loss_is_sklearns_formula(linear):
    """One batch per epoch: loss_ is ((y - p)**2).mean() / 2 + 0.5 alpha sum ||W||^2 / n exactly."""
    X, y = linear
    Y = np.column_stack([y, 0.5 * y + X[:, 0]])
    alpha = 0.3
    reg = MLPRegressor(
        hidden_layer_sizes=(6,), alpha=alpha, batch_size=200, shuffle=False, max_iter=1, dtype="float64",
        warm_start=True, random_state=0,
    )  # fmt: skip
    reg.fit(X, Y)
    coefs = [w.copy() for w in reg.coefs_]
    intercepts = [b.copy() for b in reg.intercepts_]
    reg.fit(X, Y)  # its one batch is measured on the weights the first fit ended with
    p = _forward(coefs, intercepts, X)
    expected = ((Y - p) ** 2).mean() / 2 + 0.5 * alpha * sum((w**2).sum() for w in coefs) / len(X)
    assert reg.loss_ == pytest.approx(expected, rel=1e-12)
    # the classifier's loss has the same L2 term
    clf = MLPClassifier(
        hidden_layer_sizes=(6,), alpha=alpha, batch_size=200, shuffle=False, max_iter=1, dtype="float64",
        warm_start=True, random_state=0,
    ).fit(X, y > 0)  # fmt: skip
    coefs = [w.copy() for w in clf.coefs_]
    logits = _forward(coefs, [b.copy() for b in clf.intercepts_], X)
    clf.fit(X, y > 0)
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    data = -log_p[np.arange(len(X)), (y > 0).astype(int)].mean()
    expected = data + 0.5 * alpha * sum((w**2).sum() for w in coefs) / len(X)
    assert clf.loss_ == pytest.approx(expected, rel=1e-12)


def _one_epoch_each_from_equal_weights(batch_size, alpha, lr=0.1):
    """fastfa (rule bp, float64, plain SGD) and scikit-learn after one epoch from the same weights."""
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    common = {
        "hidden_layer_sizes": (5,), "activation": "tanh", "solver": "sgd", "alpha": alpha,
        "batch_size": batch_size, "learning_rate_init": lr, "momentum": 0.0, "shuffle": False, "max_iter": 1,
    }  # fmt: skip
    ours = MLPRegressor(rule="bp", dtype="float64", random_state=0, warm_start=True, **common).fit(X, y)
    theirs = SkMLPRegressor(random_state=0, **common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.partial_fit(X, y)  # sets up its state; then take our weights
        for dst, src in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_, strict=True):
            dst[...] = src
        theirs.partial_fit(X, y)
    ours.fit(X, y)
    return ours, theirs


@pytest.mark.sklearn
def test_loss_and_update_against_sklearn():
    """Equal weights in, one epoch: full batches agree with scikit-learn to rounding, loss_ included;
    a short last batch is decayed less (alpha / batch_size, not alpha / rows in it)."""
    pytest.importorskip("sklearn", minversion="1.6")
    ours, theirs = _one_epoch_each_from_equal_weights(batch_size=6, alpha=0.1)  # one batch
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-13)
    ours, theirs = _one_epoch_each_from_equal_weights(batch_size=3, alpha=0.1)  # two full batches
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    # the L2 term of the second batch is interpolated between the epoch's ends
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-3) and ours.loss_ != theirs.loss_
    ours, theirs = _one_epoch_each_from_equal_weights(batch_size=4, alpha=0.1)  # 4 rows, then 2
    for a, b in zip(ours.intercepts_, theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    # the last batch shrinks scikit-learn's weights by a further lr * alpha * (1/2 - 1/4) = 2.5e-3
    gap = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(ours.coefs_, theirs.coefs_, strict=True))
    assert 2e-3 < gap < 3e-3


# ------------------------------------------------------------------------- pipelines


@pytest.mark.sklearn
@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pipeline_with_a_scaler(cls, blobs, linear):
    """No hidden scaling: the documented make_pipeline(StandardScaler(), ...) fits, predicts and scores."""
    pytest.importorskip("sklearn", minversion="1.6")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = data_for(cls, blobs, linear)
    X = 1000.0 * X + 500.0  # features far from unit scale
    model = make_pipeline(StandardScaler(), small(cls, max_iter=60, learning_rate_init=0.05))
    assert model.fit(X, y) is model
    assert model.predict(X).shape == (len(X),)
    assert model.score(X, y) > 0.9
    assert model[-1].n_features_in_ == 3


def test_float32_samples_are_not_copied_to_float64():
    """fit takes float32 rows as they are (no float64 round trip); other numbers become float64."""
    from fastfa.estimators.checks import _as_float_samples

    x32 = np.arange(12, dtype=np.float32).reshape(3, 4)
    rows, shape = _as_float_samples(x32)
    assert rows.dtype == np.float32 and np.shares_memory(rows, x32) and shape == (4,)
    assert _as_float_samples(x32.astype(np.int16))[0].dtype == np.float64
    assert _as_float_samples(x32.astype(np.float16))[0].dtype == np.float64
    images = np.zeros((2, 1, 3, 3), dtype=np.float32)
    rows, shape = _as_float_samples(images)
    assert rows.shape == (2, 9) and rows.dtype == np.float32 and shape == (1, 3, 3)
