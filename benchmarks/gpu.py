"""Training throughput on an NVIDIA GPU: fastfa's CUDA engine next to PyTorch CUDA.

Run ``python -m benchmarks.gpu [--quick]`` on a machine with a GPU (``pip install
'fastfa[cuda]'``; PyTorch with CUDA for the comparison, skipped with a message when it is
absent). It prints samples/s of both for feedback alignment on 784-1000-10 (tanh, softmax
cross-entropy, SGD momentum 0.9, float32) at batch 32, 128 and 1024, and on a wide
4096-4096-4096-10 network, with the ratio fastfa/PyTorch measured in the same run. The
PyTorch side is written the way peer libraries write fa: a custom autograd Function whose
backward multiplies by B, with the whole data set on the GPU and no shuffling. fastfa runs
``fastfa train``'s epoch loop (:func:`fastfa.fitting.train_epoch`): a shuffled epoch in slices of
rows per engine call (``fastfa.fitting.rows_per_slice``), the parameters copied to the device
and back for each slice, the rows gathered on the device from the split, which its first
(untimed) epoch copied there. Each figure is the best of ``--repeats`` epochs. Data are random
with MNIST's shape and sparsity (the speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks.torch_rules import make_model

NETS = {"784-1000-10": (784, 1000, 10), "4096-4096-4096-10": (4096, 4096, 4096, 10)}


def data(n, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    x = ((rng.random((n, n_in)) < 0.19) * rng.random((n, n_in))).astype(np.float32)
    return x, rng.integers(0, n_out, n)


def fastfa_rate(sizes, batch, n, repeats, mode):
    from fastfa import TrainConfig, Trainer
    from fastfa.datasets import ArraySplit
    from fastfa.fitting import Progress, train_epoch

    config = TrainConfig(hidden=sizes[1:-1], rule="fa", batch_size=batch, lr=0.01, momentum=0.9)
    trainer = Trainer(config, sizes[0], sizes[-1])
    os.environ["FASTFA_CUDA_MODE"] = mode
    trainer.use_device("cuda")
    split = ArraySplit("train", *data(n, sizes[0], sizes[-1]))
    # `fastfa train`'s loop (fastfa.fitting): chunks, shuffling, slices of rows per engine call;
    # the first epoch compiles and copies the split to the device, where later epochs find it
    train_epoch(trainer, split, Progress())
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        train_epoch(trainer, split, Progress())
        best = min(best, time.perf_counter() - start)
    if trainer._cuda.mode != mode:
        return float("nan")  # the fused kernel fell back (the reason went to stderr)
    return n / best


def torch_rate(sizes, batch, n, repeats):
    import torch

    dev = torch.device("cuda")
    model, params = make_model(sizes, "fa", device=dev)
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x, y = data(n, sizes[0], sizes[-1])
    x, y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

    def epoch(rows):
        for start in range(0, rows, batch):
            loss = torch.nn.functional.cross_entropy(
                model(x[start : start + batch]), y[start : start + batch]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()

    epoch(4 * batch)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        epoch(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from fastfa.kernels import cuda as kernels

    if not kernels.available():
        sys.exit("benchmarks.gpu: no CUDA GPU found (numba.cuda.is_available() is False); nothing to measure")
    try:
        import torch

        has_torch = torch.cuda.is_available()
        note = f"PyTorch {torch.__version__}" if has_torch else "PyTorch has no CUDA here: skipped"
    except ImportError:
        has_torch, note = False, "PyTorch not installed: skipped"
    name = kernels.cuda.get_current_device().name
    print(f"fastfa GPU benchmark on {name.decode() if isinstance(name, bytes) else name}; {note}")
    print("fa, samples/s; fused: one cooperative launch per chunk; kernels: a launch per operation")
    print(
        f"{'network':<20}{'batch':>6}{'fused':>12}{'kernels':>12}{'torch':>12}{'fused/torch':>13}{'kernels/torch':>15}"
    )
    cases = [("784-1000-10", b) for b in (32, 128, 1024)] + [("4096-4096-4096-10", 128)]
    for net, batch in cases:
        n = (8192 if args.quick else 60000) if net.startswith("784") else (4096 if args.quick else 16384)
        fused = fastfa_rate(NETS[net], batch, n, args.repeats, "fused")
        kernels_rate = fastfa_rate(NETS[net], batch, n, args.repeats, "kernels")
        theirs = torch_rate(NETS[net], batch, n, args.repeats) if has_torch else float("nan")
        print(
            f"{net:<20}{batch:>6}{fused:>12,.0f}{kernels_rate:>12,.0f}{theirs:>12,.0f}"
            f"{fused / theirs:>12.2f}x{kernels_rate / theirs:>14.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
