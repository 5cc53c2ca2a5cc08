"""Batch Manhattan (Liao, Leibo and Poggio 2016): each parameter moves by exactly ``lr`` times the
momentum recursion of its batch gradient's sign, on the dense and the layer engine, on the CPU
and (simulator) CUDA engines."""

from __future__ import annotations

import numpy as np
import pytest

from fastfa.config import TrainConfig
from fastfa.train import Trainer
from tests.conftest import assert_close, make_data

SIZES = (9, 7, 5)
LAYERS = dict(layers="conv:2:3,maxpool:2,dense:5", image_shape=(1, 6, 6))


def batch_trainer(rule, n_in, n_out, **config):
    settings = dict(rule=rule, dtype="float64", optimizer="manhattan", lr=0.01, shuffle=False, seed=4)
    return Trainer(TrainConfig(**{**settings, **config}), n_in, n_out)


@pytest.mark.parametrize("shape", ["dense", "conv"])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_each_parameter_moves_by_lr_in_its_gradients_sign(shape, momentum, nesterov):
    """Two full-batch steps with weight decay: ``v <- mu v + sign(g) + decay w``, ``w <- w - lr v``
    (Nesterov: ``w <- w - lr (mu v + sign(g) + decay w)``), bit for bit, where ``g`` is the rule's
    batch gradient before each step (:meth:`Trainer.gradients`)."""
    rng = np.random.default_rng(0)
    config = dict(momentum=momentum, nesterov=nesterov, weight_decay=0.1, batch_size=12)
    if shape == "dense":
        x, y = make_data(rng, 12, SIZES)
        trainer = batch_trainer("fa", SIZES[0], SIZES[-1], hidden=SIZES[1:-1], **config)
    else:
        x, y = make_data(rng, 12, (36, 3))
        trainer = batch_trainer("fa", 36, 3, **LAYERS, **config)
    decays = np.zeros(trainer.params.size)
    decays[: trainer.arch.n_weights] = 0.1  # weights decay, biases do not
    w, carried = trainer.params.copy(), np.zeros_like(trainer.params)
    for _ in range(2):
        g = np.sign(trainer.gradients(x, y)) + decays * w
        v = carried - 0.01 * g
        w = w + (momentum * v - 0.01 * g if nesterov else v)
        carried = momentum * v
        trainer.train_epoch(x, y)
        np.testing.assert_array_equal(trainer.params, w)


def test_batch_manhattan_learns_the_digits():
    """bp and fa with Batch Manhattan learn the bundled digits well above chance."""
    from fastfa.datasets import default_dataset_path, open_dataset

    with open_dataset(default_dataset_path()) as ds:
        (x, y), (xt, yt) = ds["train"].load(), ds["test"].load()
    for rule in ("bp", "fa"):
        config = TrainConfig(hidden=(32,), rule=rule, optimizer="manhattan", lr=1e-3, momentum=0.9, seed=0)
        trainer = Trainer(config, x.shape[1], 10)
        for _ in range(5):
            trainer.train_epoch(x, y)
        assert trainer.evaluate(xt, yt)[1] < 0.2, rule


@pytest.mark.cuda
@pytest.mark.parametrize("shape", ["dense", "conv"])
def test_batch_manhattan_on_cuda_matches_the_cpu_engine(shape, monkeypatch):
    from fastfa.kernels import cuda as cuda_kernels

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    rng = np.random.default_rng(1)
    geometry = dict(hidden=(9, 6)) if shape == "dense" else LAYERS
    n_in, n_out = (7, 5) if shape == "dense" else (36, 3)
    x, y = make_data(rng, 10, (n_in, n_out))
    x = x.astype(np.float32)
    config = TrainConfig(
        rule="kp", optimizer="manhattan", lr=0.01, momentum=0.9, weight_decay=0.01, batch_size=4, **geometry
    )
    cpu_trainer, cuda_trainer = Trainer(config, n_in, n_out), Trainer(config, n_in, n_out)
    monkeypatch.setenv("FASTFA_CUDA_MODE", "fused")  # Batch Manhattan takes per-operation launches
    cuda_trainer.use_device("cuda")
    assert cuda_trainer._cuda.mode == "kernels"
    for _ in range(2):
        assert_close(cuda_trainer.train_epoch(x, y)[0], cpu_trainer.train_epoch(x, y)[0], "float32")
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(cuda_trainer.state, cpu_trainer.state.astype(np.float64), "float32")
