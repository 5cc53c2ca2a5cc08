"""The layer-table engine (fastfa/kernels/layers.py) against tests/naive_layers.py.

A small net with every layer kind (conv with padding, max-pool, conv, global average pool,
dense) in float64: forward pass, every rule's signals and gradients, bp against finite
differences, and the identities DESIGN.md section 5 asks for (fa with B = W is bp; dfa on
a one-conv-layer net is fa with matching feedback; a dense table is the dense engine).
Each kernel compiles once, for float64, with one thread count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastfa.kernels import codes as c
from fastfa.kernels import cpu, layer_epoch
from fastfa.kernels import layers as lk
from fastfa.layers import layer_table, parse_layers, plan_network
from fastfa.workspace import sparse_marker
from tests import naive
from tests import naive_layers as ref
from tests.conftest import assert_close, make_trainer

NET = "conv:3:3:1:1,maxpool:2,conv:4:2,gap,dense:5"
#: a convolution whose window covers its input (LeNet's conv3), run as a dense layer
FULL_WINDOW = "conv:3:3:1:1,avgpool:2:1,conv:5:8,dense:4"
IMAGE = (2, 9, 9)
N_OUT = 3
M = 4


def build(text=NET, image=IMAGE, signal=c.SIGNAL_BACKPROP, act=c.TANH, seed=0):
    """``(table, params, feedback, buffers, x, t, icfg)`` of a random net and batch."""
    n_in = math.prod(image)
    plan = plan_network(parse_layers(text), n_in, N_OUT, image if any(ch in text for ch in "cpg") else None)
    table = layer_table(plan, act, c.SOFTMAX, signal)
    rng = np.random.default_rng(seed)
    params = rng.uniform(-0.6, 0.6, table.n_params)
    feedback = rng.uniform(-0.6, 0.6, max(table.n_feedback, 1))[: table.n_feedback]
    x = rng.uniform(-1.0, 1.0, (M, n_in))
    t = naive.one_hot(rng.integers(0, N_OUT, M), N_OUT)
    icfg = np.zeros(c.N_ICFG, dtype=np.int64)
    icfg[c.I_SIGNAL], icfg[c.I_LOSS], icfg[c.I_CLASSIFICATION], icfg[c.I_THREADS] = (
        signal,
        c.CROSS_ENTROPY,
        1,
        1,
    )
    return table, params, feedback, table.buffers(M, np.float64), x, t, icfg


def engine_gradients(table, params, feedback, bufs, x, t, icfg):
    """``(grads, loss, errors)`` from the kernels; untouched entries stay 7.0."""
    grads = np.full(table.n_params, 7.0)
    loss, errors = lk.backward_layers(
        params,
        feedback,
        table.ltab,
        icfg,
        x,
        t,
        bufs["hidden"],
        bufs["deltas"],
        bufs["indices"],
        bufs["zeros"],
        bufs["workspace"],
        bufs["averages"],
        bufs["sparse"],
        bufs["ops"],
        None,
        None,
        0,
        None,
    )
    first = lk.first_learning_layer(table.ltab, icfg)
    lk.layer_gradients(
        x, bufs["hidden"], bufs["deltas"], grads, table.ltab, first, bufs["workspace"], bufs["sparse"],
        bufs["ops"], 1, None,
    )  # fmt: skip
    return grads, loss, errors


def test_forward_matches_the_reference():
    table, params, _, bufs, x, _, _ = build()
    names = ("hidden", "indices", "zeros", "workspace", "averages", "sparse", "ops")
    y = lk.forward_layers(params, table.ltab, x, *[bufs[k] for k in names], 1, None, 0, 0, None)
    pre, post = ref.forward(table.ltab, params, x)
    assert_close(y, post[-1], np.float64)
    for layer in range(len(table.ltab)):
        assert_close(lk.output_rows(bufs["hidden"], table.ltab, layer, M), post[layer], np.float64)
    assert [int(r[c.L_KIND]) for r in table.ltab] == [
        c.KIND_CONV,
        c.KIND_MAXPOOL,
        c.KIND_CONV,
        c.KIND_AVGPOOL,
        c.KIND_DENSE,
        c.KIND_DENSE,
    ]


@pytest.mark.parametrize("net", [NET, FULL_WINDOW])
@pytest.mark.parametrize("signal", [c.SIGNAL_BACKPROP, c.SIGNAL_LAYERWISE, c.SIGNAL_DIRECT, c.SIGNAL_NONE])
def test_signals_and_gradients_match_the_reference(signal, net):
    table, params, feedback, bufs, x, t, icfg = build(net, signal=signal)
    grads, loss, errors = engine_gradients(table, params, feedback, bufs, x, t, icfg)
    deltas, _, post = ref.signals(table.ltab, params, feedback, x, t, signal)
    expected = ref.gradients(table.ltab, params, x, deltas, post)
    assert_close(loss / M, ref.mean_loss(table.ltab, params, x, t), np.float64)
    assert errors == int(np.sum(post[-1].argmax(1) != t.argmax(1)))
    learned = np.zeros(table.n_params, dtype=bool)
    for layer, row in enumerate(table.ltab):
        if row[c.L_W_OFF] >= 0 and deltas[layer] is not None:
            n_w = int(np.prod(ref.weight(params, row, row[c.L_W_OFF]).shape))
            learned[row[c.L_W_OFF] : row[c.L_W_OFF] + n_w] = True
            learned[row[c.L_B_OFF] : row[c.L_B_OFF] + len(ref.bias(params, row))] = True
    assert_close(grads[learned], expected[learned], np.float64)
    assert np.all(grads[~learned] == 7.0)
    if signal == c.SIGNAL_NONE:  # shallow: only the output layer learns, conv layers are left alone
        last = table.ltab[-1]
        assert learned.sum() == last[c.L_IN_SIZE] * last[c.L_OUT_SIZE] + last[c.L_OUT_SIZE]


@pytest.mark.parametrize("net", [NET, FULL_WINDOW])
def test_backprop_equals_finite_differences(net):
    table, params, feedback, bufs, x, t, icfg = build(net)
    grads, _, _ = engine_gradients(table, params, feedback, bufs, x, t, icfg)
    rng = np.random.default_rng(1)
    h = 1e-6
    for i in rng.choice(table.n_params, 60, replace=False):
        up, down = params.copy(), params.copy()
        up[i] += h
        down[i] -= h
        numeric = (ref.mean_loss(table.ltab, up, x, t) - ref.mean_loss(table.ltab, down, x, t)) / (2 * h)
        assert abs(grads[i] - numeric) <= 1e-6 * (1 + abs(numeric)), i


def test_fa_with_feedback_equal_to_the_weights_is_bp():
    table, params, _, bufs, x, t, icfg = build(signal=c.SIGNAL_LAYERWISE)
    feedback = np.zeros(table.n_feedback)
    for row in table.ltab:
        if row[c.L_FB_OFF] >= 0:
            n = int(np.prod(ref.weight(params, row, row[c.L_W_OFF]).shape))
            feedback[row[c.L_FB_OFF] : row[c.L_FB_OFF] + n] = params[row[c.L_W_OFF] : row[c.L_W_OFF] + n]
    fa, fa_loss, _ = engine_gradients(table, params, feedback, bufs, x, t, icfg)
    icfg[c.I_SIGNAL] = c.SIGNAL_BACKPROP
    bp, bp_loss, _ = engine_gradients(table, params, feedback, bufs, x, t, icfg)
    np.testing.assert_array_equal(fa, bp)
    assert fa_loss == bp_loss


def test_dfa_on_one_conv_layer_is_fa_with_matching_feedback():
    text, image = "conv:3:3", (2, 6, 6)
    table, params, feedback, bufs, x, t, icfg = build(text, image, signal=c.SIGNAL_DIRECT)
    dfa, _, _ = engine_gradients(table, params, feedback, bufs, x, t, icfg)
    fa_table, _, _, fa_bufs, _, _, fa_icfg = build(text, image, signal=c.SIGNAL_LAYERWISE)
    assert fa_table.n_feedback == table.n_feedback == 3 * 4 * 4 * N_OUT
    fa, _, _ = engine_gradients(fa_table, params, feedback, fa_bufs, x, t, fa_icfg)
    np.testing.assert_array_equal(dfa, fa)


RULE_OF_SIGNAL = {
    c.SIGNAL_BACKPROP: "bp", c.SIGNAL_LAYERWISE: "fa", c.SIGNAL_DIRECT: "dfa", c.SIGNAL_DIRECT_SIGN: "sdfa",
    c.SIGNAL_TARGET: "drtp", c.SIGNAL_NONE: "shallow",
}  # fmt: skip


@pytest.mark.parametrize("signal", list(RULE_OF_SIGNAL))
def test_dense_table_is_the_dense_engine(signal):
    """A dense layer list gets, bit for bit, the dense kernels' gradients under every signal."""
    sizes = (12, 7, 5, N_OUT)
    trainer = make_trainer(sizes, RULE_OF_SIGNAL[signal], "float64")
    table, _, _, bufs, x, t, _ = build("dense:7,dense:5", (1, 3, 4), signal=signal)
    assert table.n_params == trainer.params.size and table.n_feedback == trainer.feedback.size
    icfg = trainer.icfg.copy()
    icfg[c.I_THREADS] = 1
    width = sum(sizes[1:])
    hidden, deltas, grads = np.zeros(M * width), np.zeros(M * width), np.full(trainer.params.size, 7.0)
    loss, errors = cpu.compute_gradients(
        trainer.params,
        trainer.feedback,
        grads,
        trainer.sizes,
        trainer.acts,
        icfg,
        x,
        t,
        hidden,
        deltas,
        sparse_marker(x),
        None,
    )
    mine, my_loss, my_errors = engine_gradients(table, trainer.params, trainer.feedback, bufs, x, t, icfg)
    np.testing.assert_array_equal(mine, grads)
    assert (my_loss, my_errors) == (loss, errors)


def test_training_steps_lower_the_loss_for_every_signal():
    """A few SGD steps on one batch (the learning tests on real data train through the Trainer)."""
    for signal in (c.SIGNAL_BACKPROP, c.SIGNAL_LAYERWISE, c.SIGNAL_DIRECT):
        table, params, feedback, bufs, x, t, icfg = build(signal=signal, act=c.RELU)
        before = ref.mean_loss(table.ltab, params, x, t)
        fcfg = np.zeros(c.N_FCFG)
        fcfg[c.F_LR], fcfg[c.F_MOMENTUM] = 0.01, 0.9
        grads, state = np.zeros(table.n_params), np.zeros((2, table.n_params))
        for step in range(1, 31):
            layer_epoch.train_batch_layers(
                params,
                feedback,
                np.abs(feedback),
                None,
                grads,
                state,
                table.ltab,
                icfg,
                fcfg,
                x,
                t,
                bufs["hidden"],
                bufs["deltas"],
                bufs["indices"],
                bufs["zeros"],
                bufs["workspace"],
                bufs["averages"],
                bufs["sparse"],
                bufs["ops"],
                None,
                None,
                None,
                None,
                step,
            )
        assert ref.mean_loss(table.ltab, params, x, t) < 0.85 * before, signal


def test_a_convolution_covering_its_input_takes_the_dense_path():
    """The FULL_WINDOW net's second convolution (5 x 1 x 1 out of 3 x 8 x 8) runs as one GEMM."""
    table = build(FULL_WINDOW)[0]
    convs = [layer for layer in range(len(table.ltab)) if table.ltab[layer, c.L_KIND] == c.KIND_CONV]
    assert [bool(lk.covers_input(table.ltab, layer)) for layer in convs] == [False, True]


def test_kolen_pollack_feedback_receives_the_kernels_update():
    """kp on conv and dense layers alike: ``K - W`` shrinks by exactly ``(1 - lr wd)`` every step."""
    table, params, feedback, bufs, x, t, icfg = build(signal=c.SIGNAL_LAYERWISE)
    icfg[c.I_DYNAMICS] = c.DYNAMICS_KOLEN_POLLACK
    fcfg = np.zeros(c.N_FCFG)
    fcfg[c.F_LR], fcfg[c.F_MOMENTUM], fcfg[c.F_WEIGHT_DECAY] = 0.05, 0.9, 0.01
    grads, state = np.zeros(table.n_params), np.zeros((2, table.n_params))
    owners = [row for row in table.ltab if row[c.L_FB_OFF] >= 0]
    assert any(row[c.L_KIND] == c.KIND_CONV for row in owners)

    def gaps():
        out = []
        for row in owners:
            n = int(np.prod(ref.weight(params, row, row[c.L_W_OFF]).shape))
            out.append(
                feedback[row[c.L_FB_OFF] : row[c.L_FB_OFF] + n] - params[row[c.L_W_OFF] : row[c.L_W_OFF] + n]
            )
        return out

    for step in range(1, 4):
        before = gaps()
        layer_epoch.train_batch_layers(
            params, feedback, None, feedback, grads, state, table.ltab, icfg, fcfg, x, t, *bufs.values(),
            None, None, None, None, step,
        )  # fmt: skip
        for old, new in zip(before, gaps()):
            np.testing.assert_allclose(new, (1 - 0.05 * 0.01) * old, rtol=1e-12, atol=1e-14)
