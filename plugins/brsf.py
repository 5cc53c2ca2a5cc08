"""Batchwise random-magnitude sign-concordant feedback: ``B = |R_t| * sign(W^T)``.

    delta_l = (delta_{l+1} (|R_t| * sign(W_{l+1}))^T) * f'(a_l),   R_t redrawn every batch

Feedback initialisation: each batch draws ``|R_t| = U * r`` with ``U ~ U[0, 1)``
per entry and ``r`` the bound of the network's uniform scheme for the forward
layer, times ``feedback_scale`` -- the distribution of ``|R|`` for
``R ~ U[-r, r]``. The draws come from a counter-based generator keyed by the
run's seed and the update count, so a resumed run redraws exactly the same
matrices.

References
----------
Liao, Leibo, Poggio (2016). How important is weight symmetry in
backpropagation? AAAI 30. Also BioTorch (Sanfiz and Akrout 2021).
"""

import numpy as np

from fastfa.network import init_bound
from fastfa.rules import Rule


def bound_magnitude(rng, shape, *, fan_in, fan_out, init, options):
    """``r * ones(shape)``: the largest magnitude a batch may draw."""
    scheme = "uniform" if init == "zeros" else init
    return np.full(shape, init_bound(scheme, fan_in, fan_out) * options["feedback_scale"])


rule = Rule(
    name="brsf",
    summary="batchwise random-magnitude sign-concordant feedback: |R| redrawn each batch",
    reference="Liao, Leibo, Poggio 2016, AAAI 30",
    signal="layerwise",
    init_feedback=bound_magnitude,
    dynamics="sign-redraw",
    devices=("cpu", "cuda"),
    options={"feedback_scale": 1.0},
)
