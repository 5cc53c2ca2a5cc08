"""Uniform sign-concordant feedback: ``B = s * sign(W^T)``.

    delta_l = (delta_{l+1} (s sign(W_{l+1}))^T) * f'(a_l)

Feedback initialisation: the magnitude ``s`` of each layer is the mean absolute
value of the forward layer's initial distribution (half the bound of the
network's uniform scheme), times ``feedback_scale``, so that ``||B||`` starts
close to ``||W||``. The signs follow the current forward weights: ``B`` is
refreshed before every batch.

References
----------
Liao, Leibo, Poggio (2016). How important is weight symmetry in
backpropagation? AAAI 30 (arXiv:1510.05067).
"""

import numpy as np

from fastfa.network import init_bound
from fastfa.rules import Rule


def uniform_magnitude(rng, shape, *, fan_in, fan_out, init, options):
    """``s * ones(shape)`` with ``s = init_bound / 2 * feedback_scale``."""
    scheme = "uniform" if init == "zeros" else init
    return np.full(shape, 0.5 * init_bound(scheme, fan_in, fan_out) * options["feedback_scale"])


rule = Rule(
    name="usf",
    summary="uniform sign-concordant feedback: B = s * sign(W^T)",
    reference="Liao, Leibo, Poggio 2016, AAAI 30",
    signal="layerwise",
    init_feedback=uniform_magnitude,
    dynamics="sign",
    devices=("cpu", "cuda"),
    options={"feedback_scale": 1.0},
)
