"""Training-time image augmentation: random crops with zero padding and horizontal flips.

What the CIFAR literature and BioTorch's benchmarks use (torchvision's ``RandomCrop(32,
padding=4)`` and ``RandomHorizontalFlip()``): each training image is padded with ``padding``
zero pixels on every side, a window of its own size is cut at a random offset (each of ``0 ..
2 padding`` down and across), and with probability one half it is mirrored left to right.

The draws of batch number ``step`` (the trainer's update count, from 1) come from a generator
seeded with ``(seed, AUGMENT_STREAM, step)``, so they depend only on the run's seed and on
where the batch falls in training: a resumed run, and a run that streams its rows from the file
instead of holding them in memory, augment every batch exactly as an uninterrupted one. Only
training rows are augmented; evaluation, validation and the alignment metrics see the images
as they are.

Rows arrive already scaled and standardised (:meth:`fastfa.train.Trainer.prepare`), so the
padding is what a black pixel becomes under that transform: per channel, the mean of the
prepared all-zero image (exactly the channel's value under ``--standardize channel``, 0 when
nothing is standardised), as torchvision pads before it normalises.
"""

from __future__ import annotations

import numpy as np

#: Keeps the augmentation's draws apart from every other seeded stream of a run
AUGMENT_STREAM = 0x6175676D656E74


class Augmentation:
    """Random crops (``padding`` pixels) and flips (``flip``) of ``(C, H, W)`` images.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)``; rows are images flattened in C order.
    padding : int
        Zero pixels added on every side before the random crop (0: no crop).
    flip : bool
        Mirror half of the images left to right.
    pad_values : array of float, optional
        The value of a padded pixel per channel (default 0).
    """

    def __init__(self, image_shape, padding=0, flip=False, pad_values=None):
        self.shape = tuple(int(s) for s in image_shape)
        self.padding = int(padding)
        self.flip = bool(flip)
        channels = self.shape[0]
        self.pad_values = np.zeros(channels) if pad_values is None else np.asarray(pad_values, dtype=float)

    def offsets(self, n, first_step, batch, seed):
        """``(dy, dx, flipped)`` of ``n`` rows in training order: row ``k`` belongs to batch
        ``first_step + k // batch``, whose draws come from its own seeded generator."""
        dy, dx = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        flipped = np.zeros(n, dtype=bool)
        span = 2 * self.padding + 1
        for b, start in enumerate(range(0, n, batch)):
            m = min(batch, n - start)
            rng = np.random.default_rng([int(seed) % 2**63, AUGMENT_STREAM, first_step + b])
            dy[start : start + m] = rng.integers(0, span, m)
            dx[start : start + m] = rng.integers(0, span, m)
            flipped[start : start + m] = rng.random(m) < 0.5 if self.flip else False
        return dy, dx, flipped

    def apply(self, x, first_step, batch, seed):
        """The rows ``x`` (``n x C*H*W``, in training order, starting with batch ``first_step``),
        each cropped and flipped by its draws; a new array of ``x``'s dtype."""
        n = len(x)
        c, h, w = self.shape
        p = self.padding
        dy, dx, flipped = self.offsets(n, first_step, batch, seed)
        padded = np.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
        padded[...] = self.pad_values.astype(x.dtype)[None, :, None, None]
        padded[:, :, p : p + h, p : p + w] = x.reshape(n, c, h, w)
        rows = dy[:, None] + np.arange(h)  # n x h
        cols = dx[:, None] + np.arange(w)  # n x w
        cols = np.where(flipped[:, None], cols[:, ::-1], cols)
        out = padded[
            np.arange(n)[:, None, None, None],
            np.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        return np.ascontiguousarray(out.reshape(n, -1))


def pad_values(trainer):
    """Per channel, what a zero (black) pixel becomes once the trainer has prepared it."""
    channels, height, width = trainer.config.image_shape
    zero = trainer.scale_inputs(np.zeros((1, channels * height * width)), np.float64)
    return zero.reshape(channels, height * width).mean(axis=1)
