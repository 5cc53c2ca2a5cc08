"""The convolution kernels on LeNet-MNIST's shapes: samples/s and GFLOP/s by pass and thread setup.

Run ``python -m benchmarks.conv_kernels [--batch 64] [--repeats 50] [--dtype float32]``. It times
:mod:`fastfa.kernels.conv` on BioTorch's LeNet-MNIST convolutions (inputs padded to 32 x 32):

- conv1: 1 -> 6 channels, 5 x 5, on 32 x 32 (output 28 x 28);
- conv2: 6 -> 16 channels, 5 x 5, on 14 x 14 (output 10 x 10);

for each pass: ``forward`` (:func:`~fastfa.kernels.conv.conv_forward`), ``input``
(:func:`~fastfa.kernels.conv.conv_backward_input`: the signal sent back; LeNet's conv1 sends
none in training, it is timed all the same), ``weight``
(:func:`~fastfa.kernels.conv.conv_weight_grad`), and ``im2col`` alone
(:func:`~fastfa.kernels.conv.im2col_batch`, part of the forward and weight passes).
Each pass costs exactly ``2 C_out H_out W_out C_in k k`` flops per sample; GFLOP/s counts
those (im2col's row shows the samples/s only).

Three thread setups:

- ``split``: the batch split over numba's threads, OpenBLAS held to one thread per caller
  (:func:`fastfa.threads.kernel_threads`, as fastfa trains);
- ``serial``: one part, OpenBLAS held to one thread;
- ``fight``: the batch split over numba's threads while OpenBLAS keeps its own threads (what
  happens without ``kernel_threads``: the two pools compete for the cores).

Times are the best of three runs of ``--repeats`` calls; on a machine that is busy with
something else they are noisy and low.
"""

from __future__ import annotations

import argparse
import os

import numba
import numpy as np

from benchmarks.timing import best_seconds
from fastfa.kernels import conv
from fastfa.threads import kernel_threads

# name: (C_in, C_out, H (= W), k, stride, padding)
LAYERS = {"conv1": (1, 6, 32, 5, 1, 0), "conv2": (6, 16, 14, 5, 1, 0)}


def flops_per_sample(c_in, c_out, h, k, stride, padding):
    """``2 C_out H_out W_out C_in k k``: one pass over one sample (square maps)."""
    h_out = conv.conv_output_size(h, k, stride, padding)
    return 2 * c_out * h_out * h_out * c_in * k * k


def measure(layer, batch, dtype, threads, repeats, rng):
    """Seconds per call ``{pass: seconds}`` of one layer's kernels with ``threads`` parts."""
    c_in, c_out, h, k, stride, padding = layer
    x = rng.random((batch, c_in, h, h)).astype(dtype)
    w = rng.normal(0.0, 0.1, (c_out, c_in, k, k)).astype(dtype)
    b = np.zeros(c_out, dtype)
    out = np.zeros(conv.conv_output_shape(x.shape, w.shape, stride, padding), dtype)
    delta = rng.normal(0.0, 0.01, out.shape).astype(dtype)
    back = np.zeros_like(x)
    gw, gb = np.zeros_like(w), np.zeros_like(b)
    ws = np.zeros(conv.conv_workspace_size(x.shape, w.shape, stride, padding, threads), dtype)
    cols = np.zeros((batch, *conv.im2col_shape(c_in, h, h, k, stride, padding)), dtype)
    return {
        "forward": best_seconds(
            lambda: conv.conv_forward(x, w, b, stride, padding, out, ws, threads), repeats
        ),
        "input": best_seconds(
            lambda: conv.conv_backward_input(delta, w, stride, padding, back, ws, threads), repeats
        ),
        "weight": best_seconds(
            lambda: conv.conv_weight_grad(x, delta, stride, padding, gw, gb, ws, threads), repeats
        ),
        "im2col": best_seconds(lambda: conv.im2col_batch(x, k, stride, padding, cols, threads), repeats),
    }


def report(setup, name, layer, batch, times):
    flops = flops_per_sample(*layer) * batch
    for kind, seconds in times.items():
        rate = "" if kind == "im2col" else f"{flops / seconds / 1e9:>8.1f}"
        print(f"{setup:>7} {name:>6} {kind:>8} {seconds * 1e3:>9.3f} {batch / seconds:>10.0f} {rate:>8}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"LeNet-MNIST convolutions, batch {args.batch}, {args.dtype}; {os.cpu_count()} cores, load {load:.2f}"
    )
    for name, layer in LAYERS.items():
        print(f"  {name}: {flops_per_sample(*layer) / 1e6:.3f} Mflop per sample per pass")
    print(f"\n{'setup':>7} {'layer':>6} {'pass':>8} {'ms/call':>9} {'samples/s':>10} {'GFLOP/s':>8}")
    for name, layer in LAYERS.items():
        with kernel_threads() as threads:
            report(
                "split",
                name,
                layer,
                args.batch,
                measure(layer, args.batch, args.dtype, threads, args.repeats, rng),
            )
            report(
                "serial",
                name,
                layer,
                args.batch,
                measure(layer, args.batch, args.dtype, 1, args.repeats, rng),
            )
        threads = numba.get_num_threads()
        report(
            "fight",
            name,
            layer,
            args.batch,
            measure(layer, args.batch, args.dtype, threads, args.repeats, rng),
        )


if __name__ == "__main__":
    main()
