"""Batch normalisation (fastfa/kernels/batch_norm.py) in the layer engine.

The forward pass in training and in evaluation, every rule's signals through the normalisation
and the gradients of weights, shifts and scales against tests/naive_layers.py (whose backward
writes out each channel's Jacobian), bp's gradients against finite differences of the loss, the
running statistics after N batches against a direct computation, and a resumed run bit for bit.
Float64, one thread: each pass compiles once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastfa.kernels import codes as c
from fastfa.kernels import layers as lk
from fastfa.kernels.batch_norm import MOMENTUM
from fastfa.layers import LayerError, parse_layers
from tests import naive_layers as ref
from tests import test_layer_engine as layer_engine
from tests.conftest import assert_close

#: conv with batch norm, pooling, a convolution covering its input (run as one GEMM) and a
#: dense layer, each normalised
NET = "conv:3:3:1:1+bn,maxpool:2,conv:4:3+bn,dense:5+bn"
IMAGE = (2, 6, 6)
M = layer_engine.M


def build(signal=c.SIGNAL_BACKPROP, act=c.TANH, seed=0):
    """``(table, params, feedback, buffers, norm, x, t, icfg)`` of a random net and batch
    (tests/test_layer_engine.py's), with scales, running means and running variances away from their
    initial values and the running variances positive."""
    table, params, feedback, bufs, x, t, icfg = layer_engine.build(NET, IMAGE, signal, act, seed)
    rng = np.random.default_rng(seed + 100)
    for row in table.ltab:
        if row[c.L_G_OFF] >= 0:
            n, g = row[c.L_C_OUT], row[c.L_G_OFF]
            params[g : g + n] = rng.uniform(0.5, 1.5, n)
            params[g + 2 * n : g + 3 * n] = rng.uniform(0.5, 2.0, n)
    norm = (np.zeros(table.n_norm), np.zeros_like(bufs["hidden"]), 1)
    return table, params, feedback, bufs, norm, x, t, icfg


NAMES = ("hidden", "indices", "zeros", "workspace", "averages", "sparse", "ops")


def forward(table, params, bufs, norm, x):
    return lk.forward_layers(params, table.ltab, x, *[bufs[k] for k in NAMES], 1, None, 0, 0, norm)


def engine_gradients(table, params, feedback, bufs, norm, x, t, icfg):
    grads = np.full(table.n_params, 7.0)
    names = ("hidden", "deltas", "indices", "zeros", "workspace", "averages", "sparse", "ops")
    loss, _ = lk.backward_layers(
        params, feedback, table.ltab, icfg, x, t, *[bufs[k] for k in names], None, None, 0, norm
    )
    first = lk.first_learning_layer(table.ltab, icfg)
    lk.layer_gradients(
        x, bufs["hidden"], bufs["deltas"], grads, table.ltab, first, bufs["workspace"], bufs["sparse"],
        bufs["ops"], 1, norm,
    )  # fmt: skip
    return grads, loss


def norm_rows(table):
    return [(index, row) for index, row in enumerate(table.ltab) if row[c.L_G_OFF] >= 0]


def test_the_table_places_scales_and_running_statistics_after_the_biases():
    table = build()[0]
    rows = norm_rows(table)
    assert [int(table.ltab[i, c.L_KIND]) for i, _ in rows] == [c.KIND_CONV, c.KIND_CONV, c.KIND_DENSE]
    channels = [int(row[c.L_C_OUT]) for _, row in rows]
    assert channels == [3, 4, 5]
    n_biases = sum(int(row[c.L_C_OUT]) for row in table.ltab if row[c.L_W_OFF] >= 0)
    assert table.n_params == table.n_weights + n_biases + 3 * sum(channels)
    assert table.n_norm == 4 * sum(channels)
    assert parse_layers(NET)[0].text() == "conv:3:3:1:1+bn"


def test_forward_in_training_and_evaluation_matches_the_reference():
    table, params, _, bufs, norm, x, _, _ = build()
    start = params.copy()
    y = forward(table, params, bufs, norm, x)
    normed = {}
    pre, post = ref.forward(table.ltab, start, x, normed=normed)
    assert_close(y, post[-1], np.float64)
    for layer in range(len(table.ltab)):
        assert_close(lk.output_rows(bufs["hidden"], table.ltab, layer, M), post[layer], np.float64)
    # the running statistics moved by one momentum step towards the batch's (unbiased variance)
    for layer, row in norm_rows(table):
        _, mean, var = normed[layer]
        count = M * row[c.L_H_OUT] * row[c.L_W_OUT]
        _, old_mean, old_var = ref.norm_block(start, row)
        _, new_mean, new_var = ref.norm_block(params, row)
        assert_close(new_mean, (1 - MOMENTUM) * old_mean + MOMENTUM * mean, np.float64)
        assert_close(new_var, (1 - MOMENTUM) * old_var + MOMENTUM * var * count / (count - 1), np.float64)
    # evaluation: the running statistics normalise, and nothing moves
    moved = params.copy()
    y_eval = forward(table, params, bufs, (norm[0], norm[1], 0), x)
    assert_close(y_eval, ref.forward(table.ltab, moved, x, training=False)[1][-1], np.float64)
    assert np.array_equal(params, moved)
    one = forward(table, params, bufs, (norm[0], norm[1], 0), x[:1]).copy()
    assert_close(one, y_eval[:1], np.float64)  # a row's output no longer depends on its batch


@pytest.mark.parametrize("signal", [c.SIGNAL_BACKPROP, c.SIGNAL_LAYERWISE, c.SIGNAL_DIRECT])
def test_signals_and_gradients_go_through_the_normalisation(signal):
    """Every rule's signal passes through batch norm's own backward; weights, shifts and scales
    get the gradients of the reference."""
    table, params, feedback, bufs, norm, x, t, icfg = build(signal=signal)
    start = params.copy()
    grads, loss = engine_gradients(table, params, feedback, bufs, norm, x, t, icfg)
    norm_grads = {}
    deltas, _, post = ref.signals(table.ltab, start, feedback, x, t, signal, norm_grads=norm_grads)
    expected = ref.gradients(table.ltab, start, x, deltas, post, norm_grads)
    assert_close(loss / M, ref.mean_loss(table.ltab, start, x, t), np.float64)
    learned = expected != 0.0
    assert_close(grads[learned], expected[learned], np.float64)
    for _layer, row in norm_rows(table):  # the scales' gradients are there, the statistics' none
        n, g = row[c.L_C_OUT], row[c.L_G_OFF]
        assert np.all(expected[g : g + n] != 0.0) and np.all(expected[g + n : g + 3 * n] == 0.0)
        assert np.all(grads[g + n : g + 3 * n] == 7.0)  # no gradient written there


def test_bp_gradients_match_finite_differences():
    table, params, feedback, bufs, norm, x, t, icfg = build()
    grads, _ = engine_gradients(table, params.copy(), feedback, bufs, norm, x, t, icfg)
    rng = np.random.default_rng(1)
    statistics = np.zeros(table.n_params, dtype=bool)
    for _, row in norm_rows(table):
        n, g = row[c.L_C_OUT], row[c.L_G_OFF]
        statistics[g + n : g + 3 * n] = True
    picks = rng.choice(np.flatnonzero(~statistics), 40, replace=False)
    h = 1e-6
    for i in picks:
        up, down = params.copy(), params.copy()
        up[i] += h
        down[i] -= h
        numeric = (ref.mean_loss(table.ltab, up, x, t) - ref.mean_loss(table.ltab, down, x, t)) / (2 * h)
        assert grads[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8), i


def test_batch_norm_needs_a_layer_with_weights():
    with pytest.raises(LayerError, match="needs a conv or dense layer"):
        parse_layers("conv:4:3,maxpool:2+bn")
    with pytest.raises(LayerError, match="only suffix is \\+bn"):
        parse_layers("conv:4:3+bx")


def test_running_statistics_after_n_batches_equal_a_direct_computation():
    """N training forwards move each running statistic to ``(1 - p)^N r_0 + sum_k p (1 - p)^(N - k)
    s_k``, where ``s_k`` is batch k's mean or unbiased variance, computed here directly."""
    table, params, _, bufs, norm, _, _, _ = build()
    start = params.copy()
    rng = np.random.default_rng(3)
    batches = [rng.uniform(-1.0, 1.0, (M, math.prod(IMAGE))) for _ in range(6)]
    for x in batches:
        forward(table, params, bufs, norm, x)
    p = MOMENTUM
    for layer, row in norm_rows(table):
        count = M * row[c.L_H_OUT] * row[c.L_W_OUT]
        _, mean, var = ref.norm_block(start, row)
        expected_mean, expected_var = (1 - p) ** len(batches) * mean, (1 - p) ** len(batches) * var
        for k, x in enumerate(batches, start=1):
            normed = {}
            ref.forward(table.ltab, start, x, normed=normed)  # the weights never change
            _, batch_mean, batch_var = normed[layer]
            weight = p * (1 - p) ** (len(batches) - k)
            expected_mean = expected_mean + weight * batch_mean
            expected_var = expected_var + weight * batch_var * count / (count - 1)
        _, running_mean, running_var = ref.norm_block(params, row)
        assert_close(running_mean, expected_mean, np.float64)
        assert_close(running_var, expected_var, np.float64)


# ----------------------------------------------------------------- trainer, files, command line


@pytest.fixture(scope="module")
def digits():
    from fastfa.datasets import default_dataset_path, open_dataset

    with open_dataset(default_dataset_path()) as ds:
        return (*ds.split("train").load(), *ds.split("test").load())


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa"])
def test_every_rule_learns_through_batch_norm(rule, digits):
    from fastfa.config import TrainConfig
    from fastfa.train import Trainer

    x, y, xt, yt = digits
    config = TrainConfig(
        layers="conv:4:3:1:1,maxpool:2,dense:32", image_shape=(1, 8, 8), batch_norm=True, rule=rule,
        lr=0.05, momentum=0.9, seed=0,
    )  # fmt: skip
    assert config.layers == "conv:4:3:1:1+bn,maxpool:2,dense:32+bn"
    trainer = Trainer(config, x.shape[1], 10)
    for _ in range(4):
        trainer.train_epoch(x, y)
    assert trainer.evaluate(xt, yt)[1] < 0.12, rule


def run_arrays(path):
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[f"model/{k}"][()] for k in f["model"]}


def test_a_run_with_batch_norm_resumes_bit_for_bit_and_exports(tmp_path, digits):
    from fastfa.predict import numpy_forward
    from fastfa.runs import load_model
    from tests.test_cli import cli, ok

    args = ("train", "--hidden", "16", "--batch-norm", "-q", "--in-memory")
    ok(cli(*args, "--epochs", "2", "-o", tmp_path / "whole.h5"))
    ok(cli(*args, "--epochs", "1", "-o", tmp_path / "part.h5"))
    ok(cli("train", "--resume", "-o", tmp_path / "part.h5", "--epochs", "2", "-q", "--in-memory"))
    whole, resumed = run_arrays(tmp_path / "whole.h5"), run_arrays(tmp_path / "part.h5")
    assert sorted(whole) == ["W0", "W1", "b0", "b1", "bn0"]
    assert not np.allclose(whole["bn0"][2], 1.0)  # the running variances moved
    for key in whole:
        np.testing.assert_array_equal(resumed[key], whole[key])
    ok(cli("export", tmp_path / "whole.h5", "-o", tmp_path / "model.npz"))
    model = np.load(tmp_path / "model.npz")
    trainer, _ = load_model(tmp_path / "whole.h5")
    x_test = digits[2]
    expected = trainer.predict_outputs(x_test, dtype="float64")
    np.testing.assert_allclose(numpy_forward(model, x_test), expected, rtol=1e-10, atol=1e-12)


def test_a_run_file_with_broken_batch_norm_statistics_is_one_line(tmp_path):
    import shutil

    import h5py

    from fastfa.datasets import default_dataset_path
    from tests.test_cli import cli, ok
    from tests.test_cli_data import assert_one_line_error

    run = tmp_path / "run.h5"
    ok(cli("train", "--hidden", "8", "--batch-norm", "--epochs", "1", "-q", "--in-memory", "-o", run))
    for value, fragment in (
        (-1.0, "model/bn0 holds a negative running variance"),
        (np.nan, "model/bn0 holds NaN"),
    ):
        broken = tmp_path / f"broken{value}.h5"
        shutil.copy(run, broken)
        with h5py.File(broken, "r+") as f:
            f["model/bn0"][2, 3] = value
        assert_one_line_error(cli("evaluate", broken, default_dataset_path()), fragment)
        with h5py.File(broken, "r+") as f:
            del f["model/bn0"]
        assert_one_line_error(
            cli("evaluate", broken, default_dataset_path()), "corrupt or incomplete run file"
        )


def test_batch_norm_over_one_value_per_channel_is_one_line(tmp_path):
    from tests.test_cli import cli
    from tests.test_cli_data import assert_one_line_error

    out = tmp_path / "r.h5"
    result = cli("train", "--hidden", "1", "--batch-norm", "-b", "1", "--epochs", "1", "-o", out)
    assert_one_line_error(result, "layer 1 (dense:1+bn) normalises one value per channel at batch size 1")
    result = cli("train", "--layers", "conv:2:8+bn", "--image-shape", "1x8x8", "-b", "1", "-o", out)
    assert_one_line_error(result, "batch norm needs a batch of 2 or more")
    assert not out.exists()


@pytest.mark.cuda
@pytest.mark.parametrize("rule", ["bp", "dfa"])
def test_the_cuda_layer_engine_normalises_as_the_cpu(rule):
    """Batch norm's CUDA twins (one block per channel) train as the CPU kernels, to float32
    rounding: weights, shifts, scales and running statistics after an epoch."""
    from fastfa.config import TrainConfig
    from fastfa.kernels import cuda as cuda_kernels
    from fastfa.train import Trainer
    from tests.conftest import make_data

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    x, y = make_data(np.random.default_rng(4), 8, (36, 3))
    config = TrainConfig(
        layers="conv:2:3+bn,maxpool:2,dense:5+bn", image_shape=(1, 6, 6), rule=rule, batch_size=4, lr=0.1,
        momentum=0.9,
    )  # fmt: skip
    cpu_trainer, cuda_trainer = Trainer(config, 36, 3), Trainer(config, 36, 3)
    cuda_trainer.use_device("cuda")
    for trainer in (cpu_trainer, cuda_trainer):
        trainer.train_epoch(x.astype(np.float32), y)
    blocks = cpu_trainer.arch.norm_blocks(cpu_trainer.params)
    assert not np.allclose(blocks[1][1], 0.0)  # the running means moved
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
