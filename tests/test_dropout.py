"""Dropout (fastfa.kernels.dropout): masks from the counter-based generator, the step against a
naive NumPy reference, exact resume, no dropout at evaluation, one-line refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fastfa.config import TrainConfig
from fastfa.kernels.codes import RELU
from fastfa.kernels.dropout import derive_dropped, derive_dropped_rows, drop_rows, drop_units, is_kept
from fastfa.train import Trainer
from tests import naive
from tests.conftest import make_data
from tests.test_cli import cli, ok
from tests.test_cli_data import assert_one_line_error

SIZES = (7, 9, 6, 4)


def masks(seed, step, m, hidden, keeps):
    """Each hidden layer's ``m x n_l`` keep mask of update ``step``, as the kernels number the units."""
    out, base = [], 0
    for n, keep in zip(hidden, keeps, strict=True):
        out.append(
            np.array(
                [[is_kept(seed, step, base + i * n + j, keep) for j in range(n)] for i in range(m)], float
            )
        )
        base += m * n
    return out


def naive_step_gradients(weights, biases, x, labels, drop_masks, keeps, act="tanh"):
    """bp's gradients of one batch with dropout on the hidden layers, by NumPy."""
    m = len(x)
    t = naive.one_hot(labels, weights[-1].shape[1])
    h, pre, inputs = np.asarray(x, float), [], []
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inputs.append(h)
        a = h @ w + b
        pre.append(a)
        if layer < len(weights) - 1:
            h = naive.activation(act, a) * drop_masks[layer] / keeps[layer]
        else:
            h = naive.activation("softmax", a)
    delta = (h - t) / m
    grads_w, grads_b = [None] * len(weights), [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        grads_w[layer], grads_b[layer] = inputs[layer].T @ delta, delta.sum(axis=0)
        if layer:
            below = layer - 1
            delta = (
                (delta @ weights[layer].T)
                * naive.derivative(act, pre[below])
                * drop_masks[below]
                / keeps[below]
            )
    return grads_w, grads_b


def test_threads_split_the_rows_without_changing_a_draw(rng):
    """The threaded passes number each unit as the serial ones do: the same masks, bit for bit."""
    h = np.maximum(rng.standard_normal((96, 400)), 0)  # 38,400 units: two threads' worth of work
    delta = rng.standard_normal(h.shape)
    one, two = h.copy(), h.copy()
    drop_units(one, 0.6, 11, 5, 1234)
    drop_rows(two, 0.6, 11, 5, 1234, 2)
    np.testing.assert_array_equal(one, two)
    assert 0.5 < np.mean(one != 0) / np.mean(h != 0) < 0.7
    d_one, d_two = delta.copy(), delta.copy()
    derive_dropped(d_one, one, RELU, 0.6, 11, 5, 1234)
    derive_dropped_rows(d_two, one, RELU, 0.6, 11, 5, 1234, 2)
    np.testing.assert_array_equal(d_one, d_two)
    np.testing.assert_array_equal(d_one != 0, one != 0)


@pytest.mark.parametrize("rates", [(0.3,), (0.5, 0.2)])
def test_a_step_with_dropout_is_the_naive_one(rates):
    """One full batch of plain SGD, bp, float64: the update is ``-lr`` times the gradient of the
    network with the kernels' masks applied (dropped units pass nothing, kept ones ``h / keep``)."""
    rng = np.random.default_rng(0)
    x, y = make_data(rng, 10, SIZES)
    config = TrainConfig(hidden=SIZES[1:-1], rule="bp", dtype="float64", batch_size=10, lr=0.1, momentum=0.0,
                         shuffle=False, seed=5, dropout=rates)  # fmt: skip
    trainer = Trainer(config, SIZES[0], SIZES[-1])
    keeps = [1.0 - r for r in (rates * 2 if len(rates) == 1 else rates)]
    weights = [w.copy() for w in trainer.weights]
    biases = [b.copy() for b in trainer.biases]
    drop = masks(5, 1, 10, SIZES[1:-1], keeps)
    assert all(0 < mask.mean() < 1 for mask in drop)
    gw, gb = naive_step_gradients(weights, biases, x, y, drop, keeps)
    trainer.train_epoch(x, y)
    for layer in range(3):
        np.testing.assert_allclose(
            trainer.weights[layer], weights[layer] - 0.1 * gw[layer], rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            trainer.biases[layer], biases[layer] - 0.1 * gb[layer], rtol=1e-10, atol=1e-12
        )


def test_evaluation_and_the_metrics_do_not_drop(rng):
    x, y = make_data(rng, 12, SIZES)
    plain = Trainer(TrainConfig(hidden=SIZES[1:-1], dtype="float64"), SIZES[0], SIZES[-1])
    dropped = Trainer(TrainConfig(hidden=SIZES[1:-1], dtype="float64", dropout=(0.5,)), SIZES[0], SIZES[-1])
    assert plain.evaluate(x, y) == dropped.evaluate(x, y)
    np.testing.assert_array_equal(plain.gradients(x, y), dropped.gradients(x, y))
    plain.train_epoch(x, y)
    dropped.train_epoch(x, y)
    assert not np.array_equal(plain.params, dropped.params)


def test_dropout_learns_the_digits():
    from fastfa.datasets import default_dataset_path, open_dataset

    with open_dataset(default_dataset_path()) as ds:
        (x, y), (xt, yt) = ds["train"].load(), ds["test"].load()
    for rule in ("fa", "dfa"):
        trainer = Trainer(
            TrainConfig(hidden=(64,), rule=rule, lr=0.05, dropout=(0.2,), seed=0), x.shape[1], 10
        )
        for _ in range(10):
            trainer.train_epoch(x, y)
        assert trainer.evaluate(xt, yt)[1] < 0.1, rule


def weights_of(path):
    with h5py.File(path, "r") as f:
        return {k: f[f"model/{k}"][()] for k in ("W0", "W1", "b0", "b1")}


def test_a_run_with_dropout_resumes_bit_for_bit(tmp_path):
    args = ("train", "--hidden", "16", "--dropout", "0.3", "-q", "--in-memory")
    ok(cli(*args, "--epochs", "2", "-o", tmp_path / "whole.h5"))
    ok(cli(*args, "--epochs", "1", "-o", tmp_path / "part.h5"))
    ok(cli("train", "--resume", "-o", tmp_path / "part.h5", "--epochs", "2", "-q", "--in-memory"))
    whole, resumed = weights_of(tmp_path / "whole.h5"), weights_of(tmp_path / "part.h5")
    for key in whole:
        np.testing.assert_array_equal(resumed[key], whole[key])


def test_bad_dropout_settings_are_one_line(tmp_path):
    out = tmp_path / "r.h5"
    for value, fragment in (("1.0", "[0, 1)"), ("x", "rates")):  # usage errors: exit status 2
        result = cli("train", "--dropout", value, "-o", out)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and fragment in lines[0], result.output
    result = cli("train", "--hidden", "8,8", "--dropout", "0.1,0.2,0.3", "--epochs", "1", "-o", out)
    assert_one_line_error(result, "one rate or one per hidden layer (2), got 3")
    result = cli("train", "--layers", "conv:2:3,maxpool:2,dense:8", "--image-shape", "1x8x8", "--dropout",
                 "0.5,0.5,0.5", "--epochs", "1", "-o", out)  # fmt: skip
    assert_one_line_error(result, "one per hidden layer with weights (2), got 3")
    assert not out.exists()
    with pytest.raises(ValueError, match=r"a dropout rate must lie in \[0, 1\)"):
        TrainConfig(dropout=(-0.1,))


@pytest.mark.cuda
def test_the_cuda_engine_drops_the_same_units():
    """The CUDA kernels draw the CPU engine's masks (the same zeros, kept units scaled alike), and
    a run with dropout trains on CUDA as on the CPU."""
    from fastfa.kernels import cuda as cuda_kernels
    from fastfa.kernels.dropout import drop_units
    from tests.conftest import assert_close

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    ones = np.ones((5, 7), dtype=np.float32)
    host = ones.copy()
    drop_units(host, 0.6, 9, 4, 11)
    device = cuda_kernels.cuda.to_device(ones)
    cuda_kernels.launch_1d(cuda_kernels.dropout_kernel, ones.size, device, 0.6, 9, 4, 11)
    got = device.copy_to_host()
    np.testing.assert_array_equal(got == 0, host == 0)
    assert 0 < (host == 0).sum() < host.size
    assert_close(got, host.astype(np.float64), "float32")
    rng = np.random.default_rng(2)
    x, y = make_data(rng, 10, SIZES)
    config = TrainConfig(
        hidden=SIZES[1:-1], rule="fa", batch_size=4, lr=0.1, momentum=0.9, dropout=(0.4, 0.2)
    )
    cpu_trainer, cuda_trainer = Trainer(config, SIZES[0], SIZES[-1]), Trainer(config, SIZES[0], SIZES[-1])
    cuda_trainer.use_device("cuda")
    assert cuda_trainer._cuda.mode == "kernels"
    for _ in range(2):
        assert_close(
            cuda_trainer.train_epoch(x.astype(np.float32), y)[0],
            cpu_trainer.train_epoch(x.astype(np.float32), y)[0],
            "float32",
        )
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")


@pytest.mark.parametrize("rule", ["bp", "dfa"])
def test_dropout_on_a_conv_net_is_the_naive_step(rule):
    """A layer list (conv, max-pool, dense): the conv layer's and the dense layer's outputs are
    dropped with the kernels' masks; one full batch of plain SGD equals the naive reference's."""
    from fastfa.kernels import codes
    from tests import naive_layers

    rng = np.random.default_rng(3)
    x, y = make_data(rng, 6, (36, 3))
    config = TrainConfig(
        layers="conv:2:3,maxpool:2,dense:5", image_shape=(1, 6, 6), rule=rule, dtype="float64", batch_size=6,
        lr=0.1, momentum=0.0, shuffle=False, seed=7, dropout=(0.3, 0.5),
    )  # fmt: skip
    trainer = Trainer(config, 36, 3)
    ltab = trainer.arch.table.ltab
    assert list(trainer.dropout) == [0.7, 1.0, 0.5, 1.0]  # conv, pool, dense, output
    dropped, base = {}, 0
    for layer, keep in enumerate(trainer.dropout):
        n = int(ltab[layer, codes.L_OUT_SIZE])
        if keep < 1.0:
            mask = np.array(
                [[is_kept(7, 1, base + i * n + j, keep) for j in range(n)] for i in range(6)], float
            )
            dropped[layer] = mask / keep
        base += 6 * n
    params = trainer.params.copy()
    signal = codes.SIGNALS["backprop" if rule == "bp" else "direct"]
    deltas, _, post = naive_layers.signals(ltab, params, trainer.feedback, x, np.eye(3)[y], signal, dropped)
    grads = naive_layers.gradients(ltab, params, x, deltas, post)
    trainer.train_epoch(x, y)
    np.testing.assert_allclose(trainer.params, params - 0.1 * grads, rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
def test_the_cuda_layer_engine_drops_as_the_cpu():
    from fastfa.kernels import cuda as cuda_kernels
    from tests.conftest import assert_close

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    x, y = make_data(np.random.default_rng(4), 8, (36, 3))
    config = TrainConfig(
        layers="conv:2:3,maxpool:2,dense:5", image_shape=(1, 6, 6), rule="fa", batch_size=4, lr=0.1,
        dropout=(0.3, 0.5),
    )  # fmt: skip
    cpu_trainer, cuda_trainer = Trainer(config, 36, 3), Trainer(config, 36, 3)
    cuda_trainer.use_device("cuda")
    for trainer in (cpu_trainer, cuda_trainer):
        trainer.train_epoch(x.astype(np.float32), y)
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
