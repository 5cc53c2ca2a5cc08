"""Identities the rules must satisfy exactly (DESIGN.md section 5).

- fa with B = W^T *is* bp (gradients and whole training runs);
- bp's gradient (and its SGD update) is the finite-difference gradient of the loss;
- dfa with one hidden layer and D = B is fa;
- usf / frsf feedback has the signs of W^T, before every batch, with fixed magnitudes;
- shallow never touches the hidden layers, whatever the optimiser;
- fa and dfa do *not* silently equal bp: their hidden updates point elsewhere at init;
- runs are bitwise reproducible from the seed.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastfa.rules
from fastfa.rules import Rule, register_rule
from tests import naive
from tests.conftest import (
    DTYPES,
    OUTPUTS,
    SHAPES,
    angle_degrees,
    assert_close,
    make_data,
    make_trainer,
)

ALL_RULES = ("bp", "fa", "dfa", "usf", "frsf", "brsf", "shallow")


@pytest.fixture
def isolated_registry(monkeypatch):
    """Runtime rules registered by a test vanish after it."""
    monkeypatch.setattr(fastfa.rules, "_runtime_rules", {})


def symmetrise(trainer):
    """Set every layerwise feedback matrix to the transpose of the weights it stands in for."""
    for layer, b in enumerate(trainer.feedback_matrices):
        b[...] = trainer.weights[layer + 1].T


# --------------------------------------------------------------- (a) fa(B = W^T) == bp


@pytest.mark.parametrize("opt", [dict(momentum=0.9, weight_decay=1e-3), dict(optimizer="adam", lr=0.01)])
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
def test_fa_with_transposed_weights_is_bp(sizes, opt, rng):
    cfg = {"lr": 0.1, "batch_size": 5, **opt}
    fa = make_trainer(sizes, "fa", "float64", **cfg)
    bp = make_trainer(sizes, "bp", "float64", **cfg)
    np.testing.assert_array_equal(fa.params, bp.params)  # same seed, same initial weights
    x, y = make_data(rng, 23, sizes)
    symmetrise(fa)
    assert_close(fa.gradients(x, y), bp.gradients(x, y), "float64")

    # training: B is reset to the current W^T before every batch (fa's B is fixed otherwise)
    x, labels, targets = fa.prepare(x, y)
    for _ in range(4):
        order = rng.permutation(len(x))
        for start in range(0, len(order), cfg["batch_size"]):
            symmetrise(fa)
            fa.train_rows(x, labels, targets, order[start : start + cfg["batch_size"]])
        bp.train_rows(x, labels, targets, order)
    assert fa.step == bp.step == 20
    assert_close(fa.params, bp.params, "float64")
    assert_close(fa.state, bp.state, "float64")


def test_symmetric_feedback_rule_trains_like_bp(rng, isolated_registry):
    """The same identity through the ``after_batch`` hook (the batch-by-batch Python path)."""

    def no_draw(rng, shape, **_):
        return np.zeros(shape)  # draws nothing, so both trainers shuffle identically

    register_rule(
        Rule(
            name="test-symmetric",
            summary="B = W^T after every update",
            reference="-",
            signal="layerwise",
            init_feedback=no_draw,
            after_batch=symmetrise,
        )
    )
    sizes = SHAPES[1]
    sym = make_trainer(sizes, "test-symmetric", "float64", lr=0.1, batch_size=4)
    bp = make_trainer(sizes, "bp", "float64", lr=0.1, batch_size=4)
    symmetrise(sym)
    x, y = make_data(rng, 18, sizes)
    for _ in range(3):
        assert sym.train_epoch(x, y) == pytest.approx(bp.train_epoch(x, y), rel=1e-12)
    assert_close(sym.params, bp.params, "float64")


# ------------------------------------------------------- (b) bp == finite differences


def finite_difference_gradient(trainer, x, y, h=1e-6):
    """Central differences of the mean loss the library reports, one parameter at a time."""
    params = trainer.params
    grad = np.zeros(params.size)
    for i in range(params.size):
        old = params[i]
        params[i] = old + h
        up = trainer.evaluate(x, y)[0]
        params[i] = old - h
        down = trainer.evaluate(x, y)[0]
        params[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def rows_away_from_kinks(trainer, rng, n, margin=0.01):
    """Input rows; for relu, rows whose hidden pre-activations all keep ``|a| > margin``.

    A step of 1e-6 in any parameter moves a pre-activation by far less than the margin,
    so no finite difference straddles relu's kink.
    """
    if trainer.config.activation != "relu":
        return rng.uniform(-1.0, 1.0, size=(n, trainer.arch.sizes[0]))
    weights, biases = naive.split_params(trainer.params, trainer.arch.sizes)
    acts = [trainer.config.activation] * (len(weights) - 1) + [trainer.arch.output_activation]
    candidates = rng.uniform(-1.0, 1.0, size=(100 * n, trainer.arch.sizes[0]))
    pre, _ = naive.forward(weights, biases, acts, candidates)
    ok = np.all([np.all(np.abs(a) > margin, axis=1) for a in pre[:-1]], axis=0)
    assert ok.sum() >= n
    return candidates[ok][:n]


@pytest.mark.parametrize("task,out_act,loss", OUTPUTS[:4])
@pytest.mark.parametrize("act", naive.HIDDEN_ACTIVATIONS)
def test_bp_gradient_is_finite_difference(act, task, out_act, loss, rng):
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "bp", "float64", task, activation=act, output_activation=out_act, loss=loss)
    for b in tr.biases:  # non-zero biases, so their gradients are exercised too
        b[...] = rng.uniform(-0.2, 0.2, size=b.shape)
    x = rows_away_from_kinks(tr, rng, 6)
    _, y = make_data(rng, 6, sizes, task, out_act)
    analytic = tr.gradients(x, y)
    numeric = finite_difference_gradient(tr, x, y)
    assert np.abs(numeric).max() > 1e-3  # a gradient worth comparing
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_bp_sgd_update_is_finite_difference_of_regularised_loss(weight_decay, rng):
    """One plain SGD step moves by ``-lr * grad(L + wd/2 ||W||^2)`` (biases not decayed)."""
    sizes = SHAPES[1]
    lr = 0.5
    tr = make_trainer(sizes, "bp", "float64", lr=lr, momentum=0.0, weight_decay=weight_decay, batch_size=8)
    x, y = make_data(rng, 8, sizes)
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    numeric = finite_difference_gradient(tr, x, y)
    numeric[:n_w] += weight_decay * tr.params[:n_w]  # d/dW of wd/2 ||W||^2
    before = tr.params.copy()
    tr.train_epoch(x, y)  # one full batch
    np.testing.assert_allclose((before - tr.params) / lr, numeric, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------ (c) dfa == fa, one hidden layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [dict(momentum=0.9), dict(optimizer="adam", lr=0.01)])
def test_dfa_is_fa_with_one_hidden_layer(opt, dtype, rng):
    sizes = SHAPES[0]
    cfg = {"lr": 0.1, "batch_size": 4, "seed": 5, **opt}
    fa = make_trainer(sizes, "fa", dtype, **cfg)
    dfa = make_trainer(sizes, "dfa", dtype, **cfg)
    (b,), (d,) = fa.feedback_matrices, dfa.feedback_matrices
    assert b.shape == d.shape == (sizes[-1], sizes[1])
    d[...] = b  # D = B (the default draws agree already; this makes the premise explicit)
    x, y = make_data(rng, 19, sizes)
    np.testing.assert_array_equal(fa.gradients(x, y), dfa.gradients(x, y))
    for _ in range(3):
        assert fa.train_epoch(x, y) == dfa.train_epoch(x, y)
    np.testing.assert_array_equal(fa.params, dfa.params)


def test_dfa_differs_from_fa_with_two_hidden_layers(rng):
    """The converse: with two hidden layers the first one hears a different signal."""
    sizes = SHAPES[1]
    fa, dfa = make_trainer(sizes, "fa"), make_trainer(sizes, "dfa")
    dfa.feedback_matrices[1][...] = fa.feedback_matrices[1]  # same last feedback matrix
    x, y = make_data(rng, 19, sizes)
    g_fa, g_dfa = fa.gradients(x, y), dfa.gradients(x, y)
    w_fa, w_dfa = fa.arch.weights(g_fa), dfa.arch.weights(g_dfa)
    np.testing.assert_array_equal(w_fa[1], w_dfa[1])
    np.testing.assert_array_equal(w_fa[2], w_dfa[2])
    assert angle_degrees(w_fa[0], w_dfa[0]) > 30


# -------------------------------------------------- (d) sign-concordant feedback


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["usf", "frsf"])
def test_sign_concordant_feedback_follows_the_weights(rule, dtype, rng):
    sizes = SHAPES[1]
    tr = make_trainer(sizes, rule, dtype, lr=0.5, momentum=0.9, batch_size=4)
    magnitude = [np.abs(b).copy() for b in tr.feedback_matrices]
    for layer, b in enumerate(tr.feedback_matrices):
        np.testing.assert_array_equal(np.sign(b), np.sign(tr.weights[layer + 1].T))
        if rule == "usf":  # one magnitude per layer: the mean |W| of the uniform initialiser
            s = 0.5 / np.sqrt(sizes[layer + 1])
            np.testing.assert_allclose(np.abs(b), s, rtol=1e-6)
            assert 0.7 < np.abs(tr.weights[layer + 1]).mean() / s < 1.3
        else:  # random magnitudes
            assert np.unique(np.abs(b)).size == b.size

    x, y = make_data(rng, 40, sizes)
    x, labels, targets = tr.prepare(x, y)
    order = rng.permutation(len(x))
    flips = 0
    for start in range(0, 40, 4):
        before = [w.copy() for w in tr.weights]
        tr.train_rows(x, labels, targets, order[start : start + 4])
        # the feedback used for this batch: fixed magnitudes, the signs of the weights it saw
        for layer, b in enumerate(tr.feedback_matrices):
            np.testing.assert_array_equal(b, magnitude[layer] * np.sign(before[layer + 1].T))
        pairs = zip(before[1:], tr.weights[1:], strict=True)
        flips += sum(int(np.sum(np.sign(w) != np.sign(v))) for w, v in pairs)
    assert flips > 0, "no weight changed sign; the test would not see the feedback follow"

    # flip the signs by hand: the next gradient uses feedback with the new signs
    tr.weights[1] *= -1
    tr.gradients(x[:4], labels[:4])
    for layer, b in enumerate(tr.feedback_matrices):
        np.testing.assert_array_equal(b, magnitude[layer] * np.sign(tr.weights[layer + 1].T))


# ----------------------------------------------------------- (e) shallow


@pytest.mark.parametrize(
    "opt",
    [
        dict(momentum=0.0),
        dict(momentum=0.9, weight_decay=0.01),
        dict(momentum=0.9, nesterov=True, weight_decay=0.01),
        dict(optimizer="adam", lr=0.01, weight_decay=0.01),
    ],
    ids=["sgd", "momentum-decay", "nesterov-decay", "adam-decay"],
)
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
def test_shallow_leaves_hidden_layers_untouched(sizes, opt, rng):
    tr = make_trainer(sizes, "shallow", "float64", **{"lr": 0.1, "batch_size": 4, **opt})
    weights = [w.copy() for w in tr.weights]
    biases = [b.copy() for b in tr.biases]
    x, y = make_data(rng, 21, sizes)
    for _ in range(3):
        tr.train_epoch(x, y)
    for layer in range(len(sizes) - 2):
        np.testing.assert_array_equal(tr.weights[layer], weights[layer])
        np.testing.assert_array_equal(tr.biases[layer], biases[layer])
    assert np.abs(tr.weights[-1] - weights[-1]).max() > 1e-3
    assert np.abs(tr.biases[-1] - biases[-1]).max() > 1e-4


def test_shallow_output_gradient_is_bp_output_gradient(rng):
    sizes = SHAPES[1]
    sh, bp = make_trainer(sizes, "shallow"), make_trainer(sizes, "bp")
    x, y = make_data(rng, 17, sizes)
    g_sh, g_bp = sh.gradients(x, y), bp.gradients(x, y)
    np.testing.assert_array_equal(sh.arch.weights(g_sh)[-1], bp.arch.weights(g_bp)[-1])
    np.testing.assert_array_equal(sh.arch.biases(g_sh)[-1], bp.arch.biases(g_bp)[-1])
    assert not np.any(sh.arch.weights(g_sh)[0])


# --------------------------------------------------- (f) fa and dfa are not bp


@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_random_feedback_rules_differ_from_bp_at_init(rule, rng):
    sizes = SHAPES[1]
    tr, bp = make_trainer(sizes, rule), make_trainer(sizes, "bp")
    np.testing.assert_array_equal(tr.params, bp.params)
    x, y = make_data(rng, 64, sizes)
    g, g_bp = tr.gradients(x, y), bp.gradients(x, y)
    # the output layer learns with the true gradient ...
    np.testing.assert_array_equal(tr.arch.weights(g)[-1], bp.arch.weights(g_bp)[-1])
    np.testing.assert_array_equal(tr.arch.biases(g)[-1], bp.arch.biases(g_bp)[-1])
    # ... the hidden layers with something clearly different
    for layer in range(len(sizes) - 2):
        angle = angle_degrees(tr.arch.weights(g)[layer], bp.arch.weights(g_bp)[layer])
        assert angle > 30, f"hidden layer {layer}: {angle:.1f} degrees from bp"
    # and so a run of the rule is not a run of bp
    tr.train_epoch(x, y)
    bp.train_epoch(x, y)
    assert not np.allclose(tr.params, bp.params)


def test_feedback_scale_scales_the_feedback():
    for rule in ("fa", "dfa", "usf", "frsf", "brsf"):
        one = make_trainer(SHAPES[1], rule)
        three = make_trainer(SHAPES[1], rule, rule_options={"feedback_scale": 3.0})
        np.testing.assert_allclose(three.feedback, 3.0 * one.feedback, rtol=1e-12, err_msg=rule)
        assert np.any(one.feedback)


# -------------------------------------------------------------- (g) determinism


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ALL_RULES)
def test_runs_are_reproducible_from_the_seed(rule, dtype, rng):
    sizes = SHAPES[1]
    x, y = make_data(rng, 30, sizes)

    def run(seed):
        tr = make_trainer(sizes, rule, dtype, seed=seed, lr=0.1, batch_size=7)
        for _ in range(2):
            tr.train_epoch(x, y)
        return tr

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.feedback, b.feedback)
    np.testing.assert_array_equal(a.state, b.state)
    assert not np.allclose(a.params, c.params)
    if a.feedback.size:
        assert not np.allclose(a.feedback, c.feedback)


def test_after_batch_path_trains_like_the_compiled_path(rng, isolated_registry):
    """A rule with a do-nothing hook trains batch by batch from Python: same run, bit for bit."""
    fa = fastfa.rules.get_rule("fa")
    register_rule(
        Rule(
            name="test-fa-hook",
            summary="fa with a no-op hook",
            reference="-",
            signal="layerwise",
            init_feedback=fa.init_feedback,
            options=fa.options,
            after_batch=lambda trainer: None,
        )
    )
    sizes = SHAPES[1]
    a = make_trainer(sizes, "fa", lr=0.1, batch_size=4, momentum=0.9)
    b = make_trainer(sizes, "test-fa-hook", lr=0.1, batch_size=4, momentum=0.9)
    x, y = make_data(rng, 18, sizes)
    for _ in range(2):
        assert a.train_epoch(x, y) == b.train_epoch(x, y)
    assert a.step == b.step == 10
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.state, b.state)
