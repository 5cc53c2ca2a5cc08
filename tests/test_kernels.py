"""Each CPU kernel against the naive float64 reference (tests/naive.py).

Shapes are odd (7-13-5, 7-13-11-5, and random ones), batches of one row and of all rows;
float64 must agree to ~1e-10 and float32 to ~1e-5, relative to the largest entry.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfa.kernels import codes, cpu
from fastfa.optim import float_config
from fastfa.workspace import sparse_marker
from tests import naive
from tests.conftest import (
    DTYPES,
    OUTPUTS,
    SHAPES,
    as_dtype,
    assert_close,
    make_data,
    make_trainer,
    naive_net,
    target_matrix,
)

N_ROWS = 17  # the "full batch" of most tests: odd, not a multiple of anything
RULE_OF_SIGNAL = {
    "backprop": "bp",
    "layerwise": "fa",
    "direct": "dfa",
    "direct-sign": "sdfa",
    "target": "dfa",
    "none": "fa",
}


def away_from_zero(rng, shape, margin=0.1, scale=1.5):
    """Normal-ish values with ``|v| >= margin`` (relu's kink and ties stay out of the way)."""
    v = rng.normal(0.0, scale, size=shape)
    return np.sign(v) * (margin + np.abs(v))


# ------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 9])
@pytest.mark.parametrize("name", naive.OUTPUT_ACTIVATIONS)
def test_bias_activation(name, m, dtype, rng):
    z = away_from_zero(rng, (m, 13)).astype(dtype)
    b = rng.normal(0.0, 1.0, size=13).astype(dtype)
    expected = naive.activation(name, z.astype(np.float64) + b.astype(np.float64))
    out = z.copy()
    cpu.bias_activation(out, b, codes.OUTPUT_ACTIVATIONS[name])
    assert out.dtype == np.dtype(dtype)
    assert_close(out, expected, dtype, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_activation_extremes_are_finite(dtype):
    z = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]], dtype=dtype)
    b = np.zeros(5, dtype=dtype)
    out = z.copy()
    cpu.bias_activation(out, b, codes.LOGISTIC)
    assert np.all(np.isfinite(out))
    assert out[0, 0] == 0.0 and out[0, 2] == 0.5 and out[0, 4] == 1.0
    assert np.all(np.diff(out[0]) >= 0)
    # softmax of huge logits: shifted by the row maximum, so no overflow
    big = np.array([[1000.0, 999.0, 990.0, -1000.0, 1000.0]], dtype=dtype)
    out = big.copy()
    cpu.bias_activation(out, b, codes.SOFTMAX)
    assert np.all(np.isfinite(out))
    assert_close(out, naive.activation("softmax", big.astype(np.float64)), dtype)
    assert abs(out.sum() - 1.0) < 10 * np.finfo(dtype).eps
    # ... and of very negative ones: nothing underflows to 0 / 0
    small = np.array([[-1000.0, -1001.0, -1010.0, -1000.5, -2000.0]], dtype=dtype)
    out = small.copy()
    cpu.bias_activation(out, b, codes.SOFTMAX)
    assert np.all(np.isfinite(out))
    assert_close(out, naive.activation("softmax", small.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", naive.HIDDEN_ACTIVATIONS)
def test_multiply_derivative(name, dtype, rng):
    a = away_from_zero(rng, (9, 13), scale=1.0)
    h = naive.activation(name, a).astype(dtype)
    delta = rng.normal(0.0, 1.0, size=(9, 13)).astype(dtype)
    expected = delta.astype(np.float64) * naive.derivative(name, a)
    out = delta.copy()
    cpu.multiply_derivative(out, h, codes.ACTIVATIONS[name])
    assert_close(out, expected, dtype, err_msg=name)


OUTPUT_ERROR_CASES = [
    ("softmax", "cross_entropy"),
    ("logistic", "cross_entropy"),
    ("identity", "squared_error"),
    ("logistic", "squared_error"),
    ("tanh", "squared_error"),
    ("relu", "squared_error"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 9])
@pytest.mark.parametrize("classification", [0, 1])
@pytest.mark.parametrize("out_act,loss", OUTPUT_ERROR_CASES)
def test_output_error(out_act, loss, classification, m, dtype, rng):
    n = 5
    a = away_from_zero(rng, (m, n), scale=1.0)
    if out_act == "softmax":
        t = naive.one_hot(rng.integers(0, n, size=m), n)
    elif out_act == "logistic" and loss == "cross_entropy":
        u = rng.uniform(size=(m, n))  # multi-label targets: exact 0s and 1s, and soft ones
        t = np.where(u < 0.3, 0.0, np.where(u > 0.7, 1.0, u))
    else:
        t = rng.uniform(-0.2, 1.2, size=(m, n))
    y = naive.activation(out_act, a).astype(dtype)
    t = t.astype(dtype)
    y64, t64 = y.astype(np.float64), t.astype(np.float64)
    e = np.full((m, n), 99.0, dtype=dtype)
    total, errors = cpu.output_error(
        y, t, codes.OUTPUT_ACTIVATIONS[out_act], codes.LOSSES[loss], classification, e, 1.0 / m
    )
    expected_e = naive.output_error(a, t64, out_act, loss) / m
    expected_loss = naive.loss_per_sample(a, t64, out_act, loss).sum()
    assert_close(e, expected_e, dtype)
    assert_close(total, expected_loss, dtype)
    assert errors == (naive.count_errors(y64, t64) if classification else 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_error_counts_errors(dtype):
    # two classes per row; rows 0 and 2 are wrong
    y = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6]], dtype=dtype)
    t = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    e = np.zeros_like(y)
    _, errors = cpu.output_error(y, t, codes.SOFTMAX, codes.CROSS_ENTROPY, 1, e, 1.0)
    assert errors == 2
    # one logistic output: an error when y and t lie on different sides of 0.5
    y1 = np.array([[0.9], [0.2], [0.6], [0.4]], dtype=dtype)
    t1 = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=dtype)
    e1 = np.zeros_like(y1)
    _, errors = cpu.output_error(y1, t1, codes.LOGISTIC, codes.CROSS_ENTROPY, 1, e1, 1.0)
    assert errors == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_error_clips_log_of_zero(dtype):
    """A probability of exactly 0 on the true class gives a large but finite loss."""
    y = np.array([[0.0, 1.0]], dtype=dtype)
    t = np.array([[1.0, 0.0]], dtype=dtype)
    e = np.zeros_like(y)
    total, _ = cpu.output_error(y, t, codes.SOFTMAX, codes.CROSS_ENTROPY, 1, e, 1.0)
    assert np.isfinite(total) and total > 20.0
    np.testing.assert_allclose(e, [[-1.0, 1.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 9])
def test_column_sums(m, dtype, rng):
    a = rng.normal(size=(m, 13)).astype(dtype)
    out = np.full(13, 5.0, dtype=dtype)  # stale values must be overwritten, not added to
    cpu.column_sums(a, out)
    expected = [sum(float(a[i, j]) for i in range(m)) for j in range(13)]
    assert_close(out, expected, dtype)


# ------------------------------------------------------------------------- forward


def hidden_slot(buffer, sizes, layer, m):
    """Rows ``0..m`` of layer ``layer`` in a workspace buffer (documented in cpu.activation_view)."""
    width = sum(sizes[1:])
    capacity = buffer.size // width
    off = capacity * sum(sizes[1 : layer + 1])
    return buffer[off : off + m * sizes[layer + 1]].reshape(m, sizes[layer + 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, N_ROWS])
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize(
    "act,out_act,loss",
    [
        ("tanh", "softmax", None),
        ("logistic", "logistic", "cross_entropy"),
        ("relu", "identity", "squared_error"),
        ("identity", "tanh", "squared_error"),
    ],
)
def test_forward(act, out_act, loss, sizes, m, dtype, rng):
    task = "classification" if loss != "squared_error" else "regression"
    tr = make_trainer(sizes, "bp", dtype, task, activation=act, output_activation=out_act, loss=loss)
    net = naive_net(tr)
    x = rng.uniform(-1, 1, size=(m, sizes[0])).astype(dtype)
    capacity = N_ROWS + 3  # spare rows: the views must respect the workspace's capacity
    hidden = np.zeros(capacity * sum(sizes[1:]), dtype=dtype)
    y = cpu.forward(tr.params, tr.sizes, tr.acts, x, hidden, sparse_marker(x), 1, None, 0, 0)
    pre, post = naive.forward(net.weights, net.biases, net.acts, x.astype(np.float64))
    assert_close(y, post[-1], dtype)
    for layer in range(len(sizes) - 1):
        assert_close(hidden_slot(hidden, sizes, layer, m), post[layer], dtype, err_msg=f"layer {layer}")


# ----------------------------------------------------------------------- gradients


def check_gradients(tr, x, y, signal, dtype):
    net = naive_net(tr)
    grads = tr.gradients(x, y, signal=signal)
    dws, dbs, _, _ = net.gradients(as_dtype(x, tr), target_matrix(tr, y), signal=signal)
    for layer, (w, b) in enumerate(zip(tr.arch.weights(grads), tr.arch.biases(grads), strict=True)):
        if dws[layer] is None:  # no signal: the gradient buffer keeps its zeros
            assert not np.any(w) and not np.any(b), f"layer {layer} got a gradient without a signal"
            continue
        assert_close(w, dws[layer], dtype, err_msg=f"{signal}: dW_{layer}")
        assert_close(b, dbs[layer], dtype, err_msg=f"{signal}: db_{layer}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, N_ROWS])
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize("act", naive.HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("signal", naive.SIGNALS)
def test_compute_gradients_every_signal(signal, act, sizes, m, dtype, rng):
    tr = make_trainer(sizes, RULE_OF_SIGNAL[signal], dtype, activation=act)
    x, y = make_data(rng, m, sizes)
    check_gradients(tr, x, y, signal, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task,out_act,loss", OUTPUTS)
@pytest.mark.parametrize("signal", naive.SIGNALS)
def test_compute_gradients_every_output(signal, task, out_act, loss, dtype, rng):
    sizes = SHAPES[1]
    tr = make_trainer(sizes, RULE_OF_SIGNAL[signal], dtype, task, output_activation=out_act, loss=loss)
    x, y = make_data(rng, N_ROWS, sizes, task, out_act)
    check_gradients(tr, x, y, signal, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("signal", naive.SIGNALS)
def test_compute_gradients_kernel_direct(signal, dtype, rng):
    """Called directly: loss and error count returned, stale gradient buffers overwritten
    (or, without a hidden signal, left exactly as they were)."""
    sizes = SHAPES[1]
    tr = make_trainer(sizes, RULE_OF_SIGNAL[signal], dtype)
    net = naive_net(tr)
    x, labels = make_data(rng, N_ROWS, sizes)
    t = naive.one_hot(labels, sizes[-1])
    icfg = tr.icfg.copy()
    icfg[codes.I_SIGNAL] = codes.SIGNALS[signal]
    icfg[codes.I_FIRST_TRAINABLE] = len(sizes) - 2 if signal == "none" else 0
    width = sum(sizes[1:])
    hidden = np.zeros(N_ROWS * width, dtype=dtype)
    deltas = np.zeros(N_ROWS * width, dtype=dtype)
    grads = np.full(tr.params.size, 7.0, dtype=dtype)
    loss, errors = cpu.compute_gradients(
        tr.params,
        tr.feedback,
        grads,
        tr.sizes,
        tr.acts,
        icfg,
        np.ascontiguousarray(x, dtype=dtype),
        np.ascontiguousarray(t, dtype=dtype),
        hidden,
        deltas,
        sparse_marker(x),
        None,
    )
    dws, dbs, nloss, nerrors = net.gradients(as_dtype(x, tr), t, signal=signal)
    assert_close(loss, nloss, dtype)
    assert errors == nerrors
    for layer in range(len(sizes) - 1):
        w, b = tr.arch.weights(grads)[layer], tr.arch.biases(grads)[layer]
        if dws[layer] is None:
            assert np.all(w == 7.0) and np.all(b == 7.0)
        else:
            assert_close(w, dws[layer], dtype)
            assert_close(b, dbs[layer], dtype)


@settings(max_examples=40, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 9), min_size=0, max_size=3),
    n_in=st.integers(1, 9),
    n_out=st.integers(2, 6),
    m=st.integers(1, 6),
    signal=st.sampled_from(naive.SIGNALS),
    act=st.sampled_from(naive.HIDDEN_ACTIVATIONS),
    seed=st.integers(0, 2**16),
)
def test_compute_gradients_random_shapes(hidden, n_in, n_out, m, signal, act, seed):
    sizes = (n_in, *hidden, n_out)
    rng = np.random.default_rng(seed)
    tr = make_trainer(sizes, RULE_OF_SIGNAL[signal], "float64", activation=act, seed=seed)
    x, y = make_data(rng, m, sizes)
    if act == "relu":  # the kernel's relu derivative at exactly 0 is 0, like the reference's
        x = np.round(x, 3) + 1e-4
    check_gradients(tr, x, y, signal, "float64")


def test_gradients_refuse_a_signal_the_feedback_does_not_fit(rng):
    """fa keeps B_l of shape (n_{l+2}, n_{l+1}); a direct signal needs (n_out, n_{l+1})."""
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "fa")
    x, y = make_data(rng, 5, sizes)
    with pytest.raises(ValueError):
        tr.gradients(x, y, signal="direct")


def test_feedback_layout_matches_reference():
    """trainer.feedback_matrices and the flat buffer agree with the documented layout."""
    for rule in ("fa", "dfa", "usf"):
        tr = make_trainer(SHAPES[1], rule)
        views = tr.feedback_matrices
        ref = naive.split_feedback(tr.feedback, SHAPES[1], tr.rule.signal)
        assert [v.shape for v in views] == naive.feedback_shapes(SHAPES[1], tr.rule.signal)
        for v, r in zip(views, ref, strict=True):
            np.testing.assert_array_equal(v, r)
        # the views write through to the buffer the kernels read
        views[0][0, 0] = 123.0
        assert 123.0 in tr.feedback


# ---------------------------------------------------------------------- optimisers

OPTIMIZER_CASES = [
    dict(optimizer="sgd", momentum=0.0, nesterov=False),
    dict(optimizer="sgd", momentum=0.9, nesterov=False),
    dict(optimizer="sgd", momentum=0.8, nesterov=True),
    dict(optimizer="adam"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize("output_only", [False, True])
@pytest.mark.parametrize("decay", [0.0, 0.05])
@pytest.mark.parametrize("opt", OPTIMIZER_CASES, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_update_parameters(opt, decay, output_only, sizes, dtype, rng):
    tr = make_trainer(sizes, "bp", dtype)
    n = tr.params.size
    params = rng.normal(0.0, 0.5, size=n).astype(dtype)
    state = np.stack([rng.normal(0.0, 0.1, size=n), rng.uniform(0.0, 0.01, size=n)]).astype(dtype)
    icfg = tr.icfg.copy()
    icfg[codes.I_OPTIMIZER] = codes.OPTIMIZERS[opt["optimizer"]]
    icfg[codes.I_NESTEROV] = int(opt.get("nesterov", False))
    icfg[codes.I_FIRST_TRAINABLE] = len(sizes) - 2 if output_only else 0
    lr, momentum, beta1, beta2, eps = 0.03, opt.get("momentum", 0.0), 0.85, 0.99, 1e-3
    fcfg = float_config(lr=lr, momentum=momentum, weight_decay=decay, beta1=beta1, beta2=beta2, epsilon=eps)
    weights, biases = naive.split_params(params, sizes)
    net = naive.Net(
        sizes,
        weights,
        biases,
        signal="none" if output_only else "backprop",
        optimizer=opt["optimizer"],
        lr=lr,
        momentum=momentum,
        nesterov=opt.get("nesterov", False),
        weight_decay=decay,
        beta1=beta1,
        beta2=beta2,
        epsilon=eps,
    )
    net.load_state(state, sizes)
    before = params.copy()
    for step in (1, 2, 3, 7):  # Adam's bias correction depends on the update count
        grads = rng.normal(0.0, 1.0, size=n).astype(dtype)
        cpu.update_parameters(params, grads, state, tr.sizes, icfg, fcfg, step)
        dws, dbs = naive.split_params(grads, sizes)
        net.update(dws, dbs, step)
        assert_close(params, net.flat_params(), dtype, err_msg=f"params after step {step}")
        assert_close(state, net.flat_state(), dtype, err_msg=f"state after step {step}")
    if output_only:
        n_hidden_w = sum(a * b for a, b in zip(sizes[:-2], sizes[1:-1], strict=True))
        n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        np.testing.assert_array_equal(params[:n_hidden_w], before[:n_hidden_w])
        hidden_biases = slice(n_w, n_w + sum(sizes[1:-1]))
        np.testing.assert_array_equal(params[hidden_biases], before[hidden_biases])
    assert not np.array_equal(params, before)


def test_weight_decay_spares_biases(rng):
    """With a zero gradient only the weights shrink; biases stay put."""
    sizes = SHAPES[0]
    tr = make_trainer(sizes, "bp")
    params = rng.normal(size=tr.params.size)
    before = params.copy()
    state = np.zeros((2, params.size))
    fcfg = float_config(lr=0.1, momentum=0.0, weight_decay=0.5, beta1=0.9, beta2=0.999, epsilon=1e-8)
    cpu.update_parameters(params, np.zeros_like(params), state, tr.sizes, tr.icfg, fcfg, 1)
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    np.testing.assert_allclose(params[:n_w], 0.95 * before[:n_w], rtol=1e-15)
    np.testing.assert_array_equal(params[n_w:], before[n_w:])


# ------------------------------------------------------------------------ feedback


def scramble_weights(tr, rng):
    """New random forward weights (some exactly zero) so that signs differ from the init."""
    for w in tr.weights:
        w[...] = rng.normal(0.0, 1.0, size=w.shape)
        w[0, 0] = 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize("rule", ["usf", "frsf"])
def test_refresh_feedback_sign(rule, sizes, dtype, rng):
    tr = make_trainer(sizes, rule, dtype)
    magnitude = naive.split_feedback(tr.magnitude, sizes, "layerwise")
    # at construction the feedback already follows the initial weights
    for layer, b in enumerate(tr.feedback_matrices):
        np.testing.assert_array_equal(b, naive.sign_feedback(magnitude[layer], tr.weights[layer + 1]))
    scramble_weights(tr, rng)
    cpu.refresh_feedback(tr.params, tr.feedback, tr.magnitude, tr.sizes, tr.icfg, 5)
    for layer, b in enumerate(tr.feedback_matrices):
        expected = naive.sign_feedback(magnitude[layer], tr.weights[layer + 1])
        np.testing.assert_array_equal(b, expected.astype(dtype))
        assert b[0, 0] == 0.0  # sign(0) = 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
def test_refresh_feedback_sign_redraw(sizes, dtype, rng):
    tr = make_trainer(sizes, "brsf", dtype, seed=11)
    magnitude = naive.split_feedback(tr.magnitude, sizes, "layerwise")
    scramble_weights(tr, rng)

    def refresh(step, icfg=tr.icfg):
        cpu.refresh_feedback(tr.params, tr.feedback, tr.magnitude, tr.sizes, icfg, step)
        return [b.copy() for b in tr.feedback_matrices]

    first = refresh(3)
    ratios = []
    for layer, b in enumerate(first):
        w_t = tr.weights[layer + 1].T
        mag = magnitude[layer]
        assert np.all(np.abs(b) <= mag)  # magnitudes in [0, |B0|]
        assert np.all(np.sign(b)[b != 0] == np.sign(w_t)[b != 0])  # signs follow W
        assert np.all(b[w_t == 0] == 0)
        nz = w_t != 0
        ratios.append(np.abs(b[nz]) / mag[nz])
        # exactly the documented counter-based draw
        u = naive.redraw_uniforms(naive.feedback_shapes(sizes, "layerwise"), 11, 3)[layer]
        assert_close(b, naive.sign_feedback(mag, tr.weights[layer + 1]) * u, dtype)
    ratios = np.concatenate(ratios)
    assert ratios.min() >= 0.0 and ratios.max() < 1.0
    assert 0.35 < ratios.mean() < 0.65 and ratios.std() > 0.15  # U[0, 1), not a constant
    # the same (seed, step) reproduces; another step or seed differs
    for a, b in zip(first, refresh(3), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, refresh(4), strict=True):
        assert not np.allclose(a, b)
    other_seed = tr.icfg.copy()
    other_seed[codes.I_SEED] = 12
    for a, b in zip(first, refresh(3, other_seed), strict=True):
        assert not np.allclose(a, b)


@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_refresh_feedback_leaves_fixed_feedback_alone(rule, rng):
    tr = make_trainer(SHAPES[1], rule)
    before = tr.feedback.copy()
    scramble_weights(tr, rng)
    cpu.refresh_feedback(tr.params, tr.feedback, tr.magnitude, tr.sizes, tr.icfg, 1)
    np.testing.assert_array_equal(tr.feedback, before)


# ------------------------------------------------------------------ train / evaluate

TRAIN_CASES = [
    ("bp", dict(momentum=0.0)),
    ("bp", dict(momentum=0.9, weight_decay=1e-2)),
    ("bp", dict(momentum=0.9, nesterov=True)),
    ("bp", dict(optimizer="adam", lr=0.01, weight_decay=1e-2)),
    ("fa", dict(momentum=0.9, weight_decay=1e-2)),
    ("dfa", dict(momentum=0.9, nesterov=True)),
    ("usf", dict(momentum=0.9)),
    ("frsf", dict(optimizer="adam", lr=0.01)),
    ("brsf", dict(momentum=0.9, weight_decay=1e-2)),
    ("shallow", dict(momentum=0.9, weight_decay=1e-2)),
    ("sdfa", dict(momentum=0.9)),
    ("drtp", dict(momentum=0.0)),
    ("kp", dict(momentum=0.9, weight_decay=5e-2)),
    ("kp", dict(optimizer="adam", lr=0.01, weight_decay=5e-2)),
    ("wm", dict(momentum=0.9, rule_options={"mirror_lr": 0.05})),
]


def run_and_compare(tr, x, y, epochs, dtype, factor=1.0):
    net = naive_net(tr)
    t = target_matrix(tr, y)
    x64 = as_dtype(x, tr)
    for epoch in range(epochs):
        order = copy.deepcopy(tr.rng).permutation(len(x))  # the shuffle train_epoch will draw
        net.lr = tr.learning_rate()
        loss, error = tr.train_epoch(x, y)
        nloss, nerrors = net.train_epoch(x64, t, order, tr.config.batch_size)
        assert_close(loss, nloss / len(x), dtype, factor, err_msg=f"epoch {epoch} loss")
        assert error == nerrors / len(x)
        assert tr.step == net.step
        assert_close(tr.params, net.flat_params(), dtype, factor, err_msg=f"params after epoch {epoch}")
        assert_close(tr.state, net.flat_state(), dtype, factor, err_msg=f"optimiser state, epoch {epoch}")
        for b, nb in zip(tr.feedback_matrices, net.feedback, strict=True):
            assert_close(b, nb, dtype, factor, err_msg="feedback")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 4, N_ROWS])
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize("rule,opt", TRAIN_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_train_epoch(rule, opt, sizes, batch_size, dtype, rng):
    opt = {"lr": 0.1, **opt}
    tr = make_trainer(sizes, rule, dtype, batch_size=batch_size, seed=3, **opt)
    x, y = make_data(rng, N_ROWS, sizes)
    before = tr.params.copy()
    run_and_compare(tr, x, y, 2, dtype)
    assert not np.array_equal(tr.params, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task,out_act,loss", OUTPUTS[1:])
def test_train_epoch_other_outputs(task, out_act, loss, dtype, rng):
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "fa", dtype, task, output_activation=out_act, loss=loss, batch_size=4, lr=0.1)
    x, y = make_data(rng, N_ROWS, sizes, task, out_act)
    run_and_compare(tr, x, y, 2, dtype)


def test_train_epoch_step_schedule(rng):
    sizes = SHAPES[0]
    tr = make_trainer(sizes, "fa", "float64", batch_size=5, lr=0.2, schedule="step", step_size=1, gamma=0.5)
    x, y = make_data(rng, N_ROWS, sizes)
    run_and_compare(tr, x, y, 3, "float64")
    assert tr.learning_rate() == pytest.approx(0.2 * 0.5**3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task,out_act,loss", OUTPUTS)
def test_evaluate_and_predict(task, out_act, loss, dtype, rng):
    """More rows than the evaluation workspace holds, so the chunking is exercised."""
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "fa", dtype, task, output_activation=out_act, loss=loss)
    net = naive_net(tr)
    x, y = make_data(rng, 300, sizes, task, out_act)
    x64, t = as_dtype(x, tr), target_matrix(tr, y)
    loss_mean, error_rate = tr.evaluate(x, y)
    nloss, nerrors = net.evaluate(x64, t)
    assert_close(loss_mean, nloss / 300, dtype)
    assert error_rate == nerrors / 300
    assert_close(tr.predict_outputs(x), net.outputs(x64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_targets", [True, False])
def test_evaluate_kernel_small_workspace(with_targets, dtype, rng):
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "bp", dtype)
    net = naive_net(tr)
    x, labels = make_data(rng, N_ROWS, sizes)
    x = np.ascontiguousarray(x, dtype=dtype)
    labels = labels if with_targets else np.zeros(0, dtype=np.int64)
    capacity = 4  # 17 rows in chunks of 4, the last of 1
    width = sum(sizes[1:])
    buffers = [np.zeros(capacity * k, dtype=dtype) for k in (width, width, sizes[0], sizes[-1])]
    outputs = np.zeros((N_ROWS, sizes[-1]), dtype=dtype)
    loss, errors = cpu.evaluate(
        x,
        labels.astype(np.int64),
        np.zeros((0, sizes[-1]), dtype=dtype),
        tr.params,
        tr.sizes,
        tr.acts,
        tr.icfg,
        *buffers,
        outputs,
        sparse_marker(x),
    )
    assert_close(outputs, net.outputs(x.astype(np.float64)), dtype)
    if with_targets:
        nloss, nerrors = net.evaluate(x.astype(np.float64), naive.one_hot(labels, sizes[-1]))
        assert_close(loss, nloss, dtype)
        assert errors == nerrors
    else:
        assert (loss, errors) == (0.0, 0)


# ------------------------------------------------------------------ fast paths


# Shapes large enough that every kernel below splits its work over two threads
# (one thread's share must exceed cpu.GEMM_GRAIN multiply-adds).
SPLIT_M, SPLIT_IN, SPLIT_OUT = 64, 200, 400


def sparse_inputs(rng, shape, density, dtype):
    """Entries in (0, 1], each non-zero with probability ``density``; one all-zero column."""
    x = (rng.random(shape) < density) * (1.0 - rng.random(shape))
    x[:, 3] = 0.0
    return np.ascontiguousarray(x, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_sparse_product(density, threads, dtype, rng):
    """``x @ w`` from the non-zero inputs only, one row or many, serial or split over threads."""
    for m in (1, SPLIT_M):
        x = sparse_inputs(rng, (m, SPLIT_IN), density, dtype)
        w = rng.normal(size=(SPLIT_IN, SPLIT_OUT)).astype(dtype)
        out = np.full((m, SPLIT_OUT), np.nan, dtype=dtype)
        cpu.sparse_product(x, w, out, cpu.count_nonzero(x), threads)
        assert_close(out, x.astype(np.float64) @ w.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_gradient(threads, dtype, rng):
    x = sparse_inputs(rng, (SPLIT_M, SPLIT_IN), 0.2, dtype)
    delta = rng.normal(size=(SPLIT_M, SPLIT_OUT)).astype(dtype)
    grad = np.full((SPLIT_IN, SPLIT_OUT), np.nan, dtype=dtype)
    cpu.sparse_gradient(x, delta, grad, cpu.count_nonzero(x), threads)
    assert_close(grad, x.T.astype(np.float64) @ delta.astype(np.float64), dtype)
    assert not np.any(grad[3]), "an input that is zero in every row has a zero gradient"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_sgd_deferred_decay(threads, dtype, rng):
    """Plain SGD with deferred decay: rows with a non-zero input settle their owed decay and
    take the step; the others are left as stored, still owing (optimisers.sparse_sgd)."""
    lr, decay, step = 0.1, 0.05, 9
    keep = 1 - lr * decay
    m = 3
    x = sparse_inputs(rng, (m, SPLIT_IN), 0.2, dtype)
    delta = rng.normal(size=(m, SPLIT_OUT)).astype(dtype)
    w = rng.normal(size=(SPLIT_IN, SPLIT_OUT)).astype(dtype)
    decayed = step - 1 - rng.integers(0, 4, SPLIT_IN)  # each row owes 0-3 steps of decay
    owed = keep ** (step - 1 - decayed)
    true_w = owed[:, None] * w.astype(np.float64)  # the weights the stored rows stand for
    expected = keep * true_w - lr * (x.T.astype(np.float64) @ delta.astype(np.float64))
    touched = np.any(x != 0, axis=0)
    before, before_decayed = w.copy(), decayed.copy()
    scaled = x.copy()
    cpu.scale_by_pending_decay(scaled, decayed, step - 1, keep)
    assert_close(scaled, x.astype(np.float64) * owed, dtype)
    carried = np.zeros_like(w)
    cpu.sparse_sgd(
        scaled, delta, w, carried, lr, 0.0, lr * decay, cpu.count_nonzero(x), threads, decayed, step
    )
    assert_close(w[touched], expected[touched], dtype)
    np.testing.assert_array_equal(w[~touched], before[~touched])
    np.testing.assert_array_equal(decayed[touched], step)
    np.testing.assert_array_equal(decayed[~touched], before_decayed[~touched])
    cpu.settle_decay(w, decayed, step, keep)
    assert_close(w[~touched], keep * true_w[~touched], dtype)
    np.testing.assert_array_equal(decayed, step)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deferred_decay_epoch_equals_eager(dtype, rng):
    """A batch-1 epoch of plain SGD with weight decay on sparse inputs: the deferred first-layer
    decay gives the parameters of the eager step (every row decayed at every step)."""
    sizes = (SPLIT_IN, 12, 5)
    x = sparse_inputs(rng, (40, SPLIT_IN), 0.2, dtype)
    x[5] = rng.normal(size=SPLIT_IN)  # one dense row: that step settles every row first
    y = rng.integers(0, 5, len(x))
    runs = []
    for deferred in (True, False):
        tr = make_trainer(sizes, "fa", dtype, batch_size=1, seed=3, lr=0.2, momentum=0.0, weight_decay=0.3)
        xs, labels, targets = tr.prepare(x, y)
        ws = tr._train_ws
        decayed = ws.decayed if deferred else np.zeros(0, np.int64)
        cpu.train_epoch(  # as the trainer calls it (None: no sign refresh, no learned feedback, fused SGD)
            xs, labels, targets, np.arange(len(x)), 1, tr.params, tr.feedback, None, None, None,
            sparse_marker(xs), None, None, None, tr.state, tr.sizes, tr.acts, tr.icfg, tr._fcfg(), ws.hidden,
            ws.deltas, ws.x, ws.t, decayed, 0,
        )  # fmt: skip
        runs.append(tr.params.copy())
    assert_close(runs[0], runs[1].astype(np.float64), dtype, factor=10)
    assert cpu.settle_interval(1 - 0.2 * 0.3) == 11  # 0.94^11 >= 1/2 > 0.94^12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mu,decay", [(0.0, 0.0), (0.0, 0.05), (0.9, 0.0), (0.9, 0.05)])
@pytest.mark.parametrize("m", [1, SPLIT_M])
def test_sparse_sgd(m, mu, decay, threads, dtype, rng):
    """The first layer's SGD step from the non-zero inputs against the formula in float64."""
    lr = 0.1
    x = sparse_inputs(rng, (m, SPLIT_IN), 0.2, dtype)
    delta = rng.normal(size=(m, SPLIT_OUT)).astype(dtype)
    w = rng.normal(size=(SPLIT_IN, SPLIT_OUT)).astype(dtype)
    carried = rng.normal(0.0, 0.1, size=w.shape).astype(dtype)
    g = x.T.astype(np.float64) @ delta.astype(np.float64)
    w64, c64 = w.astype(np.float64), carried.astype(np.float64)
    if mu == 0.0:
        expected_w, expected_c = (1 - lr * decay) * w64 - lr * g, c64
    else:
        v = c64 - lr * g - lr * decay * w64
        expected_w, expected_c = w64 + v, mu * v
    before = w.copy()
    eager = np.zeros(0, dtype=np.int64)  # no deferred decay
    cpu.sparse_sgd(x, delta, w, carried, lr, mu, lr * decay, cpu.count_nonzero(x), threads, eager, 1)
    assert_close(w, expected_w, dtype)
    assert_close(carried, expected_c, dtype)
    if mu == 0.0 and decay == 0.0:  # rows whose input is zero throughout are not touched
        np.testing.assert_array_equal(w[3], before[3])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_product_split_over_threads(trans_a, trans_b, dtype, rng):
    """Column blocks of ``c`` computed by separate BLAS calls with strided operands."""
    m, k, n = SPLIT_M, SPLIT_IN, SPLIT_OUT
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.normal(size=(m, n)).astype(dtype)
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    expected = 0.7 * op_a @ op_b - 0.3 * c.astype(np.float64)
    cpu.product(0.7, a, trans_a, b, trans_b, -0.3, c, 2)
    assert_close(c, expected, dtype)


def test_is_sparse_threshold():
    x = np.zeros((10, 10))
    x.flat[: int(100 * cpu.SPARSE_DENSITY)] = 1.0
    assert cpu.is_sparse(x, cpu.count_nonzero(x))
    x.flat[int(100 * cpu.SPARSE_DENSITY)] = 1.0
    assert not cpu.is_sparse(x, cpu.count_nonzero(x))


@pytest.mark.parametrize("optimizer", [dict(momentum=0.9), dict(momentum=0.0, weight_decay=0.01),
                                       dict(optimizer="adam", lr=0.001)])  # fmt: skip
@pytest.mark.parametrize("density", [0.15, 1.0])
def test_threads_do_not_change_training(density, optimizer, rng):
    """An epoch on a net big enough to split every kernel: one thread and two agree to rounding."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    sizes = (SPLIT_IN, SPLIT_OUT, SPLIT_OUT // 2, 10)
    x = sparse_inputs(rng, (4 * SPLIT_M, SPLIT_IN), density, "float32")
    y = rng.integers(0, 10, len(x))
    runs = []
    for threads in (1, 2):
        tr = make_trainer(sizes, "fa", "float32", batch_size=SPLIT_M, seed=1, **{"lr": 0.05, **optimizer})
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            tr.train_epoch(x, y)
        finally:
            numba.set_num_threads(previous)
        runs.append(tr)
    assert_close(runs[1].params, runs[0].params.astype(np.float64), "float32")
    assert_close(runs[1].state, runs[0].state.astype(np.float64), "float32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_alpha_beta(trans_a, trans_b, dtype, rng):
    """``c <- alpha op(a) op(b) + beta c`` on shapes that are not multiples of anything."""
    from numba import njit

    from fastfa.kernels.blas import gemm

    @njit
    def call(alpha, a, ta, b, tb, beta, c):
        gemm(alpha, a, ta, b, tb, beta, c)

    m, k, n = 7, 13, 5
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.normal(size=(m, n)).astype(dtype)
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    expected = 0.7 * op_a @ op_b - 0.3 * c.astype(np.float64)
    call(0.7, a, trans_a, b, trans_b, -0.3, c)
    assert_close(c, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", [dict(momentum=0.0), dict(momentum=0.0, weight_decay=0.05),
                                 dict(momentum=0.9), dict(momentum=0.9, weight_decay=0.05)])  # fmt: skip
@pytest.mark.parametrize("m", [1, N_ROWS])
@pytest.mark.parametrize("sparse", [False, True])
def test_fused_sgd_step_equals_gradient_then_update(sparse, opt, m, dtype, rng):
    """The BLAS-accumulated SGD step is the gradient-buffer step, up to rounding."""
    sizes = SHAPES[1]
    fused = make_trainer(sizes, "fa", dtype, lr=0.1, **opt)
    x, y = make_data(rng, m, sizes)
    if sparse:
        x[:, [0, 2, 3, 5, 6]] = 0.0  # 2 of 7 inputs non-zero: the sparse first-layer path
    fused.state[0] = rng.normal(0.0, 0.01, size=fused.params.size)
    plain = copy.deepcopy(fused)
    xs = fused.prepare(x)[0]
    t = target_matrix(fused, y).astype(dtype)
    hidden, deltas = fused._train_ws.hidden, fused._train_ws.deltas
    marker = sparse_marker(xs)
    assert (marker is not None) == sparse
    cpu.backward(
        fused.params, fused.feedback, fused.sizes, fused.acts, fused.icfg, xs, t, hidden, deltas, marker,
        None, None, 0,
    )  # fmt: skip
    cpu.fused_sgd_step(
        fused.params,
        fused.state,
        fused.sizes,
        fused.icfg,
        fused._fcfg(),
        xs,
        hidden,
        deltas,
        np.zeros(0, np.int64),
        marker,
        1,
    )
    grads = plain.gradients(x, y)
    cpu.update_parameters(plain.params, grads, plain.state, plain.sizes, plain.icfg, plain._fcfg(), 1)
    assert_close(fused.params, plain.params.astype(np.float64), dtype)
    assert_close(fused.state, plain.state.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_online_training_on_sparse_inputs_matches_reference(dtype, rng):
    """Batch 1, plain SGD, mostly-zero inputs: the sparse row paths against the naive reference."""
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "fa", dtype, batch_size=1, seed=5, lr=0.1, momentum=0.0)
    x, y = make_data(rng, N_ROWS, sizes)
    x *= rng.random(x.shape) < 0.25
    run_and_compare(tr, x, y, 2, dtype)


def test_the_sparse_marker_is_read_once_per_array(rng, monkeypatch):
    """A file's epoch hands each chunk to train_rows in slices; the marker (which reads the whole
    chunk) is computed once per chunk, and again for a new one."""
    import fastfa.train

    calls = []
    real = fastfa.train.sparse_marker
    monkeypatch.setattr(fastfa.train, "sparse_marker", lambda x: calls.append(x) or real(x))
    sizes = SHAPES[1]
    tr = make_trainer(sizes, "fa", "float64")
    x, labels, targets = tr.prepare(*make_data(rng, 12, sizes))
    for lo in (0, 4, 8):
        tr.train_rows(x, labels, targets, np.arange(lo, lo + 4))
    assert len(calls) == 1
    tr.train_rows(x.copy(), labels, targets, np.arange(4))
    assert len(calls) == 2
