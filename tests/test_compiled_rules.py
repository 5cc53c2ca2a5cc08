"""Compiled rule plugins (fastfa.compiled_rules): a rule's hidden signal as numba code in the
epoch loop. fa and dfa written as compiled plugins must train bit for bit as the built-in rules,
and the loop must be compiled once for every plugin, not once per plugin."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numba import cuda, float32, njit

from fastfa.compiled_rules import check_plugin
from fastfa.config import TrainConfig
from fastfa.kernels import cpu
from fastfa.kernels.products import NO_TRANS, TRANS, product
from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, PluginError, Rule, random_feedback
from fastfa.train import Trainer
from tests import naive_layers
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
    with pytest.raises(
        ValueError, match=r"^rule 'y': compiled plugin code on a layer list needs a direct signal"
    ):
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
    check_plugin(fine, make_trainer(SIZES, fine).plugin_layers(), "float64")  # a correct one passes
    # (checked before the switch: the kernels it calls compile now, without bounds checks, as cached)
    monkeypatch.setattr(numba_config, "BOUNDSCHECK", 1)
    message = r"^rule 'overruns': hidden_signal indexes outside its arrays on hidden layer 0 \(IndexError"
    with pytest.raises(PluginError, match=message):
        make_trainer(SIZES, rule)
    make_trainer(SIZES, fine)


def test_a_compiled_plugin_without_its_cuda_twin_on_cuda_is_one_line(monkeypatch):
    from fastfa import cuda_engine
    from fastfa.kernels import cuda as cuda_kernels

    monkeypatch.setattr(cuda_kernels, "available", lambda: True)  # as on a machine with a GPU
    trainer = make_trainer(SIZES, plugin_rule("fa-compiled", "layerwise", fa_signal), "float32")
    message = r"^rule 'fa-compiled': its compiled hidden_signal has no CUDA twin \(hidden_signal_cuda"
    with pytest.raises(ValueError, match=message):
        cuda_engine.check_supported(trainer)
    with pytest.raises(ValueError, match="hidden_signal_cuda is the twin of a hidden_signal, which it lacks"):
        Rule(
            name="x", summary="", reference="", signal="layerwise", init_feedback=random_feedback,
            hidden_signal_cuda=fa_signal_cuda,
        )  # fmt: skip


# ------------------------------------------------------------------ device twins (CUDA)


@cuda.jit(device=True)
def fa_signal_cuda(layer, i, j, e, t, above, w_above, b, h):
    """Entry ``(i, j)`` of ``delta_{l+1} B``, summed in float32 in the GEMM kernel's order."""
    acc = float32(0.0)
    for k in range(above.shape[1]):
        acc += above[i, k] * b[j, k]
    return acc


@cuda.jit(device=True)
def dfa_signal_cuda(layer, i, j, e, t, above, w_above, b, h):
    """Entry ``(i, j)`` of ``e D``."""
    acc = float32(0.0)
    for k in range(e.shape[1]):
        acc += e[i, k] * b[j, k]
    return acc


def cuda_pair(builtin, monkeypatch):
    """A built-in rule and its compiled plugin with device twins, each trained for one epoch on
    the CUDA engine (one launch per operation, as a plugin always runs there)."""
    from fastfa.kernels import cuda as cuda_kernels

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    if builtin == "kp":
        plugin = example_kp()
    else:
        signal, host, device = {
            "fa": ("layerwise", fa_signal, fa_signal_cuda),
            "dfa": ("direct", dfa_signal, dfa_signal_cuda),
        }[builtin]
        plugin = dataclasses.replace(
            plugin_rule(f"{builtin}-compiled", signal, host),
            devices=("cpu", "cuda"),
            hidden_signal_cuda=device,
        )
    monkeypatch.setenv("FASTFA_CUDA_MODE", "kernels")
    rng = np.random.default_rng(3)
    x, y = make_data(rng, 10, SIZES)
    trained = []
    for rule in (builtin, plugin):
        cfg = TrainConfig(
            hidden=SIZES[1:-1], rule=rule, batch_size=4, lr=0.1, momentum=0.9, weight_decay=0.01, seed=2
        )
        trainer = Trainer(cfg, SIZES[0], SIZES[-1])
        trainer.use_device("cuda")
        initial = trainer.feedback.copy()
        trained.append((trainer, initial, trainer.train_epoch(x.astype(np.float32), y)))
    return trained


@pytest.mark.cuda
@pytest.mark.parametrize("builtin", ["fa", "dfa", "kp"])
def test_device_twins_train_as_the_builtin_rule_on_cuda(builtin, monkeypatch):
    """fa, dfa and kp as plugins with device twins: bit for bit the built-in rule on the CUDA
    engine (three batches, the last one short; momentum and weight decay)."""
    (ref, initial, ref_result), (plugin, _, plugin_result) = cuda_pair(builtin, monkeypatch)
    assert plugin._cuda.mode == ref._cuda.mode == "kernels"
    assert plugin_result == ref_result
    np.testing.assert_array_equal(plugin.params, ref.params)
    np.testing.assert_array_equal(plugin.state, ref.state)
    np.testing.assert_array_equal(plugin.feedback, ref.feedback)
    assert (builtin == "kp") == (not np.array_equal(plugin.feedback, initial))  # kp's feedback learns


@cuda.jit(device=True)
def overrunning_signal_cuda(layer, i, j, e, t, above, w_above, b, h):
    return above[i, above.shape[1]]  # one column past the end


@pytest.mark.cuda
def test_a_failing_device_twin_is_one_line_and_leaves_the_weights(monkeypatch):
    """On the simulator an index outside the arrays raises; the run stops with one line naming
    the rule and the function, and the host's parameters are those from before the call."""
    from fastfa.kernels import cuda as cuda_kernels

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    rule = dataclasses.replace(
        plugin_rule("overruns", "layerwise", fa_signal), devices=("cpu", "cuda"),
        hidden_signal_cuda=overrunning_signal_cuda,
    )  # fmt: skip
    trainer = make_trainer(SIZES, rule, "float32", batch_size=4)
    trainer.use_device("cuda")
    before = trainer.params.copy()
    x, y = make_data(np.random.default_rng(0), 6, SIZES)
    message = (
        r"^rule 'overruns': hidden_signal_cuda indexes outside its arrays on hidden layer 1 \(IndexError"
    )
    with pytest.raises(PluginError, match=message):
        trainer.train_epoch(x.astype(np.float32), y)
    np.testing.assert_array_equal(trainer.params, before)


@pytest.mark.cuda
def test_the_dkp_example_trains_on_cuda_as_on_the_cpu():
    """examples/fastfa-dkp's device twins: the CUDA engine's weights and learned feedback match
    the CPU engine's (float32 rounding apart) after three batches with momentum and decay."""
    from pathlib import Path

    from fastfa.kernels import cuda as cuda_kernels
    from fastfa.rules import load_plugin_file
    from tests.conftest import assert_close

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    source = (
        Path(__file__).resolve().parents[1] / "examples" / "fastfa-dkp" / "src" / "fastfa_dkp" / "__init__.py"
    )
    (rule,) = load_plugin_file(source)
    x, y = make_data(np.random.default_rng(4), 10, SIZES)
    x = x.astype(np.float32)
    trainers = [make_trainer(SIZES, rule, "float32", batch_size=4, lr=0.1, momentum=0.9, weight_decay=0.01)]
    trainers.append(
        make_trainer(SIZES, rule, "float32", batch_size=4, lr=0.1, momentum=0.9, weight_decay=0.01)
    )
    trainers[1].use_device("cuda")
    initial = trainers[0].feedback.copy()
    for trainer in trainers:
        trainer.train_epoch(x, y)
    cpu_trainer, cuda_trainer = trainers
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(cuda_trainer.feedback, cpu_trainer.feedback.astype(np.float64), "float32")
    assert not np.array_equal(cuda_trainer.feedback, initial)


def test_a_device_twin_numba_cannot_compile_is_one_line():
    """What a real GPU's compiler says of a device twin it cannot type, as the engine reports it."""
    from numba.core.errors import TypingError

    from fastfa.compiled_rules import device_failure

    rule = plugin_rule("untyped", "layerwise", fa_signal)
    error = TypingError('No implementation of function setitem\n\nFile "plugin.py", line 7:\n  out = "x"')
    message = device_failure(rule, "hidden_signal_cuda", 0, error)
    assert isinstance(message, PluginError)
    assert str(message) == (
        "rule 'untyped': hidden_signal_cuda does not compile for the GPU at plugin.py line 7 "
        "(TypingError: No implementation of function setitem)"
    )


# ------------------------------------------------------------------ layer lists (conv networks)

CONV_LAYERS = "conv:3:3,maxpool:2,dense:6"  # 1x8x8 images -> 3x6x6 -> 3x3x3 -> 6 -> 4


def train_conv(rule, epochs=2, **config):
    rng = np.random.default_rng(11)
    x, y = make_data(rng, 24, (64, 4))
    settings = dict(
        layers=CONV_LAYERS, image_shape=(1, 8, 8), rule=rule, dtype="float64", batch_size=8, lr=0.1
    )
    trainer = Trainer(TrainConfig(**{**settings, "momentum": 0.9, **config}), 64, 4)
    rows = trainer.training_rows(x, y)
    return trainer, [trainer.train_epoch_on(rows) for _ in range(epochs)], (x, y)


def dkp_rule():
    from pathlib import Path

    from fastfa.rules import load_plugin_file

    root = Path(__file__).resolve().parents[1]
    (rule,) = load_plugin_file(root / "examples" / "fastfa-dkp" / "src" / "fastfa_dkp" / "__init__.py")
    return rule


def test_a_compiled_direct_plugin_trains_a_conv_net_as_the_builtin_rule():
    """dfa as a compiled plugin on a conv layer list (its signal reaches the conv layer's whole
    output through ``D_l``): bit for bit built-in dfa, the metrics' gradient probe included."""
    plugin, plugin_losses, (x, y) = train_conv(plugin_rule("dfa-compiled", "direct", dfa_signal))
    ref, ref_losses, _ = train_conv("dfa")
    assert plugin_losses == ref_losses
    np.testing.assert_array_equal(plugin.params, ref.params)
    np.testing.assert_array_equal(plugin.gradients(x, y), ref.gradients(x, y))
    assert [layer for layer, *_ in plugin.plugin_layers()] == [0, 2]  # the conv and the hidden dense layer


def test_direct_kolen_pollack_learns_its_conv_layers_matrix_by_the_rule():
    """examples/fastfa-dkp on a conv net, one batch of plain SGD: the conv layer's ``D^T``
    (``size_l x n_out`` over its flattened output) becomes ``(1 - lr wd) D^T - lr h^T e``."""
    rng = np.random.default_rng(2)
    x, y = make_data(rng, 8, (64, 4))
    config = TrainConfig(
        layers=CONV_LAYERS, image_shape=(1, 8, 8), rule=dkp_rule(), dtype="float64", batch_size=8, lr=0.1,
        momentum=0.0, weight_decay=0.01, shuffle=False,
    )  # fmt: skip
    trainer = Trainer(config, 64, 4)
    d_before = trainer.feedback_views(trainer.feedback.copy())[0].T.copy()  # D^T: 108 x 4
    # h (the conv layer's output) and e (the output error over m) of that batch, from the naive
    # reference before the step
    _, labels, _ = trainer.prepare(x, y)
    _, post = naive_layers.forward(trainer.arch.table.ltab, trainer.params, x)
    e = (post[-1] - np.eye(4)[labels]) / 8
    trainer.train_epoch(x, y)
    d_after = trainer.feedback_views(trainer.feedback)[0].T
    np.testing.assert_allclose(
        d_after, (1 - 0.1 * 0.01) * d_before - 0.1 * post[0].T @ e, rtol=1e-10, atol=1e-12
    )
    assert not np.allclose(d_after, d_before)


def test_a_plugin_on_a_conv_net_is_checked_with_bounds_checking(monkeypatch):
    """NUMBA_BOUNDSCHECK=1 dry-runs a layer list's plugin on its conv layer's flattened shapes."""
    from numba.core import config as numba_config

    monkeypatch.setattr(numba_config, "BOUNDSCHECK", 1)
    train_conv(dkp_rule(), epochs=1)  # a correct plugin passes the check and trains

    @njit
    def overruns(layer, e, t, above, w_above, b, h, out):
        out[0, out.shape[1]] = 0.0

    with pytest.raises(
        PluginError, match=r"^rule 'overruns': hidden_signal indexes outside its arrays on hidden layer 0"
    ):
        train_conv(plugin_rule("overruns", "direct", overruns), epochs=1)


@pytest.mark.cuda
def test_device_twins_on_a_conv_net_train_as_the_builtin_rule_on_cuda():
    """dfa with its device twin on a conv layer list, on the CUDA layer engine: bit for bit
    built-in dfa there; dkp's twins match the CPU engine on the same net (float32 rounding)."""
    from fastfa.kernels import cuda as cuda_kernels
    from tests.conftest import assert_close

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    dfa = dataclasses.replace(
        plugin_rule("dfa-compiled", "direct", dfa_signal),
        devices=("cpu", "cuda"),
        hidden_signal_cuda=dfa_signal_cuda,
    )
    x, y = make_data(np.random.default_rng(5), 8, (36, 3))
    x = x.astype(np.float32)
    settings = dict(
        layers="conv:2:3,maxpool:2,dense:5", image_shape=(1, 6, 6), batch_size=4, lr=0.1, momentum=0.9,
        weight_decay=0.01, seed=3,
    )  # fmt: skip
    trained = {}
    for name, rule, device in (("dfa", "dfa", "cuda"), ("plugin", dfa, "cuda"), ("dkp", dkp_rule(), "cuda"),
                               ("dkp-cpu", dkp_rule(), "cpu")):  # fmt: skip
        trainer = Trainer(TrainConfig(rule=rule, **settings), 36, 3)
        if device == "cuda":
            trainer.use_device("cuda")
        trained[name] = (trainer, trainer.train_epoch(x, y))
    (ref, ref_result), (plugin, plugin_result) = trained["dfa"], trained["plugin"]
    assert plugin_result == ref_result
    np.testing.assert_array_equal(plugin.params, ref.params)
    (gpu, _), (cpu_trainer, _) = trained["dkp"], trained["dkp-cpu"]
    assert_close(gpu.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(gpu.feedback, cpu_trainer.feedback.astype(np.float64), "float32")


def test_a_plugin_whose_product_does_not_chain_is_one_line_before_training():
    """A hidden signal multiplying matrices whose shapes do not chain: BLAS alone would only print
    a complaint and train on garbage; the dry run before training makes it one line."""

    @njit
    def untransposed(layer, e, t, above, w_above, b, h, out):
        product(1.0, above, NO_TRANS, b, NO_TRANS, 0.0, out, 1)  # b is n_l x n_src: needs TRANS

    message = (
        r"^rule 'wrong-shape': hidden_signal raised on hidden layer 0 "
        r"\(ValueError: product: the shapes of op\(a\), op\(b\) and c do not chain\)$"
    )
    with pytest.raises(PluginError, match=message):
        make_trainer(SIZES, plugin_rule("wrong-shape", "layerwise", untransposed))
