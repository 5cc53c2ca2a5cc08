"""Fixed random-magnitude sign-concordant feedback: ``B = |R| * sign(W^T)``.

    delta_l = (delta_{l+1} (|R_{l+1}| * sign(W_{l+1}))^T) * f'(a_l)

Feedback initialisation: ``R`` is drawn once like fa's feedback (scheme of the
forward layer, option ``feedback_init``, times ``feedback_scale``); only its
magnitudes are used. The signs follow the current forward weights: ``B`` is
refreshed before every batch.

References
----------
Liao, Leibo, Poggio (2016). How important is weight symmetry in
backpropagation? AAAI 30. Also BioTorch (Sanfiz and Akrout 2021).
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

rule = Rule(
    name="frsf",
    summary="fixed random-magnitude sign-concordant feedback: B = |R| * sign(W^T)",
    reference="Liao, Leibo, Poggio 2016, AAAI 30",
    signal="layerwise",
    init_feedback=random_feedback,
    dynamics="sign",
    devices=("cpu", "cuda"),
    options=RANDOM_FEEDBACK_OPTIONS,
)
