"""Weight mirror: feedback learned from the layer's own activity under injected noise.

    delta_l = (delta_{l+1} B_{l+1}) * f'(a_l)
    after every update:  B^T <- (1 - eta lam) B^T + (eta / m) xi^T (xi W_{l+1})

``xi`` is noise injected into hidden layer ``l`` (``m`` rows, independent entries
of standard deviation ``mirror_noise``); ``xi W_{l+1}`` is what it causes in the
layer above, which that layer's synapses see. The mean step is
``eta (sigma^2 W_{l+1} - lam B^T)``, so ``B`` tends to ``(sigma^2 / lam) W^T``:
with the defaults (``mirror_noise = 1``, ``mirror_decay = 1``) to ``W^T`` itself.
``mirror_lr`` (``eta``) trades speed for noise: the feedback averages over about
``1 / (eta lam)`` updates.

Akrout et al.'s code differs in two ways, each an option: its response goes through the layer
above's bias and activation, ``y = f(xi W_{l+1} + b_{l+1})`` (``mirror_response="activation"``;
``"linear"`` by default), and it mirrors ``N / batch`` rounds before training
(``mirror_rounds``, 0 by default). Both run on dense networks on the CPU.

Feedback initialisation: as :mod:`fastfa_plugins.fa` (``feedback_init``,
``feedback_scale``). The noise is uniform with the given standard deviation
(Akrout et al. use Gaussian noise; only its covariance enters the mean step).

References
----------
Akrout, Wilson, Humphreys, Lillicrap, Tweed (2019). Deep learning without weight
transport. NeurIPS 32.
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

rule = Rule(
    name="wm",
    summary="weight mirror: B learns W^T from noise injected into its own layer",
    reference="Akrout et al. 2019, NeurIPS 32",
    signal="layerwise",
    init_feedback=random_feedback,
    dynamics="mirror",
    devices=("cpu", "cuda"),
    options={
        **RANDOM_FEEDBACK_OPTIONS,
        "mirror_lr": 0.0002,
        "mirror_decay": 1.0,
        "mirror_noise": 1.0,
        "mirror_response": "linear",
        "mirror_rounds": 0,
    },
)
