"""The estimators with layer lists (conv, pooling) and image arrays.

scikit-learn's bundled digits (8x8 images, pixel values scaled to [0, 1]) train a small
``conv:6:3,maxpool:2,dense:32`` network in well under a second per fit once the layer
kernels are compiled (float32 only, to compile them once).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fastfa import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::fastfa.estimators.ConvergenceWarning")

LAYERS = "conv:6:3,maxpool:2,dense:32"
SETTINGS = dict(
    layers=LAYERS, max_iter=10, batch_size=16, learning_rate_init=0.02, init="glorot", random_state=0
)
#: test accuracy each rule reaches at least with tanh (measured 0.950 usf, 0.976 bp for seed 0;
#: seeds 0-4: usf 0.950-0.967, bp 0.974-0.982)
MIN_ACCURACY = {"usf": 0.92, "bp": 0.94}


@pytest.fixture(scope="module")
def digits():
    """Images ``(N, 8, 8)`` in [0, 1] and labels, split 70/30 (stratified, seeded)."""
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    data = datasets.load_digits()
    return model_selection.train_test_split(
        data.images / 16.0, data.target, test_size=0.3, random_state=0, stratify=data.target
    )


@pytest.fixture(scope="module")
def fitted(digits):
    """A conv classifier (rule usf) fitted on ``(N, 8, 8)`` images."""
    x_train, _, y_train, _ = digits
    return MLPClassifier(rule="usf", **SETTINGS).fit(x_train, y_train)


def blob_images(n, seed):
    """Noisy 8x8 images, each with a bright 2x2 blob; targets its row and column, scaled to [-1, 1]."""
    rng = np.random.default_rng(seed)
    where = rng.integers(0, 7, size=(n, 2))
    x = rng.normal(scale=0.1, size=(n, 8, 8))
    for image, (r, c) in zip(x, where):
        image[r : r + 2, c : c + 2] += 1.0
    return x, (where - 3.0) / 3.0


# ------------------------------------------------------------------------ learning


@pytest.mark.parametrize("rule", sorted(MIN_ACCURACY))
def test_conv_classifier_learns_digits(rule, digits, fitted):
    x_train, x_test, y_train, y_test = digits
    clf = fitted if rule == "usf" else MLPClassifier(rule=rule, **SETTINGS).fit(x_train, y_train)
    assert clf.score(x_test, y_test) >= MIN_ACCURACY[rule]
    assert clf.n_features_in_ == 64 and clf.image_shape_ == (1, 8, 8)
    assert [w.shape for w in clf.coefs_] == [(6, 1, 3, 3), (54, 32), (32, 10)]
    assert [b.shape for b in clf.intercepts_] == [(6,), (32,), (10,)]
    assert clf.n_layers_ == 5  # input, conv, maxpool, dense, output
    assert [b.shape for b in clf.feedback_] == ([(32, 54), (10, 32)] if rule == "usf" else [])


def test_conv_regressor_learns_blob_positions():
    x_train, y_train = blob_images(400, 0)
    x_test, y_test = blob_images(200, 1)
    reg = MLPRegressor(
        layers="conv:4:3,maxpool:2,dense:16", activation="relu", rule="usf", max_iter=20,
        batch_size=16, learning_rate_init=0.02, init="glorot", random_state=0,
    ).fit(x_train, y_train)  # fmt: skip
    assert reg.predict(x_test).shape == (200, 2)
    assert reg.score(x_test, y_test) >= 0.95  # measured 0.981 (seeds 0-4: 0.970-0.981)
    assert reg.coefs_[0].shape == (4, 1, 3, 3)


# -------------------------------------------------------------------- image shapes


def test_image_layouts_give_identical_models(digits, fitted):
    """(N, H, W), (N, 1, H, W) and flat X with image_shape train and predict the same."""
    x_train, x_test, y_train, _ = digits
    n = len(x_train)
    expected = fitted.predict_proba(x_test)
    layouts = [
        (x_train[:, None], {}),
        (x_train.reshape(n, 64), {"image_shape": (1, 8, 8)}),
        (x_train.reshape(n, 64), {"image_shape": (8, 8)}),
    ]
    for x, params in layouts:
        clf = MLPClassifier(rule="usf", **SETTINGS, **params).fit(x, y_train)
        assert clf.image_shape_ == (1, 8, 8) and clf.n_features_in_ == 64
        assert np.array_equal(clf.predict_proba(x_test), expected)
    m = len(x_test)
    for x in (x_test[:, None], x_test.reshape(m, 64)):  # any layout of the fitted shape predicts
        assert np.array_equal(fitted.predict_proba(x), expected)


def test_wrong_image_shape_at_predict(digits, fitted):
    _, x_test, _, y_test = digits
    small = x_test[:, :6, :6]
    for method in (fitted.predict, fitted.predict_proba, fitted.predict_log_proba):
        with pytest.raises(
            ValueError, match=r"samples of shape \(6, 6\).*fitted on images of shape \(1, 8, 8\)"
        ):
            method(small)
    with pytest.raises(ValueError) as info:
        fitted.score(np.repeat(x_test[:, None], 3, axis=1), y_test)
    assert "(3, 8, 8)" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"X has 36 features, but MLPClassifier is expecting 64"):
        fitted.predict(small.reshape(len(small), 36))
    with pytest.raises(ValueError, match=r"fitted on images of shape \(1, 8, 8\)"):
        fitted.partial_fit(small, y_test)


def test_images_of_a_flat_fit_are_refused(digits):
    x_train, x_test, y_train, _ = digits
    flat = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(
        x_train.reshape(-1, 64), y_train
    )
    assert flat.image_shape_ is None
    with pytest.raises(ValueError, match=r"samples of shape \(8, 8\).*fitted on rows of shape \(64,\)"):
        flat.predict(x_test)


def test_dense_layers_equal_hidden_layer_sizes(digits):
    """A dense-only layer list trains exactly as the same hidden_layer_sizes, on flat rows or images."""
    x_train, x_test, y_train, _ = digits
    common = dict(max_iter=3, random_state=0, rule="fa")
    for x, test in ((x_train.reshape(len(x_train), 64), x_test.reshape(len(x_test), 64)), (x_train, x_test)):
        by_sizes = MLPClassifier(hidden_layer_sizes=(16, 8), **common).fit(x, y_train)
        by_layers = MLPClassifier(layers="dense:16,dense:8", **common).fit(x, y_train)
        for a, b in zip(by_sizes.coefs_ + by_sizes.intercepts_, by_layers.coefs_ + by_layers.intercepts_):
            assert np.array_equal(a, b)
        assert by_layers._trainer.arch.is_dense
        assert np.array_equal(by_sizes.predict_proba(test), by_layers.predict_proba(test))


# ---------------------------------------------------------------------- parameters


def one_line_error(est, x, y, match):
    with pytest.raises(ValueError, match=match) as info:
        est.fit(x, y)
    assert "\n" not in str(info.value)
    assert not hasattr(est, "n_features_in_")


@pytest.mark.parametrize(
    "params, match",
    [
        (
            {"hidden_layer_sizes": (32,), "layers": LAYERS},
            r"hidden_layer_sizes=\(32,\) and layers=.* both set",
        ),
        ({"layers": "conv:6"}, r"layer 'conv:6' does not read as conv:CHANNELS:KERNEL"),
        ({"layers": "pool:2"}, r"unknown layer kind 'pool'"),
        ({"layers": ["conv:6:3"]}, r"layers must be None, a layer list .* or a preset name \(lenet-mnist"),
        ({"layers": "conv:6:9"}, r"layer 1: conv:6:9 has a 9x9 window over a 8x8 input"),
        ({"layers": LAYERS, "image_shape": (2, 8, 8)}, r"X has images of shape \(8, 8\), but image_shape="),
        ({"image_shape": (8,)}, r"image_shape must be None, \(H, W\) or \(C, H, W\)"),
        ({"image_shape": "1x8x8"}, r"image_shape must be None"),
        ({"layers": LAYERS, "device": "cuda", "dtype": "float64"}, r"cuda engine does not support .*float64"),
    ],
)
def test_bad_layer_parameters(params, match, digits):
    x_train, _, y_train, _ = digits
    one_line_error(MLPClassifier(max_iter=1, **params), x_train[:40], y_train[:40], match)


def test_flat_rows_need_an_image_shape_for_conv_layers(digits):
    x_train, _, y_train, _ = digits
    flat = x_train[:40].reshape(40, 64)
    one_line_error(MLPClassifier(layers=LAYERS), flat, y_train[:40], r"need images: pass X of shape")
    one_line_error(MLPClassifier(image_shape=(1, 7, 7)), flat, y_train[:40], r"has 49 values, but X has 64")


def test_clone_and_params_round_trip(digits, fitted):
    base = pytest.importorskip("sklearn.base")
    x_train, x_test, y_train, _ = digits
    est = MLPClassifier(rule="usf", image_shape=(8, 8), **SETTINGS)
    params = est.get_params()
    assert params["layers"] == LAYERS and params["image_shape"] == (8, 8)
    assert params["hidden_layer_sizes"] == (100,)
    twin = base.clone(est)
    assert twin.get_params() == params and not hasattr(twin, "image_shape_")
    assert MLPRegressor().set_params(layers="lenet-mnist").layers == "lenet-mnist"
    assert repr(MLPClassifier(layers="gap")) == "MLPClassifier(layers='gap')"
    refit = base.clone(fitted).fit(x_train, y_train)
    assert np.array_equal(refit.predict_proba(x_test), fitted.predict_proba(x_test))


def test_pickle_partial_fit_and_early_stopping(digits, fitted):
    x_train, x_test, y_train, y_test = digits
    again = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(again.predict_proba(x_test), fitted.predict_proba(x_test))
    again.partial_fit(x_train, y_train)
    assert again.n_iter_ == fitted.n_iter_ + 1
    early = MLPClassifier(rule="bp", early_stopping=True, **SETTINGS).fit(x_train, y_train)
    assert len(early.validation_scores_) == early.n_iter_
    assert early.score(x_test, y_test) > 0.8
