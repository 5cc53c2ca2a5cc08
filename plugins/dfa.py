"""Direct feedback alignment: the output error reaches every hidden layer directly.

    delta_l = (e D_l) * f'(a_l),   D_l fixed, shape (n_out, n_l)

Feedback initialisation: ``D_l`` is drawn once with the network's weight
scheme for a layer of fan-in ``n_l`` and fan-out ``n_out`` (option
``feedback_init``, default ``"same"``; with the default ``"uniform"`` scheme
this is U[-1/sqrt(n_l), 1/sqrt(n_l)]), times ``feedback_scale``. With a single
hidden layer dfa and fa are the same rule.

References
----------
Nøkland (2016). Direct feedback alignment provides learning in deep neural
networks. NeurIPS 29, 1037-1045 (arXiv:1609.01596).
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

rule = Rule(
    name="dfa",
    summary="direct feedback alignment: output error sent to each hidden layer through fixed random D",
    reference="Nøkland 2016, NeurIPS 29:1037",
    signal="direct",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
)
