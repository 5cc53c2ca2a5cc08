"""Kolen-Pollack written as a compiled one-file plugin (fastfa.compiled_rules).

    fastfa train --plugin examples/compiled_kp.py --rule kp-compiled --weight-decay 1e-3 --epochs 5

Two numba functions the epoch loop calls with no Python between batches: the hidden signal of
feedback alignment (``delta_l = delta_{l+1} B``, the engine applies ``f'(a_l)``) and the
feedback's learning step, which gives ``B^T`` the forward weights' update and the same decay
(``B^T <- B^T - W`` before the update, ``B^T <- (1 - lr wd) B^T + W`` after it), so that ``B``
converges to ``W^T`` (Akrout et al. 2019). It trains bit for bit as the built-in ``kp``
(tests/test_compiled_rules.py) at its speed (``python -m benchmarks.compiled_plugin``).

With ``--device cuda`` their device twins run instead: each computes one entry (``out[i, j]``,
``b[i, j]``), one GPU thread per entry.
"""

from numba import cuda, float32, njit

from fastfa.kernels.products import NO_TRANS, TRANS, product
from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback


@njit(cache=True)
def feedback_alignment(layer, e, t, above, w_above, b, h, out):
    """``out = above @ b.T``: the signal of the layer above through ``B`` (``b`` is ``B^T``)."""
    product(1.0, above, NO_TRANS, b, TRANS, 0.0, out, 1)


@njit(cache=True)
def kolen_pollack(phase, layer, step, seed, lr, decay, e, above, h, w_above, b):
    """``b <- b - w_above`` before the update (phase 0), ``b <- (1 - lr decay) b + w_above`` after."""
    keep = 1.0 if phase == 0 else 1.0 - lr * decay
    weight = -1.0 if phase == 0 else 1.0
    rows, cols = b.shape
    for i in range(rows):
        for j in range(cols):
            b[i, j] = keep * b[i, j] + weight * w_above[i, j]


@cuda.jit(device=True)
def feedback_alignment_cuda(layer, i, j, e, t, above, w_above, b, h):
    """Entry ``(i, j)`` of ``above @ b.T``, summed in float32 in the order of fastfa's GEMM kernel."""
    acc = float32(0.0)
    for k in range(above.shape[1]):
        acc += above[i, k] * b[j, k]
    return acc


@cuda.jit(device=True)
def kolen_pollack_cuda(phase, layer, step, seed, lr, decay, i, j, e, above, h, w_above, b):
    """The new ``b[i, j]``: Kolen-Pollack's step of :func:`kolen_pollack` for one entry."""
    keep = 1.0 if phase == 0 else 1.0 - lr * decay
    weight = -1.0 if phase == 0 else 1.0
    return keep * b[i, j] + weight * w_above[i, j]


rule = Rule(
    name="kp-compiled",
    summary="Kolen-Pollack as a compiled plugin (B^T receives W's update and decay)",
    reference="Akrout et al. 2019, NeurIPS 32",
    signal="layerwise",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
    hidden_signal=feedback_alignment,
    feedback_step=kolen_pollack,
    hidden_signal_cuda=feedback_alignment_cuda,
    feedback_step_cuda=kolen_pollack_cuda,
)
