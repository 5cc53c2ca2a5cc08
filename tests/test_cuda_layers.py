"""The CUDA engine for layer tables (fastfa/cuda_layers.py) against the CPU Trainer (float32).

Conv, pooling and dense layers trained on the device must give the CPU engine's weights,
optimiser state, feedback, loss and error count (fastfa/kernels/layers.py), to float32
tolerance, as tests/test_cuda.py checks the dense CUDA engine. On numba's simulator
(``NUMBA_ENABLE_CUDASIM=1``, set in tests/conftest.py) every GPU thread is a Python thread, so
the networks are tiny: 1x6x6 images, two or three channels, three rows in two batches.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastfa import TrainConfig, Trainer
from fastfa.kernels import cuda_base
from tests.conftest import assert_close
from tests.test_cuda import quick_simulator_barriers  # noqa: F401 (an autouse fixture)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda_base.available(), reason="no CUDA GPU or simulator"),
]

#: conv 2x4x4, a strided conv over it 2x2x2 (its signal a transposed convolution), max-pool 2x1x1
STACKED = "conv:2:3,conv:2:2:2,maxpool:2"
#: padded strided conv 2x3x3, overlapping average pools 2x2x2, a conv whose window covers its
#: input (run as a GEMM, 3x1x1), a hidden dense layer
COVERING = "conv:2:3:2:1,avgpool:2:1,conv:3:2,dense:3"


def trainers(layers, rule, **settings):
    """A CPU trainer and a CUDA one, same configuration and initial state, 1x6x6 images, 3 classes."""
    config = TrainConfig(
        layers=layers, image_shape=(1, 6, 6), rule=rule, batch_size=2, seed=3,
        **{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, **settings},
    )  # fmt: skip
    cpu, gpu = Trainer(config, 36, 3), Trainer(config, 36, 3)
    gpu.use_device("cuda")
    return cpu, gpu


def assert_same_training(cpu, gpu, rng):
    """Train both for an epoch on three rows (a batch of two, then a short one): the same loss,
    error count, weights, optimiser state and feedback."""
    x = rng.uniform(-1, 1, (3, 36)).astype(np.float32)
    y = rng.integers(0, 3, 3)
    (cpu_loss, cpu_errors), (gpu_loss, gpu_errors) = cpu.train_epoch(x, y), gpu.train_epoch(x, y)
    assert_close(gpu_loss, cpu_loss, "float32")
    assert gpu_errors == cpu_errors
    assert_close(gpu.params, cpu.params.astype(np.float64), "float32", err_msg="params")
    assert_close(gpu.state, cpu.state.astype(np.float64), "float32", err_msg="optimiser state")
    assert_close(gpu.feedback, cpu.feedback.astype(np.float64), "float32", err_msg="feedback")
    assert gpu.step == cpu.step == 2
    assert gpu.device_description() == "cuda (kernels)"


@pytest.mark.parametrize(
    "rule, layers",
    [
        ("bp", STACKED),
        ("fa", COVERING),
        ("dfa", STACKED),
        ("usf", STACKED),
        ("kp", STACKED),
        ("wm", STACKED),
        ("brsf", COVERING),
        ("sdfa", COVERING),
        ("drtp", STACKED),
        ("shallow", COVERING),
    ],
)
def test_layer_engine_matches_the_cpu_trainer(rule, layers, rng):
    """Every signal and feedback dynamics, through conv (padded or not, and one run as a GEMM),
    max and average pooling and dense layers, with momentum and weight decay."""
    cpu, gpu = trainers(layers, rule, nesterov=rule == "fa")
    if rule in ("usf", "brsf"):  # the feedback must come from the weights' signs before the first batch
        cpu.feedback[:] = gpu.feedback[:] = 0.0
    initial = cpu.feedback.copy()
    assert_same_training(cpu, gpu, rng)
    learns = rule in ("kp", "wm", "usf", "brsf")
    assert learns == (not np.array_equal(cpu.feedback, initial))


def test_layer_engine_with_adam_matches_the_cpu_trainer(rng):
    """Adam with weight decay (its bias correction follows the update count), with the weight
    mirror learning the feedback of the conv that covers its input."""
    cpu, gpu = trainers(COVERING, "wm", optimizer="adam", lr=0.01, momentum=0.0)
    assert_same_training(cpu, gpu, rng)


def test_layer_engine_refuses_what_it_cannot_run_in_one_line():
    """float64 (the CUDA engines train in float32), and a way of running the batches it lacks."""
    config = TrainConfig(layers=STACKED, image_shape=(1, 6, 6), dtype="float64")
    refusal = "^the cuda engine does not support dtype float64; use --device cpu$"
    with pytest.raises(ValueError, match=refusal):
        Trainer(config, 36, 3).use_device("cuda")
    from fastfa.cuda_layers import CudaLayerEngine

    trainer = Trainer(TrainConfig(layers=STACKED, image_shape=(1, 6, 6)), 36, 3)
    with pytest.raises(ValueError, match="^cuda mode 'fused' does not run conv and pooling layers"):
        CudaLayerEngine(trainer, mode="fused")


def test_a_layer_run_file_is_the_same_after_cuda_training(tmp_path, rng):
    """``fastfa train --layers ... --device cuda``: the run file holds what CPU training writes."""
    import json

    import h5py

    from fastfa.datasets import write_dataset
    from tests.test_cli import cli, ok

    x = rng.uniform(0, 1, (3, 1, 6, 6)).astype(np.float32)
    splits = {"train": (x, rng.integers(0, 3, 3)), "test": (x[:2], rng.integers(0, 3, 2))}
    data = write_dataset(tmp_path / "tiny.h5", splits, name="tiny", task="classification", n_classes=3)
    args = ["--layers", STACKED, "--rule", "fa", "--batch-size", "2", "--epochs", "1", "--no-shuffle", "-q"]
    for device in ("cpu", "cuda"):
        ok(cli("train", data, *args, "--device", device, "-o", tmp_path / f"{device}.h5"))
    with h5py.File(tmp_path / "cuda.h5", "r") as a, h5py.File(tmp_path / "cpu.h5", "r") as b:
        assert json.loads(a.attrs["versions"])["device"] == "cuda (kernels)"
        assert_close(a["history/train_loss"][()], b["history/train_loss"][()], "float32")
        names = [name for name in ("model", "optimizer", "feedback") if name in b]
        assert "model" in names and "optimizer" in names
        for group in names:
            for name in b[group]:
                assert_close(
                    a[group][name][()], b[group][name][()].astype(np.float64), "float32", err_msg=name
                )
