"""Direct Kolen-Pollack: direct feedback whose matrices learn the output error's correlations.

    delta_l = (e D_l) * f'(a_l)                          (the signal of direct feedback alignment)
    D_l^T  <- (1 - lr wd) D_l^T - lr h_l^T e             (after each update)

``e`` is the output error of the batch (divided by its size), ``h_l`` the activations of hidden
layer ``l`` and ``D_l`` (``n_out x n_l``) the matrix that sends the error straight to that layer.
DKP (Webster, Choi and Ahn 2020) keeps DFA's direct, backward-unlocked signal but lets ``D_l``
learn as Kolen-Pollack lets ``B`` learn (Akrout et al. 2019): ``D_l^T`` receives the update a
direct forward connection from layer ``l`` to the output would receive, ``-lr h_l^T e``, with
the network's weight decay, so that it no longer stays at its random start.

The rule is a fastfa *compiled* plugin (fastfa.compiled_rules): ``direct_signal`` and
``direct_kolen_pollack`` are numba functions that fastfa's epoch loop calls for every hidden
layer of every batch, with no Python between batches. ``signal="direct"`` gives each hidden layer
a matrix of ``n_out`` columns, drawn as dfa draws its own. Their CUDA twins
(``direct_signal_cuda``, ``direct_kolen_pollack_cuda``) compute one entry each, so the rule also
runs with ``--device cuda``.

References
----------
Webster, Choi, Ahn (2020). Learning the connections in direct feedback alignment (Direct
Kolen-Pollack). Akrout, Wilson, Humphreys, Lillicrap, Tweed (2019). Deep learning without
weight transport. NeurIPS 32. Nøkland (2016). Direct feedback alignment provides learning in
deep neural networks. NeurIPS 29.
"""

from numba import cuda, float32, njit

from fastfa.kernels.products import NO_TRANS, TRANS, product
from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback


@njit(cache=True)
def direct_signal(layer, e, t, above, w_above, b, h, out):
    """``out = e D_l`` (``b`` holds ``D_l^T``, ``n_l x n_out``); fastfa applies ``f'(a_l)``."""
    product(1.0, e, NO_TRANS, b, TRANS, 0.0, out, 1)


@njit(cache=True)
def direct_kolen_pollack(phase, layer, step, seed, lr, decay, e, above, h, w_above, b):
    """After each update (``phase`` 1): ``D_l^T <- (1 - lr decay) D_l^T - lr h_l^T e``."""
    if phase == 1:
        product(-lr, h, TRANS, e, NO_TRANS, 1.0 - lr * decay, b, 1)


@cuda.jit(device=True)
def direct_signal_cuda(layer, i, j, e, t, above, w_above, b, h):
    """Entry ``(i, j)`` of ``e D_l``."""
    acc = float32(0.0)
    for k in range(e.shape[1]):
        acc += e[i, k] * b[j, k]
    return acc


@cuda.jit(device=True)
def direct_kolen_pollack_cuda(phase, layer, step, seed, lr, decay, i, j, e, above, h, w_above, b):
    """The new entry ``(i, j)`` of ``D_l^T``: :func:`direct_kolen_pollack` for one entry."""
    if phase == 0:
        return b[i, j]
    acc = float32(0.0)
    for n in range(h.shape[0]):
        acc += h[n, i] * e[n, j]
    return (1.0 - lr * decay) * b[i, j] - lr * acc


rule = Rule(
    name="dkp",
    summary="direct Kolen-Pollack: dfa's direct signal through D, and D^T learns -lr h^T e with decay",
    reference="Webster, Choi, Ahn 2020 (Direct Kolen-Pollack); Akrout et al. 2019",
    signal="direct",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
    hidden_signal=direct_signal,
    feedback_step=direct_kolen_pollack,
    hidden_signal_cuda=direct_signal_cuda,
    feedback_step_cuda=direct_kolen_pollack_cuda,
)
