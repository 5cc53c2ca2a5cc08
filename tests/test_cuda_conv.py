"""The CUDA convolution and pooling kernels (fastfa/kernels/cuda_conv.py) against the CPU ones.

The reference is fastfa/kernels/conv.py, itself checked against naive loops in
tests/test_conv_kernels.py. By default the kernels run on numba's CPU simulator
(``NUMBA_ENABLE_CUDASIM=1``, set in tests/conftest.py before numba is imported), which runs
every GPU thread as a Python thread: the shapes are tiny (batches 1-3, channels 1-3, maps up
to 7 x 7, kernels 1-3). With ``FASTFA_TEST_GPU=1`` the same tests run on a real GPU.

float64 must agree to ~1e-12 and float32 to ~1e-5, relative to the largest entry; max
pooling (outputs, argmax and the routed deltas) must agree exactly. Outputs start as NaN,
so an entry a kernel forgets to write fails the comparison. tests/test_cuda.py compiles
every kernel here to PTX (``test_kernels_compile_for_a_real_gpu``).
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from fastfa.kernels import conv, cuda_conv
from fastfa.kernels import cuda as kernels
from tests.conftest import DTYPES, assert_close
from tests.test_conv_kernels import conv_data, run_backward_input, run_forward, run_weight_grad
from tests.test_cuda import quick_simulator_barriers  # noqa: F401 (an autouse fixture)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not kernels.available(), reason="no CUDA GPU or simulator"),
]

#: tolerance factors on tests/conftest.py's TOLERANCE: 1e-12 for float64, 1e-5 for float32
FACTOR = {"float64": 1e-2, "float32": 1.0}

# (n, c_in, c_out, h, w, k, stride, padding)
CONV_CASES = [
    (1, 1, 1, 5, 5, 3, 1, 0),
    (2, 3, 2, 7, 7, 3, 2, 1),  # stride and padding
    (3, 2, 3, 6, 5, 2, 1, 1),  # non-square map, even kernel
    (2, 2, 3, 5, 4, 1, 2, 1),  # 1 x 1 kernel with stride and padding: some outputs read only padding
    (2, 3, 2, 3, 3, 3, 1, 0),  # the kernel covers the image
    (2, 2, 3, 1, 1, 3, 2, 1),  # the kernel covers the padded image
]
CONV_IDS = ["n{}-c{}-o{}-{}x{}-k{}-s{}-p{}".format(*case) for case in CONV_CASES]

# (n, c, h, w, k, stride)
POOL_CASES = [
    (2, 3, 6, 6, 2, 2),
    (1, 2, 7, 7, 3, 2),  # overlapping windows
    (2, 2, 5, 7, 3, 1),  # overlapping windows, stride 1, non-square
    (3, 1, 7, 6, 2, 3),  # gaps between windows: inputs no window covers
    (2, 3, 5, 5, 5, 1),  # global pooling
]
POOL_IDS = ["n{}-c{}-{}x{}-k{}-s{}".format(*case) for case in POOL_CASES]


def device(a):
    return cuda.to_device(np.ascontiguousarray(a))


def blank(shape, dtype):
    """A device array of NaN (or -1 for integers): garbage every kernel must overwrite."""
    return device(np.full(shape, -1 if np.dtype(dtype).kind == "i" else np.nan, dtype=dtype))


def close(actual, expected, dtype, what):
    assert_close(actual.copy_to_host(), expected, dtype, FACTOR[dtype], err_msg=what)


# ----------------------------------------------------------------------- convolution


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_forward(case, dtype, rng):
    stride, padding = case[6], case[7]
    x, w, b, _ = conv_data(case, dtype, rng)
    out = blank(conv.conv_output_shape(x.shape, w.shape, stride, padding), dtype)
    cuda_conv.conv_forward(device(x), device(w), device(b), stride, padding, out)
    close(out, run_forward(x, w, b, stride, padding), dtype, "conv_forward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_backward_input(case, dtype, rng):
    stride, padding = case[6], case[7]
    x, w, _, delta = conv_data(case, dtype, rng)
    out = blank(x.shape, dtype)
    cuda_conv.conv_backward_input(device(delta), device(w), stride, padding, out)
    close(out, run_backward_input(delta, w, stride, padding, x.shape), dtype, "conv_backward_input")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_weight_grad(case, dtype, rng):
    """Both gradients, and the same bits from a second launch (a fixed summation order)."""
    k, stride, padding = case[5], case[6], case[7]
    x, w, b, delta = conv_data(case, dtype, rng)
    grad_w, grad_b = blank(w.shape, dtype), blank(b.shape, dtype)
    dx, dd = device(x), device(delta)
    cuda_conv.conv_weight_grad(dx, dd, stride, padding, grad_w, grad_b)
    want_w, want_b = run_weight_grad(x, delta, stride, padding, k)
    close(grad_w, want_w, dtype, "grad_w")
    close(grad_b, want_b, dtype, "grad_b")
    if case == CONV_CASES[1]:
        again_w, again_b = blank(w.shape, dtype), blank(b.shape, dtype)
        cuda_conv.conv_weight_grad(dx, dd, stride, padding, again_w, again_b)
        np.testing.assert_array_equal(again_w.copy_to_host(), grad_w.copy_to_host())
        np.testing.assert_array_equal(again_b.copy_to_host(), grad_b.copy_to_host())


def test_conv_rejects_bad_shapes(rng):
    x, w, b, delta = (device(a) for a in conv_data(CONV_CASES[1], "float64", rng))
    out = blank(delta.shape, "float64")
    with pytest.raises(ValueError, match="output must be"):
        cuda_conv.conv_forward(x, w, b, 1, 1, out)
    with pytest.raises(ValueError, match="bias"):
        cuda_conv.conv_forward(x, w, device(np.zeros(3)), 2, 1, out)
    with pytest.raises(ValueError, match="larger than the padded input"):
        cuda_conv.conv_backward_input(delta, w, 1, 0, blank((2, 3, 2, 2), "float64"))
    with pytest.raises(ValueError, match="C_out entries"):
        cuda_conv.conv_weight_grad(x, delta, 2, 1, blank(w.shape, "float64"), blank(3, "float64"))


# --------------------------------------------------------------------------- pooling


def pool_data(case, dtype, rng, ties=False):
    """``(x, delta)``; with ``ties`` ``x`` has five distinct values (the first maximum must win)."""
    n, c, h, w, k, stride = case
    x = rng.integers(-2, 3, size=(n, c, h, w)) * 0.5 if ties else rng.normal(size=(n, c, h, w))
    x = x.astype(dtype)
    out_shape = conv.pool_output_shape(x.shape, k, stride)
    return x, rng.normal(size=out_shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_maxpool(case, dtype, rng):
    """The maximum, its argmax and the routed deltas: exactly the CPU kernel's."""
    k, stride = case[4], case[5]
    x, delta = pool_data(case, dtype, rng, ties=True)
    want, want_argmax = np.zeros(delta.shape, dtype), np.zeros(delta.shape, np.int64)
    conv.maxpool_forward(x, k, stride, want, want_argmax, 1)
    out, argmax = blank(delta.shape, dtype), blank(delta.shape, np.int64)
    cuda_conv.maxpool_forward(device(x), k, stride, out, argmax)
    np.testing.assert_array_equal(out.copy_to_host(), want)
    np.testing.assert_array_equal(argmax.copy_to_host(), want_argmax)
    want_grad = np.zeros_like(x)
    conv.maxpool_backward(delta, want_argmax, want_grad, 1)
    grad = blank(x.shape, dtype)
    cuda_conv.maxpool_backward(device(delta), argmax, grad)
    np.testing.assert_array_equal(grad.copy_to_host(), want_grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_avgpool(case, dtype, rng):
    k, stride = case[4], case[5]
    x, delta = pool_data(case, dtype, rng)
    want, want_grad = np.zeros(delta.shape, dtype), np.zeros_like(x)
    conv.avgpool_forward(x, k, stride, want, 1)
    conv.avgpool_backward(delta, k, stride, want_grad, 1)
    out, grad = blank(delta.shape, dtype), blank(x.shape, dtype)
    cuda_conv.avgpool_forward(device(x), k, stride, out)
    cuda_conv.avgpool_backward(device(delta), k, stride, grad)
    close(out, want, dtype, "avgpool_forward")
    close(grad, want_grad, dtype, "avgpool_backward")


def test_pool_rejects_bad_shapes():
    x = device(np.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match="larger than the input"):
        cuda_conv.avgpool_forward(x, 6, 1, blank((2, 3, 1, 1), "float64"))
    with pytest.raises(ValueError, match="output must be"):
        cuda_conv.avgpool_backward(blank((2, 3, 3, 3), "float64"), 2, 2, x)
    with pytest.raises(ValueError, match="argmax must have the output's shape"):
        cuda_conv.maxpool_forward(x, 2, 2, blank((2, 3, 2, 2), "float64"), blank((2, 3, 3, 3), np.int64))
    with pytest.raises(ValueError, match="forward input"):
        cuda_conv.maxpool_backward(
            blank((2, 3, 3, 3), "float64"), blank((2, 3, 3, 3), np.int64), blank((2, 3, 2, 2), "float64")
        )
