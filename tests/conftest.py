"""Shared helpers for the mathematical tests: tolerances, trainers, data, naive twins.

Shapes are small and odd (7-13-5, 7-13-11-5: no multiple of any tile or block size) and
every compiled kernel is called with one set of argument types per dtype, so each kernel
compiles once per dtype per session (and is then cached on disk by numba).
"""

from __future__ import annotations

import os
import sys

# The CUDA tests (tests/test_cuda.py, marker "cuda") run on numba's CPU simulator unless
# FASTFA_TEST_GPU=1 asks for a real GPU; the variable must be set before numba is imported.
# The first-run compile helper (fastfa/first_run.py) would take a core from the parallel tests
os.environ.setdefault("FASTFA_COMPILE_HELPER", "0")
if os.environ.get("FASTFA_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastfa.config import TrainConfig  # noqa: E402
from fastfa.train import Trainer  # noqa: E402
from tests import naive  # noqa: E402


def _atomic_simulator_shared_arrays():
    """Make the CUDA simulator's ``cuda.shared.array`` allocation atomic across a block's threads.

    numba's simulator (``FakeCUDAShared.array``) looks an allocation up by the caller's line and,
    when missing, creates and stores it: a check-then-set that two of a block's threads (Python
    threads) can both pass under load, each then using its own "shared" tile, so part of a
    tiled product reads tiles nobody wrote. A loaded CI machine saw it once as a wrong Adam loss
    from the fused kernel. ``dict.setdefault`` keeps the first allocation for every thread.
    """
    from numba.cuda.simulator import kernelapi

    plain = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype):
        if shape == 0:
            return plain(self, shape, dtype)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        where = (caller.f_code.co_filename, caller.f_lineno)
        return self._allocations.setdefault(where, np.zeros(shape, dtype))

    kernelapi.FakeCUDAShared.array = array


if numba.config.ENABLE_CUDASIM:
    _atomic_simulator_shared_arrays()

DTYPES = ("float64", "float32")
SHAPES = ((7, 13, 5), (7, 13, 11, 5))
#: relative tolerance of a kernel against the float64 reference
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
#: (task, output activation, loss): every supported output/loss pairing
OUTPUTS = (
    ("classification", "softmax", "cross_entropy"),
    ("classification", "logistic", "cross_entropy"),
    ("regression", "identity", "squared_error"),
    ("regression", "logistic", "squared_error"),
    ("regression", "tanh", "squared_error"),
)


def assert_close(actual, expected, dtype, factor=1.0, err_msg=""):
    """``actual`` matches ``expected`` to the dtype's tolerance, relative to the largest entry.

    Entry-wise ``|a - e| <= tol * (|e| + max|e|)``: relative for the large entries, and
    relative to the array's scale for entries that are small through cancellation.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    tol = TOLERANCE[str(np.dtype(dtype))] * factor
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    atol = tol * (scale if scale > 0 else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=atol, err_msg=err_msg)


def make_trainer(sizes, rule="bp", dtype="float64", task="classification", **config):
    """A :class:`Trainer` for layer sizes ``(n_in, hidden..., n_out)``."""
    cfg = TrainConfig(hidden=tuple(sizes[1:-1]), rule=rule, dtype=dtype, **config)
    return Trainer(cfg, sizes[0], sizes[-1], task)


def make_data(rng, n, sizes, task="classification", output_activation=None):
    """``(x, y)``: inputs in [-1, 1]; class labels, or targets suited to the output."""
    x = rng.uniform(-1.0, 1.0, size=(n, sizes[0]))
    if task == "classification":
        return x, rng.integers(0, sizes[-1], size=n)
    if output_activation in ("logistic", "tanh"):
        return x, rng.uniform(0.05, 0.95, size=(n, sizes[-1]))
    return x, rng.normal(0.0, 1.0, size=(n, sizes[-1]))


def target_matrix(trainer, y):
    """The float64 target matrix the network is trained towards (one-hot for classes)."""
    if trainer.task == "classification":
        return naive.one_hot(np.asarray(y), trainer.arch.sizes[-1])
    return np.asarray(y, dtype=np.float64).reshape(len(y), -1)


def as_dtype(x, trainer):
    """``x`` rounded to the trainer's dtype, back in float64 (what the kernels actually see)."""
    return np.asarray(x, dtype=trainer.dtype).astype(np.float64)


def naive_net(trainer):
    """A :class:`naive.Net` holding a float64 copy of everything ``trainer`` holds."""
    c = trainer.config
    sizes = trainer.arch.sizes
    rule = trainer.rule
    weights, biases = naive.split_params(trainer.params, sizes)
    net = naive.Net(
        sizes,
        weights,
        biases,
        activation=c.activation,
        output_activation=trainer.arch.output_activation,
        loss=trainer.arch.loss,
        signal=rule.signal,
        dynamics=rule.dynamics,
        feedback=naive.split_feedback(trainer.feedback, sizes, rule.signal),
        magnitude=naive.split_feedback(trainer.magnitude, sizes, rule.signal)
        if trainer.magnitude.size
        else (),
        mirror=tuple(
            float(trainer.rule_options.get(k, 0.0)) for k in ("mirror_lr", "mirror_decay", "mirror_noise")
        ),
        optimizer=c.optimizer,
        lr=trainer.learning_rate(),
        momentum=c.momentum,
        nesterov=c.nesterov,
        weight_decay=c.weight_decay,
        beta1=c.beta1,
        beta2=c.beta2,
        epsilon=c.epsilon,
        seed=c.seed,
        classification=trainer.task == "classification",
    )
    net.load_state(trainer.state, sizes)
    net.step = trainer.step
    return net


def angle_degrees(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)
