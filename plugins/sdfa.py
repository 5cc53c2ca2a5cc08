"""Sign-DFA: direct feedback alignment with only the sign of the output error.

    delta_l = (sign(e) D_l / m) * f'(a_l),   D_l fixed, shape (n_out, n_l)

Each hidden layer learns from one bit per output unit (was the output too high
or too low?), sent through a fixed random matrix; ``1/m`` is the batch mean.
The output layer learns from its true gradient.

Feedback initialisation: as :mod:`fastfa_plugins.dfa` (``feedback_init``,
``feedback_scale``).

References
----------
Nøkland (2016). Direct feedback alignment provides learning in deep neural
networks. NeurIPS 29 (the direct pathway); the sign-of-error variant is studied in
Frenkel, Lefebvre, Bol (2021), Frontiers in Neuroscience 15, 629892.
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

rule = Rule(
    name="sdfa",
    summary="sign-DFA: the sign of the output error sent to each hidden layer through fixed random D",
    reference="after Nøkland 2016; Frenkel, Lefebvre, Bol 2021",
    signal="direct-sign",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
)
