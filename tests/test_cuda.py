"""CUDA kernels and the CUDA engine against the CPU engine (float32, tiny shapes).

By default they run on numba's CPU simulator (``NUMBA_ENABLE_CUDASIM=1``, set in
tests/conftest.py), which runs every GPU thread as a Python thread: slow, so the shapes
are a handful of rows. With ``FASTFA_TEST_GPU=1`` the same tests run on a real GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from fastfa import TrainConfig, Trainer
from fastfa.datasets import ArraySplit, write_dataset
from fastfa.kernels import (
    codes,
    cuda_base,
    cuda_batch_norm,
    cuda_conv,
    cuda_dropout,
    cuda_elementwise,
    cuda_feedback,
    cuda_fused,
    cuda_optimisers,
    cuda_products,
)
from fastfa.kernels import cuda as kernels
from fastfa.rules import Rule
from tests.conftest import assert_close
from tests.ptx_compile import (
    PLUGIN_FILES,
    conv_kernel_signatures,
    fused_configurations,
    kernel_signatures,
    norm_kernel_signatures,
)
from tests.test_cli import cli, ok
from tests.test_kernels import OUTPUT_ERROR_CASES

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not kernels.available(), reason="no CUDA GPU or simulator"),
]


@pytest.fixture(autouse=True)
def quick_simulator_barriers():
    """A 1 ms GIL switch interval while a test runs on the simulator (Python's default is 5 ms).

    The simulator runs a block's threads as Python threads that meet at each ``syncthreads``
    through a polling loop; with a shorter interval they reach it sooner. A conv net's epoch
    (tests/test_cuda_layers.py) ran 2.5 times faster. Import it into other CUDA test modules.
    """
    if not numba.config.ENABLE_CUDASIM:
        yield
        return
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-3)
    yield
    sys.setswitchinterval(before)


def device(a):
    return kernels.cuda.to_device(np.ascontiguousarray(a, dtype=np.float32))


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm(trans_a, trans_b, rng):
    m, k, n = 7, 9, 5  # not multiples of the tile
    a = rng.normal(size=(k, m) if trans_a else (m, k))
    b = rng.normal(size=(n, k) if trans_b else (k, n))
    c = rng.normal(size=(m, n))
    expected = 0.7 * (a.T if trans_a else a) @ (b.T if trans_b else b) - 0.3 * c
    out = device(c)
    kernels.gemm(0.7, device(a), trans_a, device(b), trans_b, -0.3, out)
    assert_close(out.copy_to_host(), expected, "float32")


@pytest.mark.parametrize("act", ["tanh", "logistic", "relu", "identity"])
def test_elementwise_kernels_match_the_cpu_ones(act, rng):
    from fastfa.kernels import cpu

    code = codes.ACTIVATIONS[act]
    z = rng.normal(size=(3, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    want = z.copy()
    cpu.bias_activation(want, b, code)
    got = device(z)
    kernels.launch_1d(kernels.bias_activation_kernel, z.size, got, device(b), code)
    assert_close(got.copy_to_host(), want, "float32")
    delta = rng.normal(size=(3, 5)).astype(np.float32)
    want_delta = delta.copy()
    cpu.multiply_derivative(want_delta, want, code)
    got_delta = device(delta)
    kernels.launch_1d(kernels.derivative_kernel, delta.size, got_delta, device(want), code)
    assert_close(got_delta.copy_to_host(), want_delta, "float32")


@pytest.mark.parametrize("classification", [0, 1])
@pytest.mark.parametrize("out_act, loss", OUTPUT_ERROR_CASES)
def test_output_error_and_sums(out_act, loss, classification, rng):
    """Every output and loss of the CPU engine: the outputs, the error, per-row loss and
    misclassification summed on the device, and the bias gradient's column sums."""
    from fastfa.kernels import cpu

    z = rng.normal(size=(4, 3)).astype(np.float32) * 3
    b = rng.normal(size=3).astype(np.float32)
    if out_act == "softmax":
        t = np.eye(3, dtype=np.float32)[[0, 2, 1, 1]]
    else:  # exact 0s and 1s, and soft targets
        t = np.where(rng.uniform(size=(4, 3)) < 0.5, 0.0, 1.0).astype(np.float32)
        t[0] = rng.uniform(-0.2, 1.2, 3)
    act = codes.OUTPUT_ACTIVATIONS[out_act]
    y = z.copy()
    cpu.bias_activation(y, b, act)
    e = np.zeros_like(y)
    loss_sum, errors = cpu.output_error(y, t, act, codes.LOSSES[loss], classification, e, 0.25)
    dz, de = device(z), device(np.zeros_like(z))
    loss_rows, error_rows = device(np.zeros(4)), kernels.cuda.to_device(np.zeros(4, np.int32))
    kernels.launch_1d(
        kernels.output_error_kernel, 4, dz, device(b), device(t), de, loss_rows, error_rows, 0.25,
        act, codes.LOSSES[loss], classification,
    )  # fmt: skip
    assert_close(dz.copy_to_host(), y, "float32")
    assert_close(de.copy_to_host(), e, "float32")
    totals = device(np.zeros(2))
    kernels.accumulate_kernel[1, 1](loss_rows, error_rows, 4, totals)
    assert_close(totals.copy_to_host(), [loss_sum, errors], "float32")
    sums = device(np.zeros(3))
    kernels.launch_1d(kernels.column_sum_kernel, 3, device(e), sums)
    assert_close(sums.copy_to_host(), e.sum(axis=0), "float32")


def test_gather_and_feedback_kernels_match_the_cpu(rng):
    """The row gather, the sign-concordant refresh (brsf's, with its draws) and the weight
    mirror's noise, each against what the CPU engine computes."""
    from fastfa.kernels import cpu

    src, order = rng.normal(size=(5, 3)), np.array([4, 0, 2, 2])
    dst = device(np.zeros((4, 3)))
    kernels.launch_1d(kernels.gather_rows_kernel, dst.size, device(src), kernels.cuda.to_device(order), dst)
    assert_close(dst.copy_to_host(), src[order], "float32")

    trainer = Trainer(TrainConfig(hidden=(4, 3), rule="brsf", seed=9), 5, 2)
    trainer.params[:] = rng.normal(size=trainer.params.size)  # signs of both kinds everywhere
    want = trainer.feedback.copy()
    cpu.refresh_feedback(trainer.params, want, trainer.magnitude, trainer.sizes, trainer.icfg, 7)
    params, got, magnitude = device(trainer.params), device(np.zeros_like(want)), device(trainer.magnitude)
    w_off, f_off = 5 * 4, 0  # F_0 follows W_1, F_1 follows W_2
    for rows, cols in ((4, 3), (3, 2)):
        n = rows * cols
        kernels.launch_1d(
            kernels.sign_feedback_kernel, n, params, got, magnitude, w_off, f_off, n,
            codes.DYNAMICS["sign-redraw"], 9, 7,
        )  # fmt: skip
        w_off, f_off = w_off + n, f_off + n
    assert_close(got.copy_to_host(), want.astype(np.float64), "float32")

    xi = device(np.zeros((3, 4)))
    kernels.launch_1d(kernels.mirror_noise_kernel, xi.size, xi, 9, 7, 11, 0.5)
    draws = [cpu.counter_uniform(9 ^ cpu.MIRROR_STREAM, 7, 11 + i) for i in range(12)]
    assert_close(xi.copy_to_host(), 0.5 * (2.0 * np.reshape(draws, (3, 4)) - 1.0), "float32")


@pytest.mark.parametrize("mode", ["fused", "kernels"])
@pytest.mark.parametrize(
    "rule", ["bp", "fa", "dfa", "sdfa", "drtp", "sparse-fa", "kp", "wm", "usf", "frsf", "brsf", "shallow"]
)
def test_cuda_epoch_matches_the_cpu_engine(rule, mode, rng, monkeypatch):
    """Two batches and a short last one, with momentum and weight decay: the same weights and
    optimiser state as on the CPU, for both ways of running the batches."""
    x = rng.uniform(-1, 1, (10, 7)).astype(np.float32)
    y = rng.integers(0, 5, 10)
    config = TrainConfig(
        hidden=(9, 6), rule=rule, batch_size=4, lr=0.1, momentum=0.9, weight_decay=0.01, seed=1,
        nesterov=rule == "fa",
    )  # fmt: skip
    cpu_trainer, cuda_trainer = Trainer(config, 7, 5), Trainer(config, 7, 5)
    monkeypatch.setenv("FASTFA_CUDA_MODE", mode)
    cuda_trainer.use_device("cuda")
    assert cuda_trainer._cuda.mode == mode
    sign_concordant = rule in ("usf", "frsf", "brsf")
    if sign_concordant:  # the feedback must come from the weights' signs before the first batch
        cpu_trainer.feedback[:] = cuda_trainer.feedback[:] = 0.0
    initial_feedback = cpu_trainer.feedback.copy()
    cpu_loss, cpu_error = cpu_trainer.train_epoch(x, y)
    cuda_loss, cuda_error = cuda_trainer.train_epoch(x, y)
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(cuda_trainer.state, cpu_trainer.state.astype(np.float64), "float32")
    assert_close(cuda_trainer.feedback, cpu_trainer.feedback.astype(np.float64), "float32")
    learns = rule in ("kp", "wm") or sign_concordant  # kp's and wm's learn; sign-concordant follows W
    assert learns == (not np.array_equal(cpu_trainer.feedback, initial_feedback))
    assert_close(cuda_loss, cpu_loss, "float32")
    assert cuda_error == cpu_error and cuda_trainer.step == cpu_trainer.step == 3
    assert cuda_trainer._cuda.mode == mode  # no fallback happened


@pytest.mark.parametrize("mode", ["fused", "kernels"])
@pytest.mark.parametrize(
    "task, rule, output",
    [
        ("regression", "fa", {}),  # identity output, squared error
        ("regression", "dfa", dict(output_activation="tanh")),
        ("classification", "bp", dict(output_activation="logistic")),  # with cross-entropy
        ("classification", "sdfa", dict(output_activation="logistic", loss="squared_error")),
    ],
)
def test_other_outputs_on_cuda_match_the_cpu_engine(task, rule, output, mode, rng, monkeypatch):
    """Regression and the other outputs and losses: the same weights, loss and error count."""
    x = rng.uniform(-1, 1, (10, 6)).astype(np.float32)
    y = rng.uniform(-0.8, 0.8, (10, 3)) if task == "regression" else rng.integers(0, 3, 10)
    config = TrainConfig(hidden=(5,), rule=rule, batch_size=4, lr=0.1, momentum=0.9, seed=4, **output)
    cpu_trainer, cuda_trainer = Trainer(config, 6, 3, task), Trainer(config, 6, 3, task)
    monkeypatch.setenv("FASTFA_CUDA_MODE", mode)
    cuda_trainer.use_device("cuda")
    for _ in range(2):
        (cpu_loss, cpu_error), (cuda_loss, cuda_error) = (
            cpu_trainer.train_epoch(x, y),
            cuda_trainer.train_epoch(x, y),
        )
        assert_close(cuda_loss, cpu_loss, "float32")
        assert cuda_error == cpu_error
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert cuda_trainer._cuda.mode == mode


@pytest.mark.parametrize("mode", ["fused", "kernels"])
def test_adam_on_cuda_matches_the_cpu_engine(mode, rng, monkeypatch):
    """Adam with weight decay over two calls (the bias correction follows the update count)."""
    x = rng.uniform(-1, 1, (10, 7)).astype(np.float32)
    y = rng.integers(0, 5, 10)
    config = TrainConfig(hidden=(9, 6), rule="kp", optimizer="adam", lr=0.01, batch_size=4, weight_decay=0.01)
    cpu_trainer, cuda_trainer = Trainer(config, 7, 5), Trainer(config, 7, 5)
    monkeypatch.setenv("FASTFA_CUDA_MODE", mode)
    cuda_trainer.use_device("cuda")
    for _ in range(2):
        assert_close(cuda_trainer.train_epoch(x, y)[0], cpu_trainer.train_epoch(x, y)[0], "float32")
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(cuda_trainer.state, cpu_trainer.state.astype(np.float64), "float32")
    assert_close(cuda_trainer.feedback, cpu_trainer.feedback.astype(np.float64), "float32")
    assert cuda_trainer.step == 6 and cuda_trainer._cuda.mode == mode


@pytest.mark.parametrize("rule, activation", [("bp", "relu"), ("dfa", "logistic")])
def test_fused_kernel_on_a_deeper_network(rule, activation, rng, monkeypatch):
    """Four weight layers: every update happens in its own phase of the fused kernel."""
    x = rng.uniform(-1, 1, (6, 5)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    config = TrainConfig(hidden=(6, 5, 4), activation=activation, rule=rule, batch_size=3, lr=0.2, seed=2)
    cpu_trainer, cuda_trainer = Trainer(config, 5, 3), Trainer(config, 5, 3)
    monkeypatch.setenv("FASTFA_CUDA_MODE", "fused")
    cuda_trainer.use_device("cuda")
    assert_close(cuda_trainer.train_epoch(x, y)[0], cpu_trainer.train_epoch(x, y)[0], "float32")
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert cuda_trainer._cuda.mode == "fused"


def test_fused_kernel_falls_back_to_separate_launches(rng, monkeypatch, capsys):
    """Where a cooperative launch fails, the call reruns with one launch per operation."""

    def refuse(*args, **kwargs):
        raise RuntimeError("cooperative launch not supported")

    x, y = rng.uniform(-1, 1, (4, 5)).astype(np.float32), rng.integers(0, 3, 4)
    config = TrainConfig(hidden=(4,), rule="fa", batch_size=2, lr=0.2, seed=2)
    cpu_trainer, cuda_trainer = Trainer(config, 5, 3), Trainer(config, 5, 3)
    monkeypatch.setenv("FASTFA_CUDA_MODE", "fused")
    monkeypatch.setattr(kernels, "launch_cooperative", refuse)
    cuda_trainer.use_device("cuda")
    cuda_trainer.train_epoch(x, y)
    cpu_trainer.train_epoch(x, y)
    assert cuda_trainer._cuda.mode == "kernels"
    assert "cooperative launch not supported" in capsys.readouterr().err
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    monkeypatch.setenv("FASTFA_CUDA_MODE", "warp")
    with pytest.raises(ValueError, match="cuda mode must be one of fused, kernels"):
        cuda_trainer.use_device("cuda")


class CountingSplit(ArraySplit):
    """An in-memory split that counts the rows read from it."""

    rows_read = 0

    def _read(self, start, stop, dtype):
        self.rows_read += stop - start
        return super()._read(start, stop, dtype)


@pytest.mark.parametrize("data_bytes", [None, 1])
def test_chunks_stay_on_the_device_between_epochs(data_bytes, rng, monkeypatch):
    """``fastfa train``'s loop over chunks: a split that fits on the device is read and copied
    once, then gathered there in each epoch's order; one that does not is read every epoch.
    Both train as the CPU engine does."""
    from fastfa import device_engine
    from fastfa.fitting import Progress, train_epoch

    if data_bytes is not None:
        monkeypatch.setattr(device_engine, "DATA_BYTES", data_bytes)  # room for one chunk only
    x = rng.uniform(-1, 1, (10, 6)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    config = TrainConfig(hidden=(5,), rule="fa", batch_size=2, lr=0.1, momentum=0.9, seed=3)
    cpu_trainer, cuda_trainer = Trainer(config, 6, 3), Trainer(config, 6, 3)
    cuda_trainer.use_device("cuda")
    split = CountingSplit("train", x, y)
    reads = []
    for _ in range(2):
        for trainer in (cpu_trainer, cuda_trainer):
            train_epoch(
                trainer,
                split if trainer is cuda_trainer else ArraySplit("train", x, y),
                Progress(),
                chunk_rows=4,
            )
        reads.append(split.rows_read - sum(reads))
    assert reads[0] == 10
    if data_bytes is None:
        assert reads[1] == 0
    else:  # only the chunk used last may still be there
        assert reads[1] >= 10 - 4
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(cuda_trainer.state, cpu_trainer.state.astype(np.float64), "float32")
    other = CountingSplit("train", x, y)  # another split: its rows are read, not the first one's
    train_epoch(cuda_trainer, other, Progress(), chunk_rows=4)
    train_epoch(cpu_trainer, ArraySplit("train", x, y), Progress(), chunk_rows=4)
    assert other.rows_read == 10
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")


def test_a_plugin_with_a_python_hook_runs_on_cuda(rng, monkeypatch):
    """A rule's ``after_batch`` hook runs on the host between batches on cuda too: the engine
    sees what it changed, and the result is the CPU engine's."""
    import fastfa.rules

    def decay_feedback(trainer):
        trainer.feedback *= 0.5

    monkeypatch.setattr(fastfa.rules, "_runtime_rules", {})
    plugins_fa = fastfa.rules.get_rule("fa")
    fastfa.rules.register_rule(
        Rule(
            name="test-fading-fa", summary="fa whose feedback halves after every update", reference="-",
            signal="layerwise", init_feedback=plugins_fa.init_feedback, options=plugins_fa.options,
            devices=("cpu", "cuda"), after_batch=decay_feedback,
        )
    )  # fmt: skip
    x, y = rng.uniform(-1, 1, (6, 5)).astype(np.float32), rng.integers(0, 3, 6)
    config = TrainConfig(hidden=(4,), rule="test-fading-fa", batch_size=2, lr=0.3, seed=5)
    cpu_trainer, cuda_trainer = Trainer(config, 5, 3), Trainer(config, 5, 3)
    cuda_trainer.use_device("cuda")
    initial = cpu_trainer.feedback.copy()
    cpu_trainer.train_epoch(x, y)
    cuda_trainer.train_epoch(x, y)
    assert_close(cpu_trainer.feedback, initial / 8, "float32")  # three batches, three hooks
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
    assert_close(cuda_trainer.feedback, cpu_trainer.feedback.astype(np.float64), "float32")


def test_unsupported_settings_are_one_clear_error(monkeypatch):
    import fastfa.rules

    monkeypatch.setattr(fastfa.rules, "_runtime_rules", {})
    cpu_only = Rule(name="test-cpu-only", summary="bp, cpu only", reference="-", signal="backprop")
    fastfa.rules.register_rule(cpu_only)  # a plugin that does not declare cuda
    for kwargs, fragment in [
        (dict(rule="test-cpu-only"), "rule 'test-cpu-only' has no cuda support (devices: cpu)"),
        (dict(rule="fa", dtype="float64"), "dtype float64"),
    ]:
        trainer = Trainer(TrainConfig(hidden=(4,), **kwargs), 3, 2)
        with pytest.raises(ValueError) as info:
            trainer.use_device("cuda")
        assert fragment in str(info.value)


def test_run_files_move_between_engines(tmp_path, rng):
    """An epoch on cuda resumed on the cpu, and the other way round: the same run as two epochs
    on the cpu."""
    x = rng.uniform(0, 1, (8, 6)).astype(np.float32)
    splits = {"train": (x, rng.integers(0, 3, 8)), "test": (x[:4], rng.integers(0, 3, 4))}
    data = write_dataset(tmp_path / "tiny.h5", splits, name="tiny", task="classification")
    args = ["--hidden", "5", "--batch-size", "4", "--lr", "0.1", "-q", "--no-shuffle"]
    ok(cli("train", data, *args, "--epochs", "1", "--device", "cuda", "-o", tmp_path / "mixed.h5"))
    ok(cli("train", data, "--epochs", "2", "-o", tmp_path / "mixed.h5", "--resume", "-q"))
    ok(cli("train", data, *args, "--epochs", "1", "-o", tmp_path / "back.h5"))
    ok(cli("train", data, "--epochs", "2", "-o", tmp_path / "back.h5", "--resume", "--device", "cuda", "-q"))
    ok(cli("train", data, *args, "--epochs", "2", "-o", tmp_path / "cpu.h5"))
    import h5py

    for other, last in (("mixed.h5", "cpu"), ("back.h5", "cuda (fused)")):
        with h5py.File(tmp_path / other, "r") as a, h5py.File(tmp_path / "cpu.h5", "r") as b:
            assert a.attrs["epoch"] == b.attrs["epoch"] == 2
            assert json.loads(a.attrs["versions"])["device"] == last  # the engine that trained last
            for name in ("model/W0", "model/W1", "model/b0", "optimizer/state"):
                assert_close(
                    a[name][()], b[name][()].astype(np.float64), "float32", err_msg=f"{other} {name}"
                )


@pytest.mark.filterwarnings("ignore:.*maximum iterations")
def test_estimator_on_cuda_matches_cpu(rng):
    from fastfa import MLPClassifier

    x = rng.uniform(-1, 1, (8, 5))
    y = rng.integers(0, 3, 8)
    kwargs = dict(hidden_layer_sizes=(6,), rule="fa", batch_size=4, max_iter=2, random_state=0)
    cpu_model = MLPClassifier(**kwargs).fit(x, y)
    cuda_model = MLPClassifier(**kwargs, device="cuda").fit(x, y)
    for a, b in zip(cuda_model.coefs_, cpu_model.coefs_, strict=True):
        assert_close(a, b, "float32")
    trainer = cuda_model._trainer
    rows = trainer.training_rows(x, y)  # on the GPU; stale once the trainer moves to the cpu
    trainer.use_device("cpu")
    with pytest.raises(ValueError, match="rows are on the GPU but the trainer now uses the cpu"):
        trainer.train_epoch_on(rows)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        MLPClassifier(device="tpu").fit(x, y)


def nvvm_home():
    """A CUDA_HOME that holds libNVVM: the environment's, else the nvidia-cuda-nvcc wheel's."""
    candidates = [os.environ.get("CUDA_HOME", "")]
    spec = importlib.util.find_spec("nvidia.cuda_nvcc") if importlib.util.find_spec("nvidia") else None
    if spec is not None:
        candidates += list(spec.submodule_search_locations or [])
    for home in filter(None, candidates):
        if any(Path(home).glob("nvvm/lib*/libnvvm.so*")):
            return home
    return None


def test_kernels_compile_for_a_real_gpu():
    """Every kernel compiles to PTX with numba's CUDA compiler, which the simulator never runs."""
    home = nvvm_home()
    if home is None:
        pytest.skip("libNVVM not found: pip install nvidia-cuda-nvcc-cu12 or set CUDA_HOME")
    env = {**os.environ, "CUDA_HOME": home}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "tests.ptx_compile", "9.0"], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    modules = (
        cuda_base,
        cuda_elementwise,
        cuda_products,
        cuda_optimisers,
        cuda_feedback,
        cuda_fused,
        cuda_dropout,
    )
    every_kernel = {name for module in modules for name in dir(module) if name.endswith("_kernel")}
    assert set(kernel_signatures()) == every_kernel  # none left out of the check
    assert every_kernel <= set(dir(kernels))  # fastfa.kernels.cuda gives them all
    conv_kernels = {name for name in dir(cuda_conv) if name.endswith("_kernel")}
    assert set(conv_kernel_signatures("float32")) == conv_kernels
    norm_kernels = {name for name in dir(cuda_batch_norm) if name.endswith("_kernel")}
    assert set(norm_kernel_signatures()) == norm_kernels
    compiled = len(every_kernel) - 1 + len(fused_configurations()) + len(conv_kernels) + 2 * len(PLUGIN_FILES)
    compiled += len(norm_kernels)
    assert done.stdout.count("lines of PTX") == compiled


def test_a_run_with_validation_rows_and_standardisation_trains_on_cuda_as_on_the_cpu(tmp_path, rng):
    """``fit`` with held-out validation rows and standardised float inputs: the training rows
    reach the device standardised, and the best epoch and figures match the CPU engine's."""
    from fastfa.session import Run, fit

    x = rng.normal(size=(40, 5)) * np.array([0.01, 1.0, 10.0, 100.0, 1000.0])
    y = rng.integers(0, 3, 40)
    data = tmp_path / "d.h5"
    write_dataset(
        data, {"train": (x, y), "test": (x[:8], y[:8])}, name="d", task="classification", n_classes=3
    )
    config = TrainConfig(hidden=(5,), batch_size=4, lr=0.1, epochs=2, valid_fraction=0.25, seed=1)
    runs = {device: fit(Run.fresh(config, data), device=device) for device in ("cpu", "cuda")}
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert gpu.trainer.standardization is not None and gpu.train_rows == 30
    assert_close(gpu.trainer.params, cpu.trainer.params.astype(np.float64), "float32")
    assert gpu.selection.best_epoch == cpu.selection.best_epoch
    np.testing.assert_allclose(gpu.history["valid_loss"], cpu.history["valid_loss"], rtol=1e-4)
