"""Akrout et al.'s weight-mirror variant (plugins/wm.py options): the response through the layer
above's bias and activation, and mirror rounds before training, against a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from fastfa.config import TrainConfig
from fastfa.kernels.feedback import MIRROR_STREAM, counter_uniform
from fastfa.train import MIRROR_ROUNDS_STREAM, Trainer
from tests import naive
from tests.conftest import make_data

SIZES = (6, 5, 3)
OPTIONS = {"mirror_lr": 0.5, "mirror_decay": 0.1, "mirror_noise": 0.3, "mirror_response": "activation"}


def mirrored(w, b, feedback, seed, step, m):
    """``F <- (1 - eta lam) F + (eta / m) xi^T f(xi W_1 + b_1)`` by NumPy, with the kernels' noise."""
    n = SIZES[1]
    half = 0.3 * np.sqrt(3.0)
    xi = np.array([[half * (2 * counter_uniform(seed ^ MIRROR_STREAM, step, i * n + j) - 1) for j in range(n)]
                   for i in range(m)])  # fmt: skip
    y = naive.activation("logistic", xi @ w + b)
    return (1 - 0.5 * 0.1) * feedback + (0.5 / m) * xi.T @ y


def trainer(**options):
    config = TrainConfig(
        hidden=(SIZES[1],), rule="wm", rule_options={**OPTIONS, **options}, output_activation="logistic",
        loss="cross_entropy", lr=0.1, momentum=0.0, batch_size=4, dtype="float64", seed=2, shuffle=False,
    )  # fmt: skip
    return Trainer(config, SIZES[0], SIZES[-1])


def now(tr):
    """The output layer's weights and bias as they are (copies)."""
    return tr.weights[1].copy(), tr.biases[1].copy()


def test_the_response_goes_through_the_layer_above(rng):
    """After one batch the feedback is one mirror step of the reference, with the updated weights."""
    tr = trainer()
    x, y = make_data(rng, 4, SIZES)
    before = tr.feedback_views(tr.feedback.copy())[0].T.copy()  # F = B^T: n_1 x n_out
    tr.train_epoch(x, y)
    after = tr.feedback_views(tr.feedback)[0].T
    np.testing.assert_allclose(after, mirrored(*now(tr), before, 2, 1, 4), rtol=1e-12, atol=1e-14)


def test_mirror_rounds_come_before_the_first_update(rng):
    tr = trainer(mirror_rounds=3)
    x, y = make_data(rng, 4, SIZES)
    want = tr.feedback_views(tr.feedback.copy())[0].T.copy()
    start = now(tr)
    for k in (1, 2, 3):  # with the weights before training
        want = mirrored(*start, want, 2 ^ MIRROR_ROUNDS_STREAM, k, 4)
    tr.train_epoch(x, y)
    want = mirrored(*now(tr), want, 2, 1, 4)  # then the batch's own step, after its update
    np.testing.assert_allclose(tr.feedback_views(tr.feedback)[0].T, want, rtol=1e-12, atol=1e-14)
    tr.train_epoch(x, y)  # no rounds after the start
    np.testing.assert_allclose(
        tr.feedback_views(tr.feedback)[0].T, mirrored(*now(tr), want, 2, 2, 4), rtol=1e-12
    )


def test_the_variant_is_refused_where_it_cannot_run():
    for options, message in (
        ({"mirror_response": "tanh"}, "mirror_response must be linear or activation"),
        ({"mirror_rounds": -1}, "mirror_rounds must be a whole number"),
    ):
        with pytest.raises(ValueError, match=message):
            trainer(**options)
    softmax = TrainConfig(hidden=(5,), rule="wm", rule_options={"mirror_response": "activation"})
    with pytest.raises(ValueError, match="not a softmax output"):
        Trainer(softmax, 6, 3)
    conv = TrainConfig(
        layers="conv:2:3,dense:5", image_shape=(1, 6, 6), rule="wm", rule_options={"mirror_rounds": 2}
    )
    with pytest.raises(ValueError, match="dense networks only"):
        Trainer(conv, 36, 3)
