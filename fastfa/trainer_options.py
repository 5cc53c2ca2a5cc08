"""A trainer's optional features, checked against its network: augmentation, dropout, batch norm
and the weight mirror's variant (one-line ``ValueError`` for what cannot run), and dropout's keep
probabilities as the kernels take them."""

from __future__ import annotations

import numpy as np

from fastfa.kernels import codes


def check_augmentation(config, n_inputs):
    """Augmentation crops and flips images: the inputs must have an image shape of their size."""
    shape = config.image_shape
    if not shape:
        raise ValueError(
            "--crop-padding and --flip augment images, but these inputs have no image shape "
            "(use an image dataset, or give --image-shape CxHxW)"
        )
    if int(np.prod(shape)) != n_inputs:
        raise ValueError(
            f"image shape {'x'.join(map(str, shape))} does not match the {n_inputs} input features"
        )


def keep_probabilities(config, arch):
    """Each layer's dropout keep probability (``1 - rate``; 1 for the output layer), or None
    without dropout (the kernels then leave it out of the compile)."""
    rates = config.dropout
    if not rates or not any(rates):
        return None
    if arch.is_dense:
        dropping = list(range(arch.n_layers - 1))  # every hidden layer
        n_layers, what = arch.n_layers, "hidden layer"
    else:  # a layer list: every layer with weights below the output (conv and dense)
        ltab = arch.table.ltab
        kinds = (codes.KIND_DENSE, codes.KIND_CONV)
        dropping = [i for i in range(len(ltab) - 1) if ltab[i, codes.L_KIND] in kinds]
        n_layers, what = len(ltab), "hidden layer with weights"
    if len(rates) not in (1, len(dropping)):
        raise ValueError(f"--dropout takes one rate or one per {what} ({len(dropping)}), got {len(rates)}")
    keep = np.ones(n_layers, dtype=np.float64)
    keep[dropping] = [1.0 - r for r in (rates * len(dropping) if len(rates) == 1 else rates)]
    return keep


def check_mirror_variant(rule, options, arch):
    """Akrout et al.'s weight-mirror variant (``mirror_response="activation"``, ``mirror_rounds``)
    runs on dense networks whose mirrored layers feed elementwise units (no softmax above them)."""
    if rule.dynamics != "mirror":
        return
    response, rounds = options.get("mirror_response", "linear"), options.get("mirror_rounds", 0)
    if response not in ("linear", "activation"):
        raise ValueError(
            f"rule {rule.name!r}: mirror_response must be linear or activation, got {response!r}"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rule {rule.name!r}: mirror_rounds must be a whole number >= 0, got {rounds!r}")
    if response == "linear" and not rounds:
        return
    if not arch.is_dense:
        raise ValueError(
            f"rule {rule.name!r}: mirror_response=activation and mirror_rounds run on dense networks only"
        )
    if codes.SOFTMAX in arch.codes()[1:]:
        raise ValueError(
            f"rule {rule.name!r}: mirror_response=activation needs elementwise units above the mirrored "
            "layers, not a softmax output (use --output-activation logistic)"
        )


def check_batch_norm(config, arch):
    """Batch norm needs more than one value per channel in a training batch: with one, every
    value is its channel's mean and the layer's output would be its shift alone."""
    if arch.is_dense or not arch.has_norm:
        return
    for index, (layer, shape) in enumerate(zip(arch.plan.layers, arch.plan.shapes[1:]), start=1):
        positions = int(np.prod(shape[1:])) if len(shape) == 3 else 1
        if layer.norm and config.batch_size * positions < 2:
            raise ValueError(
                f"layer {index} ({layer.text()}) normalises one value per channel at batch size "
                f"{config.batch_size}: batch norm needs a batch of 2 or more"
            )
