"""fastfa-dkp's own checks: Direct Kolen-Pollack's update as written, and that it learns."""

import numpy as np

from fastfa import Trainer
from fastfa.config import TrainConfig
from fastfa.datasets import default_dataset_path, open_dataset
from fastfa.rules import get_rule

SETTINGS = dict(hidden=(100,), activation="tanh", lr=0.05, momentum=0.9, batch_size=32, seed=0)


def test_it_is_registered_as_a_compiled_rule():
    rule = get_rule("dkp")
    assert rule.signal == "direct" and rule.hidden_signal is not None and rule.feedback_step is not None


def test_one_step_moves_d_by_the_rule():
    """One batch of plain SGD: ``D^T`` changes by exactly ``-lr h^T e`` after decaying."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    config = TrainConfig(hidden=(4,), rule="dkp", dtype="float64", batch_size=8, lr=0.1, momentum=0.0,
                         weight_decay=0.01, shuffle=False)  # fmt: skip
    trainer = Trainer(config, 5, 3)
    d_before = trainer.feedback_views(trainer.feedback.copy())[0].copy()  # D: n_out x n_l
    params_before = trainer.params.copy()
    trainer.train_epoch(x, y)
    # h and e of that batch, from the parameters before the step
    w0, w1 = (w.copy() for w in trainer.arch.weights(params_before))
    b0, b1 = (b.copy() for b in trainer.arch.biases(params_before))
    h = np.tanh(x @ w0 + b0)
    z = h @ w1 + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    e = (p - np.eye(3)[y]) / len(x)
    expected = (1 - 0.1 * 0.01) * d_before.T - 0.1 * h.T @ e
    np.testing.assert_allclose(
        trainer.feedback_views(trainer.feedback)[0].T, expected, rtol=1e-10, atol=1e-12
    )


def test_it_learns_the_bundled_digits():
    """fastfa's bar for its own rules (tests/test_learning.py): 95% test accuracy, 98% training."""
    with open_dataset(default_dataset_path()) as ds:
        (x, y), (xt, yt) = ds.split("train").load(), ds.split("test").load()
    trainer = Trainer(TrainConfig(rule="dkp", weight_decay=1e-3, **SETTINGS), x.shape[1], 10)
    rows = trainer.training_rows(x, y)
    for _ in range(40):
        trainer.train_epoch_on(rows)
    assert 1.0 - trainer.evaluate(xt, yt)[1] >= 0.95
    assert 1.0 - trainer.evaluate(x, y)[1] >= 0.98
