"""Compiled rule plugins (fastfa.compiled_rules): a rule's hidden signal as numba code in the
epoch loop. fa and dfa written as compiled plugins must train bit for bit as the built-in rules,
and the loop must be compiled once for every plugin, not once per plugin."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from fastfa.compiled_rules import check_plugin
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


def example_kp():
    """The compiled Kolen-Pollack of examples/compiled_kp.py, loaded as ``--plugin`` loads it."""
    from pathlib import Path

    from fastfa.rules import load_plugin_file

    (rule,) = load_plugin_file(Path(__file__).resolve().parents[1] / "examples" / "compiled_kp.py")
    return rule


def plugin_rule(name, signal, hidden_signal, feedback_step=None):
    return Rule(
        name=name, summary="a compiled plugin", reference="tests", signal=signal,
        init_feedback=random_feedback, options=RANDOM_FEEDBACK_OPTIONS, hidden_signal=hidden_signal,
        feedback_step=feedback_step,
    )  # fmt: skip


def train(rule, rng_seed, epochs=3, **config):
    rng = np.random.default_rng(rng_seed)
    x, y = make_data(rng, 40, SIZES)
    settings = dict(hidden=SIZES[1:-1], rule=rule, dtype="float64", batch_size=8, lr=0.1, momentum=0.9)
    cfg = TrainConfig(**{**settings, **config})
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


@pytest.mark.parametrize(
    "optimizer", [dict(momentum=0.9), dict(momentum=0.0), dict(optimizer="adam", lr=0.01)]
)
def test_kolen_pollack_as_a_compiled_plugin_trains_as_the_builtin_kp(optimizer):
    config = dict(weight_decay=0.01, **optimizer)
    plugin, plugin_losses, _ = train(example_kp(), 7, **config)
    ref, ref_losses, _ = train("kp", 7, **config)
    assert plugin_losses == ref_losses
    np.testing.assert_array_equal(plugin.params, ref.params)
    np.testing.assert_array_equal(plugin.feedback, ref.feedback)
    initial = make_trainer(SIZES, "kp").feedback
    assert not np.array_equal(plugin.feedback, initial)  # the feedback did learn


def test_the_epoch_loop_is_compiled_once_for_every_plugin():
    """A second plugin reuses the loop compiled for the first (numba's FunctionType is the same
    for every function of the signature), so no new specialisation appears."""
    train(plugin_rule("fa-compiled", "layerwise", fa_signal), 1, epochs=1)
    before = {str(sig) for sig in cpu.train_epoch.signatures}
    assert any("FunctionType" in sig for sig in before)
    train(plugin_rule("dfa-compiled", "direct", dfa_signal), 1, epochs=1)
    assert {str(sig) for sig in cpu.train_epoch.signatures} == before


def test_a_plugin_that_does_not_compile_is_one_line_naming_the_rule():
    @njit
    def broken(layer, e, t, above, w_above, b, h, out):
        out[0, 0] = "not a number"

    one_line = (
        r"^rule 'broken': hidden_signal does not compile for float64 arrays "
        r"at \S*test_compiled_rules.py line \d+ \(TypingError: [^\n]*\)$"
    )
    with pytest.raises(PluginError, match=one_line):
        make_trainer(SIZES, plugin_rule("broken", "layerwise", broken))


def test_a_compiled_signal_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="feedback_step needs a signal with feedback matrices"):
        Rule(name="x", summary="", reference="", signal="backprop", feedback_step=example_kp().feedback_step)
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


def test_an_out_of_bounds_plugin_is_one_line_with_bounds_checking_on(monkeypatch):
    """A cfunc cannot raise into the epoch loop; with NUMBA_BOUNDSCHECK=1 the trainer runs the
    plugin's functions once per layer, bounds-checked, before training."""
    from numba.core import config as numba_config

    @njit
    def overruns(layer, e, t, above, w_above, b, h, out):
        for i in range(out.shape[0]):
            for j in range(out.shape[1] + 1):  # one column too many
                out[i, j] = 0.0

    rule = plugin_rule("overruns", "layerwise", overruns)
    make_trainer(SIZES, rule)  # bounds checking off: not looked at (the epoch loop would not notice)
    fine = plugin_rule("fine", "layerwise", fa_signal)
    check_plugin(fine, SIZES, make_trainer(SIZES, fine).feedback_shapes(), "float64")  # a correct one passes
    # (checked before the switch: the kernels it calls compile now, without bounds checks, as cached)
    monkeypatch.setattr(numba_config, "BOUNDSCHECK", 1)
    message = r"^rule 'overruns': hidden_signal indexes outside its arrays on hidden layer 0 \(IndexError"
    with pytest.raises(PluginError, match=message):
        make_trainer(SIZES, rule)
    make_trainer(SIZES, fine)


def test_a_compiled_plugin_on_cuda_is_one_line(monkeypatch):
    from fastfa import cuda_engine
    from fastfa.kernels import cuda as cuda_kernels

    monkeypatch.setattr(cuda_kernels, "available", lambda: True)  # as on a machine with a GPU
    trainer = make_trainer(SIZES, plugin_rule("fa-compiled", "layerwise", fa_signal), "float32")
    with pytest.raises(
        ValueError, match=r"^rule 'fa-compiled': its compiled plugin code has no CUDA twin yet"
    ):
        cuda_engine.check_supported(trainer)
