"""Shallow learning: only the output layer learns; hidden layers keep their random weights.

    delta_l = 0 for every hidden layer

The baseline of Lillicrap et al.: what a network achieves with a fixed random
hidden representation and a trained readout.

References
----------
Lillicrap, Cownden, Tweed, Akerman (2016). Random synaptic feedback weights
support error backpropagation for deep learning. Nature Communications 7, 13276.
"""

from fastfa.rules import Rule

rule = Rule(
    name="shallow",
    summary="only the output layer learns (fixed random hidden layers)",
    reference="Lillicrap et al. 2016, Nat. Commun. 7:13276 (baseline)",
    signal="none",
    devices=("cpu", "cuda"),
)
