"""Optimiser settings and learning-rate schedules, packed for the kernels.

The update rules themselves are compiled (:func:`fastfa.kernels.cpu.update_parameters`):
SGD with optional (Nesterov) momentum and L2 weight decay, and Adam. State is a
``(2, n_params)`` array: the carried momentum ``mu v`` for SGD (what the next step
adds before its gradient), first and second moments for Adam.
"""

from __future__ import annotations

import math

import numpy as np

from fastfa.kernels import codes

SCHEDULES = ("constant", "step", "multistep", "cosine")


def learning_rate(schedule, lr, epoch, *, epochs, step_size=10, gamma=0.1, lr_min=0.0, milestones=()):
    """Learning rate for a 0-based ``epoch``.

    ``constant``: ``lr``. ``step``: ``lr * gamma ** (epoch // step_size)``.
    ``multistep``: ``lr * gamma ** k``, ``k`` the number of ``milestones`` ``m <= epoch``: with
    milestones 50,75 the 1-based epochs 1-50 train at ``lr``, 51-75 at ``lr * gamma`` and the
    rest at ``lr * gamma ** 2`` (PyTorch's ``MultiStepLR``, BioTorch's benchmark setting).
    ``cosine``: ``lr_min + (lr - lr_min) (1 + cos(pi epoch / epochs)) / 2``
    (Loshchilov and Hutter 2017, without restarts).
    """
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** (epoch // step_size)
    if schedule == "multistep":
        return lr * gamma ** sum(1 for m in milestones if epoch >= m)
    if schedule == "cosine":
        return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def float_config(*, lr, momentum, weight_decay, beta1, beta2, epsilon, mirror=(0.0, 0.0, 0.0, 0.0)):
    """The float configuration vector of the kernels (see :mod:`fastfa.kernels.codes`).

    ``mirror`` is ``(learning rate, decay, noise, response)`` of weight-mirror feedback (response 1:
    the layer's bias and activation on the noise's response, 0: linear).
    """
    fcfg = np.zeros(codes.N_FCFG)
    mirror_slots = (codes.F_MIRROR_LR, codes.F_MIRROR_DECAY, codes.F_MIRROR_NOISE, codes.F_MIRROR_RESPONSE)
    fcfg[list(mirror_slots[: len(mirror)])] = mirror
    fcfg[codes.F_LR] = lr
    fcfg[codes.F_MOMENTUM] = momentum
    fcfg[codes.F_WEIGHT_DECAY] = weight_decay
    fcfg[codes.F_BETA1] = beta1
    fcfg[codes.F_BETA2] = beta2
    fcfg[codes.F_EPSILON] = epsilon
    return fcfg
