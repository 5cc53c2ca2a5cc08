"""Compiled rule plugins (fastfa.compiled_rules): a rule's hidden signal as numba code in the
epoch loop. fa and dfa written as compiled plugins must train bit for bit as the built-in rules,
and the loop must be compiled once for every plugin, not once per plugin."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from fastfa.config import TrainConfig
from fastfa.kernels import cpu
from fastfa.kernels.products import NO_TRANS, TRANS, product
from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, PluginError, Rule, random_feedback
from fastfa.train import Trainer
from tests.conftest import make_data, make_trainer

SIZES = (9, 7, 6, 4)


@njit
def fa_signal(layer, e, t, above, w_above, b, h, out):
    """Feedback alignment: ``out = delta_{l+1} B`` (``b`` is ``B^T``)."""
    product(1.0, above, NO_TRANS, b, TRANS, 0.0, out, 1)


@njit
def dfa_signal(layer, e, t, above, w_above, b, h, out):
    """Direct feedback alignment: ``out = e D`` (``b`` is ``D^T``)."""
    product(1.0, e, NO_TRANS, b, TRANS, 0.0, out, 1)


def plugin_rule(name, signal, hidden_signal):
    return Rule(
        name=name, summary="a compiled plugin", reference="tests", signal=signal,
        init_feedback=random_feedback, options=RANDOM_FEEDBACK_OPTIONS, hidden_signal=hidden_signal,
    )  # fmt: skip


def train(rule, rng_seed, epochs=3, **config):
    rng = np.random.default_rng(rng_seed)
    x, y = make_data(rng, 40, SIZES)
    cfg = TrainConfig(
        hidden=SIZES[1:-1], rule=rule, dtype="float64", batch_size=8, lr=0.1, momentum=0.9, **config
    )
    trainer = Trainer(cfg, SIZES[0], SIZES[-1])
    rows = trainer.training_rows(x, y)
    losses = [trainer.train_epoch_on(rows) for _ in range(epochs)]
    return trainer, losses, (x, y)


@pytest.mark.parametrize(
    "builtin,signal,function", [("fa", "layerwise", fa_signal), ("dfa", "direct", dfa_signal)]
)
def test_a_compiled_plugin_trains_as_the_builtin_rule(builtin, signal, function):
    plugin, plugin_losses, (x, y) = train(plugin_rule(f"{builtin}-compiled", signal, function), 5)
    ref, ref_losses, _ = train(builtin, 5)
    assert plugin_losses == ref_losses
    np.testing.assert_array_equal(plugin.params, ref.params)
    np.testing.assert_array_equal(plugin.feedback, ref.feedback)
    # the alignment metrics' gradient probe calls it too, and bp's probe does not
    np.testing.assert_array_equal(plugin.gradients(x, y), ref.gradients(x, y))
    np.testing.assert_array_equal(plugin.gradients(x, y, "backprop"), ref.gradients(x, y, "backprop"))


def test_the_epoch_loop_is_compiled_once_for_every_plugin():
    train(plugin_rule("fa-compiled", "layerwise", fa_signal), 1, epochs=1)
    train(plugin_rule("dfa-compiled", "direct", dfa_signal), 1, epochs=1)
    with_plugins = [sig for sig in cpu.train_epoch.signatures if "FunctionType" in str(sig)]
    float64 = [sig for sig in with_plugins if "float64" in str(sig[0])]
    assert len({str(sig) for sig in float64}) == 1


def test_a_plugin_that_does_not_compile_is_one_line_naming_the_rule():
    @njit
    def broken(layer, e, t, above, w_above, b, h, out):
        out[0, 0] = "not a number"

    with pytest.raises(PluginError, match=r"^rule 'broken': hidden_signal does not compile for float64"):
        make_trainer(SIZES, plugin_rule("broken", "layerwise", broken))


def test_a_compiled_signal_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="needs a signal other than 'none'"):
        Rule(name="x", summary="", reference="", signal="none", hidden_signal=fa_signal)
    with pytest.raises(ValueError, match="no CUDA twin"):
        Rule(
            name="x", summary="", reference="", signal="layerwise", init_feedback=random_feedback,
            devices=("cpu", "cuda"), hidden_signal=fa_signal,
        )  # fmt: skip
    cfg = TrainConfig(
        layers="conv:2:3,dense:5", image_shape=(1, 6, 6), rule=plugin_rule("y", "layerwise", fa_signal)
    )
    with pytest.raises(ValueError, match="dense networks only"):
        Trainer(cfg, 36, 3)
