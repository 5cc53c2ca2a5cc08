"""The convolution and pooling kernels (fastfa/kernels/conv.py) against tests/naive_conv.py.

Shapes are small and odd (7x7 with k = 3, 9x9 with k = 5, non-square maps, channels 1, 3
and 6, batches of 1 and odd sizes), with strides 1, 2 and 3 and paddings 0, 1 and 2, plus
a few drawn at random; float64 must agree to ~1e-10 and float32 to ~1e-5 (x 10), relative
to the largest entry. Besides the references: the adjoint identities of im2col / col2im
and of the convolution / transposed convolution, the weight gradient against finite
differences, and max-pooling's routing of each delta to its window's maximum.

Every kernel is called with C-contiguous arrays, Python ints and one integer dtype for the
argmax, so it compiles once per float dtype per session (shapes do not recompile).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastfa.kernels import conv
from tests import naive_conv as naive
from tests.conftest import DTYPES, assert_close

F32 = 10.0  # float32 tolerance factor: sums of up to 150 products

# (n, c_in, c_out, h, w, k, stride, padding)
FIXED_CASES = [
    (1, 1, 1, 7, 7, 3, 1, 0),
    (3, 3, 6, 7, 7, 3, 2, 1),
    (5, 6, 3, 9, 9, 5, 1, 2),
    (2, 3, 6, 9, 9, 5, 2, 2),
    (1, 6, 1, 7, 7, 3, 1, 1),
    (3, 3, 6, 9, 7, 3, 2, 0),  # non-square map
    (3, 3, 5, 6, 5, 1, 1, 0),  # 1 x 1 kernel: im2col is skipped
    (3, 2, 4, 6, 5, 1, 2, 1),  # 1 x 1 kernel with stride and padding: it is not
    (2, 1, 3, 5, 5, 5, 1, 0),  # the kernel covers the image: 1 x 1 output
    (2, 2, 3, 4, 4, 5, 1, 1),  # a kernel larger than the image, not than the padded image
    (3, 3, 4, 8, 8, 3, 3, 2),  # stride 3
]


def _random_cases(count, seed=15):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, c_in, c_out = rng.integers(1, 6), rng.integers(1, 7), rng.integers(1, 7)
        h, w, k = rng.integers(3, 12), rng.integers(3, 12), int(rng.choice([1, 2, 3, 4, 5]))
        stride, padding = rng.integers(1, 4), rng.integers(0, 3)
        if naive.out_size(h, k, stride, padding) >= 1 and naive.out_size(w, k, stride, padding) >= 1:
            cases.append(tuple(int(v) for v in (n, c_in, c_out, h, w, k, stride, padding)))
    return cases


CONV_CASES = FIXED_CASES + _random_cases(6)
CASE_IDS = ["n{}-c{}-o{}-{}x{}-k{}-s{}-p{}".format(*case) for case in CONV_CASES]
# Large enough that two threads each take a share (conv._check_conv, cpu.GEMM_GRAIN).
SPLIT_CASE = (7, 6, 6, 16, 16, 5, 1, 0)
SPLIT_PAD_CASE = (9, 6, 8, 20, 20, 5, 2, 2)


def conv_data(case, dtype, rng):
    n, c_in, c_out, h, w, k, stride, padding = case
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    wt = rng.normal(size=(c_out, c_in, k, k)).astype(dtype)
    b = rng.normal(size=c_out).astype(dtype)
    out_shape = (n, c_out, naive.out_size(h, k, stride, padding), naive.out_size(w, k, stride, padding))
    delta = rng.normal(size=out_shape).astype(dtype)
    return x, wt, b, delta


def workspace(x_shape, w_shape, stride, padding, threads, dtype):
    size = conv.conv_workspace_size(x_shape, w_shape, stride, padding, threads)
    return np.full(size, np.nan, dtype=dtype)  # garbage the kernels must not read


def run_forward(x, wt, b, stride, padding, threads=2):
    out = np.full(conv.conv_output_shape(x.shape, wt.shape, stride, padding), np.nan, dtype=x.dtype)
    conv.conv_forward(
        x,
        wt,
        b,
        stride,
        padding,
        out,
        workspace(x.shape, wt.shape, stride, padding, threads, x.dtype),
        threads,
    )
    return out


def run_backward_input(delta, kernel, stride, padding, x_shape, threads=2):
    out = np.full(x_shape, np.nan, dtype=delta.dtype)
    ws = workspace(x_shape, kernel.shape, stride, padding, threads, delta.dtype)
    conv.conv_backward_input(delta, kernel, stride, padding, out, ws, threads)
    return out


def run_weight_grad(x, delta, stride, padding, k, threads=2):
    c_out = delta.shape[1]
    gw = np.full((c_out, x.shape[1], k, k), np.nan, dtype=x.dtype)
    gb = np.full(c_out, np.nan, dtype=x.dtype)
    conv.conv_weight_grad(
        x,
        delta,
        stride,
        padding,
        gw,
        gb,
        workspace(x.shape, gw.shape, stride, padding, threads, x.dtype),
        threads,
    )
    return gw, gb


def tolerance(dtype):
    return F32 if np.dtype(dtype) == np.float32 else 1.0


# ------------------------------------------------------------------------ shapes


def test_output_sizes():
    assert conv.conv_output_size(32, 5, 1, 0) == 28
    assert conv.conv_output_size(7, 3, 2, 1) == 4
    assert conv.conv_output_size(4, 5, 1, 0) <= 0
    assert conv.pool_output_size(28, 2, 2) == 14
    assert conv.pool_output_size(7, 3, 2) == 3
    assert conv.conv_output_shape((64, 1, 32, 32), (6, 1, 5, 5), 1, 0) == (64, 6, 28, 28)
    assert conv.pool_output_shape((64, 6, 28, 28), 2, 2) == (64, 6, 14, 14)
    assert conv.im2col_shape(6, 14, 14, 5, 1, 0) == (150, 100)
    assert conv.conv_workspace_size((64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 2) == 2 * (150 * 100 + 16 * 151)


# ------------------------------------------------------------------------ im2col


@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_im2col_and_adjoint(case, rng):
    """Per sample against the naive patches; batched; and ``<im2col(x), c> = <x, col2im(c)>``."""
    n, c_in, _, h, w, k, stride, padding = case
    x = rng.normal(size=(n, c_in, h, w))
    kk, p = conv.im2col_shape(c_in, h, w, k, stride, padding)
    cols = np.full((kk, p), np.nan)
    conv.im2col(x[0], k, stride, padding, cols)
    np.testing.assert_array_equal(cols, naive.im2col(x[0], k, stride, padding))
    batch = np.full((n, kk, p), np.nan)
    conv.im2col_batch(x, k, stride, padding, batch, 2)
    for s in range(n):
        np.testing.assert_array_equal(batch[s], naive.im2col(x[s], k, stride, padding))
    c = rng.normal(size=(n, kk, p))
    back = np.zeros_like(x)
    conv.col2im_batch(c, k, stride, padding, back, 2)
    assert_close(np.vdot(x, back), np.vdot(batch, c), "float64")
    one = np.zeros_like(x[0])
    conv.col2im(c[0], k, stride, padding, one)
    np.testing.assert_array_equal(one, back[0])


def test_col2im_accumulates(rng):
    x = rng.normal(size=(3, 7, 7))
    c = rng.normal(size=conv.im2col_shape(3, 7, 7, 3, 1, 1))
    once = np.zeros_like(x)
    conv.col2im(c, 3, 1, 1, once)
    twice = x.copy()
    conv.col2im(c, 3, 1, 1, twice)
    assert_close(twice, x + once, "float64")


# ------------------------------------------------------------------- convolution


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_conv_forward(case, dtype, rng):
    x, wt, b, _ = conv_data(case, dtype, rng)
    stride, padding = case[6], case[7]
    out = run_forward(x, wt, b, stride, padding)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, naive.conv(x, wt, b, stride, padding), dtype, tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_conv_backward_input(case, dtype, rng):
    """The transposed convolution with a kernel that is not the forward weights (fa's ``B``)."""
    x, _, _, delta = conv_data(case, dtype, rng)
    stride, padding = case[6], case[7]
    kernel = rng.normal(size=(case[2], case[1], case[5], case[5])).astype(dtype)
    out = run_backward_input(delta, kernel, stride, padding, x.shape)
    assert_close(out, naive.conv_transpose(delta, kernel, stride, padding, x.shape), dtype, tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_conv_weight_grad(case, dtype, rng):
    x, _, _, delta = conv_data(case, dtype, rng)
    stride, padding, k = case[6], case[7], case[5]
    gw, gb = run_weight_grad(x, delta, stride, padding, k)
    expected_w, expected_b = naive.conv_weight_grad(x, delta, stride, padding, k)
    assert_close(gw, expected_w, dtype, tolerance(dtype))
    assert_close(gb, expected_b, dtype, tolerance(dtype))


@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_conv_adjoint(case, rng):
    """``<conv(x, W) - b, d> = <x, conv_backward_input(d, W)>`` in float64."""
    x, wt, b, delta = conv_data(case, "float64", rng)
    stride, padding = case[6], case[7]
    a = run_forward(x, wt, np.zeros_like(b), stride, padding)
    back = run_backward_input(delta, wt, stride, padding, x.shape)
    assert_close(np.vdot(x, back), np.vdot(a, delta), "float64")


@pytest.mark.parametrize(
    "case", [CONV_CASES[1], CONV_CASES[3], CONV_CASES[9]], ids=[CASE_IDS[1], CASE_IDS[3], CASE_IDS[9]]
)
def test_conv_weight_grad_finite_difference(case, rng):
    """``d/dW sum(conv(x, W) * d)`` by central differences, entry by entry (float64)."""
    x, wt, b, delta = conv_data(case, "float64", rng)
    stride, padding, k = case[6], case[7], case[5]
    gw, gb = run_weight_grad(x, delta, stride, padding, k)

    def objective(w_, b_):
        return float(np.sum(run_forward(x, w_, b_, stride, padding) * delta))

    eps = 1e-4
    numeric_w = np.zeros_like(wt)
    for index in np.ndindex(*wt.shape):
        plus, minus = wt.copy(), wt.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric_w[index] = (objective(plus, b) - objective(minus, b)) / (2 * eps)
    numeric_b = np.zeros_like(b)
    for o in range(b.size):
        plus, minus = b.copy(), b.copy()
        plus[o] += eps
        minus[o] -= eps
        numeric_b[o] = (objective(wt, plus) - objective(wt, minus)) / (2 * eps)
    assert_close(gw, numeric_w, "float64", factor=1e3)  # ~eps_machine * |objective| / eps
    assert_close(gb, numeric_b, "float64", factor=1e3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [SPLIT_CASE, SPLIT_PAD_CASE], ids=["s1p0", "s2p2"])
def test_conv_split_over_threads(case, dtype, rng):
    """Samples split over two parts (per-part workspace blocks and gradient sums) and one part agree."""
    x, wt, b, delta = conv_data(case, dtype, rng)
    stride, padding, k = case[6], case[7], case[5]
    n, c_in, c_out, h, w = case[:5]
    h_out = naive.out_size(h, k, stride, padding)
    work = n * c_out * c_in * k * k * h_out * h_out
    assert work >= 2 * conv.GEMM_GRAIN, "the case must be big enough to split"
    expected_w, expected_b = naive.conv_weight_grad(x, delta, stride, padding, k)
    for threads in (1, 2):
        assert_close(
            run_forward(x, wt, b, stride, padding, threads),
            naive.conv(x, wt, b, stride, padding),
            dtype,
            tolerance(dtype),
        )
        back = run_backward_input(delta, wt, stride, padding, x.shape, threads)
        assert_close(back, naive.conv_transpose(delta, wt, stride, padding, x.shape), dtype, tolerance(dtype))
        gw, gb = run_weight_grad(x, delta, stride, padding, k, threads)
        assert_close(gw, expected_w, dtype, tolerance(dtype))
        assert_close(gb, expected_b, dtype, tolerance(dtype))


def test_conv_workspace_for_fewer_threads_than_asked(rng):
    """A workspace sized for one thread limits the parts to one, whatever ``threads`` says."""
    x, wt, b, delta = conv_data(SPLIT_CASE, "float64", rng)
    stride, padding, k = SPLIT_CASE[6], SPLIT_CASE[7], SPLIT_CASE[5]
    ws = workspace(x.shape, wt.shape, stride, padding, 1, "float64")
    gw, gb = np.zeros_like(wt), np.zeros_like(b)
    conv.conv_weight_grad(x, delta, stride, padding, gw, gb, ws, 4)
    expected_w, expected_b = naive.conv_weight_grad(x, delta, stride, padding, k)
    assert_close(gw, expected_w, "float64")
    assert_close(gb, expected_b, "float64")


def test_conv_rejects_bad_shapes(rng):
    x, wt, b, delta = conv_data((2, 3, 4, 7, 7, 3, 1, 1), "float64", rng)
    ws = workspace(x.shape, wt.shape, 1, 1, 1, "float64")
    with pytest.raises(ValueError, match="output must be"):
        conv.conv_forward(x, wt, b, 1, 0, np.zeros(delta.shape), ws, 1)  # padding 0 makes it 5 x 5
    with pytest.raises(ValueError, match="channels"):
        conv.conv_forward(x, np.zeros((4, 2, 3, 3)), b, 1, 1, np.zeros(delta.shape), ws, 1)
    with pytest.raises(ValueError, match="workspace"):
        conv.conv_forward(x, wt, b, 1, 1, np.zeros(delta.shape), ws[:10], 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv.conv_backward_input(
            np.zeros((2, 4, 1, 1)), np.zeros((4, 3, 9, 9)), 1, 0, np.zeros(x.shape), ws, 1
        )
    with pytest.raises(ValueError, match="bias"):
        conv.conv_forward(x, wt, b[:3], 1, 1, np.zeros(delta.shape), ws, 1)
    with pytest.raises(ValueError, match="output must be"):
        conv.conv_weight_grad(x, np.zeros((2, 4, 5, 7)), 1, 1, np.zeros_like(wt), np.zeros_like(b), ws, 1)


# ----------------------------------------------------------------------- pooling

# (n, c, h, w, k, stride)
POOL_CASES = [
    (1, 1, 7, 7, 2, 2),
    (3, 3, 9, 9, 3, 2),  # overlapping windows
    (2, 6, 7, 7, 3, 1),  # overlapping windows, stride 1
    (3, 2, 8, 6, 2, 2),  # non-square
    (5, 3, 7, 7, 2, 3),  # gaps between windows
    (2, 3, 5, 5, 5, 1),  # global
    (1, 3, 6, 6, 6, 6),  # global, stride of the map
    (16, 6, 28, 28, 2, 2),  # LeNet's first pool: big enough to split over two threads
]
POOL_IDS = ["n{}-c{}-{}x{}-k{}-s{}".format(*case) for case in POOL_CASES]


def pool_shape(case):
    n, c, h, w, k, stride = case
    return (n, c, naive.out_size(h, k, stride), naive.out_size(w, k, stride))


def unique_values(rng, shape, dtype):
    """A random permutation of distinct values exact in float32: no ties, unique maxima."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3.0).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_maxpool(case, dtype, rng):
    """Forward: the maximum and its index; backward: each delta at its argmax, summed where shared."""
    n, c, h, w, k, stride = case
    x = unique_values(rng, (n, c, h, w), dtype)
    out = np.full(pool_shape(case), np.nan, dtype=dtype)
    argmax = np.full(out.shape, -1, dtype=np.int64)
    conv.maxpool_forward(x, k, stride, out, argmax, 2)
    expected, where = naive.maxpool(x, k, stride)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(argmax, where)
    delta = rng.normal(size=out.shape).astype(dtype)
    grad = np.full(x.shape, np.nan, dtype=dtype)
    conv.maxpool_backward(delta, argmax, grad, 2)
    assert_close(grad, naive.maxpool_backward(x, delta, k, stride), dtype)
    # the routing, stated directly: every delta sits at its window's maximum, nothing elsewhere
    flat = grad.reshape(n, c, h * w)
    routed = np.zeros_like(flat, dtype=np.float64)
    for s, ch, y, xo in np.ndindex(*out.shape):
        position = argmax[s, ch, y, xo]
        assert x.reshape(n, c, h * w)[s, ch, position] == out[s, ch, y, xo]
        routed[s, ch, position] += delta[s, ch, y, xo]
    assert_close(flat, routed, dtype)


def test_maxpool_ties_go_to_the_first(rng):
    x = np.zeros((1, 2, 4, 4))
    out = np.zeros((1, 2, 2, 2))
    argmax = np.zeros(out.shape, dtype=np.int64)
    conv.maxpool_forward(x, 2, 2, out, argmax, 1)
    np.testing.assert_array_equal(argmax[0, 0], [[0, 2], [8, 10]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_avgpool(case, dtype, rng):
    n, c, h, w, k, stride = case
    x = rng.normal(size=(n, c, h, w)).astype(dtype)
    out = np.full(pool_shape(case), np.nan, dtype=dtype)
    conv.avgpool_forward(x, k, stride, out, 2)
    assert_close(out, naive.avgpool(x, k, stride), dtype)
    delta = rng.normal(size=out.shape).astype(dtype)
    grad = np.full(x.shape, np.nan, dtype=dtype)
    conv.avgpool_backward(delta, k, stride, grad, 2)
    assert_close(grad, naive.avgpool_backward(delta, k, stride, x.shape), dtype)
    if dtype == "float64":  # the adjoint identity
        assert_close(np.vdot(out, delta), np.vdot(x, grad), dtype)


def test_pool_rejects_bad_shapes():
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match="larger than the input"):
        conv.avgpool_forward(x, 6, 1, np.zeros((2, 3, 1, 1)), 1)
    with pytest.raises(ValueError, match="output must be"):
        conv.avgpool_forward(x, 2, 2, np.zeros((2, 3, 3, 3)), 1)
    with pytest.raises(ValueError, match="output must be"):
        conv.maxpool_forward(x, 2, 2, np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), dtype=np.int64), 1)
    with pytest.raises(ValueError, match="forward input"):
        conv.maxpool_backward(
            np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), dtype=np.int64), np.zeros((2, 3, 2, 2)), 1
        )
