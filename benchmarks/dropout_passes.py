"""Dropout's two passes on LeNet-MNIST's largest hidden layer: one thread next to the rows split.

Run ``python -m benchmarks.dropout_passes [--batch 64] [--repeats 200] [--threads 2]``. It times
:func:`~fastfa.kernels.dropout.drop_units` (the mask, in the forward pass) and
:func:`~fastfa.kernels.dropout.derive_dropped` (the signal's derivative through the mask) on a
``batch x 3456`` block (conv1's 6 x 24 x 24 outputs, ReLU, keep 0.5), serial and with the rows
split over ``--threads`` (:func:`~fastfa.kernels.dropout.drop_rows`,
:func:`~fastfa.kernels.dropout.derive_dropped_rows`), alternating, and prints the ratios; it also
checks that both give the same array. Each call starts from a fresh copy of its input; the copy,
timed alone, is subtracted. Times are the best of three runs of ``--repeats`` calls.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np

from benchmarks.timing import best_seconds
from fastfa.kernels.codes import RELU
from fastfa.kernels.dropout import derive_dropped, derive_dropped_rows, drop_rows, drop_units

UNITS = 6 * 24 * 24
KEEP, SEED, STEP = 0.5, 1, 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two setups")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    h = np.maximum(rng.standard_normal((args.batch, UNITS)), 0).astype(np.float32)
    delta = rng.standard_normal(h.shape).astype(np.float32)
    serial, split = h.copy(), h.copy()
    drop_units(serial, KEEP, SEED, STEP, 0)
    drop_rows(split, KEEP, SEED, STEP, 0, args.threads)
    assert np.array_equal(serial, split), "the split pass drew other masks"
    passes = {
        "mask": (
            lambda: drop_units(h.copy(), KEEP, SEED, STEP, 0),
            lambda: drop_rows(h.copy(), KEEP, SEED, STEP, 0, args.threads),
        ),
        "derivative": (
            lambda: derive_dropped(delta.copy(), serial, RELU, KEEP, SEED, STEP, 0),
            lambda: derive_dropped_rows(delta.copy(), serial, RELU, KEEP, SEED, STEP, 0, args.threads),
        ),
    }
    copy = {"mask": best_seconds(h.copy, args.repeats), "derivative": best_seconds(delta.copy, args.repeats)}
    print(f"dropout passes on a {args.batch} x {UNITS} float32 block, {args.threads} threads")
    print(f"{'round':>5}  {'pass':<10}  {'1 thread':>10}  {'split':>10}  ratio")
    for round_ in range(1, args.rounds + 1):
        for name, (one, many) in passes.items():
            t_one, t_many = (best_seconds(func, args.repeats) - copy[name] for func in (one, many))
            times = f"{1e6 * t_one:>8.0f}us  {1e6 * t_many:>8.0f}us"
            print(f"{round_:>5}  {name:<10}  {times}  {t_one / t_many:.2f}x")


if __name__ == "__main__":
    main()
