"""Kolen-Pollack: feedback matrices receive the forward weights' updates, and both decay.

    delta_l = (delta_{l+1} B_{l+1}) * f'(a_l)
    Delta W_{l+1}   = -lr g_{l+1}   - lr wd W_{l+1}
    Delta B_{l+1}^T = -lr g_{l+1}   - lr wd B_{l+1}^T

(with momentum, ``B^T`` receives ``W``'s momentum update likewise). The same update
and the same decay make ``B^T - W`` shrink by ``(1 - lr wd)`` every step, so ``B``
converges to ``W^T`` without any transport of the weights themselves -- only of
the same local update. Needs ``weight_decay > 0``: the decay is what aligns them.

Feedback initialisation: as :mod:`fastfa_plugins.fa` (``feedback_init``,
``feedback_scale``).

References
----------
Kolen, Pollack (1994). Backpropagation without weight transport. IEEE ICNN.
Akrout, Wilson, Humphreys, Lillicrap, Tweed (2019). Deep learning without weight
transport. NeurIPS 32.
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

rule = Rule(
    name="kp",
    summary="Kolen-Pollack: B receives W's update with the same weight decay, so B -> W^T",
    reference="Akrout et al. 2019, NeurIPS 32; Kolen & Pollack 1994",
    signal="layerwise",
    init_feedback=random_feedback,
    dynamics="kolen-pollack",
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
)
