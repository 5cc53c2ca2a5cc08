"""Where the sparse first-layer path pays: its kernels against the dense ones, by input density.

Run ``python -m benchmarks.sparsity [--batches 32,128] [--repeats 200]``. For inputs with a
given fraction of non-zero entries (random positions, values in (0, 1]) it times, on a
784 x 1000 float32 layer with the threads fastfa uses for training:

- forward: :func:`~fastfa.kernels.cpu.sparse_product` against the BLAS product;
- update (SGD with momentum): :func:`~fastfa.kernels.cpu.sparse_sgd` against the BLAS
  gradient product plus the velocity pass.

It prints sparse/dense time ratios; below 1 the sparse path is faster. The crossover sets
``SPARSE_DENSITY`` in ``fastfa/kernels/cpu.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.timing import best_seconds
from fastfa.kernels import cpu
from fastfa.threads import kernel_threads

N_IN, N_OUT = 784, 1000
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)


def measure(batch, density, threads, repeats, rng):
    """Seconds per call ``(sparse forward, dense forward, sparse update, dense update)``."""
    x = (rng.random((batch, N_IN)) < density) * rng.random((batch, N_IN))
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = rng.normal(0, 0.03, (N_IN, N_OUT)).astype(np.float32)
    v = np.zeros_like(w)
    out = np.zeros((batch, N_OUT), np.float32)
    delta = rng.normal(0, 0.01, (batch, N_OUT)).astype(np.float32)
    nonzero = cpu.count_nonzero(x)
    lr, mu = 1e-6, 0.9  # tiny steps: the weights barely move over the repeats

    def dense_update():
        cpu.product(-lr, x, True, delta, False, 1.0, v, threads)
        cpu.apply_velocity(w, v, 0.0, mu, threads)

    return (
        best_seconds(lambda: cpu.sparse_product(x, w, out, nonzero, threads), repeats),
        best_seconds(lambda: cpu.product(1.0, x, False, w, False, 0.0, out, threads), repeats),
        best_seconds(lambda: cpu.sparse_sgd(x, delta, w, v, lr, mu, 0.0, nonzero, threads), repeats),
        best_seconds(dense_update, repeats),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="32,128,1024")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with kernel_threads() as threads:
        print(f"784 x 1000 float32 layer, {threads} thread(s); sparse/dense time (below 1: sparse wins)")
        print(f"SPARSE_DENSITY in fastfa/kernels/cpu.py: {cpu.SPARSE_DENSITY}\n")
        print(f"{'batch':>5} {'density':>8} {'forward':>8} {'update':>8} {'both':>8}")
        for batch in (int(b) for b in args.batches.split(",")):
            repeats = max(3, args.repeats * 32 // batch)
            for density in DENSITIES:
                sf, df, su, du = measure(batch, density, threads, repeats, rng)
                both = (sf + su) / (df + du)
                print(f"{batch:>5} {density:>8.2f} {sf / df:>8.2f} {su / du:>8.2f} {both:>8.2f}")


if __name__ == "__main__":
    main()
